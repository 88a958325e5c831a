"""Expectation-maximisation for one data set: the engine of :mod:`.batched_em` with R = 1.

One iteration, from parameters :math:`G^{(t)}`:

1. E-step: :math:`r_{ij} = w_j(x_i)\\,\\mathcal N(y_i\\mid a_j^\\top x_i+b_j,\\nu_j)
   / p_{G^{(t)}}(y_i\\mid x_i)`, in log space.
2. Expert step: weighted least squares and weighted variances, inside the parameter
   space (:mod:`moestats.solvers.expert_step`).
3. Gate step: :mod:`moestats.solvers.gate_steps`, which never decreases its objective.

Then the second-order finish and its certificate (:mod:`moestats.solvers.finish`).
"""

from __future__ import annotations

import numpy as np

from .batched_em import fit_em_batched

__all__ = ["fit_em"]


def fit_em(gate, X, y, init, **options):
    """Fit one data set by EM from ``init`` (:func:`fit_em_batched` with R = 1).

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    init : MoEParams
    **options
        Keyword options of :func:`moestats.solvers.fit_em_batched` (``tol``,
        ``max_iter``, ``var_floor``, ``space``, ``certify``, ``certify_tol``,
        ``backend``, ...).

    Returns
    -------
    FitTrace

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(1000, np.random.default_rng(0))
    >>> fit_em(SoftmaxGate(), X, y, truth.params).converged
    True
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, d) and y (n,); got shapes {X.shape} and {y.shape}")
    return fit_em_batched(gate, X[None], y[None], [init], **options)[0]
