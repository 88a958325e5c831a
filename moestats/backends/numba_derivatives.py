r"""Numba kernel of the exact gradient and Hessian of the observed log-likelihood.

The compiled form of :func:`moestats.solvers.derivatives.observed_derivatives` (its
docstring has the formulas) for the gate families with a built-in activation: one pass
over the data gives the log-likelihood, its gradient and its Hessian in the full
free-parameter vector (:class:`moestats.solvers.ParamLayout`). It is the cost of one
step of the certifying Newton finish.

The per-expert score vectors :math:`v_{ij} = \nabla s_{ij} + \nabla\log\phi_{ij}` are
sparse (the gate block of expert j, the temperature, the expert block of j), and the
Hessian is assembled as

.. math::

    \nabla^2\ell = \sum_i\Bigl[\sum_j \pi_{ij} v_{ij}v_{ij}^\top
        - \sum_j w_{ij} g_{ij}g_{ij}^\top - \bar v_i\bar v_i^\top + \bar g_i\bar g_i^\top
        + \sum_j(\pi_{ij} - w_{ij})\nabla^2 s_{ij} + \sum_j\pi_{ij}\nabla^2\log\phi_{ij}\Bigr],

(:math:`\bar v_i = \sum_j\pi_{ij}v_{ij}`, :math:`\bar g_i = \sum_j w_{ij}g_{ij}`), every
term a weighted sum over samples of products of per-sample arrays. Samples are
processed in blocks laid out feature-major (:mod:`.numba_blocks`), so that each of
these sums is a vectorised dot product over the block: the dense terms
:math:`\bar v\bar v^\top`, :math:`\bar g\bar g^\top` cost :math:`p(p+1)/2` dot products
per block, the sparse ones :math:`O(k m^2)` with :math:`m \le 2d + 4`. Top-K gates work
the same way: an expert off the selection has :math:`w_{ij} = \pi_{ij} = 0`, so all its
terms vanish. Work is split over (replication, chunk of samples) and added in chunk
order, so the result does not depend on the number of threads; the tests hold it to
1e-12 relative of the NumPy reference.

Examples
--------
>>> import numpy as np
>>> from moestats import get_setup, SoftmaxGate
>>> from moestats.solvers.batched_params import as_batched
>>> from moestats.backends.numba_derivatives import observed_derivatives
>>> truth = get_setup("softmax-exact").truth
>>> X, y = truth.sample(1000, np.random.default_rng(0))
>>> value, grad, hess = observed_derivatives(SoftmaxGate(), X[None], y[None],
...                                          np.zeros(1, dtype=np.int64),
...                                          as_batched(truth.params, 1))
>>> grad.shape, hess.shape, bool(np.allclose(hess, hess.transpose(0, 2, 1)))
((1, 8), (1, 8, 8), True)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_blocks import (_B, _L, _LOG_2PI, CHUNK, _dot, _load_x, _lse_block, _n_chunks,
                           _posterior_block, _sum)
from .numba_fused_gates import _activate_block
from .numba_gates import gate_code

__all__ = ["observed_derivatives"]


@njit(cache=True, error_model="numpy", inline="always")
def _select_block(s, zs, off, k, k_active, sel_logit, nbp):
    """Top-K: set the logits of the experts off the selection to -inf (ties to the
    lower index; selection on the slope part ``zs`` or on the logit ``s``)."""
    for i in range(nbp):
        for j in range(k):
            sj = s[j, i] if sel_logit else zs[j, i]
            beaten = 0
            for l2 in range(k):
                sl = s[l2, i] if sel_logit else zs[l2, i]
                if (l2 < j and sl >= sj) or (l2 > j and sl > sj):
                    beaten += 1
            off[j] = beaten >= k_active
        for j in range(k):
            if off[j]:
                s[j, i] = -np.inf


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _observed_k(X, y, rows, coef, intercept, tau, ecoef, eint, evar, code, k_active,
                sel_logit, fits_int, learns_tau, order, gate_only, idx, cnt, ngate_j, pval,
                pgrad, phess):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    q = d + 1
    p = pgrad.shape[2]
    nch = pval.shape[1]
    n_gate = (k - 1) * d + (k - 1) * fits_int + learns_tau
    mmax = idx.shape[1]
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        inv_t = 1.0 / tau[a]
        xt = np.empty((q, _B))
        yb = np.empty(_B)
        zb = np.empty(_B)
        zs = np.empty((k, _B))
        h = np.empty((k, _B))
        h1 = np.empty((k, _B))
        h2 = np.empty((k, _B))
        s = np.empty((k, _B))
        e = np.empty((k, _B))
        w = np.empty((k, _B))
        pi = np.empty((k, _B))
        res = np.empty((k, _B))
        jn = np.empty((k, _B))
        lw = np.empty((k, _B))
        m = np.empty(_B)
        tot = np.empty(_B)
        lse = np.empty(_B)
        lp = np.empty(_B)
        cw = np.empty(_B)
        cw2 = np.empty(_B)
        vloc = np.empty((k, mmax, _B))
        vbar = np.empty((p, _B))
        gbar = np.empty((max(n_gate, 1), _B))
        acc_v = 0.0
        acc_g = np.zeros(p)
        acc_h = np.zeros((p, p))
        off = np.zeros(k, dtype=np.bool_)
        c0 = np.empty(k)
        inv_v = np.empty(k)
        for j in range(k):
            c0[j] = -0.5 * (_LOG_2PI + math.log(evar[a, j]))
            inv_v[j] = 1.0 / evar[a, j]
        i_end = min(n, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK, i_end, _B):
            nb = min(_B, i_end - i0)
            nbp = (nb + _L - 1) // _L * _L
            _load_x(X, r, i0, nb, nbp, d, xt)
            for i in range(nbp):
                yb[i] = y[r, i0 + i] if i < nb else 0.0
            # gate: activations, logits (top-K selection), log weights
            for j in range(k):
                for i in range(nbp):
                    zb[i] = 0.0
                for cc in range(d):
                    cp = coef[a, j, cc]
                    for i in range(nbp):
                        zb[i] += xt[cc, i] * cp
                for i in range(nbp):
                    zs[j, i] = zb[i]
                _activate_block(code, zb, h[j], h1[j], h2[j], nbp)
                b0 = intercept[a, j]
                for i in range(nbp):
                    s[j, i] = h[j, i] * inv_t + b0
            if k_active < k:
                _select_block(s, zs, off, k, k_active, sel_logit, nbp)
            _lse_block(s, e, m, tot, lse, k, nbp)
            for i in range(nbp):
                tot[i] = 1.0 / tot[i] if i < nb else 0.0
            for j in range(k):
                for i in range(nbp):
                    w[j, i] = e[j, i] * tot[i]
            # experts, joint, posterior
            for j in range(k):
                for i in range(nbp):
                    lw[j, i] = s[j, i] - lse[i]
            _posterior_block(xt, yb, lw, ecoef, eint, evar, c0, a, k, d, nb, nbp, zb, res, jn,
                             e, m, tot, lp, pi)
            for i in range(nb):
                acc_v += lp[i]
            if order == 0:
                continue
            # sparse score vectors v_j (gate entries first), and vbar, gbar
            for u in range(p):
                for i in range(nbp):
                    vbar[u, i] = 0.0
            for u in range(n_gate):
                for i in range(nbp):
                    gbar[u, i] = 0.0
            for j in range(k):
                tt = 0
                if j < k - 1:
                    for i in range(nbp):
                        cw[i] = h1[j, i] * inv_t
                    for cc in range(d):
                        for i in range(nbp):
                            vloc[j, tt, i] = cw[i] * xt[cc, i]
                        tt += 1
                    if fits_int:
                        for i in range(nbp):
                            vloc[j, tt, i] = 1.0
                        tt += 1
                if learns_tau:
                    for i in range(nbp):
                        vloc[j, tt, i] = -h[j, i] * inv_t
                    tt += 1
                if not gate_only:
                    for i in range(nbp):
                        cw[i] = res[j, i] * inv_v[j]
                    for cc in range(q):
                        for i in range(nbp):
                            vloc[j, tt, i] = cw[i] * xt[cc, i]
                        tt += 1
                    for i in range(nbp):
                        vloc[j, tt, i] = 0.5 * res[j, i] * cw[i] - 0.5
                for t1 in range(cnt[j]):
                    u = idx[j, t1]
                    for i in range(nbp):
                        vbar[u, i] += pi[j, i] * vloc[j, t1, i]
                    if t1 < ngate_j[j]:
                        for i in range(nbp):
                            gbar[u, i] += w[j, i] * vloc[j, t1, i]
            for u in range(p):
                acc_g[u] += _sum(vbar[u], nbp)
            for u in range(n_gate):
                acc_g[u] -= _sum(gbar[u], nbp)
            if order < 2:
                continue
            # dense terms: - vbar vbar^T + gbar gbar^T (upper triangle)
            for u in range(p):
                for v in range(u, p):
                    acc_h[u, v] -= _dot(vbar[u], vbar[v], nbp)
            for u in range(n_gate):
                for v in range(u, n_gate):
                    acc_h[u, v] += _dot(gbar[u], gbar[v], nbp)
            # sparse terms: sum_j pi_j v_j v_j^T - w_j g_j g_j^T
            for j in range(k):
                ng = ngate_j[j]
                for t1 in range(cnt[j]):
                    u = idx[j, t1]
                    for i in range(nbp):
                        cw2[i] = pi[j, i] * vloc[j, t1, i]
                    if t1 < ng:
                        for i in range(nbp):
                            cw[i] = (pi[j, i] - w[j, i]) * vloc[j, t1, i]
                        for t2 in range(t1, ng):
                            acc_h[u, idx[j, t2]] += _dot(cw, vloc[j, t2], nbp)
                        for t2 in range(ng, cnt[j]):
                            acc_h[u, idx[j, t2]] += _dot(cw2, vloc[j, t2], nbp)
                    else:
                        for t2 in range(t1, cnt[j]):
                            acc_h[u, idx[j, t2]] += _dot(cw2, vloc[j, t2], nbp)
                # curvature of the logit: (pi - w) d2 s
                if j < k - 1 and code != 0:
                    for i in range(nbp):
                        cw[i] = (pi[j, i] - w[j, i]) * h2[j, i] * inv_t
                    for c1 in range(d):
                        for i in range(nbp):
                            cw2[i] = cw[i] * xt[c1, i]
                        for c2 in range(c1, d):
                            acc_h[j * d + c1, j * d + c2] += _dot(cw2, xt[c2], nbp)
                if learns_tau:
                    lam = n_gate - 1
                    if j < k - 1:
                        for i in range(nbp):
                            cw[i] = -(pi[j, i] - w[j, i]) * h1[j, i] * inv_t
                        for c1 in range(d):
                            acc_h[j * d + c1, lam] += _dot(cw, xt[c1], nbp)
                    for i in range(nbp):
                        cw[i] = (pi[j, i] - w[j, i]) * h[j, i] * inv_t
                    acc_h[lam, lam] += _sum(cw, nbp)
                if gate_only:
                    continue
                # curvature of the expert log-density
                base = n_gate + j * d
                bi = n_gate + k * d + j
                bv = n_gate + k * d + k + j
                for i in range(nbp):
                    cw[i] = pi[j, i] * inv_v[j]
                for c1 in range(q):
                    pos1 = base + c1 if c1 < d else bi
                    for i in range(nbp):
                        cw2[i] = cw[i] * xt[c1, i]
                    for c2 in range(c1, q):
                        pos2 = base + c2 if c2 < d else bi
                        acc_h[pos1, pos2] -= _dot(cw2, xt[c2], nbp)
                    acc_h[pos1, bv] -= _dot(cw2, res[j], nbp)
                for i in range(nbp):
                    cw2[i] = cw[i] * res[j, i]
                acc_h[bv, bv] -= 0.5 * _dot(cw2, res[j], nbp)
        pval[a, c] = acc_v
        for u in range(p):
            pgrad[a, c, u] = acc_g[u]
            if order >= 2:
                for v in range(u, p):
                    phess[a, c, u, v] = acc_h[u, v]
                    phess[a, c, v, u] = acc_h[u, v]


def _score_layout(k, d, fits_int, learns_tau, gate_only=False):
    """Positions (in the free-parameter vector) of each expert's score entries, gate
    entries first: ``idx`` (k, m), their count per expert and the gate count per expert
    (``gate_only``: the gate entries alone)."""
    n_gate = (k - 1) * d + (k - 1) * fits_int + learns_tau
    mmax = d + fits_int + learns_tau + d + 2
    idx = np.zeros((k, mmax), dtype=np.int64)
    cnt = np.zeros(k, dtype=np.int64)
    ngj = np.zeros(k, dtype=np.int64)
    for j in range(k):
        pos = []
        if j < k - 1:
            pos += [j * d + c for c in range(d)]
            if fits_int:
                pos.append((k - 1) * d + j)
        if learns_tau:
            pos.append(n_gate - 1)
        ngj[j] = len(pos)
        if not gate_only:
            pos += [n_gate + j * d + c for c in range(d)]
            pos += [n_gate + k * d + j, n_gate + k * d + k + j]
        idx[j, :len(pos)] = pos
        cnt[j] = len(pos)
    return idx, cnt, ngj


def _f(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def observed_derivatives(gate, X, y, rows, P, order=2, gate_only=False):
    """Log-likelihood (A,), gradient (A, p) and Hessian (A, p, p) of replications ``rows``.

    ``X`` (R, n, d), ``y`` (R, n) float64 C arrays; ``P`` (a BatchedParams) aligned with
    ``rows``. ``order=0`` gives the value only (the others zero / None). ``gate_only``:
    the derivatives in the gate part of the free-parameter vector alone (the experts
    held fixed; the gate block of the full ones). Raises ``ValueError`` for a gate with
    a user activation (use the NumPy reference).
    """
    code = gate_code(gate)
    if code is None:
        raise ValueError("a user activation has no compiled kernel")
    A, n = len(rows), X.shape[1]
    k, d = P.gate_coef.shape[1:]
    fits_int = int(bool(gate.fits_intercept))
    learns_tau = int(bool(gate.learns_temperature))
    p = (k - 1) * d + (k - 1) * fits_int + learns_tau + (0 if gate_only else k * (d + 2))
    nch = _n_chunks(n)
    pval = np.zeros((A, nch))
    pgrad = np.zeros((A, nch, p))
    phess = np.zeros((A, nch, p, p)) if order >= 2 else np.zeros((A, nch, 0, 0))
    tau = P.temperature if gate.has_temperature else np.ones(A)
    idx, cnt, ngj = _score_layout(k, d, fits_int, learns_tau, gate_only)
    _observed_k(X, y, np.asarray(rows, dtype=np.int64), _f(P.gate_coef), _f(P.gate_intercept),
                _f(tau), _f(P.expert_coef), _f(P.expert_intercept), _f(P.expert_var), code,
                int(getattr(gate, "k_active", k)),
                getattr(gate, "selection", "slope") == "logit", fits_int, learns_tau, order,
                bool(gate_only), idx, cnt, ngj, pval, pgrad, phess)
    value = pval.sum(axis=1)
    value = np.where(np.isnan(value), -np.inf, value)
    return value, pgrad.sum(axis=1), phess.sum(axis=1) if order >= 2 else None
