"""Atoms of a mixing measure, their Voronoi cells around the true atoms, and r-bar(m)
(the user guide's *Simulations*, losses and gauges; package docstring: :mod:`moestats.losses`)."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np

from ..params import MoEParams

__all__ = ["rbar", "voronoi_cells"]

_FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")

#: r-bar(m) of [D, Lemma 1] for the known cell sizes m.
_RBAR_TABLE = {1: 1, 2: 4, 3: 6}


# ---------------------------------------------------------------- r-bar
def rbar(m):
    """The exponent :math:`\\bar r(m)` of a Voronoi cell with ``m`` fitted atoms.

    :math:`\\bar r(1) = 1`, :math:`\\bar r(2) = 4`, :math:`\\bar r(3) = 6`
    [D, Lemma 1: the smallest :math:`r` for which a system of polynomial
    equations has only trivial solutions].

    Parameters
    ----------
    m : int
        Cell size, ``m >= 1``.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``m < 1``, or ``m >= 4``: only :math:`\\bar r(m) \\ge 7` is known
        there; pass ``rbar=`` (a dict or callable) to the loss functions.
    """
    if isinstance(m, bool) or not isinstance(m, Integral):
        raise ValueError(f"the cell size m must be an integer, got {m!r}")
    m = int(m)
    if m < 1:
        raise ValueError(f"the cell size m must be >= 1, got {m}")
    if m not in _RBAR_TABLE:
        raise ValueError(
            f"rbar({m}) is unknown: for cells of m >= 4 fitted atoms only rbar(m) >= 7 "
            f"is known [D, Lemma 1]; pass rbar= (a dict {{cell size: exponent}} or a "
            f"callable) to the loss to choose the exponent of cells of size {m}"
        )
    return _RBAR_TABLE[m]


def _rbar_function(user):
    """Exponent function ``m -> r`` for cells of size ``m >= 2`` from ``rbar=``.

    ``None``: the table (:func:`rbar`). A mapping: its entries, falling back on
    the table. A callable: used for every ``m >= 2``.
    """
    if user is None:
        lookup = rbar
    elif isinstance(user, Mapping):
        table = dict(user)

        def lookup(m):
            return table[m] if m in table else rbar(m)
    elif callable(user):
        lookup = user
    else:
        raise ValueError(
            f"rbar must be None, a dict {{cell size: exponent}} or a callable, got {user!r}"
        )

    def checked(m):
        r = lookup(m)
        if isinstance(r, bool) or not np.isfinite(r) or r <= 0:
            raise ValueError(f"rbar({m}) must be a finite positive number, got {r!r}")
        return float(r)

    return checked


# -------------------------------------------------------------- inputs
def _as_atoms(model, role):
    """The model's arrays as a dict of float arrays (any expert order allowed)."""
    if isinstance(model, MoEParams):
        out = {f: np.asarray(getattr(model, f), dtype=float) for f in _FIELDS}
        out["temperature"] = float(model.temperature)
        return out
    if not isinstance(model, Mapping):
        raise TypeError(
            f"{role} must be a MoEParams or a mapping with keys {list(_FIELDS)}, "
            f"got {type(model).__name__}"
        )
    missing = [f for f in _FIELDS if f not in model]
    if missing:
        raise ValueError(f"{role} is missing the key(s) {missing}")
    out = {f: np.asarray(model[f], dtype=float) for f in _FIELDS}
    out["temperature"] = float(model.get("temperature", 1.0))
    if out["gate_coef"].ndim != 2:
        raise ValueError(
            f"{role} gate_coef must be 2-d (k, d), got shape {out['gate_coef'].shape}"
        )
    k, d = out["gate_coef"].shape
    want = {"gate_intercept": (k,), "expert_coef": (k, d), "expert_intercept": (k,),
            "expert_var": (k,)}
    for f, shape in want.items():
        if out[f].shape != shape:
            raise ValueError(
                f"{role} {f} has shape {out[f].shape}, expected {shape} "
                f"(k = {k}, d = {d} from gate_coef)"
            )
    for f in _FIELDS:
        if not np.all(np.isfinite(out[f])):
            raise ValueError(f"{role} {f} must be finite")
    if np.any(out["expert_var"] <= 0):
        raise ValueError(f"{role} expert_var must be > 0, got {out['expert_var'].tolist()}")
    tau = out["temperature"]
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"{role} temperature must be finite and > 0, got {tau}")
    return out


def _as_pair(fitted, true):
    fit = _as_atoms(fitted, "fitted")
    tru = _as_atoms(true, "true")
    for f in ("gate_coef", "expert_coef"):
        if fit[f].shape[1] != tru[f].shape[1]:
            raise ValueError(
                "fitted and true models have different numbers of features d: "
                f"fitted {f} has shape {fit[f].shape}, true {f} has shape {tru[f].shape}"
            )
    return fit, tru


def _temperature_mode(value, name):
    if value is None or value is False:
        return "fixed"
    if value is True:
        return "learned"
    if isinstance(value, str) and value in ("fixed", "learned", "ratio"):
        return value
    raise ValueError(f"{name} must be False, True or 'ratio', got {value!r}")


def _check_top_k(top_k, k_true):
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, Integral):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if not 1 <= top_k <= k_true:
        raise ValueError(
            f"top_k = {top_k} must be between 1 and the number of true experts "
            f"k* = {k_true}"
        )
    return int(top_k)


# ------------------------------------------------------- atoms and cells
def _blocks(atoms, mode):
    """Named parameter blocks, each of shape (k, width), in the given mode."""
    k = atoms["gate_coef"].shape[0]
    gate = atoms["gate_coef"]
    if mode == "ratio":
        gate_name, gate = "gate_slope_over_temperature", gate / atoms["temperature"]
    else:
        gate_name = "gate_coef"
    out = {
        gate_name: gate,
        "expert_coef": atoms["expert_coef"],
        "expert_intercept": atoms["expert_intercept"][:, None],
        "expert_var": atoms["expert_var"][:, None],
    }
    if mode == "learned":
        out["temperature"] = np.full((k, 1), atoms["temperature"])
    return out


def _block_distances(fit_blocks, true_blocks):
    """Euclidean norms ``||block_i - block*_j||`` as (k, k*) arrays, per block."""
    return {
        name: np.linalg.norm(fit_blocks[name][:, None, :] - true_blocks[name][None, :, :],
                             axis=2)
        for name in fit_blocks
    }


def _assign(distances):
    """Index of the nearest true atom of every fitted atom (ties: lower index)."""
    total = sum(distances.values())
    return np.argmin(total, axis=1)  # argmin returns the first minimum


def _cells_from_assignment(assignment, k_true):
    return [np.flatnonzero(assignment == j) for j in range(k_true)]


def voronoi_cells(fitted, true, *, include_temperature=False, gauge="slope", slope_gauge=True,
                  relative_weights=False, reference=None):
    """Voronoi cells :math:`A_j` of the true atoms, in the truth's gauge.

    .. math::

        A_j = \\{\\, i : j = \\operatorname{argmin}_{l} \\; \\|\\Delta\\beta_{1il}\\|
        + \\|\\Delta a_{il}\\| + |\\Delta b_{il}| + |\\Delta\\nu_{il}|
        \\;[\\, + |\\hat\\tau - \\tau^*| \\,] \\,\\}

    (sum of the Euclidean norms of the blocks; :math:`\\beta_0` excluded);
    ties go to the lower :math:`j`. The gate slopes are those of the gauge
    (:func:`~moestats.losses.align_to_truth`): by default the fitted slopes
    shifted by the common :math:`t_1` that gives the true reference's cell the
    reference's slope; ``gauge="reference"`` (or ``"mass"``) uses the raw
    slopes.

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted (``k`` atoms) and true (``k*`` atoms) models, any expert order.
    include_temperature : {False, True, "ratio"}, default=False
        ``True`` adds :math:`|\\hat\\tau - \\tau^*|` to the distance (the same for
        every pair, so the cells do not change); ``"ratio"`` compares
        :math:`\\beta_1/\\tau` in place of :math:`\\beta_1`.
    gauge : str, default="slope"
        See :func:`~moestats.losses.voronoi_loss`.
    slope_gauge : bool, default=True
        Whether a common slope shift is a symmetry of the fitted model
        (``False`` for activation gates: raw slopes).
    relative_weights : bool, default=False
        Weights of the :math:`D_1` that chooses among the gauge's fixed points.
    reference : int, optional
        True reference atom of the slope gauges.

    Returns
    -------
    list of k* ndarray of int
        ``cells[j]`` holds the (sorted) indices of the fitted atoms in :math:`A_j`;
        a cell may be empty.

    Raises
    ------
    ValueError
        If the two models have different numbers of features.

    Examples
    --------
    >>> from moestats import MoEParams
    >>> from moestats.losses import voronoi_cells
    >>> truth = MoEParams([[2.0], [0.0]], [-1.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5],
    ...                   [0.5, 1.0])
    >>> fit = MoEParams([[2.1], [1.8], [0.0]], [-1.6, -2.3, 0.0], [[1.2], [0.9], [-1.05]],
    ...                 [0.35, 0.5, -0.25], [0.6, 0.45, 1.3])
    >>> [c.tolist() for c in voronoi_cells(fit, truth)]
    [[0, 1], [2]]
    """
    from .alignment import align_to_truth  # alignment.py builds on this module

    mode = _temperature_mode(include_temperature, "include_temperature")
    return align_to_truth(fitted, true, gauge=gauge, slope_gauge=slope_gauge,
                          learned_temperature=mode,
                          relative_weights=relative_weights, reference=reference).cells
