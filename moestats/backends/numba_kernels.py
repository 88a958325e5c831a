"""Numba kernels of the hot loops, with an optional leading replication axis.

The three hot spots of ``the backends' design (:mod:`moestats.backends`)`` (expert log-density, row-wise
log-normalisation into responsibilities and per-sample log-likelihood, weighted
sufficient statistics), and the weighted residual sums of the variance update. The
fused kernels of the gates live beside it: :mod:`.numba_softmax` (softmax E-step with statistics and
gate derivatives in one pass), :mod:`.numba_fused_gates` (the same for the
temperature and activation gates), :mod:`.numba_gates` (gate log weights and
derivatives of every family); their building blocks are :mod:`.numba_blocks` and
:mod:`.numba_vmath`.

Conventions
-----------
- ``X`` has shape (R, n, d) or (n, d); ``y`` (R, n) or (n,); 2-D inputs are a
  batch of one (the outputs lose the leading axis again).
- Every kernel is ``@njit(cache=True, parallel=True, error_model="numpy",
  fastmath={"contract"})``: NumPy's error model (a division by zero gives inf/nan
  as in NumPy, and, with no ZeroDivisionError branch, loops with divisions
  vectorise) and fused multiply-adds, no other fast-math flag (inf/nan, -inf log
  weights and signed zeros behave as without fastmath). The sums over samples inside
  a block (:func:`_dot`, :func:`_sum`) also allow reassociation, so that LLVM
  vectorises them. The ``exp``/``log`` of the softmax kernels are branch-free ports
  of fdlibm's (:func:`_vexp`, :func:`_vlog`, < 1 ulp, vectorised with the loops;
  Numba's SVML path needs an llvmlite built with it, which the PyPI wheels are not).
  So the arithmetic is the reference's up to the order of the sums, the rounding
  of fused multiply-adds and the last bit of ``exp``/``log``: the tests hold the
  kernels to 1e-10 relative of the NumPy reference.
- Work is split over (replication, chunk of ``CHUNK`` samples) pairs. Reductions over
  samples are written per chunk and added in chunk order afterwards, so results are
  bit-identical whatever the number of threads (``numba.set_num_threads``).
- Nothing is compiled when this module is imported (no eager signatures), and
  ``moestats`` does not import it: the first call compiles, or loads the on-disk
  cache (``cache=True``). Inputs are made C-contiguous float64 so that each kernel
  has a single specialisation.
- The private ``_*_k`` kernels take ``rows`` (int64): the replications of ``X``/``y``
  to work on, so that a solver can drop converged replications without copying the
  data. Per-replication parameters and outputs are aligned with ``rows``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .numba_blocks import (_B, _L, CHUNK, _LOG_2PI, _all_rows, _batch, _f64, _load_x,
                           _n_chunks, _params, _squeeze, _stats_block, _write_stats)
from .numba_softmax import softmax_e_step, softmax_q

__all__ = [
    "CHUNK", "expert_log_density", "row_logsumexp", "normalize_log_joint", "e_step",
    "softmax_e_step", "weighted_statistics", "weighted_rss", "softmax_q",
    "set_num_threads", "get_num_threads",
]


# --------------------------------------------------------------------- kernels
# Per-sample pieces, shared by the kernels (inlined by LLVM).
@njit(cache=True, error_model="numpy", inline="always")
def _logsumexp_row(a, e, k):
    """log-sum-exp of a[:k]; leaves exp(a_j - m) in e and returns (lse, sum of e)."""
    m = a[0]
    for j in range(1, k):
        if a[j] > m:
            m = a[j]
    if not math.isfinite(m):
        m = 0.0
    total = 0.0
    for j in range(k):
        e[j] = math.exp(a[j] - m)
        total += e[j]
    return math.log(total) + m, total


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _expert_log_density_k(X, y, rows, coef, intercept, var, out):
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    nch = (n + CHUNK - 1) // CHUNK
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        c0 = np.empty(k)
        for j in range(k):
            c0[j] = -0.5 * (_LOG_2PI + math.log(var[a, j]))
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for j in range(k):
                mu = 0.0
                for p in range(d):
                    mu += X[r, i, p] * coef[a, j, p]
                res = y[r, i] - (mu + intercept[a, j])
                out[a, i, j] = c0[j] - 0.5 * res * res / var[a, j]


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _row_logsumexp_k(a, out):
    R, n, k = a.shape
    for t in prange(R * n):
        r = t // n
        i = t - r * n
        row = np.empty(k)
        e = np.empty(k)
        for j in range(k):
            row[j] = a[r, i, j]
        out[r, i] = _logsumexp_row(row, e, k)[0]


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _normalize_k(log_w, log_expert, resp, log_p):
    """resp, log_p from the log joint ``log_w + log_expert`` (one pass)."""
    R, n, k = log_w.shape
    nch = (n + CHUNK - 1) // CHUNK
    for t in prange(R * nch):
        r = t // nch
        c = t - r * nch
        joint = np.empty(k)
        e = np.empty(k)
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for j in range(k):
                joint[j] = log_w[r, i, j] + log_expert[r, i, j]
            lp, total = _logsumexp_row(joint, e, k)
            log_p[r, i] = lp
            for j in range(k):
                resp[r, i, j] = e[j] / total


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _e_step_k(X, y, rows, log_w, coef, intercept, var, resp, log_p):
    """Expert log-density, log joint, row log-sum-exp, responsibilities: one pass.

    ``log_w`` (gate log weights) is aligned with ``rows``.
    """
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = coef.shape[1]
    nch = (n + CHUNK - 1) // CHUNK
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        c0 = np.empty(k)
        joint = np.empty(k)
        e = np.empty(k)
        for j in range(k):
            c0[j] = -0.5 * (_LOG_2PI + math.log(var[a, j]))
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for j in range(k):
                mu = 0.0
                for p in range(d):
                    mu += X[r, i, p] * coef[a, j, p]
                res = y[r, i] - (mu + intercept[a, j])
                joint[j] = log_w[a, i, j] + (c0[j] - 0.5 * res * res / var[a, j])
            lp, total = _logsumexp_row(joint, e, k)
            log_p[a, i] = lp
            for j in range(k):
                resp[a, i, j] = e[j] / total


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _rss_k(X, y, rows, resp, theta, nch, prss):
    """Per-chunk :math:`\\sum_i r_{ij}(y_i - \\tilde x_i^\\top\\theta_j)^2`."""
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = resp.shape[2]
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        acc = np.zeros(k)
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for j in range(k):
                mu = 0.0
                for p in range(d):
                    mu += X[r, i, p] * theta[a, j, p]
                res = y[r, i] - (mu + theta[a, j, d])
                acc[j] += resp[a, i, j] * (res * res)
        for j in range(k):
            prss[a, c, j] = acc[j]


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"contract"})
def _statistics_k(X, y, rows, resp, nch, pmass, psxx, psxy):
    """Per-chunk mass, sxx, sxy; ``resp`` aligned with ``rows``."""
    A = rows.shape[0]
    n, d = X.shape[1], X.shape[2]
    k = resp.shape[2]
    q = d + 1
    nq = q * (q + 1) // 2
    for t in prange(A * nch):
        a = t // nch
        c = t - a * nch
        r = rows[a]
        xt = np.empty((q, _B))
        xx = np.empty((nq, _B))
        yb = np.empty(_B)
        rb = np.empty((k, _B))
        ry = np.empty(_B)
        acc_m = np.zeros(k)
        acc_xx = np.zeros((k, nq))
        acc_xy = np.zeros((k, q))
        i_end = min(n, (c + 1) * CHUNK)
        for i0 in range(c * CHUNK, i_end, _B):
            nb = min(_B, i_end - i0)
            nbp = (nb + _L - 1) // _L * _L
            _load_x(X, r, i0, nb, nbp, d, xt)
            for i in range(nbp):
                yb[i] = y[r, i0 + i] if i < nb else 0.0
            for i in range(nbp):
                for j in range(k):
                    rb[j, i] = resp[a, i0 + i, j] if i < nb else 0.0
            _stats_block(xt, xx, yb, rb, ry, k, q, nbp, acc_m, acc_xx, acc_xy)
        _write_stats(acc_m, acc_xx, acc_xy, k, q, a, c, pmass, psxx, psxy)


# -------------------------------------------------------------------- helpers
def set_num_threads(n: int) -> None:
    """Number of threads of the parallel kernels (results do not depend on it)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    """Current number of threads of the parallel kernels."""
    return numba.get_num_threads()


def expert_log_density(X, y, coef, intercept, var):
    """:math:`\\log\\mathcal N(y_i\\mid a_j^\\top x_i + b_j, \\nu_j)`, shape ([R,] n, k).

    ``coef`` ([R,] k, d), ``intercept`` and ``var`` ([R,] k).
    """
    X, y, single = _batch(X, y)
    coef, intercept, var = _params(single, coef, intercept, var)
    R, n, _ = X.shape
    out = np.empty((R, n, coef.shape[1]))
    _expert_log_density_k(X, y, _all_rows(R), coef, intercept, var, out)
    return _squeeze(single, out)


def row_logsumexp(a):
    """Row-wise :math:`\\log\\sum_j e^{a_{ij}}` over the last axis of a ([R,] n, k) array."""
    a = _f64(a)
    single = a.ndim == 2
    a3 = a[None] if single else a
    out = np.empty(a3.shape[:2])
    _row_logsumexp_k(a3, out)
    return _squeeze(single, out)


def normalize_log_joint(log_w, log_expert):
    """Responsibilities ([R,] n, k) and per-sample log-likelihood ([R,] n) of ``log_w + log_expert``."""
    log_w, log_expert = _f64(log_w), _f64(log_expert)
    single = log_w.ndim == 2
    if single:
        log_w, log_expert = log_w[None], log_expert[None]
    resp = np.empty(log_w.shape)
    log_p = np.empty(log_w.shape[:2])
    _normalize_k(log_w, log_expert, resp, log_p)
    return _squeeze(single, resp, log_p)


def e_step(X, y, log_w, coef, intercept, var):
    """Fused E-step from gate log weights: responsibilities and per-sample log-likelihood."""
    X, y, single = _batch(X, y)
    log_w, coef, intercept, var = _params(single, log_w, coef, intercept, var)
    R, n, _ = X.shape
    resp = np.empty((R, n, coef.shape[1]))
    log_p = np.empty((R, n))
    _e_step_k(X, y, _all_rows(R), log_w, coef, intercept, var, resp, log_p)
    return _squeeze(single, resp, log_p)


#: :func:`_rss_from_moments` is trusted while sum r e^2 at the old experts is at most
#: this many times the result (its rounding error is then below ~1e-14 relative)
_RSS_MOMENT_RATIO = 10.0


def _rss_from_moments(ree, rex, sxx, theta_old, theta):
    r"""Weighted residual sums at ``theta`` from moments taken at ``theta_old``.

    With :math:`e_{ij} = y_i - \tilde x_i^\top\theta^{old}_j` and :math:`\delta_j =
    \theta_j - \theta^{old}_j`: :math:`\sum_i r_{ij}(y_i - \tilde x_i^\top\theta_j)^2 =
    \sum_i r_{ij}e_{ij}^2 - 2\delta_j^\top\sum_i r_{ij}e_{ij}\tilde x_i +
    \delta_j^\top S^{xx}_j\delta_j`. For the weighted least-squares ``theta`` of the
    expert step the last two terms are at most the first one, so the cancellation is
    bounded by ``ree / rss``. Returns ``rss`` (A, k) and ``ok`` (A, k): where ``ok`` is
    False (ratio above :data:`_RSS_MOMENT_RATIO`, or a result that is not positive and
    finite) the value must be recomputed from the data.
    """
    # elementwise, in a fixed order: each replication's value does not depend on the others
    delta = theta - theta_old
    q = delta.shape[-1]
    lin = np.zeros(ree.shape)
    quad = np.zeros(ree.shape)
    for p in range(q):
        lin += delta[..., p] * rex[..., p]
        sp = np.zeros(ree.shape)
        for v in range(q):
            sp += sxx[..., p, v] * delta[..., v]
        quad += delta[..., p] * sp
    rss = ree - 2.0 * lin + quad
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(rss) & (rss > 0) & (ree <= _RSS_MOMENT_RATIO * rss)
    return rss, ok


def weighted_statistics(X, y, resp):
    """mass ([R,] k), sxx ([R,] k, d+1, d+1), sxy ([R,] k, d+1): as :func:`moestats.experts.weighted_statistics`."""
    X, y, single = _batch(X, y)
    (resp,) = _params(single, resp)
    out = _statistics(X, y, _all_rows(X.shape[0]), resp)
    return _squeeze(single, *out)


def _statistics(X, y, rows, resp):
    A, n, k = resp.shape
    q = X.shape[2] + 1
    nch = _n_chunks(n)
    pmass = np.empty((A, nch, k))
    psxx = np.empty((A, nch, k, q, q))
    psxy = np.empty((A, nch, k, q))
    _statistics_k(X, y, rows, resp, nch, pmass, psxx, psxy)
    return pmass.sum(axis=1), psxx.sum(axis=1), psxy.sum(axis=1)


def weighted_rss(X, y, resp, theta):
    """:math:`\\sum_i r_{ij}(y_i - \\tilde x_i^\\top\\theta_j)^2`, ([R,] k); ``theta`` ([R,] k, d+1)."""
    X, y, single = _batch(X, y)
    resp, theta = _params(single, resp, theta)
    out = _rss(X, y, _all_rows(X.shape[0]), resp, theta)
    return _squeeze(single, out)


def _rss(X, y, rows, resp, theta):
    A, n, k = resp.shape
    nch = _n_chunks(n)
    prss = np.empty((A, nch, k))
    _rss_k(X, y, rows, resp, theta, nch, prss)
    return prss.sum(axis=1)
