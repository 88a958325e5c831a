"""The alignment of a fitted model to the truth's gauge: the common gate shift
(and, for top-1, scale) found as a fixed point of cells and shift (the user
guide's *The model and its gates* and *Simulations*; package docstring:
:mod:`moestats.losses`)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .atoms import (_as_pair, _assign, _block_distances, _blocks,
                    _cells_from_assignment as _cells, _temperature_mode)
from .gauge import (_SLOPE_GAUGES, DEFAULT_GAUGE, GaugeAlignment, _d1_criterion, _relative,
                    _true_reference, loss_gauge)

__all__ = ["align_to_truth"]

#: fixed-point iterations per start (a cycle or this many stop it)
_MAX_ITER = 100


def align_to_truth(fitted, true, *, gauge=DEFAULT_GAUGE, slope_gauge=True,
                   learned_temperature=False, relative_weights=False, reference=None):
    """Bring ``fitted`` to the truth's gauge and compute its Voronoi cells.

    **Slope gauge** (``"slope"``). Write :math:`g_i` for the fitted gate block
    (:math:`\\beta_{1i}`, or :math:`\\beta_{1i}/\\hat\\tau` with
    ``learned_temperature="ratio"``), :math:`g^*_j` for the true one, ``r`` for
    the true reference atom (``reference``; default the true atom with
    :math:`\\beta^*_1 = 0, \\beta^*_0 = 0`), :math:`\\omega_i = e^{\\beta_{0i}} /
    \\sum_{l \\in A_{j(i)}} e^{\\beta_{0l}}` for the within-cell relative
    weights and :math:`D(i, j; t) = \\|g_i + t - g^*_j\\| + \\|\\Delta a_{ij}\\| +
    |\\Delta b_{ij}| + |\\Delta\\nu_{ij}| \\,[+ |\\hat\\tau - \\tau^*|]` for the
    distance after a common shift :math:`t`. The gauge is a shift :math:`t`
    with

    .. math::

        A_j(t) = \\{ i : j = \\operatorname{argmin}_l D(i, l; t) \\}, \\qquad
        \\sum_{i \\in A_r(t)} \\omega_i\\, (g_i + t) = g^*_r,

    i.e. :math:`t = F(t) := g^*_r - \\sum_{i \\in A_r(t)} \\omega_i g_i`: the
    fitted atoms of the reference's cell carry the reference's slope on
    (mass-weighted) average. The cells depend on :math:`t` and :math:`t` on the
    cells, so :math:`t` is a fixed point of :math:`F`, found by iterating
    :math:`t \\leftarrow F(t)` (equivalently on the partitions, which are
    finitely many) from every start of

    * the gauge-free cells: :math:`A_j` from :math:`D` without its gate term
      (only :math:`a, b, \\nu, [\\tau]`), then :math:`t = F` of them;
    * every fitted atom :math:`c` as the anchor of the reference,
      :math:`t = g^*_r - g_c`.

    Where the reference cell is empty (a fit without an atom near the true
    reference), :math:`F` instead aligns the matched atoms on average,
    :math:`F(t) = \\sum_i s_i\\,(g^*_{j(i)} - g_i)` with the mass shares
    :math:`s_i = e^{\\beta_{0i}} / \\sum_l e^{\\beta_{0l}}` (unit-norm form:
    :math:`(m, N)` by weighted least squares of :math:`g_i` on :math:`m + N
    u^*_{j(i)}`, then :math:`N` normalised as below). An iteration stops at a
    fixed point (the cells repeat) or at a cycle (its members are kept as
    non-fixed candidates). Among the fixed
    points (else among all candidates) the one of smallest :math:`D_1`,

    .. math::

        D_1(t) = \\sum_i w_i\\, D(i, j(i); t) + \\sum_j \\Bigl|\\sum_{i \\in A_j(t)}
                 w_i - w^*_j\\Bigr|,

    is the gauge (:math:`w` the mass-gauge weights below, or the relative
    weights with ``relative_weights``; ties: the first start in the order
    above). Every start and step uses only the relative slopes
    :math:`g_i - g_l`, the expert parameters and the relative weights, so the
    result is invariant to relabelling and to any common :math:`(t_1, t_0)`,
    and at a reparametrisation of the truth (relabelled, shifted, atoms split
    into copies with the same :math:`\\theta` and weights summing to the true
    one) the anchor start on a copy of the reference gives :math:`D_1 = 0`.
    Numerically :math:`g_i + t` is computed as :math:`g^*_r + (g_i - g_a) -
    \\sum_{l \\in A_r} \\omega_l (g_l - g_a)` with :math:`a \\in A_r`, so copies
    of the reference land exactly on :math:`g^*_r`.

    The intercept shift :math:`t_0` gives the fitted measure the true total
    mass: :math:`w_i = e^{\\beta_{0i} + t_0}`, :math:`t_0 = \\log \\sum_j
    e^{\\beta^*_{0j}} - \\log \\sum_l e^{\\beta_{0l}}` (no effect with relative
    weights).

    **Top-1 form** (``"slope+unit-norm"``). A top-1 density depends on the gate
    only through the partition :math:`x \\mapsto \\operatorname{argmax}_j
    \\beta_{1j}^\\top x`, unchanged by :math:`\\beta_{1j} \\to c\\beta_{1j} + t_1`
    (:math:`c > 0`). The gate block is replaced by the relative slopes of unit
    total norm,

    .. math::

        u^*_j = \\frac{g^*_j - g^*_r}{N^*}, \\quad
        N^* = \\Bigl(\\sum_{j=1}^{k_*} \\|g^*_j - g^*_r\\|^2\\Bigr)^{1/2};
        \\qquad
        u_i = \\frac{g_i - m}{N}, \\quad
        N = \\Bigl(\\sum_{j} \\sum_{i \\in A_j} \\omega_i \\|g_i - m\\|^2\\Bigr)^{1/2},

    with :math:`m = \\sum_{i \\in A_r} \\omega_i g_i` (the slope gauge's centre)
    and the within-cell weights :math:`\\omega` (each non-empty cell counts
    once, so splitting an atom into copies does not change :math:`N`). The
    cells, :math:`m` and :math:`N` are found by the same fixed-point iteration
    (anchor starts: :math:`m = g_c` and :math:`N` on the gauge-free cells).
    :math:`u` is invariant to :math:`g \\to c g + t_1`, and :math:`u = u^*` on
    the cells at a reparametrisation of the truth.

    ``"reference"``, ``"intercept"`` and ``"mass"`` move no slope: the cells use
    the raw gate block; ``"mass"`` applies the :math:`t_0` above.

    Parameters
    ----------
    fitted, true : MoEParams or mapping
        Fitted (``k`` atoms) and true (``k*`` atoms) models; any atom order.
    gauge : str, default="slope"
        One of :data:`GAUGES`.
    slope_gauge : bool, default=True
        Whether a common slope shift is a symmetry of the fitted model; with
        ``False`` (activation gates) ``"slope"`` applies :math:`t_0` only.
    learned_temperature : {False, True, "ratio"}, default=False
        Temperature mode (module docstring of :mod:`moestats.losses`).
    relative_weights : bool, default=False
        Weights of the :math:`D_1` that chooses among fixed points.
    reference : int, optional
        Index of the true reference atom (default: the true atom with the
        smallest :math:`\\|\\beta^*_1\\| + |\\beta^*_0|`, i.e. the zero one).

    Returns
    -------
    GaugeAlignment

    Raises
    ------
    ValueError
        Invalid arguments; the unit-norm form of a truth whose slopes are all
        equal (:math:`N^* = 0`).

    Examples
    --------
    The truth re-expressed with its other expert as reference (labels switched,
    :math:`t_1 = -25, t_0 = 8`) is moved back exactly:

    >>> import numpy as np
    >>> from moestats import MoEParams
    >>> from moestats.losses import align_to_truth
    >>> truth = MoEParams([[25.0], [0.0]], [-8.0, 0.0], [[-20.0], [20.0]],
    ...                   [15.0, -5.0], [0.09, 0.16])
    >>> switched = MoEParams([[-25.0], [0.0]], [8.0, 0.0], [[20.0], [-20.0]],
    ...                      [-5.0, 15.0], [0.16, 0.09])
    >>> al = align_to_truth(switched, truth)
    >>> al.slope_shift, [c.tolist() for c in al.cells]
    (array([25.]), [[1], [0]])
    >>> al.fit_blocks["gate_coef"].ravel()
    array([ 0., 25.])
    """
    name = loss_gauge(gauge, slope_gauge=slope_gauge)
    fit, tru = _as_pair(fitted, true)
    mode = _temperature_mode(learned_temperature, "learned_temperature")
    fit_blocks, true_blocks = _blocks(fit, mode), _blocks(tru, mode)
    gate_name = next(iter(fit_blocks))
    k_true = tru["gate_coef"].shape[0]
    b0 = fit["gate_intercept"]
    b0_true = tru["gate_intercept"]
    log_mass_shift = 0.0
    if name in ("slope", "slope+unit-norm", "mass"):
        log_mass_shift = float(logsumexp(b0_true) - logsumexp(b0))
    d = fit["gate_coef"].shape[1]
    if name not in _SLOPE_GAUGES:
        dist = _block_distances(fit_blocks, true_blocks)
        assignment = _assign(dist)
        return GaugeAlignment(name, None, fit_blocks, true_blocks, dist, assignment,
                              _cells(assignment, k_true), np.zeros(d), 1.0,
                              log_mass_shift, True)

    ref = _true_reference(tru, reference)
    unit = name == "slope+unit-norm"
    G, Gs = fit_blocks[gate_name], true_blocks[gate_name]
    if unit:
        rel = Gs - Gs[ref]
        n_star = float(np.sqrt(np.sum(rel * rel)))
        if n_star == 0.0:
            raise ValueError("the unit-norm gate form needs true gate slopes that are not "
                             "all equal (their total relative norm is 0)")
        true_gate = rel / n_star
    else:
        true_gate = Gs
    other_fit = {n: b for n, b in fit_blocks.items() if n != gate_name}
    other_true = {n: b for n, b in true_blocks.items() if n != gate_name}
    other_dist = _block_distances(other_fit, other_true)

    def centred(state):
        """:math:`g_i - m` computed as :math:`(g_i - g_a) - o`."""
        a, o, _ = state
        return (G - G[a]) - o

    def transform(state):
        delta = centred(state)
        if unit:
            scale = state[2]
            return delta / scale if scale > 0 else np.zeros_like(delta)
        return Gs[ref] + delta

    def distances(state):
        g = transform(state)
        dist = {gate_name: np.linalg.norm(g[:, None, :] - true_gate[None, :, :], axis=2)}
        dist.update(other_dist)
        return dist

    def scale_of(cells, a, o):
        total = 0.0
        for cell in cells:
            if cell.size:
                delta = (G[cell] - G[a]) - o
                total += float(np.dot(_relative(b0, cell), np.sum(delta * delta, axis=1)))
        return float(np.sqrt(total))

    def state_of(assignment):
        """The gauge the cells give (None when the reference cell is empty)."""
        cells = _cells(assignment, k_true)
        cell = cells[ref]
        if cell.size == 0:
            return None
        a = int(cell[0])
        o = _relative(b0, cell) @ (G[cell] - G[a])
        return (a, o, scale_of(cells, a, o) if unit else None)

    share = np.exp(b0 - logsumexp(b0))  # mass shares of the fitted atoms

    def fallback_of(assignment):
        """Empty reference cell: the matched atoms carry their true slopes on average."""
        base = share @ (G - G[0])
        target = true_gate[assignment]
        if not unit:  # g_i + t, t = sum_l s_l (g*_{j(l)} - g_l)
            return (0, base - share @ (target - Gs[ref]), None)
        # (m, N) by weighted least squares of g_i on m + N u*_{j(i)}, then N normalised
        gc = (G - G[0]) - base
        uc = target - share @ target
        den = float(share @ np.sum(uc * uc, axis=1))
        n_ls = float(share @ np.sum(gc * uc, axis=1)) / den if den > 0 else 0.0
        if not n_ls > 0:
            return None
        o = base - n_ls * (share @ target)
        return (0, o, scale_of(_cells(assignment, k_true), 0, o))

    # starts: the gauge-free cells, then every fitted atom as the reference's anchor
    free = _assign(other_dist)
    free_cells = _cells(free, k_true)
    starts = []
    first = state_of(free)
    if first is not None:
        starts.append(first)
    zero = np.zeros(G.shape[1])
    for c in range(G.shape[0]):
        starts.append((c, zero, scale_of(free_cells, c, zero) if unit else None))

    candidates = []  # (is fixed point, state, assignment at state)
    for state in starts:
        assignment = _assign(distances(state))
        history, seen = [(state, assignment)], {assignment.tobytes(): 0}
        for _ in range(_MAX_ITER):
            new = state_of(assignment)
            if new is None:  # empty reference cell
                new = fallback_of(assignment)
            if new is None:  # no fallback (unit-norm without a positive scale): keep
                candidates.append((True, state, assignment))
                break
            new_assignment = _assign(distances(new))
            if np.array_equal(new_assignment, assignment):
                candidates.append((True, new, assignment))
                break
            key = new_assignment.tobytes()
            if key in seen:  # a cycle of partitions: keep its members
                candidates += [(False, s, p) for s, p in history[seen[key]:]]
                break
            seen[key] = len(history)
            history.append((new, new_assignment))
            state, assignment = new, new_assignment
        else:
            candidates += [(False, s, p) for s, p in history]

    pool = [c for c in candidates if c[0]] or candidates
    best, best_value = None, np.inf
    for fixed, state, assignment in pool:
        dist = distances(state)
        value = _d1_criterion(dist, assignment, _cells(assignment, k_true), b0, b0_true,
                              relative_weights)
        if value < best_value or best is None:
            best, best_value = (fixed, state, assignment, dist), value
    fixed, state, assignment, dist = best
    a, o, scale = state
    out_fit = dict(fit_blocks)
    out_fit[gate_name] = transform(state)
    out_true = dict(true_blocks)
    out_true[gate_name] = true_gate
    kappa = fit["temperature"] if mode == "ratio" else 1.0
    if unit:
        shift = -(G[a] + o) * kappa
        scale = float(scale) * kappa if scale > 0 else 1.0
    else:
        shift = (Gs[ref] - G[a] - o) * kappa
        scale = 1.0
    return GaugeAlignment(name, ref, out_fit, out_true, dist, assignment,
                          _cells(assignment, k_true), shift, scale, log_mass_shift, fixed)
