"""Top-K sparse softmax gate [T]."""

from __future__ import annotations

import numpy as np

from ._base import Gate

__all__ = ["TopKGate", "top_k_mask"]


def top_k_mask(scores, k_active):
    """Boolean mask of the ``k_active`` largest scores of each row; ties go to the lower index.

    Parameters
    ----------
    scores : ndarray of shape (n, k)
    k_active : int

    Returns
    -------
    ndarray of bool, shape (n, k)
    """
    n, k = scores.shape
    if k_active >= k:
        return np.ones((n, k), dtype=bool)
    # rank of expert j = number of experts that beat it: a larger score, or an equal
    # score at a lower index; j is selected when fewer than K beat it (O(k^2) vector
    # operations, much faster than a row-wise sort for the small k of MoE models)
    mask = np.empty((n, k), dtype=bool)
    for j in range(k):
        beaten_by = np.zeros(n, dtype=np.int64)
        for l in range(k):
            if l < j:
                beaten_by += scores[:, l] >= scores[:, j]
            elif l > j:
                beaten_by += scores[:, l] > scores[:, j]
        mask[:, j] = beaten_by < k_active
    return mask


class TopKGate(Gate):
    """Top-K sparse softmax gate.

    .. math::

        s_j(x) = \\begin{cases} \\beta_{1j}^\\top x + \\beta_{0j} & j \\in S_K(x) \\\\
                 -\\infty & \\text{otherwise,} \\end{cases}

    where :math:`S_K(x)` holds the K experts with the largest
    :math:`\\beta_{1j}^\\top x` (``selection="slope"``, as in [T]: the intercept is
    added after selection) or the largest :math:`\\beta_{1j}^\\top x + \\beta_{0j}`
    (``selection="logit"``, the neural-network convention). Ties go to the lower
    index.

    Parameters
    ----------
    k_active : int, default=1
        K, the number of experts each input is routed to; ``1 <= K <= n_experts``.
    selection : {"slope", "logit"}, default="slope"

    Notes
    -----
    With K = 1 the selected expert has weight 1 and :math:`\\beta_0` does not enter
    the density: it is fixed at 0 and not estimated.

    The EM gate step for this family maximises the observed log-likelihood over the
    gate with the experts held fixed (an ECM step, monotone in the likelihood)
    rather than :math:`Q`: :math:`Q` is :math:`-\\infty` as soon as a sample with
    positive responsibility leaves an expert's support, which would freeze the
    partition of the data at its initial value.
    """

    #: the EM gate step maximises the observed likelihood (see Notes)
    ecm_gate_step = True

    def __init__(self, k_active=1, selection="slope"):
        self.k_active = k_active
        self.selection = selection

    def validate(self, n_experts):
        super().validate(n_experts)
        K = self.k_active
        if not isinstance(K, (int, np.integer)) or isinstance(K, bool):
            raise ValueError(f"TopKGate: k_active must be an integer, got {K!r}")
        if K < 1:
            raise ValueError(f"TopKGate: k_active must be >= 1, got k_active = {K}")
        if K > n_experts:
            raise ValueError(
                f"TopKGate: k_active = {K} exceeds n_experts = {n_experts}"
            )
        if self.selection not in ("slope", "logit"):
            raise ValueError(
                f"TopKGate: selection must be 'slope' or 'logit', got {self.selection!r}"
            )

    @property
    def fits_intercept(self):
        return self.k_active != 1

    @property
    def newton(self):
        """Newton on Q inside the selection (a softmax over the selected experts), K >= 2."""
        return self.k_active != 1

    def _support(self, z, s):
        return top_k_mask(z if self.selection == "slope" else s, int(self.k_active))
