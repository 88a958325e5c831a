"""Sample weights of a fit: validation, and the samples that carry weight.

With weights :math:`c_i \\ge 0` the estimators maximise the weighted log-likelihood

.. math::

    \\ell_c(\\theta) = \\sum_{i=1}^n c_i \\log p(y_i \\mid x_i; \\theta),

so an integer :math:`c_i` counts sample :math:`i` that many times (frequency weights)
and a sample of weight 0 does not enter.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import _check_sample_weight

__all__ = ["check_sample_weight", "positive_weight_rows"]


def check_sample_weight(sample_weight, X):
    """Validated weights, shape (n_samples,): finite, non-negative, not all zero.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,) or None
    X : ndarray (n_samples, n_features)

    Returns
    -------
    ndarray (n_samples,) or None
        None when ``sample_weight`` is None.

    Raises
    ------
    ValueError
        Naming the problem: a length that is not ``n_samples``, a negative, NaN or
        infinite weight (with its position and value), or weights summing to zero.

    Examples
    --------
    >>> import numpy as np
    >>> check_sample_weight([1, 2, 0], np.zeros((3, 1)))
    array([1., 2., 0.])
    >>> check_sample_weight([1, -2, 0], np.zeros((3, 1)))
    Traceback (most recent call last):
    ...
    ValueError: sample_weight must be non-negative: sample_weight[1] = -2.0
    """
    if sample_weight is None:
        return None
    c = np.asarray(sample_weight)
    if c.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got an array of dtype {c.dtype}")
    c = c.astype(float, copy=False)
    if c.ndim != 1 or c.shape[0] != X.shape[0]:
        raise ValueError(f"sample_weight must have shape ({X.shape[0]},) (one weight per "
                         f"sample), got shape {c.shape}")
    bad = np.flatnonzero(~np.isfinite(c))
    if bad.size:
        raise ValueError(f"sample_weight must be finite: sample_weight[{bad[0]}] = {c[bad[0]]}")
    neg = np.flatnonzero(c < 0)
    if neg.size:
        raise ValueError(f"sample_weight must be non-negative: "
                         f"sample_weight[{neg[0]}] = {c[neg[0]]}")
    if not c.sum() > 0:
        raise ValueError("sample_weight sums to zero: no sample carries weight")
    return _check_sample_weight(c, X, dtype=np.float64)


def positive_weight_rows(X, y, sample_weight, gate=None):
    """``(X, y, c)`` restricted to the samples of positive weight (``c`` None: unweighted).

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,)
    sample_weight : array-like (n,) or None
    gate : Gate, optional
        The fit's gate. The top-K gate's boundary searches are unweighted: with it,
        integer weights are fitted as repeated rows (exactly the same likelihood; ``c``
        then comes back None) and other weights are refused.

    Examples
    --------
    >>> import numpy as np
    >>> X, y, c = positive_weight_rows(np.arange(3.0)[:, None], np.ones(3), [2, 0, 1])
    >>> X.ravel().tolist(), c.tolist()
    ([0.0, 2.0], [2.0, 1.0])
    """
    c = check_sample_weight(sample_weight, X)
    if c is None:
        return X, y, None
    from .gates import TopKGate
    if isinstance(gate, TopKGate):
        if not np.all(c == np.round(c)):
            frac = np.flatnonzero(c != np.round(c))[0]
            raise ValueError(f"the top-K gate takes integer sample weights only (fitted as "
                             f"repeated rows; its selection-boundary searches are "
                             f"unweighted): sample_weight[{frac}] = {c[frac]}")
        counts = c.astype(np.int64)
        return np.repeat(X, counts, axis=0), np.repeat(y, counts), None
    keep = c > 0
    if not keep.all():
        X, y, c = X[keep], y[keep], c[keep]
    return X, y, c
