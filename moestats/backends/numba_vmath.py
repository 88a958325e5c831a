r"""Branch-free ``exp`` and ``log`` for Numba kernels that LLVM can vectorise.

libm's ``exp``/``log`` are calls, which keep LLVM from vectorising the loops around
them, and Numba's SVML path needs an llvmlite built with it (the PyPI wheels are
not). :func:`_vexp` and :func:`_vlog` are fdlibm's algorithms (``e_exp.c``,
``e_log.c``: the same argument reductions and polynomials, < 1 ulp) with the branches
replaced by selects, so that they inline and vectorise:

.. math::

    e^x = 2^n e^r,\quad x = n\ln 2 + r,\ |r| \le \tfrac{\ln 2}{2};\qquad
    \log x = k\ln 2 + \log(1 + f),\ \tfrac{\sqrt2}{2} \le 1 + f < \sqrt 2.

The special cases (+-inf, nan, 0, subnormals, overflow, underflow) give what libm
gives (``tests/test_backends.py`` checks them).

Examples
--------
>>> from numba import njit
>>> from moestats.backends.numba_vmath import _vexp
>>> f = njit(lambda x: _vexp(x))
>>> abs(f(1.0) - 2.718281828459045) < 1e-15
True
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic



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
