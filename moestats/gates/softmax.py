"""Softmax gate [D]: logits :math:`s_j(x) = \\beta_{1j}^\\top x + \\beta_{0j}`."""

from __future__ import annotations

import numpy as np

from ._base import Gate

__all__ = ["SoftmaxGate", "softmax_q_hessian"]


class SoftmaxGate(Gate):
    """Dense softmax gate, :math:`w(x) = \\operatorname{softmax}(\\beta_1 x + \\beta_0)`.

    The gate of Nguyen, Nguyen & Ho (NeurIPS 2023). No hyperparameters; the
    last expert is the reference (:math:`\\beta_{1k} = 0, \\beta_{0k} = 0`).
    Its EM gate step is a warm-started Newton (IRLS) step with step halving,
    using :func:`softmax_q_hessian`.
    """

    #: the gate step may use the exact Hessian of :func:`softmax_q_hessian`
    newton = True
    shift_invariant = True


def softmax_q_hessian(X, weights, row_mass):
    """Hessian of :math:`Q(\\beta)=\\sum_{ij} r_{ij}\\log w_{ij}` in the free softmax parameters.

    With :math:`\\tilde x_i = (x_i, 1)`, :math:`m_i = \\sum_j r_{ij}` and
    :math:`j, l < k` (the reference expert fixed),

    .. math::

        \\frac{\\partial^2 Q}{\\partial \\beta_{jp}\\,\\partial \\beta_{lq}}
        = -\\sum_i m_i \\bigl(w_{ij}\\delta_{jl} - w_{ij} w_{il}\\bigr)
          \\tilde x_{ip} \\tilde x_{iq}.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (n, k)
        Gate weights at the current parameters.
    row_mass : ndarray of shape (n,)
        :math:`m_i` (1 for responsibilities that sum to one).

    Returns
    -------
    ndarray of shape (P, P)
        In the order of :meth:`Gate.pack`: all slopes (expert-major), then all
        intercepts, :math:`P = (k-1)(d+1)`.
    """
    n, d = X.shape
    w = weights[:, :-1]
    k1 = w.shape[1]
    Xt = np.hstack([X, np.ones((n, 1))])
    # block (j, l) = -sum_i m_i (w_ij delta_jl - w_ij w_il) xt_i xt_i^T: one weighted
    # Gram matrix per pair j <= l (BLAS), the lower blocks by symmetry
    blocks = np.empty((k1, k1, d + 1, d + 1))
    for j in range(k1):
        for l in range(j, k1):
            c = -row_mass * w[:, j] * ((1.0 if j == l else 0.0) - w[:, l])
            blocks[j, l] = (Xt * c[:, None]).T @ Xt
            blocks[l, j] = blocks[j, l]
    H = blocks.transpose(0, 2, 1, 3).reshape(k1 * (d + 1), k1 * (d + 1))
    # reorder to pack order: slopes (j, p<d) first, then intercepts (j, p=d)
    order = [j * (d + 1) + p for j in range(k1) for p in range(d)] + [
        j * (d + 1) + d for j in range(k1)]
    return H[np.ix_(order, order)]
