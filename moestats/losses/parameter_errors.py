"""Per-parameter Voronoi-matched errors, per cell and overall (the user guide's *Simulations*, losses and gauges;
package docstring: :mod:`moestats.losses`)."""

from __future__ import annotations

import numpy as np

from .atoms import _as_pair, _temperature_mode
from .alignment import align_to_truth
from .gauge import DEFAULT_GAUGE
from .voronoi import _best_scale, _cell_weights

__all__ = ["parameter_errors", "cell_parameter_errors"]


def _report_blocks(al, fit, tru, mode):
    """Blocks reported by the errors, in the alignment's gauge.

    Every mode reports :math:`\\beta_1, a, b, \\nu`; a learned temperature
    (``True`` or ``"ratio"``) adds :math:`\\tau` and :math:`\\beta_1/\\tau`. The
    gate slopes are those of the gauge: shifted by :math:`t_1` (``"slope"``),
    or the unit-norm relative slopes (``"slope+unit-norm"``, where
    :math:`\\beta_1` and :math:`\\beta_1/\\tau` have the same form).
    """
    gate_name = next(iter(al.fit_blocks))
    gate_fit, gate_true = al.fit_blocks[gate_name], al.true_blocks[gate_name]
    tau_fit, tau_true = fit["temperature"], tru["temperature"]
    if al.gauge == "slope+unit-norm":
        slope_fit, slope_true = gate_fit, gate_true
        ratio_fit, ratio_true = gate_fit, gate_true
    elif mode == "ratio":
        slope_fit, slope_true = gate_fit * tau_fit, tru["gate_coef"]
        ratio_fit, ratio_true = gate_fit, gate_true
    else:
        slope_fit, slope_true = gate_fit, gate_true
        ratio_fit, ratio_true = gate_fit / tau_fit, tru["gate_coef"] / tau_true
    fit_blocks = {"gate_coef": slope_fit}
    true_blocks = {"gate_coef": slope_true}
    for name in ("expert_coef", "expert_intercept", "expert_var"):
        fit_blocks[name], true_blocks[name] = al.fit_blocks[name], al.true_blocks[name]
    if mode != "fixed":
        k, k_true = slope_fit.shape[0], slope_true.shape[0]
        fit_blocks["temperature"] = np.full((k, 1), tau_fit)
        true_blocks["temperature"] = np.full((k_true, 1), tau_true)
        fit_blocks["gate_slope_over_temperature"] = ratio_fit
        true_blocks["gate_slope_over_temperature"] = ratio_true
    return fit_blocks, true_blocks


def _weighted_exponent(block, size):
    """The power p of a block's errors in D2 for a cell of ``size`` atoms ([D]: rbar for
    the gate slope, intercept and temperature, rbar/2 for the expert slope and variance),
    i.e. -1/(2 * theory slope); None where unknown."""
    from ..rates.theory import cell_theory_slope
    slope = cell_theory_slope(block, size) if size else None
    return None if slope is None else -1.0 / (2.0 * slope)


def _cell_block_errors(matched, omega, cells, block, weighted):
    out = np.full(len(cells), np.nan)
    for j, cell in enumerate(cells):
        if not cell.size:
            continue
        if not weighted:
            out[j] = matched[cell].max()
            continue
        p = _weighted_exponent(block, cell.size)
        if p is not None:
            out[j] = float(np.sum(omega[cell] * matched[cell] ** p) ** (1.0 / p))
    return out


def cell_parameter_errors(fitted, true, *, learned_temperature=False, relative_weights=False,
                          gauge=DEFAULT_GAUGE, slope_gauge=True, reference=None,
                          weighted=False):
    """Voronoi-matched errors of every parameter block, per true atom (cell).

    In the gauge ``gauge`` (:func:`align_to_truth`), for every true atom
    :math:`j` with cell :math:`A_j`:

    .. math::

        |A_j|, \\qquad
        e_j(\\cdot) = \\max_{i \\in A_j} \\|\\Delta\\cdot_{ij}\\|
        \\quad (\\cdot \\in \\{\\beta_1, a, b, \\nu\\}
        \\;[\\cup \\{\\tau, \\beta_1/\\tau\\}]), \\qquad
        e_j(w) = \\Bigl| \\sum_{i\\in A_j} w_i - w^*_j \\Bigr|,

    with the gauge's weights (mass-normalised :math:`w_i = e^{\\beta_{0i} +
    t_0}` in ``"slope"``/``"mass"``, raw in ``"reference"``, the within-cell
    relative weights and :math:`w^*_j = 1` with ``relative_weights``; in
    ``"intercept"`` at the scale :math:`s` minimising :math:`\\max_j |s S_j -
    w^*_j|`). :math:`e_j(\\cdot)` is NaN for an empty cell, whose weight error
    is :math:`w^*_j`. :func:`parameter_errors` is the maximum over the cells.

    With ``weighted=True`` the block errors take the form the theory bounds
    ([D]: :math:`D_2 \\ge \\sum_{i \\in A_j} e^{\\beta_{0i}} \\|\\Delta\\cdot_{ij}\\|^{p}`),
    the within-cell weighted :math:`p`-mean

    .. math::

        e^{w}_j(\\cdot) = \\Bigl(\\sum_{i \\in A_j} \\omega_i
            \\|\\Delta\\cdot_{ij}\\|^{p}\\Bigr)^{1/p}, \\qquad
        \\omega_i = e^{\\beta_{0i}} \\Big/ \\sum_{l \\in A_j} e^{\\beta_{0l}},

    with :math:`p = \\bar r(|A_j|)` for :math:`\\beta_1, b` (and :math:`\\tau,
    \\beta_1/\\tau`), :math:`p = \\bar r(|A_j|)/2` for :math:`a, \\nu`, so that
    :math:`D_2 \\lesssim n^{-1/2}` gives :math:`e^w_j \\lesssim n^{-1/(2p)}`, the
    theory slope (:func:`moestats.rates.cell_theory_slope`). It equals
    :math:`e_j` for a cell of one atom and is never larger than :math:`e_j`; it is
    NaN for cells of 4 or more atoms (:math:`\\bar r` unknown). The max form
    :math:`e_j` is not bounded by the theory's rate when an atom's share
    :math:`\\omega_i` shrinks with :math:`n`: its error may then stay large while
    its term in :math:`D_2` vanishes.

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted and true models; any atom order.
    learned_temperature : {False, True, "ratio"}, default=False
        Temperature mode of the cells; when not ``False`` both ``"temperature"``
        and ``"gate_slope_over_temperature"`` errors are reported.
    relative_weights : bool, default=False
        Within-cell relative weights and :math:`w^*_j = 1` (true top-1 model).
    gauge : str, default="slope"
        See :func:`voronoi_loss`; the gate block of ``"slope+unit-norm"`` is the
        unit-norm relative slope (for both ``gate_coef`` and
        ``gate_slope_over_temperature``).
    slope_gauge : bool, default=True
        Whether a common slope shift is a symmetry of the fitted model
        (``False`` for activation gates).
    reference : int, optional
        True reference atom of the slope gauges.
    weighted : bool, default=False
        The theory's weighted form :math:`e^w_j` instead of the maximum over the
        cell's atoms.

    Returns
    -------
    dict
        ``"size"``: int array (k*,); ``"gate_coef"``, ``"expert_coef"``,
        ``"expert_intercept"``, ``"expert_var"`` (and ``"temperature"``,
        ``"gate_slope_over_temperature"``): float arrays (k*,); ``"weight"``:
        float array (k*,); ``"gauge"``: the gauge's name (:func:`loss_gauge`).

    Examples
    --------
    >>> import math
    >>> from moestats import MoEParams
    >>> from moestats.losses import cell_parameter_errors
    >>> truth = MoEParams([[2.0], [0.0]], [-1.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5],
    ...                   [0.5, 1.0])
    >>> fit = MoEParams([[2.1], [1.8], [0.0]], [math.log(0.2), math.log(0.1), 0.0],
    ...                 [[1.2], [0.9], [-1.05]], [0.35, 0.5, -0.25], [0.6, 0.45, 1.3])
    >>> errs = cell_parameter_errors(fit, truth)
    >>> errs["size"].tolist(), errs["gauge"]
    ([2, 1], 'slope')
    >>> errs["gate_coef"].round(12).tolist(), errs["expert_var"].round(12).tolist()
    ([0.2, 0.0], [0.1, 0.3])
    >>> w = cell_parameter_errors(fit, truth, weighted=True)  # cell 0: weights 2/3, 1/3
    >>> bool(np.isclose(w["expert_var"][0], (2 / 3 * 0.1 ** 2 + 1 / 3 * 0.05 ** 2) ** .5))
    True
    """
    fit, tru = _as_pair(fitted, true)
    mode = _temperature_mode(learned_temperature, "learned_temperature")
    al = align_to_truth(fit, tru, gauge=gauge, slope_gauge=slope_gauge,
                        learned_temperature=mode,
                        relative_weights=bool(relative_weights), reference=reference)
    cells, assignment = al.cells, al.assignment
    k_true = len(cells)
    fit_blocks, true_blocks = _report_blocks(al, fit, tru, mode)
    out = {"size": np.array([cell.size for cell in cells], dtype=int)}
    b0 = np.asarray(fit["gate_intercept"], dtype=float)
    omega = np.zeros_like(b0)
    for cell in cells:
        if cell.size:
            omega[cell] = np.exp(b0[cell] - np.logaddexp.reduce(b0[cell]))
    for name, block in fit_blocks.items():
        matched = np.linalg.norm(block - true_blocks[name][assignment], axis=1)
        out[name] = _cell_block_errors(matched, omega, cells, name, weighted)
    _, sums, w_true = _cell_weights(fit, tru, cells, relative_weights, al.gauge)
    scale = 1.0
    if al.gauge == "intercept" and not relative_weights:
        scale = _best_scale(np.zeros(k_true), sums, w_true, lambda t: t.max(axis=-1))[1]
    out["weight"] = np.abs(scale * sums - w_true)
    out["gauge"] = al.gauge
    return out


def parameter_errors(fitted, true, *, learned_temperature=False, relative_weights=False,
                     gauge=DEFAULT_GAUGE, slope_gauge=True, reference=None):
    """Voronoi-matched error of every parameter block (per-parameter rate plots).

    The maximum over the cells of :func:`cell_parameter_errors`: for each block
    :math:`\\cdot \\in \\{\\beta_1, a, b, \\nu\\}` (and :math:`\\tau`,
    :math:`\\beta_1/\\tau` when the temperature is learned)

    .. math::

        \\operatorname{err}(\\cdot) = \\max_{j : A_j \\ne \\emptyset}
            \\max_{i \\in A_j} \\|\\Delta\\cdot_{ij}\\|,
        \\qquad
        \\operatorname{err}(w) = \\max_j \\Bigl| \\sum_{i\\in A_j} w_i - w^*_j \\Bigr|,

    in the gauge ``gauge`` (default ``"slope"``: the fit shifted by the
    :math:`(t_1, t_0)` of :func:`align_to_truth`), with its weights (or the
    relative weights of :func:`voronoi_loss`; an empty cell has weight error
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
    gauge : str, default="slope"
        See :func:`voronoi_loss`. ``"intercept"``: the weight error is
        :math:`\\inf_{s>0} \\max_j |s S_j - w^*_j|` (common intercept shift);
        ``"mass"``: weights rescaled to the true total mass, raw slopes.
    slope_gauge : bool, default=True
        Whether a common slope shift is a symmetry of the fitted model
        (``False`` for activation gates).
    reference : int, optional
        True reference atom of the slope gauges.

    Returns
    -------
    dict
        ``"gate_coef"``, ``"expert_coef"``, ``"expert_intercept"``,
        ``"expert_var"`` (and ``"temperature"``, ``"gate_slope_over_temperature"``):
        float errors; ``"weight"``: float; ``"cell_sizes"``: int array (k*,);
        ``"per_cell"``: dict of arrays (k*,) with :math:`\\max_{i\\in A_j}
        \\|\\Delta\\cdot_{ij}\\|` per block (NaN for empty cells) and
        ``"weight"`` :math:`|\\sum_{i\\in A_j} w_i - w^*_j|` (in ``"intercept"``
        at the optimal scale).

    Examples
    --------
    >>> import math
    >>> from moestats import MoEParams
    >>> from moestats.losses import parameter_errors
    >>> truth = MoEParams([[2.0], [0.0]], [-1.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5],
    ...                   [0.5, 1.0])
    >>> fit = MoEParams([[2.1], [1.8], [0.0]], [math.log(0.2), math.log(0.1), 0.0],
    ...                 [[1.2], [0.9], [-1.05]], [0.35, 0.5, -0.25], [0.6, 0.45, 1.3])
    >>> errs = parameter_errors(fit, truth)
    >>> round(errs["gate_coef"], 12), round(errs["expert_var"], 12)
    (0.2, 0.3)
    """
    cells = cell_parameter_errors(fitted, true, learned_temperature=learned_temperature,
                                  relative_weights=relative_weights, gauge=gauge,
                                  slope_gauge=slope_gauge, reference=reference)
    out, per_cell = {}, {}
    for name, values in cells.items():
        if name in ("size", "gauge", "weight"):
            continue
        per_cell[name] = values
        out[name] = float(np.nanmax(values))
    per_cell["weight"] = cells["weight"]
    out["weight"] = float(cells["weight"].max())
    out["cell_sizes"] = cells["size"]
    out["per_cell"] = per_cell
    return out
