r"""Fused Numba kernels of the softmax gate.

One pass over the data gives the softmax E-step (responsibilities and per-sample
log-likelihood) and, with ``extra``, also the expert sufficient statistics, the gate
objective :math:`Q(\beta) = \sum_{ij} r_{ij}\log w_{ij}` with its gradient and
minus its Hessian at the current gate (the start of the next gate step), and the
residual moments of the current experts (from which the next expert step's
residual sums follow, :func:`moestats.backends.numba_kernels._rss_from_moments`).
:func:`softmax_q` is the gate objective alone (the gate step's line search).

Conventions as in :mod:`moestats.backends.numba_kernels`; the blocked layout is
:mod:`moestats.backends.numba_blocks`'.

Examples
--------
>>> import numpy as np
>>> from moestats.backends.numba_softmax import softmax_q
>>> rng = np.random.default_rng(0)
>>> X = rng.uniform(size=(100, 1))
>>> resp = np.full((100, 2), 0.5)
>>> value, grad, neg_h = softmax_q(X, resp, np.zeros((2, 1)), np.zeros(2))
>>> bool(abs(value - 100 * np.log(0.5)) < 1e-9), grad.shape, neg_h.shape
(True, (2,), (2, 2))
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from .numba_blocks import (_B, _L, CHUNK, _LOG_2PI, _all_rows, _batch, _dot, _linear,
                           _load_x, _lse_block, _n_chunks, _params, _posterior_block,
                           _squeeze, _stats_block, _sum, _write_stats)

__all__ = ["softmax_e_step", "softmax_q"]


@njit(cache=True, error_model="numpy", inline="always")
def _gate_block(xt, gcoef, gint, a, k, d, nbp, s, e, m, tot, lse, lw, w):
    """Softmax gate: logits s, log weights lw and weights w of a block."""
    for j in range(k):
        _linear(xt, gcoef, gint, a, j, d, nbp, s[j])
    _lse_block(s, e, m, tot, lse, k, nbp)
    for i in range(nbp):
        tot[i] = 1.0 / tot[i]
    for j in range(k):
        for i in range(nbp):
            lw[j, i] = s[j, i] - lse[i]
            w[j, i] = e[j, i] * tot[i]


@njit(cache=True, error_model="numpy", inline="always")
def _q_block(xt, xx, lw, w, rb, rowm, G, cw, k, q, nbp, want_h, acc_v, acc_g, acc_h):
    """Accumulate a block's gate objective, gradient and -Hessian into the lanes."""
    k1 = k - 1
    for i in range(nbp):
        rowm[i] = rb[0, i]
    for j in range(1, k):
        for i in range(nbp):
            rowm[i] += rb[j, i]
    for j in range(k):
        for i in range(nbp):
            rj = rb[j, i]
            cw[i] = rj * lw[j, i] if rj > 0 else 0.0
        acc_v[0] += _sum(cw, nbp)
        for i in range(nbp):
            G[j, i] = rb[j, i] - rowm[i] * w[j, i]
    for j in range(k1):
        for p in range(q):
            acc_g[j, p] += _dot(G[j], xt[p], nbp)
    if want_h:
        u = 0
        for p in range(q):
            for v in range(p, q):
                for i in range(nbp):
                    xx[u, i] = xt[p, i] * xt[v, i]
                u += 1
        nq = u
        jl = 0
        for j in range(k1):
            for l2 in range(j, k1):
                for i in range(nbp):
                    c = -(w[j, i] * w[l2, i])
                    if j == l2:
                        c += w[j, i]
                    cw[i] = c * rowm[i]
                for u in range(nq):
                    acc_h[jl, u] += _dot(cw, xx[u], nbp)
                jl += 1


@njit(cache=True, error_model="numpy", inline="always")
def _write_q(acc_v, acc_g, acc_h, k, q, want_h, a, c, pval, pgrad, phess):
    pval[a, c] = acc_v[0]
    for j in range(k - 1):
        for p in range(q):
            pgrad[a, c, j, p] = acc_g[j, p]
    if want_h:
        for jl in range(acc_h.shape[0]):
            for u in range(acc_h.shape[1]):
                phess[a, c, jl, u] = acc_h[jl, u]


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _softmax_fused_k(X, y, rows, gcoef, gint, coef, intercept, var, extra, nch,
                     resp, log_p, pmass, psxx, psxy, pval, pgrad, phess, pree, prex):
    r"""Softmax E-step in one pass; with ``extra``, the same pass also accumulates
    the expert sufficient statistics and the gate objective, gradient and -Hessian
    at the current gate (the start of the next gate step), and the residual moments
    :math:`\sum_i r_{ij}e_{ij}^2`, :math:`\sum_i r_{ij}e_{ij}\tilde x_i` of the current
    experts (:math:`e_{ij} = y_i - \tilde x_i^\top\theta_j`), from which the next
    expert step's residual sums follow (see :func:`_rss_from_moments`)."""
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    q = d + 1
    nq = q * (q + 1) // 2
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        xt = np.empty((q, _B))
        xx = np.empty((nq, _B))
        yb = np.empty(_B)
        s = np.empty((k, _B))
        e = np.empty((k, _B))
        lw = np.empty((k, _B))
        w = np.empty((k, _B))
        jn = np.empty((k, _B))
        res_b = np.empty((k, _B))
        rb = np.empty((k, _B))
        G = np.empty((k, _B))
        mu = np.empty(_B)
        m = np.empty(_B)
        tot = np.empty(_B)
        lse = np.empty(_B)
        lp = np.empty(_B)
        rowm = np.empty(_B)
        cw = np.empty(_B)
        acc_v = np.zeros(1)
        acc_g = np.zeros((k - 1, q))
        acc_h = np.zeros(((k - 1) * k // 2, nq))
        acc_m = np.zeros(k)
        acc_xx = np.zeros((k, nq))
        acc_xy = np.zeros((k, q))
        acc_ee = np.zeros(k)
        acc_ex = np.zeros((k, q))
        c0 = np.empty(k)
        for j in range(k):
            c0[j] = -0.5 * (_LOG_2PI + math.log(var[a, j]))
        i_end = min(n, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK, i_end, _B):
            nb = min(_B, i_end - i0)
            nbp = (nb + _L - 1) // _L * _L
            _load_x(X, r, i0, nb, nbp, d, xt)
            for i in range(nbp):
                yb[i] = y[r, i0 + i] if i < nb else 0.0
            _gate_block(xt, gcoef, gint, a, k, d, nbp, s, e, m, tot, lse, lw, w)
            _posterior_block(xt, yb, lw, coef, intercept, var, c0, a, k, d, nb, nbp, mu, res_b,
                             jn, e, m, tot, lp, rb)
            for i in range(nb):
                log_p[a, i0 + i] = lp[i]
                for j in range(k):
                    resp[a, i0 + i, j] = rb[j, i]
            if extra:
                _stats_block(xt, xx, yb, rb, cw, k, q, nbp, acc_m, acc_xx, acc_xy)
                _q_block(xt, xx, lw, w, rb, rowm, G, cw, k, q, nbp, True, acc_v, acc_g, acc_h)
                for j in range(k):
                    for i in range(nbp):
                        cw[i] = rb[j, i] * res_b[j, i]
                    acc_ee[j] += _dot(cw, res_b[j], nbp)
                    for p in range(q):
                        acc_ex[j, p] += _dot(cw, xt[p], nbp)
        if extra:
            for j in range(k):
                pree[a, c, j] = acc_ee[j]
                for p in range(q):
                    prex[a, c, j, p] = acc_ex[j, p]
            _write_stats(acc_m, acc_xx, acc_xy, k, q, a, c, pmass, psxx, psxy)
            _write_q(acc_v, acc_g, acc_h, k, q, True, a, c, pval, pgrad, phess)


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _softmax_q_k(X, rows, resp, rrows, gcoef, gint, want_h, nch, pval, pgrad, phess):
    """Per-chunk softmax gate objective, gradient (natural layout) and -Hessian.

    ``pgrad[a, c, j, p]``: :math:`\\sum_i G_{ij}\\tilde x_{ip}` for the free experts
    ``j < k-1`` (``p = d`` is the intercept), :math:`G = r - m w`. ``phess[a, c, jl, pq]``:
    :math:`\\sum_i m_i (w_{ij}\\delta_{jl} - w_{ij}w_{il})\\tilde x_{ip}\\tilde x_{iq}` for
    the pairs ``j <= l`` and ``p <= q`` (each block is symmetric in p, q).
    """
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = gcoef.shape[1]
    q = d + 1
    nq = q * (q + 1) // 2
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        rr = rrows[a]
        xt = np.empty((q, _B))
        xx = np.empty((nq, _B))
        s = np.empty((k, _B))
        e = np.empty((k, _B))
        lw = np.empty((k, _B))
        w = np.empty((k, _B))
        rb = np.empty((k, _B))
        G = np.empty((k, _B))
        m = np.empty(_B)
        tot = np.empty(_B)
        lse = np.empty(_B)
        rowm = np.empty(_B)
        cw = np.empty(_B)
        acc_v = np.zeros(1)
        acc_g = np.zeros((k - 1, q))
        acc_h = np.zeros(((k - 1) * k // 2, nq))
        i_end = min(n, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK, i_end, _B):
            nb = min(_B, i_end - i0)
            nbp = (nb + _L - 1) // _L * _L
            _load_x(X, r, i0, nb, nbp, d, xt)
            _gate_block(xt, gcoef, gint, a, k, d, nbp, s, e, m, tot, lse, lw, w)
            for i in range(nbp):
                for j in range(k):
                    rb[j, i] = resp[rr, i0 + i, j] if i < nb else 0.0
            _q_block(xt, xx, lw, w, rb, rowm, G, cw, k, q, nbp, want_h, acc_v, acc_g, acc_h)
        _write_q(acc_v, acc_g, acc_h, k, q, want_h, a, c, pval, pgrad, phess)


def softmax_e_step(X, y, gate_coef, gate_intercept, coef, intercept, var):
    """Fully fused E-step of a softmax-gated model (gate logits computed in the pass)."""
    X, y, single = _batch(X, y)
    gate_coef, gate_intercept, coef, intercept, var = _params(
        single, gate_coef, gate_intercept, coef, intercept, var)
    resp, log_p, _ = _softmax_fused(X, y, _all_rows(X.shape[0]), gate_coef, gate_intercept,
                                    coef, intercept, var, False)
    return _squeeze(single, resp, log_p)


def _softmax_fused(X, y, rows, gate_coef, gate_intercept, coef, intercept, var, extra):
    """Softmax E-step; with ``extra`` also ``(mass, sxx, sxy)``, ``(value, grad, neg_h)``
    of the gate objective at the current gate (see :func:`softmax_q`) and the residual
    moments ``(ree, rex)`` of the current experts (see :func:`_rss_from_moments`)."""
    A, n, d = rows.shape[0], X.shape[1], X.shape[2]
    k = coef.shape[1]
    k1, q = k - 1, d + 1
    nch = _n_chunks(n)
    resp = np.empty((A, n, k))
    log_p = np.empty((A, n))
    m = nch if extra else 1
    pmass = np.empty((A, m, k))
    psxx = np.empty((A, m, k, q, q))
    psxy = np.empty((A, m, k, q))
    pval = np.empty((A, m))
    pgrad = np.empty((A, m, k1, q))
    phess = np.empty((A, m, k1 * (k1 + 1) // 2, q * (q + 1) // 2))
    pree = np.empty((A, m, k))
    prex = np.empty((A, m, k, q))
    _softmax_fused_k(X, y, rows, gate_coef, gate_intercept, coef, intercept, var, bool(extra),
                     nch, resp, log_p, pmass, psxx, psxy, pval, pgrad, phess, pree, prex)
    if not extra:
        return resp, log_p, None
    stats = (pmass.sum(axis=1), psxx.sum(axis=1), psxy.sum(axis=1))
    return resp, log_p, (stats, _finish_q(pval, pgrad, phess, d),
                         (pree.sum(axis=1), prex.sum(axis=1)))


@functools.lru_cache(maxsize=None)
def _hessian_layout(k1, q):
    """Index arrays mapping the packed (jl, pq) -Hessian to the full one in pack order."""
    jl_of = np.empty((k1, k1), dtype=np.int64)
    u = 0
    for j in range(k1):
        for l in range(j, k1):
            jl_of[j, l] = jl_of[l, j] = u
            u += 1
    pq_of = np.empty((q, q), dtype=np.int64)
    u = 0
    for p in range(q):
        for v in range(p, q):
            pq_of[p, v] = pq_of[v, p] = u
            u += 1
    # natural order (j, p) -> pack order: slopes (j, p < d) then intercepts (j, p = d)
    d = q - 1
    order = [j * q + p for j in range(k1) for p in range(d)] + [j * q + d for j in range(k1)]
    J = np.repeat(np.arange(k1), q)[order]
    Pn = np.tile(np.arange(q), k1)[order]
    return jl_of[J[:, None], J[None, :]], pq_of[Pn[:, None], Pn[None, :]]


def _finish_q(pval, pgrad, phess, d):
    """Add the per-chunk partial sums (in chunk order) and lay the results out in pack order."""
    A, _, k1, q = pgrad.shape
    value = pval.sum(axis=1)
    g = pgrad.sum(axis=1)
    grad = np.concatenate([g[:, :, :d].reshape(A, k1 * d), g[:, :, d]], axis=1)
    if phess is None:
        return value, grad, None
    jl_idx, pq_idx = _hessian_layout(k1, q)
    return value, grad, phess.sum(axis=1)[:, jl_idx, pq_idx]


def _softmax_q(X, rows, resp, rrows, gate_coef, gate_intercept, want_hessian):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = gate_coef.shape[1]
    k1, q = k - 1, d + 1
    nch = _n_chunks(n)
    pval = np.empty((A, nch))
    pgrad = np.empty((A, nch, k1, q))
    phess = np.empty((A, nch, k1 * (k1 + 1) // 2, q * (q + 1) // 2) if want_hessian
                     else (1, 1, 1, 1))
    _softmax_q_k(X, rows, resp, rrows, gate_coef, gate_intercept, bool(want_hessian), nch,
                 pval, pgrad, phess)
    return _finish_q(pval, pgrad, phess if want_hessian else None, d)


def softmax_q(X, resp, gate_coef, gate_intercept, hessian=True):
    """Softmax gate objective :math:`Q`, its gradient and minus its Hessian, in one pass.

    Returns ``value`` ([R]), ``grad`` ([R,] P) in the order of :meth:`Gate.pack` and
    ``neg_hessian`` ([R,] P, P) (:math:`-\\nabla^2 Q`, i.e. minus
    :func:`moestats.gates.softmax_q_hessian`; ``None`` if ``hessian`` is False),
    :math:`P = (k-1)(d+1)`.
    """
    X, _, single = _batch(X)
    resp, gate_coef, gate_intercept = _params(single, resp, gate_coef, gate_intercept)
    rows = _all_rows(X.shape[0])
    value, grad, neg_h = _softmax_q(X, rows, resp, rows, gate_coef, gate_intercept, hessian)
    if single:
        return value[0], grad[0], (None if neg_h is None else neg_h[0])
    return value, grad, neg_h
