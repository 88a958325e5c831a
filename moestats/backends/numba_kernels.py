"""Numba kernels of the hot loops, with an optional leading replication axis.

The three hot spots of ``ARCHITECTURE.md`` (expert log-density, row-wise
log-normalisation into responsibilities and per-sample log-likelihood, weighted
sufficient statistics), plus what the batched EM of the softmax gate needs to stay
on compiled code: a fully fused softmax E-step, the weighted residual sums of the
variance update, and one pass giving the softmax gate objective
:math:`Q(\\beta) = \\sum_{ij} r_{ij}\\log w_{ij}`, its gradient and its Hessian.

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

import functools
import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = [
    "CHUNK", "expert_log_density", "row_logsumexp", "normalize_log_joint", "e_step",
    "softmax_e_step", "weighted_statistics", "weighted_rss", "softmax_q",
    "set_num_threads", "get_num_threads",
]

#: samples per unit of parallel work; fixed, so sums do not depend on the thread count
CHUNK = 1024
_LOG_2PI = math.log(2.0 * math.pi)


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


# ------------------------------------------------------ blocked (SIMD-friendly) pieces
# The softmax kernels work on blocks of ``_B`` samples laid out expert- or
# feature-major (``s[j, i]``, ``xt[p, i]``), so that every loop runs over contiguous
# samples and is vectorised by LLVM (``exp``/``log`` included: see _vexp/_vlog).
# Blocks are padded to a multiple of ``_L`` with zero responsibilities and
# covariates, which add exact zeros. Sums over the samples of a block are plain
# loops with fastmath "reassoc" (_dot, _sum), which LLVM vectorises with partial
# sums; the order it picks is fixed in the compiled code and depends only on the
# block length, so the per-chunk sums, added in block order, are still independent
# of the thread count.
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


# ------------------------------------------------ branch-free exp and log
# libm's exp/log are calls, which keep LLVM from vectorising the loops around them.
# These are fdlibm's algorithms (e_exp.c, e_log.c: same reductions and polynomials,
# < 1 ulp) with the branches replaced by selects, so they inline and vectorise; the
# special cases (+-inf, nan, 0, subnormals, overflow, underflow) give what libm gives.
@intrinsic
def _i2f(typingctx, v):
    """The float64 with the bits of the int64 ``v``."""
    if isinstance(v, types.Integer) and v.bitwidth == 64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(v), codegen


@intrinsic
def _f2i(typingctx, v):
    """The bits of the float64 ``v`` as an int64."""
    if isinstance(v, types.Float) and v.bitwidth == 64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(v), codegen


_LOG2E = 1.44269504088896338700e+00
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT rounds x to an integer


@njit(cache=True, error_model="numpy", inline="always")
def _vexp(x):
    """exp(x): x = n ln2 + r, |r| <= ln2 / 2; exp(r) by fdlibm's rational form; times
    2**n as two powers of two (exact, and right for subnormal results)."""
    xc = x if x > -1100.0 else -1100.0  # also NaN -> -1100 (fixed up at the end)
    xc = xc if xc < 710.0 else 710.0
    t = xc * _LOG2E + _SHIFT
    nf = t - _SHIFT
    n = _f2i(t) - _f2i(_SHIFT)
    hi = xc - nf * _LN2_HI
    lo = nf * _LN2_LO
    r = hi - lo
    z = r * r
    c = r - z * (_P1 + z * (_P2 + z * (_P3 + z * (_P4 + z * _P5))))
    yv = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    n1 = n >> 1
    n2 = n - n1
    out = yv * _i2f((n1 + 1023) << 52) * _i2f((n2 + 1023) << 52)
    return out if x == x else x


_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@njit(cache=True, error_model="numpy", inline="always")
def _vlog(x):
    """log(x) = k ln2 + log(1 + f), sqrt(2)/2 <= 1 + f < sqrt(2), as in fdlibm."""
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x  # 2**54
    bits = _f2i(xs)
    hx = bits >> 32
    k = ((hx >> 20) & 0x7ff) - 1023 - (54 if sub else 0)
    hx &= 0x000fffff
    i = (hx + 0x95f64) & 0x100000
    xn = _i2f(((hx | (i ^ 0x3ff00000)) << 32) | (bits & 0xffffffff))
    k += i >> 20
    f = xn - 1.0
    s = f / (2.0 + f)
    dk = float(k)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    R = t2 + t1
    hfsq = 0.5 * f * f
    ra = dk * _LN2_HI - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO)) - f)
    rb = dk * _LN2_HI - ((s * (f - R) - dk * _LN2_LO) - f)
    out = ra if ((hx - 0x6147a) | (0x6b851 - hx)) > 0 else rb
    if x > 0.0 and x < math.inf:
        return out
    if x == 0.0:
        return -math.inf
    return x if x == math.inf else math.nan  # NaN, -x


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
            for j in range(k):
                _linear(xt, coef, intercept, a, j, d, nbp, mu)
                hj = 0.5 / var[a, j]
                for i in range(nbp):
                    res = yb[i] - mu[i]
                    res_b[j, i] = res
                    jn[j, i] = lw[j, i] + (c0[j] - res * res * hj)
            _lse_block(jn, e, m, tot, lp, k, nbp)
            for i in range(nbp):
                tot[i] = 1.0 / tot[i]
            for j in range(k):
                for i in range(nbp):
                    rb[j, i] = e[j, i] * tot[i] if i < nb else 0.0
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


# -------------------------------------------------------------------- helpers
def set_num_threads(n: int) -> None:
    """Number of threads of the parallel kernels (results do not depend on it)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    """Current number of threads of the parallel kernels."""
    return numba.get_num_threads()


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


# ------------------------------------------------------------------ public API
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
