"""Numba kernel of the exact gradient and Hessian of the observed log-likelihood.

The compiled form of :func:`moestats.solvers.derivatives.observed_derivatives` (its
docstring has the formulas) for the gate families with a built-in activation: one pass
over the data gives the log-likelihood, its gradient and its Hessian in the full
free-parameter vector (:class:`moestats.solvers.ParamLayout`). Per sample, the
per-expert score vectors :math:`v_{ij} = \\nabla s_{ij} + \\nabla\\log\\phi_{ij}` are
sparse (the gate block of expert j, the temperature, the expert block of j), so

.. math::

    \\operatorname{Cov}_{\\pi_i}(v) = \\sum_j \\pi_{ij} v_{ij}v_{ij}^\\top - \\bar v_i\\bar v_i^\\top

costs :math:`O(k\\,m^2 + p^2)` with :math:`m = 2d + 4` instead of :math:`O(k p^2)`.
Work is split over (replication, chunk of samples) and added in chunk order, so the
result does not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_gates import CHUNK, _add_logit_second, _logits, _to_posterior, gate_code

__all__ = ["observed_derivatives"]

_LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True, error_model="numpy", parallel=True)
def _observed_k(X, y, rows, coef, intercept, tau, ecoef, eint, evar, code, k_active,
                sel_logit, fits_int, learns_tau, order, pval, pgrad, phess):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    p = pgrad.shape[2]
    nch = pval.shape[1]
    n_gate = (k - 1) * d + (k - 1) * fits_int + learns_tau
    m = 2 * d + 4
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        ta = tau[a]
        h = np.empty(k)
        h1 = np.empty(k)
        h2 = np.empty(k)
        s = np.empty(k)
        sel = np.empty(k)
        w = np.empty(k)
        post = np.empty(k)
        e = np.empty(k)
        idx = np.zeros((k, m), dtype=np.int64)
        val = np.zeros((k, m))
        cnt = np.zeros(k, dtype=np.int64)
        vbar = np.zeros(p)
        gbar = np.zeros(p)
        acc_v = 0.0
        grad = np.zeros(p)
        hess = np.zeros((p, p))
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            lse = _logits(X, r, i, coef, intercept, ta, a, code, k_active, sel_logit,
                          h, h1, h2, s, sel)
            for j in range(k):
                w[j] = math.exp(s[j] - lse)
                mean = eint[a, j]
                for cc in range(d):
                    mean += ecoef[a, j, cc] * X[r, i, cc]
                e[j] = y[r, i] - mean
                post[j] = s[j] - lse - 0.5 * (_LOG_2PI + math.log(evar[a, j])) \
                    - 0.5 * e[j] * e[j] / evar[a, j]
            acc_v += _to_posterior(post, sel, k)
            if order == 0:
                continue
            # sparse score vectors: gate entries first (cnt_gate), then the expert block
            for q in range(p):
                vbar[q] = 0.0
                gbar[q] = 0.0
            for j in range(k):
                nz = 0
                if s[j] != -np.inf:
                    if j < k - 1:
                        cj = h1[j] / ta
                        for cc in range(d):
                            idx[j, nz] = j * d + cc
                            val[j, nz] = cj * X[r, i, cc]
                            nz += 1
                        if fits_int:
                            idx[j, nz] = (k - 1) * d + j
                            val[j, nz] = 1.0
                            nz += 1
                    if learns_tau:
                        idx[j, nz] = n_gate - 1
                        val[j, nz] = -h[j] / ta
                        nz += 1
                n_g = nz
                for q in range(n_g):
                    gbar[idx[j, q]] += w[j] * val[j, q]
                sc = e[j] / evar[a, j]
                for cc in range(d):
                    idx[j, nz] = n_gate + j * d + cc
                    val[j, nz] = sc * X[r, i, cc]
                    nz += 1
                idx[j, nz] = n_gate + k * d + j
                val[j, nz] = sc
                nz += 1
                idx[j, nz] = n_gate + k * d + k + j
                val[j, nz] = 0.5 * e[j] * sc - 0.5
                nz += 1
                cnt[j] = nz
                for q in range(nz):
                    vbar[idx[j, q]] += post[j] * val[j, q]
                if order >= 2:
                    # sum_j pi_j v v^T - sum_j w_j g g^T (lower triangles)
                    for q in range(nz):
                        for u in range(q + 1):
                            iq, iu = idx[j, q], idx[j, u]
                            f = post[j] * val[j, q] * val[j, u]
                            if q < n_g and u < n_g:
                                f -= w[j] * val[j, q] * val[j, u]
                            if iq >= iu:
                                hess[iq, iu] += f
                            else:
                                hess[iu, iq] += f
            for q in range(p):
                grad[q] += vbar[q] - gbar[q]
            if order < 2:
                continue
            for q in range(p):
                if vbar[q] != 0.0 or gbar[q] != 0.0:
                    for u in range(q + 1):
                        hess[q, u] += gbar[q] * gbar[u] - vbar[q] * vbar[u]
            for j in range(k):
                if s[j] != -np.inf:
                    _add_logit_second(hess, X, r, i, j, post[j] - w[j], h, h1, h2, ta, code,
                                      learns_tau, n_gate - 1)
                # expert second derivatives: -pi x~ x~^T / nu, -pi e x~ / nu, -pi e^2 / (2 nu)
                pj = post[j]
                inv = pj / evar[a, j]
                base = n_gate + j * d
                bi = n_gate + k * d + j
                bv = n_gate + k * d + k + j
                for q in range(d):
                    xq = X[r, i, q]
                    for u in range(q + 1):
                        hess[base + q, base + u] -= inv * xq * X[r, i, u]
                    hess[bi, base + q] -= inv * xq
                    hess[bv, base + q] -= inv * e[j] * xq
                hess[bi, bi] -= inv
                hess[bv, bi] -= inv * e[j]
                hess[bv, bv] -= 0.5 * inv * e[j] * e[j]
        pval[a, c] = acc_v
        for q in range(p):
            pgrad[a, c, q] = grad[q]
            if order >= 2:
                for u in range(q + 1):
                    phess[a, c, q, u] = hess[q, u]
                    phess[a, c, u, q] = hess[q, u]


def _f(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def observed_derivatives(gate, X, y, rows, P, order=2):
    """Log-likelihood (A,), gradient (A, p) and Hessian (A, p, p) of replications ``rows``.

    ``X`` (R, n, d), ``y`` (R, n) float64 C arrays; ``P`` (a BatchedParams) aligned with
    ``rows``. ``order=0`` gives the value only (the others zero / None). Raises
    ``ValueError`` for a gate with a user activation (use the NumPy reference).
    """
    code = gate_code(gate)
    if code is None:
        raise ValueError("a user activation has no compiled kernel")
    A, n = len(rows), X.shape[1]
    k, d = P.gate_coef.shape[1:]
    fits_int = bool(gate.fits_intercept)
    learns_tau = bool(gate.learns_temperature)
    p = (k - 1) * d + (k - 1) * fits_int + learns_tau + k * (d + 2)
    nch = (n + CHUNK - 1) // CHUNK
    pval = np.zeros((A, nch))
    pgrad = np.zeros((A, nch, p))
    phess = np.zeros((A, nch, p, p)) if order >= 2 else np.zeros((A, nch, 0, 0))
    tau = P.temperature if gate.has_temperature else np.ones(A)
    _observed_k(X, y, np.asarray(rows, dtype=np.int64), _f(P.gate_coef), _f(P.gate_intercept),
                _f(tau), _f(P.expert_coef), _f(P.expert_intercept), _f(P.expert_var), code,
                int(getattr(gate, "k_active", k)),
                getattr(gate, "selection", "slope") == "logit", fits_int, learns_tau, order,
                pval, pgrad, phess)
    value = pval.sum(axis=1)
    value = np.where(np.isnan(value), -np.inf, value)
    return value, pgrad.sum(axis=1), phess.sum(axis=1) if order >= 2 else None
