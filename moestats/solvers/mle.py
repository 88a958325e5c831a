"""Direct maximum likelihood with an analytic gradient.

The observed log-likelihood :math:`\\ell = \\sum_i \\log\\sum_j w_{ij}\\phi_{ij}` is
maximised by L-BFGS-B over the unconstrained vector
``(gate free parameters, a, b, log nu)`` (``log nu >= log var_floor`` as a bound;
``log tau`` inside the gate part when learned). With :math:`\\pi_{ij}` the posterior
responsibilities and :math:`e_{ij} = y_i - a_j^\\top x_i - b_j`, Fisher's identity gives

.. math::

    \\nabla_{\\text{gate}}\\,\\ell = \\text{VJP}\\bigl(G = \\pi - w\\bigr), \\quad
    \\frac{\\partial \\ell}{\\partial a_j} = \\sum_i \\pi_{ij}\\frac{e_{ij}}{\\nu_j} x_i, \\quad
    \\frac{\\partial \\ell}{\\partial b_j} = \\sum_i \\pi_{ij}\\frac{e_{ij}}{\\nu_j}, \\quad
    \\frac{\\partial \\ell}{\\partial \\log\\nu_j} = \\sum_i \\pi_{ij}
        \\Bigl(\\frac{e_{ij}^2}{2\\nu_j} - \\frac12\\Bigr).

The gate part is the same VJP as the EM gate step (:meth:`Gate.vjp`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..likelihood import log_expert_density, normalize_log_joint
from .trace import FitTrace

__all__ = ["fit_mle", "log_likelihood_and_gradient", "pack_params", "unpack_params"]


def pack_params(gate, params):
    """All free parameters as one vector: gate part, then ``a``, ``b``, ``log nu``."""
    return np.concatenate([gate.pack(params), params.expert_coef.ravel(),
                           params.expert_intercept, np.log(params.expert_var)])


def unpack_params(gate, theta, params):
    """Inverse of :func:`pack_params` (fixed parts taken from ``params``)."""
    k, d = params.expert_coef.shape
    m = gate.n_free_params(k, d)
    out = gate.unpack(theta[:m], params)
    pos = m
    coef = theta[pos: pos + k * d].reshape(k, d)
    pos += k * d
    intercept = theta[pos: pos + k]
    var = np.exp(theta[pos + k: pos + 2 * k])
    return out.replace(expert_coef=coef, expert_intercept=intercept, expert_var=var)


def log_likelihood_and_gradient(gate, params, X, y):
    """Observed log-likelihood and its gradient in the :func:`pack_params` vector."""
    log_w = gate.log_weights(params, X)
    joint = log_w + log_expert_density(params, X, y)
    post, log_p = normalize_log_joint(joint)
    gate_grad = gate.pack_gradient(gate.vjp(params, X, post - np.exp(log_w)))
    resid = y[:, None] - (X @ params.expert_coef.T + params.expert_intercept)
    scaled = post * resid / params.expert_var
    g_coef = scaled.T @ X
    g_intercept = scaled.sum(axis=0)
    g_logvar = np.sum(post * (0.5 * resid * resid / params.expert_var - 0.5), axis=0)
    grad = np.concatenate([gate_grad, g_coef.ravel(), g_intercept, g_logvar])
    return float(log_p.sum()), grad


def fit_mle(gate, X, y, init, *, tol=1e-6, max_iter=2000, var_floor=1e-8):
    """Maximise the observed log-likelihood directly (L-BFGS-B, analytic gradient).

    Parameters are as for :func:`moestats.solvers.em.fit_em`; ``tol`` is L-BFGS-B's
    relative reduction ``ftol``. ``log_likelihoods`` holds the value at every
    accepted L-BFGS iterate, ``n_iter`` the number of iterations.
    """
    n = X.shape[0]
    k, d = init.expert_coef.shape
    theta0 = pack_params(gate, init)
    m = gate.n_free_params(k, d)
    bounds = [(None, None)] * (m + k * d + k) + [(np.log(var_floor), None)] * k
    theta0[m + k * d + k:] = np.maximum(theta0[m + k * d + k:], np.log(var_floor))

    def neg(theta):
        try:
            v, g = log_likelihood_and_gradient(gate, unpack_params(gate, theta, init), X, y)
        except (ValueError, FloatingPointError):
            return np.inf, np.zeros_like(theta)
        if not np.isfinite(v):
            return np.inf, np.zeros_like(theta)
        return -v / n, -g / n

    lls = [-neg(theta0)[0] * n]

    def record(theta):
        lls.append(-neg(theta)[0] * n)

    res = minimize(neg, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                   callback=record,
                   options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-9,
                            "maxcor": 20, "maxls": 40})
    params = unpack_params(gate, res.x, init)
    if lls[-1] != -res.fun * n:
        lls.append(-res.fun * n)
    # a line-search stop at a point where the objective no longer moves is convergence
    # to working precision; anything else that is not success is not
    stalled = len(lls) >= 2 and abs(lls[-1] - lls[-2]) <= tol * abs(lls[-2])
    converged = bool(res.success) or stalled
    return FitTrace(params, np.asarray(lls), int(res.nit), converged,
                    {"message": str(res.message)})
