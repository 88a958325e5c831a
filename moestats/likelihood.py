"""Log joint, responsibilities and the observed log-likelihood of a mixture of experts.

.. math::

    \\log p_G(y_i \\mid x_i) = \\log\\sum_j \\exp\\bigl(\\log w_j(x_i)
        + \\log\\mathcal N(y_i \\mid a_j^\\top x_i + b_j, \\nu_j)\\bigr),
    \\qquad
    \\log r_{ij} = \\log w_j(x_i) + \\log\\mathcal N(\\cdot) - \\log p_G(y_i\\mid x_i),

all in log space (row-wise log-sum-exp), so no logit or density under- or
overflows.
"""

from __future__ import annotations

import numpy as np

from .backends.numpy_kernels import row_logsumexp
from .experts import expert_log_density

__all__ = ["log_expert_density", "log_joint", "normalize_log_joint", "e_step",
           "log_likelihood_samples", "log_likelihood"]


def log_expert_density(params, X, y):
    """Expert log-densities :math:`\\log\\mathcal N(y_i\\mid a_j^\\top x_i+b_j,\\nu_j)`, (n, k)."""
    return expert_log_density(X, y, params.expert_coef, params.expert_intercept,
                              params.expert_var)


def log_joint(gate, params, X, y):
    """:math:`\\log w_j(x_i) + \\log\\mathcal N(y_i\\mid\\cdot)`, shape (n, k)."""
    return gate.log_weights(params, X) + log_expert_density(params, X, y)


def normalize_log_joint(joint):
    """Row-wise normalisation: responsibilities (n, k) and per-sample log-likelihood (n,)."""
    log_p = row_logsumexp(joint)
    resp = np.exp(joint - log_p[:, None])
    return resp, log_p


def e_step(gate, params, X, y):
    """E-step: responsibilities :math:`r_{ij}` (n, k) and :math:`\\log p_G(y_i\\mid x_i)` (n,)."""
    return normalize_log_joint(log_joint(gate, params, X, y))


def log_likelihood_samples(gate, params, X, y):
    """Per-sample log-likelihood :math:`\\log p_G(y_i \\mid x_i)`, shape (n,)."""
    return row_logsumexp(log_joint(gate, params, X, y))


def log_likelihood(gate, params, X, y):
    """Observed log-likelihood :math:`\\sum_i \\log p_G(y_i \\mid x_i)`."""
    return float(np.sum(log_likelihood_samples(gate, params, X, y)))
