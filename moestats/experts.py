"""Gaussian linear experts: log density, weighted sufficient statistics, closed-form M-step.

Expert :math:`j` is :math:`y \\mid x \\sim \\mathcal N(a_j^\\top x + b_j, \\nu_j)`
(variance :math:`\\nu_j`). Given responsibilities :math:`r_{ij}`, the EM expert
step maximises :math:`\\sum_i r_{ij} \\log \\mathcal N(y_i \\mid a_j^\\top x_i + b_j, \\nu_j)`
in closed form: weighted least squares of :math:`y` on :math:`\\tilde x = (x, 1)`,

.. math::

    (a_j, b_j) = \\Bigl(\\sum_i r_{ij} \\tilde x_i \\tilde x_i^\\top\\Bigr)^{+}
                 \\sum_i r_{ij} \\tilde x_i y_i, \\qquad
    \\nu_j = \\max\\Bigl(\\frac{\\sum_i r_{ij}(y_i - a_j^\\top x_i - b_j)^2}
                            {\\sum_i r_{ij}},\\ \\nu_{\\min}\\Bigr).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["expert_log_density", "weighted_statistics", "expert_m_step", "ExpertStepReport"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: an expert whose total responsibility is below this keeps its parameters
EMPTY_MASS = 1e-8
#: condition number above which the weighted least-squares system is solved by pseudo-inverse
SINGULAR_COND = 1e12


def expert_log_density(X, y, coef, intercept, var):
    """:math:`\\log \\mathcal N(y_i \\mid a_j^\\top x_i + b_j, \\nu_j)`, shape (n, k).

    .. math:: -\\tfrac12\\log(2\\pi\\nu_j) - \\frac{(y_i - a_j^\\top x_i - b_j)^2}{2\\nu_j}
    """
    resid = y[:, None] - (X @ coef.T + intercept)
    return -0.5 * (_LOG_2PI + np.log(var)) - 0.5 * resid * resid / var


def weighted_statistics(X, y, resp):
    """Weighted sufficient statistics of the experts' least-squares problems.

    Returns
    -------
    mass : ndarray (k,)
        :math:`N_j = \\sum_i r_{ij}`.
    sxx : ndarray (k, d+1, d+1)
        :math:`\\sum_i r_{ij}\\,\\tilde x_i \\tilde x_i^\\top`.
    sxy : ndarray (k, d+1)
        :math:`\\sum_i r_{ij}\\,\\tilde x_i y_i`.
    """
    Xt = np.hstack([X, np.ones((X.shape[0], 1))])
    mass = resp.sum(axis=0)
    # one weighted Gram matrix per expert (BLAS; an einsum over all three axes is ~4x slower)
    sxx = np.stack([(Xt * resp[:, j:j + 1]).T @ Xt for j in range(resp.shape[1])])
    sxy = (resp * y[:, None]).T @ Xt
    return mass, sxx, sxy


@dataclass
class ExpertStepReport:
    """What the expert step had to repair, by expert index."""

    empty: list = field(default_factory=list)
    singular: list = field(default_factory=list)
    floored: list = field(default_factory=list)


def expert_m_step(X, y, resp, coef, intercept, var, var_floor):
    """Closed-form expert M-step (weighted least squares and weighted variance).

    Parameters
    ----------
    X, y : ndarrays (n, d), (n,)
    resp : ndarray (n, k)
        Responsibilities :math:`r_{ij}`.
    coef, intercept, var : current expert parameters (kept for empty experts).
    var_floor : float
        :math:`\\nu_{\\min} > 0`; a variance that would fall below is floored
        (the floored value is still the constrained maximiser, so EM stays monotone).

    Returns
    -------
    coef, intercept, var : new expert parameters
    report : ExpertStepReport
        ``empty``: experts with :math:`N_j <` ``EMPTY_MASS`` (parameters kept);
        ``singular``: systems solved by pseudo-inverse (minimum-norm maximiser);
        ``floored``: variances set to ``var_floor``.
    """
    n, d = X.shape
    mass, sxx, sxy = weighted_statistics(X, y, resp)
    coef, intercept, var = coef.copy(), intercept.copy(), var.copy()
    report = ExpertStepReport()
    Xt = np.hstack([X, np.ones((n, 1))])
    for j in range(resp.shape[1]):
        if mass[j] < EMPTY_MASS:
            report.empty.append(j)
            continue
        A, b = sxx[j], sxy[j]
        if np.linalg.cond(A) < SINGULAR_COND:
            theta = np.linalg.solve(A, b)
        else:
            report.singular.append(j)
            theta = np.linalg.pinv(A, rcond=1e-12, hermitian=True) @ b
        resid = y - Xt @ theta
        v = float(resp[:, j] @ (resid * resid)) / mass[j]
        if not v >= var_floor:  # also catches NaN
            report.floored.append(j)
            v = var_floor
        coef[j], intercept[j], var[j] = theta[:d], theta[d], v
    return coef, intercept, var, report
