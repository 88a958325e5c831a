"""Reference kernels written only against the Python array API standard.

The three hot spots of ``the backends' design (:mod:`moestats.backends`)`` (expert log-density, row-wise
log-normalisation into responsibilities and per-sample log-likelihood, weighted
sufficient statistics), plus the weighted residual sums of the variance update.
Every function takes its array namespace from its inputs
(:func:`array_api_compat.array_namespace`) and uses nothing outside the standard,
so the same code runs on NumPy, CuPy and ``array_api_strict`` arrays (the tests run
it under ``array_api_strict``); results stay on the inputs' device.

Every kernel accepts an optional leading replication axis (written ``...`` below):
``X`` has shape (..., n, d), ``y`` (..., n), the parameters (..., k, d) and (..., k).
Throughout, :math:`\\tilde x_i = (x_i, 1)`.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, device

__all__ = ["expert_log_density", "normalize_log_joint", "weighted_statistics",
           "weighted_rss"]

_LOG_2PI = math.log(2.0 * math.pi)


def expert_log_density(X, y, coef, intercept, var):
    """Gaussian linear experts' log-densities.

    .. math::

        \\log\\mathcal N(y_i \\mid a_j^\\top x_i + b_j, \\nu_j)
        = -\\tfrac12\\log(2\\pi\\nu_j) - \\frac{(y_i - a_j^\\top x_i - b_j)^2}{2\\nu_j}

    Parameters
    ----------
    X : array (..., n, d)
    y : array (..., n)
    coef : array (..., k, d)
        Expert slopes :math:`a_j`.
    intercept : array (..., k)
        Expert intercepts :math:`b_j`.
    var : array (..., k)
        Expert variances :math:`\\nu_j > 0`.

    Returns
    -------
    array (..., n, k)
    """
    xp = array_namespace(X, y, coef, intercept, var)
    mean = X @ xp.matrix_transpose(coef) + xp.expand_dims(intercept, axis=-2)
    resid = xp.expand_dims(y, axis=-1) - mean
    var_row = xp.expand_dims(var, axis=-2)
    return -0.5 * (_LOG_2PI + xp.log(var_row)) - 0.5 * resid * resid / var_row


def normalize_log_joint(joint):
    """Responsibilities and per-sample log-likelihood from the log joint.

    With :math:`a_{ij} = \\log w_j(x_i) + \\log\\mathcal N(y_i \\mid \\cdot)` and a
    stable row-wise log-sum-exp over the last axis,

    .. math::

        m_i = \\max_j a_{ij}, \\qquad
        \\log p_i = m_i + \\log\\sum_j e^{a_{ij} - m_i}, \\qquad
        r_{ij} = \\frac{e^{a_{ij} - m_i}}{\\sum_l e^{a_{il} - m_i}}
              = e^{a_{ij} - \\log p_i}.

    ``-inf`` entries (experts off a top-K support) get :math:`r_{ij} = 0`. A row that
    is ``-inf`` everywhere gets :math:`\\log p_i = -\\infty` and responsibilities 0
    (no NaN and no floating-point warning): :math:`m_i` is replaced by 0 when it is
    not finite, and the zero total is never divided by nor passed to ``log``.

    Parameters
    ----------
    joint : array (..., n, k)

    Returns
    -------
    resp : array (..., n, k)
    log_p : array (..., n)
    """
    xp = array_namespace(joint)
    m = xp.max(joint, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    e = xp.exp(joint - m)
    total = xp.sum(e, axis=-1, keepdims=True)
    positive = total > 0
    safe = xp.where(positive, total, xp.ones_like(total))
    resp = e / safe
    log_p = xp.where(positive, xp.log(safe) + m, xp.full_like(m, -math.inf))
    return resp, log_p[..., 0]


def _with_ones(X):
    """:math:`\\tilde X = [X, 1]`, shape (..., n, d+1)."""
    xp = array_namespace(X)
    ones = xp.ones(X.shape[:-1] + (1,), dtype=X.dtype, device=device(X))
    return xp.concat([X, ones], axis=-1)


def weighted_statistics(X, y, resp):
    """Weighted sufficient statistics of the experts' least-squares problems.

    .. math::

        N_j = \\sum_i r_{ij}, \\qquad
        S^{xx}_j = \\sum_i r_{ij}\\,\\tilde x_i \\tilde x_i^\\top, \\qquad
        S^{xy}_j = \\sum_i r_{ij}\\,\\tilde x_i y_i,

    so that the expert M-step is :math:`(a_j, b_j) = (S^{xx}_j)^{-1} S^{xy}_j`.

    Parameters
    ----------
    X : array (..., n, d)
    y : array (..., n)
    resp : array (..., n, k)
        Responsibilities :math:`r_{ij}`.

    Returns
    -------
    mass : array (..., k)
    sxx : array (..., k, d+1, d+1)
    sxy : array (..., k, d+1)
    """
    xp = array_namespace(X, y, resp)
    Xt = _with_ones(X)
    Xt_T = xp.matrix_transpose(Xt)
    mass = xp.sum(resp, axis=-2)
    # one weighted Gram matrix per expert: (..., n, d+1) temporaries, never (..., k, n, d+1)
    sxx = xp.stack([(Xt_T * xp.expand_dims(resp[..., j], axis=-2)) @ Xt
                    for j in range(resp.shape[-1])], axis=-3)
    ry = resp * xp.expand_dims(y, axis=-1)
    sxy = xp.matrix_transpose(ry) @ Xt
    return mass, sxx, sxy


def weighted_rss(X, y, resp, theta):
    """Weighted residual sums of squares of the variance update.

    .. math:: \\mathrm{RSS}_j = \\sum_i r_{ij}\\,(y_i - \\tilde x_i^\\top\\theta_j)^2,
              \\qquad \\nu_j = \\mathrm{RSS}_j / N_j.

    Parameters
    ----------
    X : array (..., n, d)
    y : array (..., n)
    resp : array (..., n, k)
    theta : array (..., k, d+1)
        :math:`\\theta_j = (a_j, b_j)`.

    Returns
    -------
    array (..., k)
    """
    xp = array_namespace(X, y, resp, theta)
    resid = xp.expand_dims(y, axis=-1) - _with_ones(X) @ xp.matrix_transpose(theta)
    return xp.sum(resp * (resid * resid), axis=-2)
