"""The predictive distribution of a mixture of experts at given inputs.

At an input :math:`x` the fitted model is the Gaussian mixture

.. math::

    p(y \\mid x) = \\sum_{j=1}^{k} w_j(x)\\,\\mathcal N(y \\mid \\mu_j(x), \\nu_j),
    \\qquad \\mu_j(x) = a_j^\\top x + b_j,

with mean and variance

.. math::

    m(x) = \\sum_j w_j(x)\\mu_j(x), \\qquad
    s^2(x) = \\sum_j w_j(x)\\bigl(\\nu_j + \\mu_j(x)^2\\bigr) - m(x)^2,

cumulative distribution function
:math:`F(y \\mid x) = \\sum_j w_j(x)\\,\\Phi\\bigl((y - \\mu_j(x))/\\sqrt{\\nu_j}\\bigr)` and
posterior membership (responsibility) :math:`\\pi_j(x, y) = w_j(x)\\mathcal N(y\\mid
\\mu_j(x), \\nu_j) / p(y\\mid x)`. The quantile :math:`F^{-1}(q\\mid x)` is found by
bisection, vectorised over the inputs and levels: since :math:`F` is a convex
combination of the component CDFs, it lies between the smallest and the largest
component quantile :math:`\\mu_j(x) + \\sqrt{\\nu_j}\\,\\Phi^{-1}(q)` over the experts
with :math:`w_j(x) > 0`, which is the starting bracket. A mixture quantile is not the
mean plus a multiple of the standard deviation: between two regimes the 90% interval
from the CDF can be much narrower than :math:`m \\pm 1.645\\,s`.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import ndtr, ndtri

from ..backends.numpy_kernels import row_logsumexp

__all__ = ["components", "mixture_moments", "mixture_cdf", "mixture_quantiles",
           "log_conditional_density", "check_levels", "check_level"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def components(gate, params, X):
    """Gate weights (n, k), component means (n, k) and standard deviations (k,)."""
    w = gate.weights(params, X)
    mu = X @ params.expert_coef.T + params.expert_intercept
    return w, mu, np.sqrt(params.expert_var)


def mixture_moments(gate, params, X):
    """Conditional mean :math:`m(x)` and standard deviation :math:`s(x)`, each (n,)."""
    w, mu, sd = components(gate, params, X)
    mean = np.sum(w * mu, axis=1)
    # s^2 = sum_j w_j (nu_j + (mu_j - m)^2): non-negative terms, no cancellation
    var = np.sum(w * (sd * sd + (mu - mean[:, None]) ** 2), axis=1)
    return mean, np.sqrt(var)


def mixture_cdf(gate, params, X, y):
    """:math:`F(y_i \\mid x_i)`; ``y`` of shape (n,) or (n, m)."""
    w, mu, sd = components(gate, params, X)
    y = np.asarray(y, dtype=float)
    yy = y[:, None] if y.ndim == 1 else y
    F = np.einsum("nk,nmk->nm", w, ndtr((yy[:, :, None] - mu[:, None, :]) / sd))
    return F[:, 0] if y.ndim == 1 else F


def check_levels(q, name="q"):
    """``q`` as a float array of levels strictly inside (0, 1), or a ``ValueError``."""
    arr = np.asarray(q, dtype=float) if not isinstance(q, str) else None
    if arr is None or arr.ndim > 1 or arr.size == 0 or not np.all(
            (arr > 0) & (arr < 1)):
        raise ValueError(f"{name} must be a number or a 1-d sequence of numbers strictly "
                         f"between 0 and 1, got {q!r}")
    return arr


def mixture_quantiles(gate, params, X, q, xtol=1e-10, max_iter=200):
    """Quantiles :math:`F^{-1}(q \\mid x_i)` by vectorised bisection.

    Parameters
    ----------
    gate, params
        The model.
    X : ndarray (n, d)
    q : float or 1-d array of levels in (0, 1)
    xtol : float, default=1e-10
        Width of the final bracket relative to the smallest expert standard deviation.
    max_iter : int, default=200

    Returns
    -------
    ndarray (n,) for a scalar ``q``, else (n, m).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup
    >>> truth = get_setup("softmax-exact").truth
    >>> X = np.array([[0.32]])                     # between the two regimes
    >>> lo, hi = mixture_quantiles(truth.gate, truth.params, X, [0.05, 0.95])[0]
    >>> F = mixture_cdf(truth.gate, truth.params, X, np.array([[lo, hi]]))
    >>> np.round(F, 9).tolist()
    [[0.05, 0.95]]
    """
    levels = check_levels(q)
    scalar = levels.ndim == 0
    levels = np.atleast_1d(levels)
    w, mu, sd = components(gate, params, X)
    n = X.shape[0]
    comp_q = mu[:, None, :] + sd * ndtri(levels)[None, :, None]        # (n, m, k)
    active = (w > 0)[:, None, :]
    lo = np.min(np.where(active, comp_q, np.inf), axis=2)
    hi = np.max(np.where(active, comp_q, -np.inf), axis=2)
    tol = xtol * float(np.min(sd))
    width = float(np.max(hi - lo)) if n else 0.0
    iters = 0 if width <= tol else min(max_iter, int(np.ceil(np.log2(width / tol))) + 1)
    target = levels[None, :]
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        F = np.einsum("nk,nmk->nm", w, ndtr((mid[:, :, None] - mu[:, None, :]) / sd))
        below = F < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = 0.5 * (lo + hi)
    return out[:, 0] if scalar else out


def log_conditional_density(gate, params, X, y):
    """:math:`\\log p(y \\mid x_i)`; ``y`` of shape (n,) or (n, m) (m values per input)."""
    log_w = gate.log_weights(params, X)
    mu = X @ params.expert_coef.T + params.expert_intercept
    y = np.asarray(y, dtype=float)
    yy = y[:, None] if y.ndim == 1 else y
    var = params.expert_var
    resid = yy[:, :, None] - mu[:, None, :]
    joint = log_w[:, None, :] - 0.5 * (_LOG_2PI + np.log(var)) - 0.5 * resid * resid / var
    n, m, k = joint.shape
    out = row_logsumexp(joint.reshape(n * m, k)).reshape(n, m)
    return out[:, 0] if y.ndim == 1 else out


def check_level(level, name="level"):
    """A coverage level strictly inside (0, 1)."""
    if (not isinstance(level, numbers.Real) or isinstance(level, bool)
            or not 0.0 < float(level) < 1.0):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {level!r}")
    return float(level)
