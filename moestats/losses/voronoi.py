"""The Voronoi losses D1 and D2 (dense, top-K and temperature forms), with gauge fixing
(the user guide's *Simulations*, losses and gauges; package docstring: :mod:`moestats.losses`)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .atoms import _as_pair, _check_top_k, _rbar_function
from .alignment import align_to_truth
from .gauge import DEFAULT_GAUGE, GAUGES, _mass_weights

__all__ = ["voronoi_loss", "d1_loss", "d2_loss"]

#: blocks whose exponent in D2 is r-bar (the others, ``expert_coef`` and
#: ``expert_var``, get r-bar / 2)
_FULL_EXPONENT_BLOCKS = frozenset(
    {"gate_coef", "expert_intercept", "temperature", "gate_slope_over_temperature"}
)

_KINDS = ("D1", "D2", "auto")
_GAUGES = GAUGES  # backwards-compatible name
#: gauges whose weights are rescaled to the true total mass
_MASS_GAUGES = ("mass", "slope", "slope+unit-norm")


# ---------------------------------------------------------------- losses
def _cell_weights(fit, tru, cells, relative_weights, gauge="reference"):
    """Atom weights, per-cell fitted weight sums and true weights.

    Absolute: :math:`w_i = e^{\\beta_{0i}}`, :math:`w^*_j = e^{\\beta^*_{0j}}`
    (mass-normalised, :math:`\\sum_i w_i = \\sum_j w^*_j`, in the gauges of
    ``_MASS_GAUGES``).
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
    elif gauge in _MASS_GAUGES:
        w_true = np.exp(tru["gate_intercept"])
        w = _mass_weights(b0, tru["gate_intercept"])
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


def _atom_terms(matched, cells, w, exponent_of):
    """:math:`\\sum_{i \\in A_j} w_i B_{ij}` per cell, from the matched distances."""
    terms = np.zeros(len(cells))
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
        terms[j] = np.dot(w[cell], bracket)
    return terms


def voronoi_loss(fitted, true, kind="auto", *, top_k=None, relative_weights=None,
                 learned_temperature=False, rbar=None, gauge=DEFAULT_GAUGE, slope_gauge=True,
                 reference=None):
    """Voronoi loss :math:`D_1` or :math:`D_2` between fitted and true models.

    The fit is first brought to the truth's gauge (``gauge``, see
    :func:`align_to_truth`: by default the common shift :math:`(t_1, t_0)` of
    the gate parameters that puts the true reference's slope on its cell and
    gives the fitted measure the true total mass). With its cells
    :math:`A_j`, atom weights :math:`w_i = e^{\\beta_{0i} + t_0}`, true weights
    :math:`w^*_j = e^{\\beta^*_{0j}}` and :math:`\\Delta\\cdot_{ij} = \\cdot_i -
    \\cdot^*_j` (gate slopes after the shift), the loss is a sum of cell totals
    :math:`T_j`:

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
    replaces :math:`\\|\\Delta\\beta_{1ij}\\|`. With the top-1 gauge
    ``"slope+unit-norm"``, :math:`\\|u_i - u^*_j\\|` (relative slopes of unit
    total norm, :func:`align_to_truth`) replaces :math:`\\|\\Delta\\beta_{1ij}\\|`.

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

    Invariance: in the gauges ``"slope"`` and ``"slope+unit-norm"`` the value
    does not change when the fitted experts are relabelled (the reference need
    not be last) or a common :math:`(t_1, t_0)` is added to their gate
    parameters (and, for ``"slope+unit-norm"``, when the gate slopes are
    multiplied by a common :math:`c > 0`); it is 0 at every such
    reparametrisation of the truth, including atoms split into copies whose
    weights sum to the true one.

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
    gauge : {"slope", "slope+unit-norm", "reference", "intercept", "mass"}, default="slope"
        ``"slope"``: the common shift :math:`(t_1, t_0)` of
        :func:`align_to_truth`. ``"slope+unit-norm"``: the identifiable top-1
        form (relative gate slopes of unit total norm; use it for a true top-1
        gate). ``"reference"``: the user guide's *Simulations*, losses and gauges as written (fitted and true
        :math:`\\beta` in the reference-expert gauge, raw slopes).
        ``"intercept"``: the infimum over a common intercept shift,
        :math:`\\inf_{s > 0} D` with :math:`w_i \\to s\\,w_i` (exact: the loss is
        convex piecewise linear in :math:`s`). ``"mass"``: fitted weights
        rescaled to the true total mass, :math:`w_i = e^{\\beta_{0i}}\\sum_j
        e^{\\beta^*_{0j}}/\\sum_l e^{\\beta_{0l}}`, raw slopes. The name of the
        gauge applied is :func:`loss_gauge` ``(gauge, slope_gauge=...)``.
    slope_gauge : bool, default=True
        Whether a common shift of the gate slopes is a symmetry of the fitted
        model (logits linear in :math:`\\beta_1`: softmax, top-K, temperature
        gates). Pass ``False`` for activation gates
        (:math:`\\sigma(\\beta_1^\\top x)/\\tau + \\beta_0`, non-linear
        :math:`\\sigma`): ``"slope"`` then fixes :math:`t_0` only (``"mass"``).
    reference : int, optional
        Index of the true reference atom of the slope gauges (default: the true
        atom with :math:`\\beta^*_1 = 0, \\beta^*_0 = 0`).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Different numbers of features; ``top_k`` not in ``[1, k*]``; an unknown
        ``kind``/``gauge``/temperature mode; a D2 cell of 4 or more atoms without
        ``rbar``.

    Examples
    --------
    The truth of the softmax setups, and the same density with the labels
    switched and the gate re-expressed against the other expert:

    >>> from moestats import MoEParams
    >>> from moestats.losses import voronoi_loss
    >>> truth = MoEParams([[25.0], [0.0]], [-8.0, 0.0], [[-20.0], [20.0]],
    ...                   [15.0, -5.0], [0.09, 0.16])
    >>> switched = MoEParams([[-25.0], [0.0]], [8.0, 0.0], [[20.0], [-20.0]],
    ...                      [-5.0, 15.0], [0.16, 0.09])
    >>> voronoi_loss(switched, truth, "D1") < 1e-12
    True
    >>> round(voronoi_loss(switched, truth, "D1", gauge="mass"), 3)  # raw slopes: 25 off
    25.008
    >>> round(voronoi_loss(switched, truth, "D1", gauge="reference"))  # and e^8 weights
    77530
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    fit, tru = _as_pair(fitted, true)
    k, k_true = fit["gate_coef"].shape[0], tru["gate_coef"].shape[0]
    top_k = _check_top_k(top_k, k_true)
    if relative_weights is None:
        relative_weights = top_k == 1
    if kind == "auto":
        kind = "D1" if k <= k_true else "D2"
    al = align_to_truth(fit, tru, gauge=gauge, slope_gauge=slope_gauge,
                        learned_temperature=learned_temperature,
                        relative_weights=bool(relative_weights), reference=reference)
    exponent_of = _rbar_function(rbar) if kind == "D2" else None

    cells, assignment = al.cells, al.assignment
    w, sums, w_true = _cell_weights(fit, tru, cells, relative_weights, al.gauge)
    rows = np.arange(k)
    matched = {name: d[rows, assignment] for name, d in al.distances.items()}
    atom_terms = _atom_terms(matched, cells, w, exponent_of)

    reduce = _sum_of_largest(top_k)
    if al.gauge == "intercept" and not relative_weights:
        return _best_scale(atom_terms, sums, w_true, reduce)[0]
    return float(reduce(_scaled_cell_totals([1.0], atom_terms, sums, w_true))[0])


def d1_loss(fitted, true, *, top_k=None, relative_weights=None,
            learned_temperature=False, gauge=DEFAULT_GAUGE, slope_gauge=True, reference=None):
    """Exact-specified Voronoi loss :math:`D_1` [D] (see :func:`voronoi_loss`).

    .. math::

        D_1 = \\sum_j \\sum_{i \\in A_j} e^{\\beta_{0i}} \\bigl(\\|\\Delta\\beta_{1ij}\\|
              + \\|\\Delta a_{ij}\\| + |\\Delta b_{ij}| + |\\Delta\\nu_{ij}|\\bigr)
              + \\sum_j \\Bigl| \\sum_{i \\in A_j} e^{\\beta_{0i}} - e^{\\beta^*_{0j}} \\Bigr|

    in the gauge ``gauge`` (default ``"slope"``, :func:`align_to_truth`).

    Examples
    --------
    >>> from moestats import MoEParams
    >>> from moestats.losses import d1_loss
    >>> truth = MoEParams([[2.0], [0.0]], [-1.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5],
    ...                   [0.5, 1.0])
    >>> fit = truth.replace(expert_intercept=[0.6, -0.5])  # |db| = 0.1 on atom 0
    >>> round(d1_loss(fit, truth), 12) == round(0.1 * 2.718281828459045**-1, 12)
    True
    """
    return voronoi_loss(fitted, true, "D1", top_k=top_k, relative_weights=relative_weights,
                        learned_temperature=learned_temperature, gauge=gauge,
                        slope_gauge=slope_gauge, reference=reference)


def d2_loss(fitted, true, *, rbar=None, top_k=None, relative_weights=None,
            learned_temperature=False, gauge=DEFAULT_GAUGE, slope_gauge=True, reference=None):
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
    argument), in the gauge ``gauge`` (default ``"slope"``).

    Examples
    --------
    The true atom 0 split into two copies with weights summing to the true
    one, then relabelled and shifted by :math:`(t_1, t_0) = (3, 5)`:

    >>> import numpy as np
    >>> from moestats import MoEParams
    >>> from moestats.losses import d2_loss
    >>> truth = MoEParams([[2.0], [0.0]], [-1.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5],
    ...                   [0.5, 1.0])
    >>> split = {"gate_coef": [[3.0], [5.0], [5.0]],
    ...          "gate_intercept": [5.0, 4.0 + np.log(0.3), 4.0 + np.log(0.7)],
    ...          "expert_coef": [[-1.0], [1.0], [1.0]], "expert_intercept": [-0.5, 0.5, 0.5],
    ...          "expert_var": [1.0, 0.5, 0.5]}
    >>> abs(d2_loss(split, truth)) < 1e-12
    True
    """
    return voronoi_loss(fitted, true, "D2", top_k=top_k, relative_weights=relative_weights,
                        learned_temperature=learned_temperature, rbar=rbar, gauge=gauge,
                        slope_gauge=slope_gauge, reference=reference)
