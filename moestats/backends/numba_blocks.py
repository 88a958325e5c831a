"""Blocked (SIMD-friendly) building blocks of the fused Numba kernels.

The fused kernels (:mod:`.numba_softmax`, :mod:`.numba_fused_gates`) work on blocks
of ``_B`` samples laid out expert- or feature-major (``s[j, i]``, ``xt[p, i]``), so
that every loop runs over contiguous samples and is vectorised by LLVM (``exp`` and
``log`` included: :mod:`.numba_vmath`). Blocks are padded to a multiple of ``_L``
with zero responsibilities and covariates, which add exact zeros. Sums over the
samples of a block are plain loops with fastmath "reassoc" (:func:`_dot`,
:func:`_sum`), which LLVM vectorises with partial sums; the order it picks is fixed
in the compiled code and depends only on the block length, so the per-chunk sums,
added in block order, are independent of the thread count.

Work is split over (replication, chunk of ``CHUNK`` samples) pairs; per-chunk
partial sums are added in chunk order by the Python wrappers.

Examples
--------
>>> import numpy as np
>>> from moestats.backends.numba_blocks import _dot
>>> float(_dot(np.arange(8.0), np.ones(8), 8))
28.0
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .numba_vmath import _vexp, _vlog

#: samples per unit of parallel work; fixed, so sums do not depend on the thread count
CHUNK = 1024
_LOG_2PI = math.log(2.0 * math.pi)
#: samples per block, and the vector width blocks are padded to
_B = 256
_L = 8


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _dot(a, b, nbp):
    """sum_i a[i] b[i], i < nbp."""
    s = 0.0
    for i in range(nbp):
        s += a[i] * b[i]
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _sum(a, nbp):
    """sum_i a[i], i < nbp."""
    s = 0.0
    for i in range(nbp):
        s += a[i]
    return s


@njit(cache=True, error_model="numpy", inline="always")
def _load_x(X, r, i0, nb, nbp, d, xt):
    """xt[p, i] = X[r, i0 + i, p] (p < d), xt[d, i] = 1; zeros in the padding."""
    for i in range(nb):
        for p in range(d):
            xt[p, i] = X[r, i0 + i, p]
    for p in range(d):
        for i in range(nb, nbp):
            xt[p, i] = 0.0
    for i in range(nbp):
        xt[d, i] = 1.0 if i < nb else 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _linear(xt, coef, icpt, a, j, d, nbp, out):
    """out[i] = sum_p xt[p, i] coef[a, j, p] + icpt[a, j] (p ascending, as X @ coef.T + b)."""
    for i in range(nbp):
        out[i] = 0.0
    for p in range(d):
        cp = coef[a, j, p]
        for i in range(nbp):
            out[i] += xt[p, i] * cp
    b = icpt[a, j]
    for i in range(nbp):
        out[i] += b


@njit(cache=True, error_model="numpy", inline="always")
def _lse_block(v, e, m, tot, lse, k, nbp):
    """Row log-sum-exp of v[:, i] (k rows); leaves exp(v - max) in e and the sum in tot."""
    for i in range(nbp):
        m[i] = v[0, i]
    for j in range(1, k):
        for i in range(nbp):
            if v[j, i] > m[i]:
                m[i] = v[j, i]
    for i in range(nbp):
        if not math.isfinite(m[i]):
            m[i] = 0.0
    for j in range(k):
        for i in range(nbp):
            e[j, i] = _vexp(v[j, i] - m[i])
    for i in range(nbp):
        tot[i] = e[0, i]
    for j in range(1, k):
        for i in range(nbp):
            tot[i] += e[j, i]
    for i in range(nbp):
        lse[i] = _vlog(tot[i]) + m[i]


@njit(cache=True, error_model="numpy", inline="always")
def _posterior_block(xt, yb, lw, coef, intercept, var, c0, a, k, d, nb, nbp, mu, res, jn, e,
                     m, tot, lp, rb):
    """Experts and posterior of a block: residuals ``res[j, i] = y_i - x~_i^T theta_j``,
    the log joint ``lw + log phi``, its log-sum-exp ``lp`` and the posterior ``rb``
    (zero in the padding); ``c0[j] = -(log 2 pi + log nu_j) / 2``."""
    for j in range(k):
        _linear(xt, coef, intercept, a, j, d, nbp, mu)
        hj = 0.5 / var[a, j]
        for i in range(nbp):
            r = yb[i] - mu[i]
            res[j, i] = r
            jn[j, i] = lw[j, i] + (c0[j] - r * r * hj)
    _lse_block(jn, e, m, tot, lp, k, nbp)
    for i in range(nbp):
        tot[i] = 1.0 / tot[i] if i < nb else 0.0
    for j in range(k):
        for i in range(nbp):
            rb[j, i] = e[j, i] * tot[i]


@njit(cache=True, error_model="numpy", inline="always")
def _stats_block(xt, xx, yb, rb, ry, k, q, nbp, acc_m, acc_xx, acc_xy):
    """Accumulate a block's mass, sxx (upper triangle, packed) and sxy into the lanes."""
    u = 0
    for p in range(q):
        for v in range(p, q):
            for i in range(nbp):
                xx[u, i] = xt[p, i] * xt[v, i]
            u += 1
    nq = u
    for j in range(k):
        for i in range(nbp):
            ry[i] = rb[j, i] * yb[i]
        acc_m[j] += _sum(rb[j], nbp)
        for u in range(nq):
            acc_xx[j, u] += _dot(rb[j], xx[u], nbp)
        for p in range(q):
            acc_xy[j, p] += _dot(ry, xt[p], nbp)


@njit(cache=True, error_model="numpy", inline="always")
def _write_stats(acc_m, acc_xx, acc_xy, k, q, a, c, pmass, psxx, psxy):
    for j in range(k):
        pmass[a, c, j] = acc_m[j]
        u = 0
        for p in range(q):
            for v in range(p, q):
                psxx[a, c, j, p, v] = acc_xx[j, u]
                psxx[a, c, j, v, p] = acc_xx[j, u]
                u += 1
            psxy[a, c, j, p] = acc_xy[j, p]


# ------------------------------------------- wrappers' helpers
def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _batch(X, y=None):
    """Make (R, n, d) / (R, n) float64 C arrays; report whether the input was 2-D."""
    X = _f64(X)
    single = X.ndim == 2
    if single:
        X = X[None]
    if X.ndim != 3:
        raise ValueError(f"X must have shape (n, d) or (R, n, d), got {X.shape}")
    if y is None:
        return X, None, single
    y = _f64(y)
    if single:
        y = y[None]
    if y.shape != X.shape[:2]:
        raise ValueError(f"y has shape {y.shape}, expected {X.shape[:2]}")
    return X, y, single


def _params(single, *arrays):
    out = []
    for a in arrays:
        a = _f64(a)
        out.append(a[None] if single else a)
    return out


def _all_rows(R):
    return np.arange(R, dtype=np.int64)


def _n_chunks(n):
    return (n + CHUNK - 1) // CHUNK


def _squeeze(single, *arrays):
    if single:
        arrays = tuple(a[0] for a in arrays)
    return arrays[0] if len(arrays) == 1 else arrays
