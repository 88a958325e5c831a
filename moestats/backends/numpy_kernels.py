"""NumPy reference kernels of the hot loops."""

from __future__ import annotations

import numpy as np

__all__ = ["row_logsumexp", "topk_line_gains"]

#: largest number of floats in one block of :func:`topk_line_gains`
_BLOCK = 2_000_000


def row_logsumexp(a):
    """Row-wise :math:`\\log\\sum_j e^{a_{ij}}` (last axis), stable for huge and ``-inf`` entries.

    .. math:: \\mathrm{lse}(a_i) = m_i + \\log\\sum_j e^{a_{ij} - m_i}, \\quad m_i = \\max_j a_{ij}

    (:math:`m_i` replaced by 0 when it is not finite, so an all ``-inf`` row gives
    ``-inf`` and no NaN). ``a`` has shape (n, k) or, with a leading replication
    axis, (R, n, k) (any leading axes); the result drops the last axis. Same values
    as ``scipy.special.logsumexp(a, axis=-1)``, which this replaces in the inner
    loops: on a (20000, 3) array it takes 0.23 ms against scipy's 4.6 ms (its
    array-API dispatch and its reduction over the short inner axis dominate).
    """
    a = np.asarray(a, dtype=float)
    # a reduction over a short inner axis is slow in NumPy; loop over the k columns
    m = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        np.maximum(m, a[..., j], out=m)
    m[~np.isfinite(m)] = 0.0
    e = np.exp(a - m[..., None])
    total = e[..., 0].copy()
    for j in range(1, a.shape[-1]):
        total += e[..., j]
    with np.errstate(divide="ignore"):
        return np.log(total) + m


def topk_line_gains(ts, f, c, m, lower, num_top, den_top, s_ej, s, value_out):
    """Key gains of the candidate steps ``ts`` over t = 0 of a top-K selection line.

    The NumPy reference of :func:`moestats.backends.numba_selection.topk_line_gains`
    (the top-K boundary search, :mod:`moestats.solvers.selection_search`); call it
    under ``np.errstate(over="ignore", invalid="ignore")``: infinities are expected.

    The arguments and the result are those of
    :func:`moestats.backends.numba_selection.topk_line_gains`, whose docstring gives
    the formula: per sample, :math:`v_i(t)` is the density with j selected or with the
    K-th other expert, whichever ranks higher at step t; the gain is summed per sample
    as :math:`\\operatorname{fin} v_i(t) - \\operatorname{fin} v_i(0)`.

    Examples
    --------
    >>> one = np.ones(3)
    >>> gains = topk_line_gains(np.array([0.0, 5.0]), one, np.zeros(3), one,
    ...                         np.zeros(3, dtype=bool), np.zeros(3), np.zeros(3),
    ...                         np.zeros(3), np.zeros(3), np.zeros(3))
    >>> gains[0].tolist()
    [0.0, 0.0, 0.0]
    """
    def values(t):
        step = t[:, None] * f
        in_j = (c + step > m) | ((c + step == m) & lower)
        value_in = np.logaddexp(num_top, s_ej + step) - np.logaddexp(den_top, s + step)
        return np.where(in_j, value_in, value_out)

    def finite(v):
        return np.where(np.isfinite(v), v, 0.0)

    v0 = values(np.zeros(1))
    gains = np.empty((ts.size, 3))
    block = max(1, _BLOCK // max(1, f.size))
    for b in range(0, ts.size, block):
        v = values(ts[b:b + block])
        gains[b:b + block, 0] = np.sum(v == np.inf, axis=1) - np.sum(v0 == np.inf)
        gains[b:b + block, 1] = np.sum(v0 == -np.inf) - np.sum(v == -np.inf, axis=1)
        gains[b:b + block, 2] = np.sum(finite(v) - finite(v0), axis=1)
    return gains
