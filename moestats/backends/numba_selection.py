r"""Compiled candidate evaluation of the top-K selection line search (K >= 2).

Along a line :math:`\beta_{1j} \to \beta_{1j} + t\,e` only expert j's score moves, so
sample i's support is its top K - 1 other experts plus either j or the K-th other expert
:math:`o_i`, whichever ranks higher (:mod:`moestats.solvers.selection_search`). With
:math:`N_i = \log\sum_{l \in T_i} w_{il}\phi_{il}` and :math:`D_i = \log\sum_{l\in T_i} w_{il}`
over those top K - 1 (unnormalised log weights: the logits :math:`s_{il}`), sample i's
log-density at step t is

.. math::

    v_i(t) = \begin{cases}
      \operatorname{logaddexp}(N_i, s_{ij} + \ell_{ij} + t f_i)
        - \operatorname{logaddexp}(D_i, s_{ij} + t f_i) & j \text{ selected at } t,\\
      v_i^{\text{out}} & \text{otherwise,}
    \end{cases}

and j is selected when :math:`c_i + t f_i > m_i` (c the selection score of j, m that
of :math:`o_i`), or at a tie when j has the lower index. :func:`topk_line_gains` returns,
for every candidate step, the gain of the lexicographic key of
:math:`\sum_i v_i(t)` over :math:`t = 0`: the change in the number of samples of
density :math:`+\infty`, minus the change in the number of density 0, and
:math:`\sum_i [\operatorname{fin} v_i(t) - \operatorname{fin} v_i(0)]`
(:math:`\operatorname{fin} x = x` if finite, else 0), summed per sample as a
difference so that unchanged samples add exactly 0.

The candidates run in parallel; each one sums its samples in order, so the result does
not depend on the number of threads. The NumPy reference is
:func:`moestats.backends.numpy_kernels.topk_line_gains`; the two agree to rounding
(the exponential and logarithm differ by an ulp or so, and NumPy sums pairwise).

Examples
--------
>>> import numpy as np
>>> from moestats.backends.numba_selection import topk_line_gains
>>> one = np.ones(3)
>>> gains = topk_line_gains(np.array([0.0, 5.0]), one, np.zeros(3), one,
...                         np.zeros(3, dtype=np.bool_), np.log(one), np.zeros(3),
...                         np.zeros(3), np.zeros(3), np.zeros(3))
>>> gains[0].tolist()
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_vmath import _vexp, _vlog

__all__ = ["topk_line_gains"]

_LOG2 = math.log(2.0)


@njit(cache=True, error_model="numpy", inline="always")
def _logaddexp(x, y):
    """:math:`\\log(e^x + e^y) = \\max(x, y) + \\log(1 + e^{-|x - y|})`, branch-free
    (vectorises): equal arguments (also infinities of one sign) give :math:`x + \\log 2`,
    as ``np.logaddexp``; within 3e-16 of it otherwise (``log`` of :math:`1 + e^{-|x-y|}`
    in [1, 2] rather than ``log1p``)."""
    big = x if x > y else y
    r = big + _vlog(1.0 + _vexp(-abs(x - y)))
    r = r if x == x and y == y else x + y  # NaN in, NaN out
    return x + _LOG2 if x == y else r


@njit(cache=True, error_model="numpy", inline="always")
def _values(t, f, c, m, lower, num_top, den_top, s_ej, s, value_out, v):
    """:math:`v_i(t)` of every sample, into ``v`` (one vectorised loop)."""
    for i in range(f.shape[0]):
        step = t * f[i]
        z = c[i] + step
        inside = _logaddexp(num_top[i], s_ej[i] + step) - _logaddexp(den_top[i], s[i] + step)
        v[i] = inside if z > m[i] or (z == m[i] and lower[i]) else value_out[i]


@njit(cache=True, error_model="numpy", parallel=True)
def topk_line_gains(ts, f, c, m, lower, num_top, den_top, s_ej, s, value_out):
    """Key gains of the candidate steps ``ts`` over t = 0 (see the module docstring).

    Parameters
    ----------
    ts : ndarray of shape (q,)
        Candidate steps.
    f, c, m : ndarray of shape (n,)
        Feature along the line, selection score of j, K-th other selection score.
    lower : bool ndarray of shape (n,)
        Whether j has a lower index than the K-th other expert (wins ties).
    num_top, den_top, s_ej, s, value_out : ndarray of shape (n,)
        :math:`N_i`, :math:`D_i`, :math:`s_{ij} + \\ell_{ij}`, :math:`s_{ij}` and
        :math:`v_i^{\\text{out}}`.

    Returns
    -------
    ndarray of shape (q, 3)
        Per candidate: change in the count of :math:`+\\infty` densities, minus the
        change in the count of zero densities, change in the finite part.
    """
    n, q = f.shape[0], ts.shape[0]
    base = np.empty(n)
    _values(0.0, f, c, m, lower, num_top, den_top, s_ej, s, value_out, base)
    out = np.zeros((q, 3))
    for a in prange(q):
        vt = np.empty(n)
        _values(ts[a], f, c, m, lower, num_top, den_top, s_ej, s, value_out, vt)
        up = 0
        down = 0
        fin = 0.0
        for i in range(n):
            v = vt[i]
            v0 = base[i]
            if v == v0:
                continue
            up += (v == np.inf) - (v0 == np.inf)
            down += (v == -np.inf) - (v0 == -np.inf)
            fin += (v if math.isfinite(v) else 0.0) - (v0 if math.isfinite(v0) else 0.0)
        out[a, 0] = up
        out[a, 1] = -down
        out[a, 2] = fin
    return out
