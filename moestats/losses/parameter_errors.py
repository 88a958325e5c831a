"""Per-parameter Voronoi-matched errors, per cell (papers.md section 4; package
docstring: :mod:`moestats.losses`)."""

from __future__ import annotations

import numpy as np

from .atoms import (_as_pair, _assign, _block_distances, _blocks, _cells_from_assignment,
                    _temperature_mode)
from .voronoi import _GAUGES, _best_scale, _cell_weights

__all__ = ["parameter_errors"]


# ------------------------------------------------------ per-parameter errors
def parameter_errors(fitted, true, *, learned_temperature=False, relative_weights=False,
                     gauge="reference"):
    """Voronoi-matched error of every parameter block (per-parameter rate plots).

    For each block :math:`\\cdot \\in \\{\\beta_1, a, b, \\nu\\}` (and
    :math:`\\tau`, :math:`\\beta_1/\\tau` when the temperature is learned)

    .. math::

        \\operatorname{err}(\\cdot) = \\max_{j : A_j \\ne \\emptyset}
            \\max_{i \\in A_j} \\|\\Delta\\cdot_{ij}\\|,
        \\qquad
        \\operatorname{err}(w) = \\max_j \\Bigl| \\sum_{i\\in A_j} w_i - w^*_j \\Bigr|,

    with :math:`w_i = e^{\\beta_{0i}}`, :math:`w^*_j = e^{\\beta^*_{0j}}` (or the
    relative weights of :func:`voronoi_loss`; an empty cell has error
    :math:`w^*_j`).

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted and true models; any atom order.
    learned_temperature : {False, True, "ratio"}, default=False
        Temperature mode of the cells; when not ``False`` both ``"temperature"``
        and ``"gate_slope_over_temperature"`` errors are reported.
    relative_weights : bool, default=False
        Within-cell relative weights and :math:`w^*_j = 1` (true top-1 model).
    gauge : {"reference", "intercept", "mass"}, default="reference"
        ``"intercept"``: the weight error is :math:`\\inf_{s>0} \\max_j |s S_j - w^*_j|`
        (common intercept shift); ``"mass"``: weights rescaled to the true total
        mass; no effect with relative weights.

    Returns
    -------
    dict
        ``"gate_coef"``, ``"expert_coef"``, ``"expert_intercept"``,
        ``"expert_var"`` (and ``"temperature"``, ``"gate_slope_over_temperature"``):
        float errors; ``"weight"``: float; ``"cell_sizes"``: int array (k*,);
        ``"per_cell"``: dict of arrays (k*,) with :math:`\\max_{i\\in A_j}
        \\|\\Delta\\cdot_{ij}\\|` per block (NaN for empty cells) and
        ``"weight"`` :math:`|\\sum_{i\\in A_j} w_i - w^*_j|` (reference scale).
    """
    if gauge not in _GAUGES:
        raise ValueError(f"gauge must be one of {_GAUGES}, got {gauge!r}")
    fit, tru = _as_pair(fitted, true)
    k, k_true = fit["gate_coef"].shape[0], tru["gate_coef"].shape[0]
    mode = _temperature_mode(learned_temperature, "learned_temperature")
    cell_dist = _block_distances(_blocks(fit, mode), _blocks(tru, mode))
    assignment = _assign(cell_dist)
    cells = _cells_from_assignment(assignment, k_true)

    # errors of every block, whatever the mode of the cells
    report = _blocks(fit, "learned" if mode != "fixed" else "fixed")
    report_true = _blocks(tru, "learned" if mode != "fixed" else "fixed")
    if mode != "fixed":
        report.update(_blocks(fit, "ratio"))
        report_true.update(_blocks(tru, "ratio"))
    dist = _block_distances(report, report_true)
    rows = np.arange(k)
    sizes = np.array([cell.size for cell in cells], dtype=int)
    out, per_cell = {}, {}
    for name, d in dist.items():
        matched = d[rows, assignment]
        per_cell[name] = np.array(
            [matched[cell].max() if cell.size else np.nan for cell in cells])
        out[name] = float(np.nanmax(per_cell[name]))

    _, sums, w_true = _cell_weights(fit, tru, cells, relative_weights, gauge)
    per_cell["weight"] = np.abs(sums - w_true)
    if gauge == "intercept" and not relative_weights:
        out["weight"] = _best_scale(np.zeros(k_true), sums, w_true,
                                    lambda t: t.max(axis=-1))[0]
    else:
        out["weight"] = float(per_cell["weight"].max())
    out["cell_sizes"] = sizes
    out["per_cell"] = per_cell
    return out
