"""Line search on the selection of a top-K gate, with the experts held fixed.

The log-likelihood of a top-K gate is piecewise constant (K = 1) or piecewise
smooth (K >= 2) in the gate slopes: its gradient never moves a selection boundary.
:func:`selection_line_search` moves them by line searches along coordinates.
"""

from __future__ import annotations

import functools
import math
from numbers import Integral

import numpy as np

from ..backends import numpy_kernels
from ..backends.numpy_kernels import row_logsumexp
from ..gates.topk import TopKGate, top_k_mask

__all__ = ["kernel_for_backend", "selection_line_search", "topk_log_likelihood"]

#: breakpoints examined on each side of t = 0 (K >= 2)
_N_SIDE = 16
#: relative geometric grid of steps added to the candidates (K >= 2)
_GRID = 2.0 ** -np.arange(8)
#: relative rounding of a score, in the width test of a top-1 segment
_ROUNDING = 1e-10


def _quiet(func):
    """``func`` with NumPy's overflow, invalid and divide warnings off (infinities are handled)."""
    @functools.wraps(func)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return func(*args, **kwargs)
    return quiet


def _lex(v):
    """Each value as (is +inf, -(is -inf), finite part): sums compare lexicographically."""
    fin = np.where(np.isfinite(v), v, 0.0)
    return np.stack([(v == np.inf).astype(float), -(v == -np.inf).astype(float), fin], axis=-1)


@_quiet
def _key(v):
    """The key of a sum over the last axis: ``_lex(v).sum(axis=-2)``, without the big array."""
    fin = np.where(np.isfinite(v), v, 0.0).sum(axis=-1)
    return np.stack([np.sum(v == np.inf, axis=-1), -np.sum(v == -np.inf, axis=-1), fin], axis=-1)


def _gain(new, old):
    """Increase from lexicographic key ``old`` to ``new``: +-inf when an infinite count moves."""
    diff = np.asarray(new) - np.asarray(old)
    for part in diff[:2]:
        if part != 0:
            return math.copysign(math.inf, part)
    return float(diff[2])


@_quiet
def _sample_loglik(k_active, sel, logits, ell):
    """Per-sample :math:`\\log p_i` from selection scores and logits of shape (..., n, k)."""
    shape = sel.shape
    mask = top_k_mask(sel.reshape(-1, shape[-1]), k_active).reshape(shape)
    s = np.where(mask, logits, -np.inf)
    joint = np.where(mask, s - row_logsumexp(s)[..., None] + ell, -np.inf)
    out = row_logsumexp(joint)
    out[np.any(joint == np.inf, axis=-1)] = np.inf
    return out


@_quiet
def _scores(gate, X, coef, intercept):
    """Selection scores and logits, each of shape (n, k)."""
    z = X @ coef.T
    logits = z + intercept
    return (logits if gate.selection == "logit" else z), logits


def topk_log_likelihood(gate, X, log_expert, gate_coef, gate_intercept):
    """Log-likelihood :math:`\\sum_i \\log\\sum_{j\\in S(x_i)} w_{ij}\\phi_{ij}` of a top-K gate.

    Parameters
    ----------
    gate : TopKGate
    X : ndarray of shape (n, d)
    log_expert : ndarray of shape (n, k)
        Expert log-densities :math:`\\log\\phi_{ij}`; NaN is read as :math:`-\\infty`.
    gate_coef : ndarray of shape (k, d)
    gate_intercept : ndarray of shape (k,)

    Returns
    -------
    float
        :math:`L` (:math:`\\pm\\infty` when a sample's density is 0 or infinite).
    """
    X, ell, coef, intercept = _validate(gate, X, log_expert, gate_coef, gate_intercept)
    sel, logits = _scores(gate, X, coef, intercept)
    return float(np.sum(_sample_loglik(int(gate.k_active), sel, logits, ell)))


@_quiet
def _top1_step(sel, ell, j, f, key0, tol):
    """Exact best step t along ``f`` for row j of a top-1 gate, or None; (t, passes)."""
    n, k = sel.shape
    rows = np.arange(n)
    others = np.delete(np.arange(k), j)
    o = others[np.argmax(sel[:, others], axis=1)]  # best other, ties to the lower index
    m, c = sel[rows, o], sel[:, j]
    lex_o = _lex(ell[rows, o])
    delta = _lex(ell[:, j]) - lex_o  # value of routing sample i to j instead of o
    t = (m - c) / f
    slack = _ROUNDING * (np.abs(m) + np.abs(c)) / np.abs(f)  # rounding of t_i
    moving = (f != 0) & np.isfinite(t)
    # j beats o at a tie only when j has the lower index
    fixed_j = ~moving & ((c > m) | ((c == m) & (j < o)))
    t, inc, neg = t[moving], delta[moving] * np.sign(f[moving])[:, None], f[moving] < 0
    if t.size == 0:
        return None, 1
    order = np.argsort(t, kind="stable")
    u, first = np.unique(t[order], return_index=True)
    ends = np.append(first[1:], t.size) - 1  # last sorted index of each distinct breakpoint
    slack = np.maximum.reduceat(slack[moving][order], first)
    # at t -> -inf the samples with f < 0 select j; crossing t_i adds sign(f_i) delta_i
    start = lex_o.sum(axis=0) + delta[fixed_j].sum(axis=0) + delta[moving][neg].sum(axis=0)
    keys = np.vstack([start, start + np.cumsum(inc[order], axis=0)[ends]])
    margin = max(0.5 * u[-1] - 0.5 * u[0], 0.01 * max(abs(u[0]), abs(u[-1]), 1.0))
    points = np.concatenate([[u[0] - margin], 0.5 * u[:-1] + 0.5 * u[1:], [u[-1] + margin]])
    wide = np.diff(u) > slack[:-1] + slack[1:]  # narrower: not reliably reachable
    ok = np.isfinite(points) & np.concatenate([[True], wide, [True]])
    best = _best(keys[ok], points[ok], tol)
    if best is None or _gain(keys[ok][best], key0) <= tol:
        return None, 1
    return float(points[ok][best]), 1


def _best(keys, points, tol):
    """Index of the lexicographically largest key (within ``tol``) nearest to t = 0."""
    if len(keys) == 0:
        return None
    top = keys[np.lexsort(keys.T[::-1])[-1]]
    near = (keys[:, 0] == top[0]) & (keys[:, 1] == top[1]) & (keys[:, 2] >= top[2] - tol)
    idx = np.flatnonzero(near)
    return int(idx[np.argmin(np.abs(points[idx]))])


def kernel_for_backend(backend):
    """The candidate evaluation a fit on ``backend`` uses: "numpy" for the NumPy reference,
    else "numba" when Numba runs here (the search runs on the host for every backend).

    Examples
    --------
    >>> kernel_for_backend("numpy")
    'numpy'
    """
    if backend == "numpy":
        return "numpy"
    from ..backends import _probe
    return "numba" if _probe("numba") is None else "numpy"


def _line_gains(kernel):
    """The candidate evaluation of ``kernel`` ("numpy" or "numba")."""
    if kernel == "numba":
        from ..backends.numba_selection import topk_line_gains
        return topk_line_gains
    return _quiet(numpy_kernels.topk_line_gains)


@_quiet
def _topk_step(k_active, sel, logits, ell, j, f, tol, kernel="numpy"):
    """Best of a finite candidate set of steps along ``f`` for row j (K >= 2); (t, passes).

    Along the line only column j moves, so sample i's support is the top K - 1 other
    experts plus j or the K-th other expert, whichever ranks higher; its density is
    assembled from those two alternatives without re-ranking.
    """
    n, k = sel.shape
    others = np.delete(np.arange(k), j)
    ranked = others[np.argsort(-sel[:, others], axis=1, kind="stable")]  # ties: lower index first
    kth = ranked[:, k_active - 1]
    m = sel[np.arange(n), kth]
    t = (m - sel[:, j]) / f
    slack = _ROUNDING * (np.abs(m) + np.abs(sel[:, j])) / np.abs(f)  # rounding of t_i
    finite = (f != 0) & np.isfinite(t)
    cands = []
    for sign in (1.0, -1.0):
        side = np.unique(sign * t[finite])
        side = side[side > 0][:_N_SIDE]
        ends = np.concatenate([[0.0], side])
        nxt = np.append(side, 2.0 * side[-1] if side.size else 1.0)
        scale = max(1.0, side[-1] if side.size else 0.0)
        cands.append(sign * np.concatenate([ends + 0.25 * (nxt - ends), scale * _GRID]))
    cands = np.unique(np.concatenate(cands))
    cands = cands[np.isfinite(cands) & (cands != 0)]
    if np.any(finite):  # drop candidates within rounding of their nearest breakpoints
        order = np.argsort(t[finite])
        tb, sb = t[finite][order], slack[finite][order]
        right = np.minimum(np.searchsorted(tb, cands), tb.size - 1)
        left = np.maximum(right - 1, 0)
        clear = (np.abs(cands - tb[left]) > sb[left]) & (np.abs(cands - tb[right]) > sb[right])
        cands = cands[clear]
    if cands.size == 0:
        return None, 1
    # only samples that hold j now or whose breakpoint is within reach can change
    now_j = (sel[:, j] > m) | ((sel[:, j] == m) & (j < kth))
    idx = np.flatnonzero(now_j | (finite & (np.abs(t) <= np.max(np.abs(cands)))))
    rows, top, kth = idx[:, None], ranked[idx, :k_active - 1], kth[idx]
    num_top = row_logsumexp(logits[rows, top] + ell[rows, top])
    den_top = row_logsumexp(logits[rows, top])
    alt = logits[idx, kth]
    value_out = np.logaddexp(num_top, alt + ell[idx, kth]) - np.logaddexp(den_top, alt)
    line = (f[idx], sel[idx, j], m[idx], j < kth, num_top, den_top, logits[idx, j] + ell[idx, j],
            logits[idx, j], value_out)
    gains = _line_gains(kernel)(cands, *line)
    best = _best(gains, cands, tol)
    if best is None or _gain(gains[best], np.zeros(3)) <= tol:
        return None, 2 + cands.size
    return float(cands[best]), 2 + cands.size


def _validate(gate, X, log_expert, gate_coef, gate_intercept):
    if not isinstance(gate, TopKGate):
        raise ValueError(f"gate must be a TopKGate, got {gate!r}")
    X = np.asarray(X, dtype=float)
    coef = np.array(gate_coef, dtype=float)
    intercept = np.array(gate_intercept, dtype=float)
    ell = np.array(log_expert, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-d array (n, d), got shape {X.shape}")
    n, d = X.shape
    if coef.ndim != 2 or coef.shape[1] != d:
        raise ValueError(f"gate_coef must have shape (k, {d}), got {coef.shape}")
    k = coef.shape[0]
    for name, arr, want in (("gate_intercept", intercept, (k,)), ("log_expert", ell, (n, k))):
        if arr.shape != want:
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    for name, arr in (("X", X), ("gate_coef", coef), ("gate_intercept", intercept)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)].tolist()[:5]}")
    gate.validate(k)
    ell[np.isnan(ell)] = -np.inf
    return X, ell, coef, intercept


def selection_line_search(gate, X, log_expert, gate_coef, gate_intercept, *, max_sweeps=10,
                          min_gain=1e-9, directions=None, rng=None, kernel="numpy"):
    """Increase the top-K log-likelihood with the experts fixed, by line searches in the gate.

    Maximises :math:`L(\\beta) = \\sum_i \\log \\sum_{j \\in S(x_i)} w_{ij}\\, \\phi_{ij}`
    one line at a time. A line moves one row j < k: :math:`\\beta_{1j} \\to
    \\beta_{1j} + t\\, e` (feature :math:`f_i = e^\\top x_i`; e a coordinate
    vector or an extra direction) or, for ``selection="logit"``,
    :math:`\\beta_{0j} \\to \\beta_{0j} + t` (:math:`f_i = 1`). Sample i's support
    changes only at :math:`t_i = (m_i - z_{ij}) / f_i`, :math:`m_i` the K-th largest
    score of the other experts (ties to the lower index, as in
    :func:`~moestats.gates.top_k_mask`).

    - K = 1 (exact): :math:`L(t) = \\text{const} + \\sum_i [j \\in S_t(x_i)]\\,
      (\\ell_{ij} - \\ell_{i o_i})`, :math:`o_i` the best other expert, is a step
      function; one sort and one cumulative sum give its value on every segment
      between breakpoints (:math:`O(n \\log n)`), and the step goes to the best
      segment's midpoint (outer segments: a margin past the last breakpoint).
      Segments narrower than the rounding of the scores are skipped.
    - K >= 2: :math:`L` is evaluated exactly at a quarter of the way into each
      segment up to the 16th breakpoint on each side of 0 (``_N_SIDE``), plus a geometric grid.

    Each step is re-evaluated from the new parameters and kept only if it raises
    :math:`L` by more than ``min_gain``: :math:`L` never decreases. Infinite
    :math:`\\ell_{ij}` compare exactly: first the number of samples of density
    :math:`+\\infty`, then of density 0, then the finite part.

    Parameters
    ----------
    gate : TopKGate
    X : ndarray of shape (n, d)
    log_expert : ndarray of shape (n, k)
        Expert log-densities :math:`\\ell_{ij}` (experts held fixed); NaN is read as
        :math:`-\\infty`.
    gate_coef : ndarray of shape (k, d)
        Start slopes; the last (reference) row is never changed.
    gate_intercept : ndarray of shape (k,)
        Start intercepts; moved only when ``selection="logit"``.
    max_sweeps : int, default=10
        Most passes over all the directions; stops earlier when a sweep gains
        ``<= min_gain``.
    min_gain : float, default=1e-9
        Smallest increase of :math:`L` a step must bring. Among segments or
        candidates within ``min_gain`` of the best, the one nearest t = 0 is taken.
    directions : ndarray of shape (m, k - 1, d) or int, optional
        Extra slope directions, searched row by row: row j moves along each
        ``directions[i, j]`` (zero rows skipped); an int m draws m random unit
        directions per sweep from ``rng``.
    rng : numpy.random.Generator or int, optional
        Used only when ``directions`` is an int.
    kernel : {"numpy", "numba"}, default="numpy"
        Evaluation of the K >= 2 candidates: the NumPy reference or the compiled
        :func:`moestats.backends.numba_selection.topk_line_gains` (same values up to
        rounding; 4-6 times faster on one thread, ``benchmarks/bench_topk_selection.py``).

    Returns
    -------
    gate_coef : ndarray of shape (k, d)
    gate_intercept : ndarray of shape (k,)
    gain : float
        Total increase of :math:`L` (:math:`+\\infty` if a sample of density 0
        became positive).
    n_passes : int
        Full passes over the data used (breakpoint sets and evaluations of L).

    Raises
    ------
    ValueError
        If ``gate`` is not a :class:`~moestats.gates.TopKGate`, shapes disagree,
        parameters are not finite, or an option is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.gates import TopKGate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(400, 1))
    >>> y = np.where(X[:, 0] > 0, 2.0, -2.0) + 0.1 * rng.normal(size=400)  # x > 0: expert 0
    >>> log_expert = -0.5 * (y[:, None] - np.array([2.0, -2.0])) ** 2 / 0.01
    >>> coef, b, gain, n_passes = selection_line_search(
    ...     TopKGate(1), X, log_expert, [[-1.0], [0.0]], [0.0, 0.0])
    >>> bool(coef[0, 0] > 0), bool(gain > 0), coef[1].tolist()
    (True, True, [0.0])
    """
    X, ell, coef, intercept = _validate(gate, X, log_expert, gate_coef, gate_intercept)
    (n, d), k, K = X.shape, coef.shape[0], int(gate.k_active)
    if not isinstance(max_sweeps, Integral) or max_sweeps < 0:
        raise ValueError(f"max_sweeps must be an integer >= 0, got {max_sweeps!r}")
    if not np.isfinite(min_gain) or min_gain < 0:
        raise ValueError(f"min_gain must be finite and >= 0, got {min_gain!r}")
    if kernel not in ("numpy", "numba"):
        raise ValueError(f'kernel must be "numpy" or "numba", got {kernel!r}')
    if isinstance(directions, Integral) and directions < 0:
        raise ValueError(f"directions must be >= 0 when an int, got {directions}")
    if directions is not None and not isinstance(directions, Integral):
        directions = np.asarray(directions, dtype=float)
        if directions.ndim != 3 or directions.shape[1:] != (k - 1, d) \
                or not np.all(np.isfinite(directions)):
            raise ValueError(f"directions must be a finite array of shape (m, {k - 1}, {d}), "
                             f"got shape {directions.shape}")
    if K >= k:  # every expert always selected: no selection to move
        return coef, intercept, 0.0, 0
    rng = np.random.default_rng(rng)
    sel, logits = _scores(gate, X, coef, intercept)
    if not np.all(np.isfinite(logits)):
        raise ValueError("the gate scores X @ gate_coef.T + gate_intercept overflow")
    key, passes, total = _key(_sample_loglik(K, sel, logits, ell)), 1, 0.0
    for _ in range(max_sweeps):
        extra = directions
        if isinstance(extra, Integral):
            extra = rng.normal(size=(extra, k - 1, d))
            extra /= np.linalg.norm(extra, axis=2, keepdims=True)
        lines = [(j, row) for j in range(k - 1) for row in np.eye(d)]
        lines += [(j, None) for j in range(k - 1)] if gate.selection == "logit" else []
        if extra is not None:
            lines += [(j, e[j]) for e in extra for j in range(k - 1) if np.any(e[j])]
        sweep_gain = 0.0
        for j, e in lines:
            f = np.ones(n) if e is None else _quiet(np.dot)(X, e)
            if K == 1:
                t, p = _top1_step(sel, ell, j, f, key, min_gain)
            else:
                t, p = _topk_step(K, sel, logits, ell, j, f, min_gain, kernel)
            passes += p
            if t is None:
                continue
            new_coef, new_intercept = coef.copy(), intercept.copy()
            if e is None:
                new_intercept[j] = _quiet(np.add)(new_intercept[j], t)
            else:
                new_coef[j] = _quiet(np.add)(new_coef[j], _quiet(np.multiply)(t, e))
            new_sel, new_logits = _scores(gate, X, new_coef, new_intercept)
            if not (np.all(np.isfinite(new_coef)) and np.all(np.isfinite(new_logits))):
                continue
            new_key = _key(_sample_loglik(K, new_sel, new_logits, ell))
            passes += 1
            g = _gain(new_key, key)
            if g > min_gain:
                coef, intercept, key = new_coef, new_intercept, new_key
                sel, logits = new_sel, new_logits
                total += g
                sweep_gain += g
        if sweep_gain <= min_gain:
            break
    return coef, intercept, total, passes
