"""Voronoi losses, per-parameter errors and the density error (papers.md section 4).

The theory measures a fitted model through its mixing measure

.. math::

    G = \\sum_{i=1}^{k} e^{\\beta_{0i}}\\, \\delta_{\\theta_i}, \\qquad
    \\theta_i = (\\beta_{1i}, a_i, b_i, \\nu_i)
    \\quad [\\,\\text{and } \\tau \\text{ for learned temperatures}\\,],

compared with the true :math:`G_* = \\sum_{j=1}^{k_*} e^{\\beta^*_{0j}}
\\delta_{\\theta^*_j}` through the Voronoi cells

.. math::

    A_j = \\{\\, i : j = \\operatorname{argmin}_l \\|\\theta_i - \\theta^*_l\\| \\,\\},
    \\qquad
    \\|\\theta_i - \\theta^*_l\\| = \\|\\Delta\\beta_{1il}\\| + \\|\\Delta a_{il}\\|
        + |\\Delta b_{il}| + |\\Delta\\nu_{il}|
    \\;[\\, + |\\hat\\tau - \\tau^*| \\,],

ties going to the lower :math:`j`.

Every function here is a pure function of its arguments. A model can be given
as a :class:`~moestats.params.MoEParams` or as a mapping with the same keys
(``gate_coef``, ``gate_intercept``, ``expert_coef``, ``expert_intercept``,
``expert_var`` and optionally ``temperature``); the losses never use the
reference-expert convention, so the atoms may come in any order (a mapping
need not have its reference expert last).

Temperature modes (argument ``learned_temperature`` / ``include_temperature``):

``False``
    atoms :math:`(\\beta_1, a, b, \\nu)`; the temperature is ignored.
``True``
    atoms :math:`(\\beta_1, a, b, \\nu, \\tau)`: :math:`|\\hat\\tau - \\tau^*|` is
    added to every atom's bracket, with the exponent of :math:`\\beta_1`.
``"ratio"``
    atoms :math:`(\\beta_1/\\tau, a, b, \\nu)`: the identifiable gate slope of the
    (identity-activation) temperature gate replaces :math:`(\\beta_1, \\tau)`,
    in the cells and in the brackets (exponent of :math:`\\beta_1`).

Gauge. The losses of papers.md section 4 compare :math:`e^{\\beta_{0i}}` with
:math:`e^{\\beta^*_{0j}}` in the reference gauge (last expert's
:math:`\\beta_0 = 0` in both models), as written there; that is the default
``gauge="reference"``. The softmax density only identifies the intercepts up to
a common shift :math:`t_0`, and when the true **reference** atom is fitted by
two or more atoms, the reference-gauge weight term does not vanish at a fitted
model with exactly the true density (e.g. truth weights
:math:`(e^{\\beta^*_{01}}, 1)`, fitted :math:`(e^{\\beta^*_{01}}(1+c), c, 1)`
gives weight term :math:`c\\,(1 + e^{\\beta^*_{01}})`). ``gauge="intercept"``
takes the infimum over :math:`t_0` instead (fitted weights multiplied by
:math:`s = e^{t_0} > 0`); see :func:`voronoi_loss`. Its infimum includes the
limit :math:`s \to 0`, where every cell total is :math:`e^{\beta^*_{0j}}`, so a
poor fit saturates at :math:`\\sum_j e^{\\beta^*_{0j}}`. ``gauge="mass"`` fixes the
shift instead by giving the fitted measure the true total mass,
:math:`w_i = e^{\\beta_{0i}} \\sum_j e^{\\beta^*_{0j}} / \\sum_l e^{\\beta_{0l}}`:
translation invariant, zero at the truth and in the example above, computed
stably for any intercepts (the simulations use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np
from scipy.special import logsumexp

from .params import MoEParams

__all__ = [
    "rbar",
    "voronoi_cells",
    "voronoi_loss",
    "d1_loss",
    "d2_loss",
    "parameter_errors",
    "density_error",
]

_FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")

#: r-bar(m) of [D, Lemma 1] for the known cell sizes m.
_RBAR_TABLE = {1: 1, 2: 4, 3: 6}

#: blocks whose exponent in D2 is r-bar (the others, ``expert_coef`` and
#: ``expert_var``, get r-bar / 2)
_FULL_EXPONENT_BLOCKS = frozenset(
    {"gate_coef", "expert_intercept", "temperature", "gate_slope_over_temperature"}
)

_KINDS = ("D1", "D2", "auto")
_GAUGES = ("reference", "intercept", "mass")


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


def voronoi_cells(fitted, true, *, include_temperature=False):
    """Voronoi cells :math:`A_j` of the true atoms.

    .. math::

        A_j = \\{\\, i : j = \\operatorname{argmin}_{l} \\; \\|\\Delta\\beta_{1il}\\|
        + \\|\\Delta a_{il}\\| + |\\Delta b_{il}| + |\\Delta\\nu_{il}|
        \\;[\\, + |\\hat\\tau - \\tau^*| \\,] \\,\\}

    (sum of the Euclidean norms of the blocks; :math:`\\beta_0` excluded);
    ties go to the lower :math:`j`.

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted (``k`` atoms) and true (``k*`` atoms) models, any expert order.
    include_temperature : {False, True, "ratio"}, default=False
        ``True`` adds :math:`|\\hat\\tau - \\tau^*|` to the distance (the same for
        every pair, so the cells do not change); ``"ratio"`` compares
        :math:`\\beta_1/\\tau` in place of :math:`\\beta_1`.

    Returns
    -------
    list of k* ndarray of int
        ``cells[j]`` holds the (sorted) indices of the fitted atoms in :math:`A_j`;
        a cell may be empty.

    Raises
    ------
    ValueError
        If the two models have different numbers of features.
    """
    fit, tru = _as_pair(fitted, true)
    mode = _temperature_mode(include_temperature, "include_temperature")
    dist = _block_distances(_blocks(fit, mode), _blocks(tru, mode))
    return _cells_from_assignment(_assign(dist), tru["gate_coef"].shape[0])


# ---------------------------------------------------------------- losses
def _cell_weights(fit, tru, cells, relative_weights, gauge="reference"):
    """Atom weights, per-cell fitted weight sums and true weights.

    Absolute: :math:`w_i = e^{\\beta_{0i}}`, :math:`w^*_j = e^{\\beta^*_{0j}}`.
    Relative: :math:`w_i = e^{\\beta_{0i}} / \\sum_{l \\in A_j} e^{\\beta_{0l}}`
    and :math:`w^*_j = 1`.
    """
    b0 = fit["gate_intercept"]
    k_true = len(cells)
    if relative_weights:
        w = np.empty_like(b0)
        for cell in cells:
            if cell.size:
                w[cell] = np.exp(b0[cell] - logsumexp(b0[cell]))
        w_true = np.ones(k_true)
    elif gauge == "mass":
        w_true = np.exp(tru["gate_intercept"])
        w = np.exp(b0 - logsumexp(b0)) * w_true.sum()
    else:
        with np.errstate(over="ignore"):
            w = np.exp(b0)
        w_true = np.exp(tru["gate_intercept"])
    sums = np.array([w[cell].sum() for cell in cells])
    return w, sums, w_true


def _scaled_cell_totals(s, atom_terms, sums, w_true):
    """Cell totals :math:`T_j(s) = s\\,c_j + |s S_j - w^*_j|` for scales ``s`` (P,)."""
    s = np.asarray(s, dtype=float)[:, None]
    return s * atom_terms + np.abs(s * sums - w_true)


def _best_scale(atom_terms, sums, w_true, reduce):
    """Infimum over :math:`s > 0` of ``reduce(T(s))`` and the scale attaining it.

    Every :math:`T_j(s)` is convex and piecewise linear in :math:`s` (two lines,
    slopes :math:`c_j \\pm S_j`); ``reduce`` (a sum of the K largest, or a
    maximum) keeps that, so the infimum is at an intersection of two of these
    lines or at the limit :math:`s \\to 0^+`. All candidates are evaluated.
    """
    slopes = np.concatenate([atom_terms + sums, atom_terms - sums])
    icepts = np.concatenate([-w_true, w_true])
    ds = slopes[:, None] - slopes[None, :]
    di = icepts[None, :] - icepts[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = di / ds
    cand = cand[np.isfinite(cand) & (cand > 0)]
    cand = np.concatenate([[0.0, 1.0], np.unique(cand)])
    values = reduce(_scaled_cell_totals(cand, atom_terms, sums, w_true))
    best = int(np.argmin(values))
    return float(values[best]), float(cand[best])


def _sum_of_largest(top_k):
    def reduce(totals):
        if top_k is None:
            return totals.sum(axis=-1)
        return -np.sort(-totals, axis=-1)[..., :top_k].sum(axis=-1)

    return reduce


def voronoi_loss(fitted, true, kind="auto", *, top_k=None, relative_weights=None,
                 learned_temperature=False, rbar=None, gauge="reference"):
    """Voronoi loss :math:`D_1` or :math:`D_2` between fitted and true models.

    With cells :math:`A_j` (:func:`voronoi_cells`), atom weights
    :math:`w_i = e^{\\beta_{0i}}`, true weights :math:`w^*_j = e^{\\beta^*_{0j}}`
    and :math:`\\Delta\\cdot_{ij} = \\cdot_i - \\cdot^*_j`, the loss is a sum of
    cell totals :math:`T_j`:

    .. math::

        D = \\sum_{j=1}^{k_*} T_j, \\qquad
        T_j = \\sum_{i \\in A_j} w_i\\, B_{ij} + \\Bigl| \\sum_{i \\in A_j} w_i - w^*_j \\Bigr|,

    exact-specified (``kind="D1"``):

    .. math::

        B_{ij} = \\|\\Delta\\beta_{1ij}\\| + \\|\\Delta a_{ij}\\| + |\\Delta b_{ij}|
                 + |\\Delta\\nu_{ij}|,

    over-specified (``kind="D2"``), with :math:`\\bar r = \\bar r(|A_j|)`:

    .. math::

        B_{ij} = \\|\\Delta\\beta_{1ij}\\|^{\\bar r} + |\\Delta b_{ij}|^{\\bar r}
                 + \\|\\Delta a_{ij}\\|^{\\bar r/2} + |\\Delta\\nu_{ij}|^{\\bar r/2}
        \\quad (|A_j| > 1), \\qquad
        B_{ij} = \\text{the } D_1 \\text{ bracket} \\quad (|A_j| = 1).

    An empty cell contributes :math:`w^*_j = e^{\\beta^*_{0j}}` through its weight
    term. With learned temperature, :math:`|\\hat\\tau - \\tau^*|` (``True``) is
    added to every bracket with the exponent of :math:`\\beta_1`
    (:math:`\\bar r`); with ``"ratio"``, :math:`\\|\\Delta(\\beta_1/\\tau)_{ij}\\|`
    replaces :math:`\\|\\Delta\\beta_{1ij}\\|`.

    Top-K form [T] (``top_k=K``): the maximum over the K-subsets :math:`S` of
    true experts of the terms restricted to the cells :math:`j \\in S`,

    .. math::

        D^{(K)} = \\max_{S \\subset [k_*],\\, |S| = K} \\sum_{j \\in S} T_j
                = \\text{sum of the } K \\text{ largest } T_j,

    (the two agree because every :math:`T_j \\ge 0` does not depend on
    :math:`S`). Relative weights (true top-1 model, whose :math:`\\beta_0` does
    not enter the density): :math:`w_i = e^{\\beta_{0i}} / \\sum_{l \\in A_j}
    e^{\\beta_{0l}}` and :math:`w^*_j = 1`, so a non-empty cell's weight term is 0
    and an empty cell's is 1.

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted (``k`` atoms) and true (``k*`` atoms) models; any atom order.
    kind : {"D1", "D2", "auto"}, default="auto"
        ``"auto"``: D1 if ``k <= k*``, else D2. (D2 equals D1 when no cell
        holds more than one atom.)
    top_k : int, optional
        K of a true top-K model, ``1 <= K <= k*``; ``None`` sums all cells.
    relative_weights : bool, optional
        Use within-cell relative weights (see above). Default: ``top_k == 1``.
    learned_temperature : {False, True, "ratio"}, default=False
        Temperature mode (see the module docstring); it also sets the cells.
    rbar : dict or callable, optional
        Exponent :math:`\\bar r(m)` for D2 cells of size ``m >= 2``: a dict
        ``{m: r}`` (falling back on :func:`rbar` for sizes it lacks) or a
        callable ``m -> r`` (used for every ``m >= 2``). Required when a cell
        has 4 or more atoms.
    gauge : {"reference", "intercept", "mass"}, default="reference"
        ``"reference"``: papers.md section 4 as written (fitted and true
        :math:`\\beta_0` in the reference-expert gauge). ``"intercept"``: the
        infimum over a common intercept shift, :math:`\\inf_{s > 0} D` with
        :math:`w_i \\to s\\,w_i` (exact: the loss is convex piecewise linear
        in :math:`s`). ``"mass"``: fitted weights rescaled to the true total
        mass, :math:`w_i = e^{\\beta_{0i}}\\sum_j e^{\\beta^*_{0j}}/\\sum_l e^{\\beta_{0l}}`.
        No effect with relative weights.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Different numbers of features; ``top_k`` not in ``[1, k*]``; an unknown
        ``kind``/``gauge``/temperature mode; a D2 cell of 4 or more atoms without
        ``rbar``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if gauge not in _GAUGES:
        raise ValueError(f"gauge must be one of {_GAUGES}, got {gauge!r}")
    fit, tru = _as_pair(fitted, true)
    k, k_true = fit["gate_coef"].shape[0], tru["gate_coef"].shape[0]
    top_k = _check_top_k(top_k, k_true)
    mode = _temperature_mode(learned_temperature, "learned_temperature")
    if relative_weights is None:
        relative_weights = top_k == 1
    if kind == "auto":
        kind = "D1" if k <= k_true else "D2"
    exponent_of = _rbar_function(rbar) if kind == "D2" else None

    dist = _block_distances(_blocks(fit, mode), _blocks(tru, mode))
    assignment = _assign(dist)
    cells = _cells_from_assignment(assignment, k_true)
    w, sums, w_true = _cell_weights(fit, tru, cells, relative_weights, gauge)

    # matched distances ||Delta_{i, j(i)}|| of every fitted atom, per block
    rows = np.arange(k)
    matched = {name: d[rows, assignment] for name, d in dist.items()}
    atom_terms = np.zeros(k_true)
    for j, cell in enumerate(cells):
        if cell.size == 0:
            continue
        r = exponent_of(cell.size) if (exponent_of is not None and cell.size > 1) else None
        bracket = np.zeros(cell.size)
        for name, m in matched.items():
            if r is None:
                bracket += m[cell]
            else:
                bracket += m[cell] ** (r if name in _FULL_EXPONENT_BLOCKS else r / 2)
        atom_terms[j] = np.dot(w[cell], bracket)

    reduce = _sum_of_largest(top_k)
    if gauge == "intercept" and not relative_weights:
        return _best_scale(atom_terms, sums, w_true, reduce)[0]
    return float(reduce(_scaled_cell_totals([1.0], atom_terms, sums, w_true))[0])


def d1_loss(fitted, true, *, top_k=None, relative_weights=None,
            learned_temperature=False, gauge="reference"):
    """Exact-specified Voronoi loss :math:`D_1` [D] (see :func:`voronoi_loss`).

    .. math::

        D_1 = \\sum_j \\sum_{i \\in A_j} e^{\\beta_{0i}} \\bigl(\\|\\Delta\\beta_{1ij}\\|
              + \\|\\Delta a_{ij}\\| + |\\Delta b_{ij}| + |\\Delta\\nu_{ij}|\\bigr)
              + \\sum_j \\Bigl| \\sum_{i \\in A_j} e^{\\beta_{0i}} - e^{\\beta^*_{0j}} \\Bigr|
    """
    return voronoi_loss(fitted, true, "D1", top_k=top_k, relative_weights=relative_weights,
                        learned_temperature=learned_temperature, gauge=gauge)


def d2_loss(fitted, true, *, rbar=None, top_k=None, relative_weights=None,
            learned_temperature=False, gauge="reference"):
    """Over-specified Voronoi loss :math:`D_2` [D] (see :func:`voronoi_loss`).

    .. math::

        D_2 = \\sum_{j:|A_j|>1} \\sum_{i\\in A_j} e^{\\beta_{0i}}
              \\bigl(\\|\\Delta\\beta_{1ij}\\|^{\\bar r} + |\\Delta b_{ij}|^{\\bar r}
              + \\|\\Delta a_{ij}\\|^{\\bar r/2} + |\\Delta\\nu_{ij}|^{\\bar r/2}\\bigr)
            + \\sum_{j:|A_j|=1} \\sum_{i\\in A_j} e^{\\beta_{0i}}
              \\bigl(\\|\\Delta\\beta_{1ij}\\| + \\|\\Delta a_{ij}\\| + |\\Delta b_{ij}|
              + |\\Delta\\nu_{ij}|\\bigr)
            + \\sum_j \\Bigl| \\sum_{i\\in A_j} e^{\\beta_{0i}} - e^{\\beta^*_{0j}} \\Bigr|

    with :math:`\\bar r = \\bar r(|A_j|)` (:func:`rbar`, or the ``rbar``
    argument).
    """
    return voronoi_loss(fitted, true, "D2", top_k=top_k, relative_weights=relative_weights,
                        learned_temperature=learned_temperature, rbar=rbar, gauge=gauge)


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


# ------------------------------------------------------------ density error
def _mixture_density(log_w, means, var, y):
    """:math:`\\sum_j w_j N(y | \\mu_j, \\nu_j)` for y of shape (B, Q) (linear scale).

    Underflow to 0 happens only where the density is below ~1e-308, where it
    does not contribute to the Hellinger integral.
    """
    coef = np.exp(log_w) / np.sqrt(2 * np.pi * var)  # (B, k); 0 for switched-off experts
    out = np.zeros(y.shape)
    for j in range(var.size):
        resid = y - means[:, j:j + 1]
        out += coef[:, j:j + 1] * np.exp(resid * resid * (-0.5 / var[j]))
    return out


def density_error(fitted, true, gate_fitted, gate_true, X, *, n_quad=8, half_width=10.0,
                  per_point=False, chunk_size=None):
    """Expected Hellinger distance :math:`E_X\\, h(p_{\\hat G}(\\cdot|X), p_{G_*}(\\cdot|X))`.

    .. math::

        h^2(p, q) = \\tfrac12 \\int \\bigl(\\sqrt{p(y)} - \\sqrt{q(y)}\\bigr)^2\\, dy,
        \\qquad
        E_X h \\approx \\frac1n \\sum_{i=1}^n h\\bigl(p_{\\hat G}(\\cdot|x_i),
                                               p_{G_*}(\\cdot|x_i)\\bigr),

    a Monte Carlo average over the given sample ``X``, with
    :math:`p_G(y|x) = \\sum_j w_j(x) N(y | a_j^\\top x + b_j, \\nu_j)` and
    :math:`\\log w(x)` from ``gate.log_weights(params, X)`` (``-inf`` for
    switched-off experts).

    The integral over :math:`y` is computed in the form above (no cancellation
    for small :math:`h`) by composite Gauss–Legendre quadrature, per ``x``:
    the breakpoints :math:`\\mu_c(x) + t\\,\\sigma_c`, :math:`t = -H, -H+1,
    \\dots, H` (``H = half_width``) of every expert :math:`c` of both models
    are merged, and each panel between consecutive breakpoints gets ``n_quad``
    nodes. Every panel inside an expert's window :math:`\\mu_c \\pm H\\sigma_c`
    is at most :math:`\\sigma_c` wide, where the integrand is smooth on the
    scale :math:`\\sigma_c`, so the rule is accurate to near machine precision
    (tested against the closed form for two Gaussians and against adaptive
    quadrature); outside all windows every density is below
    :math:`e^{-H^2/2}/(\\sigma\\sqrt{2\\pi})` (:math:`H = 10`: mass
    :math:`< 10^{-22}`).

    Parameters
    ----------
    fitted, true : MoEParams
        The two models, passed unchanged to their gates.
    gate_fitted, gate_true : gate objects
        Anything with ``log_weights(params, X) -> (n, k)`` log gate weights.
    X : array of shape (n, d)
        Covariate sample (e.g. a fixed held-out sample from the true design).
    n_quad : int, default=8
        Gauss–Legendre nodes per panel.
    half_width : float, default=10.0
        Window half-width :math:`H` in standard deviations (panels of one sd).
    per_point : bool, default=False
        Return the array :math:`h(x_i)`, shape (n,), instead of its mean.
    chunk_size : int, optional
        Rows of ``X`` per vectorised block (memory control); default automatic.

    Returns
    -------
    float, or ndarray of shape (n,) if ``per_point``.

    Raises
    ------
    ValueError
        If ``X`` is not (n, d) with the models' d, the models' d differ, or a
        gate returns log weights of the wrong shape.
    """
    fit, tru = _as_pair(fitted, true)
    X = np.asarray(X, dtype=float)
    d = fit["expert_coef"].shape[1]
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (n, {d}) to match the models, got {X.shape}")
    if isinstance(n_quad, bool) or not isinstance(n_quad, Integral) or n_quad < 1:
        raise ValueError(f"n_quad must be a positive integer, got {n_quad!r}")
    if not np.isfinite(half_width) or half_width <= 0:
        raise ValueError(f"half_width must be finite and > 0, got {half_width!r}")
    n = X.shape[0]
    if n == 0:
        raise ValueError("X must have at least one row")

    logw = []
    for role, gate, params, atoms in (("fitted", gate_fitted, fitted, fit),
                                      ("true", gate_true, true, tru)):
        lw = np.asarray(gate.log_weights(params, X), dtype=float)
        k = atoms["gate_coef"].shape[0]
        if lw.shape != (n, k):
            raise ValueError(
                f"gate_{role}.log_weights returned shape {lw.shape}, expected {(n, k)}")
        logw.append(lw)

    var_f, var_t = fit["expert_var"], tru["expert_var"]
    sd_all = np.sqrt(np.concatenate([var_f, var_t]))
    offsets = np.arange(-np.floor(half_width), np.floor(half_width) + 1.0)
    if offsets[-1] < half_width:  # non-integer H: close the window at +-H
        offsets = np.concatenate([[-half_width], offsets, [half_width]])
    nodes, weights = np.polynomial.legendre.leggauss(int(n_quad))
    n_bp = sd_all.size * offsets.size
    per_row = (n_bp - 1) * int(n_quad)
    if chunk_size is None:
        chunk_size = max(1, int(250_000 // per_row))

    h = np.empty(n)
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        Xc = X[sl]
        mean_f = Xc @ fit["expert_coef"].T + fit["expert_intercept"]
        mean_t = Xc @ tru["expert_coef"].T + tru["expert_intercept"]
        means = np.concatenate([mean_f, mean_t], axis=1)  # (B, C)
        bp = (means[:, :, None] + sd_all[None, :, None] * offsets).reshape(len(Xc), -1)
        bp.sort(axis=1)
        lo, hi = bp[:, :-1], bp[:, 1:]
        half = 0.5 * (hi - lo)
        y = ((lo + hi) * 0.5)[:, :, None] + half[:, :, None] * nodes  # (B, P, m)
        wq = (half[:, :, None] * weights).reshape(len(Xc), -1)
        y = y.reshape(len(Xc), -1)
        diff = (np.sqrt(_mixture_density(logw[0][sl], mean_f, var_f, y))
                - np.sqrt(_mixture_density(logw[1][sl], mean_t, var_t, y)))
        h2 = 0.5 * np.sum(wq * diff * diff, axis=1)
        h[sl] = np.sqrt(np.clip(h2, 0.0, 1.0))
    return h if per_point else float(h.mean())
