"""Numba kernels of the gate families other than the fused softmax path.

For logits :math:`s_{ij} = \\sigma(z_{ij})/\\tau + \\beta_{0j}`, :math:`z_{ij} =
\\beta_{1j}^\\top x_i`, with :math:`\\sigma` the identity (softmax, top-K, temperature),
tanh, the logistic sigmoid or gelu, and an optional top-K selection (on :math:`z` or
on :math:`s`, ties to the lower index):

- :func:`gate_log_weights`: :math:`\\log w_{ij}` (``-inf`` off the selection);
- :func:`gate_derivatives`: in one pass, the value, gradient and Hessian in the gate
  part of the free-parameter vector (:class:`moestats.solvers.ParamLayout`) of either
  the EM gate objective :math:`Q = \\sum_{ij} r_{ij}\\log w_{ij}` (``mode=0``) or the
  observed log-likelihood with the experts held fixed (``mode=1``, from the expert
  log-densities), with the formulas of :mod:`moestats.solvers.derivatives`: for
  target weights :math:`t` (:math:`r`, or the posterior :math:`\\pi`) and row mass
  :math:`m` (:math:`\\sum_j r_{ij}`, or 1),

  .. math::

      \\nabla = \\sum_{ij}(t_{ij} - m_i w_{ij}) g_{ij},\\qquad
      \\nabla^2 = \\sum_{ij}(t_{ij} - m_i w_{ij})\\nabla^2 s_{ij}
          - \\sum_i m_i \\operatorname{Cov}_{w_i}(g) \\;[+ \\sum_i\\operatorname{Cov}_{\\pi_i}(g)
          \\text{ for } mode=1].

Work is split over (replication, chunk of :data:`CHUNK` samples); per-chunk results are
added in chunk order, so results do not depend on the number of threads. The tests
hold these kernels to 1e-10 relative of the NumPy reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_kernels import _logsumexp_row

__all__ = ["ACTIVATION_CODES", "gate_code", "gate_log_weights", "gate_derivatives"]

CHUNK = 1024
#: activation name -> kernel code (the identity is 0)
ACTIVATION_CODES = {"tanh": 1, "sigmoid": 2, "gelu": 3}
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def gate_code(gate):
    """The kernel's activation code of ``gate``, or ``None`` (a user callable: NumPy path)."""
    act = getattr(gate, "activation", None)
    if act is None:
        return 0
    return ACTIVATION_CODES.get(act) if isinstance(act, str) else None


@njit(cache=True, error_model="numpy", inline="always")
def _act(code, z):
    """sigma, sigma', sigma'' of the activation ``code`` at ``z``."""
    if code == 0:
        return z, 1.0, 0.0
    if code == 1:
        t = math.tanh(z)
        d1 = 1.0 - t * t
        return t, d1, -2.0 * t * d1
    if code == 2:
        if z >= 0.0:
            e = 1.0 / (1.0 + math.exp(-z))
        else:
            ez = math.exp(z)
            e = ez / (1.0 + ez)
        d1 = e * (1.0 - e)
        return e, d1, d1 * (1.0 - 2.0 * e)
    cdf = 0.5 * math.erfc(-z * _INV_SQRT_2)
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    return z * cdf, cdf + z * pdf, pdf * (2.0 - z * z)


@njit(cache=True, error_model="numpy", inline="always")
def _logits(X, r, i, coef, intercept, tau, a, code, k_active, sel_logit, h, h1, h2, s, sel):
    """Fill h, h1, h2, s and the selection ``sel`` of sample i; return log sum exp(s)."""
    k, d = coef.shape[1], coef.shape[2]
    for j in range(k):
        z = 0.0
        for c in range(d):
            z += coef[a, j, c] * X[r, i, c]
        hj, d1, d2 = _act(code, z)
        h[j], h1[j], h2[j] = hj, d1, d2
        s[j] = hj / tau + intercept[a, j]
        sel[j] = s[j] if sel_logit else z  # the selection score
    if k_active < k:
        for j in range(k):
            beaten = 0
            for l in range(k):
                if l < j and sel[l] >= sel[j]:
                    beaten += 1
                elif l > j and sel[l] > sel[j]:
                    beaten += 1
            if beaten >= k_active:
                s[j] = -np.inf
    return _logsumexp_row(s, sel, k)[0]


@njit(cache=True, error_model="numpy", inline="always")
def _add_logit_second(hess, X, r, i, j, om, h, h1, h2, ta, code, learns_tau, t):
    """Add ``om`` times the Hessian of the logit :math:`s_{ij}` (lower triangle): the
    activation's curvature in the slope block of j and, with a learned temperature at
    index ``t``, its cross terms and :math:`\\partial^2_{\\log\\tau} s = \\sigma/\\tau`."""
    d = X.shape[2]
    k = h.shape[0]
    if j < k - 1 and code != 0:
        f = om * h2[j] / ta
        for q in range(d):
            for u in range(q + 1):
                hess[j * d + q, j * d + u] += f * X[r, i, q] * X[r, i, u]
    if learns_tau:
        if j < k - 1:
            f = -om * h1[j] / ta
            for q in range(d):
                hess[t, j * d + q] += f * X[r, i, q]
        hess[t, t] += om * h[j] / ta


@njit(cache=True, error_model="numpy", inline="always")
def _to_posterior(u, scratch, k):
    """Turn the log joint ``u[:k]`` into the posterior in place; return its log-sum-exp."""
    ll = _logsumexp_row(u, scratch, k)[0]
    for j in range(k):
        u[j] = math.exp(u[j] - ll)
    return ll


@njit(cache=True, error_model="numpy", parallel=True)
def _log_weights_k(X, rows, coef, intercept, tau, code, k_active, sel_logit, out):
    A = rows.shape[0]
    n = X.shape[1]
    k = coef.shape[1]
    nch = (n + CHUNK - 1) // CHUNK
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        h = np.empty(k)
        h1 = np.empty(k)
        h2 = np.empty(k)
        s = np.empty(k)
        sel = np.empty(k)
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            lse = _logits(X, r, i, coef, intercept, tau[a], a, code, k_active, sel_logit,
                          h, h1, h2, s, sel)
            for j in range(k):
                out[a, i, j] = s[j] - lse


@njit(cache=True, error_model="numpy", parallel=True)
def _derivs_k(X, rows, tgt, trows, coef, intercept, tau, code, k_active, sel_logit, mode,
              fits_int, learns_tau, want_h, pval, pgrad, phess):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    p = pgrad.shape[2]
    nch = pval.shape[1]
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        rr = trows[a]
        ta = tau[a]
        h = np.empty(k)
        h1 = np.empty(k)
        h2 = np.empty(k)
        s = np.empty(k)
        sel = np.empty(k)
        w = np.empty(k)
        tw = np.empty(k)
        G = np.zeros((k, p))
        gw = np.empty(p)
        gt = np.empty(p)
        val = 0.0
        grad = np.zeros(p)
        hess = np.zeros((p, p))
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            lse = _logits(X, r, i, coef, intercept, ta, a, code, k_active, sel_logit,
                          h, h1, h2, s, sel)
            for j in range(k):
                w[j] = math.exp(s[j] - lse)
            mass = 0.0
            if mode == 0:
                for j in range(k):
                    tw[j] = tgt[rr, i, j]
                    mass += tw[j]
                    if tw[j] > 0.0:
                        val += tw[j] * (s[j] - lse)
            else:
                for j in range(k):
                    tw[j] = s[j] - lse + tgt[rr, i, j]
                val += _to_posterior(tw, sel, k)
                mass = 1.0
            # per-expert logit gradients g_j (zero off the selection)
            for j in range(k):
                for q in range(p):
                    G[j, q] = 0.0
                if s[j] == -np.inf:
                    continue
                if j < k - 1:
                    cj = h1[j] / ta
                    for cc in range(d):
                        G[j, j * d + cc] = cj * X[r, i, cc]
                    if fits_int:
                        G[j, (k - 1) * d + j] = 1.0
                if learns_tau:
                    G[j, p - 1] = -h[j] / ta
            for q in range(p):
                acc_w = 0.0
                acc_t = 0.0
                for j in range(k):
                    acc_w += w[j] * G[j, q]
                    acc_t += tw[j] * G[j, q]
                gw[q] = acc_w
                gt[q] = acc_t
                grad[q] += acc_t - mass * acc_w
            if not want_h:
                continue
            for j in range(k):
                if s[j] == -np.inf:
                    continue
                cw = mass * w[j]
                ct = tw[j] if mode == 1 else 0.0
                for q in range(p):
                    dwq = G[j, q] - gw[q]
                    dtq = G[j, q] - gt[q]
                    for u in range(q + 1):
                        hess[q, u] += ct * dtq * (G[j, u] - gt[u]) - cw * dwq * (G[j, u] - gw[u])
                _add_logit_second(hess, X, r, i, j, tw[j] - mass * w[j], h, h1, h2, ta, code,
                                  learns_tau, p - 1)
        pval[a, c] = val
        for q in range(p):
            pgrad[a, c, q] = grad[q]
            for u in range(q + 1):
                phess[a, c, q, u] = hess[q, u]
                phess[a, c, u, q] = hess[q, u]


def _common(gate, coef):
    code = gate_code(gate)
    k = coef.shape[1]
    k_active = int(getattr(gate, "k_active", k))
    sel_logit = getattr(gate, "selection", "slope") == "logit"
    return code, k_active, sel_logit


def _f(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def gate_log_weights(gate, X, rows, coef, intercept, tau):
    """Log gate weights (A, n, k) of the replications ``rows`` of ``X`` (R, n, d).

    ``coef`` (A, k, d), ``intercept`` (A, k), ``tau`` (A,) are aligned with ``rows``.
    """
    code, k_active, sel_logit = _common(gate, coef)
    out = np.empty((rows.size, X.shape[1], coef.shape[1]))
    _log_weights_k(X, np.asarray(rows, dtype=np.int64), _f(coef), _f(intercept), _f(tau),
                   code, k_active, sel_logit, out)
    return out


def gate_derivatives(gate, X, rows, target, target_rows, coef, intercept, tau, *,
                     observed, order=2):
    """Value (A,), gradient (A, p) and Hessian (A, p, p) of Q or of the gate likelihood.

    ``target``: responsibilities (``observed=False``) or expert log-densities
    (``observed=True``), of shape (B, n, k), read at ``target_rows`` (A,).
    """
    code, k_active, sel_logit = _common(gate, coef)
    A, n = rows.size, X.shape[1]
    k, d = coef.shape[1], coef.shape[2]
    fits_int = bool(gate.fits_intercept)
    learns_tau = bool(gate.learns_temperature)
    p = (k - 1) * d + (k - 1) * fits_int + learns_tau
    nch = (n + CHUNK - 1) // CHUNK
    pval = np.zeros((A, nch))
    pgrad = np.zeros((A, nch, p))
    phess = np.zeros((A, nch, p, p))
    _derivs_k(X, np.asarray(rows, dtype=np.int64), _f(target),
              np.asarray(target_rows, dtype=np.int64), _f(coef), _f(intercept), _f(tau), code,
              k_active, sel_logit, int(observed), fits_int, learns_tau, order >= 2,
              pval, pgrad, phess)
    value = pval.sum(axis=1)
    return (np.where(np.isnan(value), -np.inf, value), pgrad.sum(axis=1),
            phess.sum(axis=1) if order >= 2 else None)
