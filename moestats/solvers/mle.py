"""Direct maximum likelihood: trust-region Newton on the observed log-likelihood.

The observed log-likelihood :math:`\\ell = \\sum_i \\log\\sum_j w_{ij}\\phi_{ij}` is
maximised over the free-parameter vector of
:class:`~moestats.solvers.batched_params.ParamLayout` (gate part, :math:`a`, :math:`b`,
:math:`\\log\\nu`; :math:`\\log\\tau` when learned) inside the parameter space's box, by
the trust-region Newton ascent of :mod:`moestats.solvers.newton` with the exact Hessian
of :mod:`moestats.solvers.derivatives`. Newton steps are invariant to rescaling the
data (unlike L-BFGS with a relative ``ftol``, which stopped hundreds of nats short on
``X * 1e4``), and the fit ends with the same certificate as EM. With Fisher's
identity the gradient is

.. math::

    \\nabla_{\\text{gate}}\\,\\ell = \\text{VJP}\\bigl(G = \\pi - w\\bigr), \\quad
    \\frac{\\partial \\ell}{\\partial a_j} = \\sum_i \\pi_{ij}\\frac{e_{ij}}{\\nu_j} x_i, \\quad
    \\frac{\\partial \\ell}{\\partial \\log\\nu_j} = \\sum_i \\pi_{ij}
        \\Bigl(\\frac{e_{ij}^2}{2\\nu_j} - \\frac12\\Bigr),

:math:`\\pi` the posterior and :math:`e_{ij} = y_i - a_j^\\top x_i - b_j`.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from .batched_params import BatchedParams, ParamLayout
from .derivatives import observed_derivatives
from .finish import newton_finish
from .space import ParameterSpace
from .trace import FitTrace

__all__ = ["fit_mle", "log_likelihood_and_gradient"]


def log_likelihood_and_gradient(gate, params, X, y):
    """Observed log-likelihood and its gradient in the free-parameter vector.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(300, np.random.default_rng(0))
    >>> value, grad = log_likelihood_and_gradient(SoftmaxGate(), truth.params, X, y)
    >>> grad.shape
    (8,)
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    value, grad, _ = observed_derivatives(gate, X[None], y[None],
                                          BatchedParams.stack([params]), order=1)
    return float(value[0]), grad[0]


def fit_mle(gate, X, y, init, *, max_iter=2000, var_floor=1e-8, space=None,
            certify_tol=1e-3, tol=None, sample_weight=None):
    """Maximise the observed log-likelihood directly from ``init``.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    init : MoEParams
    max_iter : int
        Newton steps at most.
    var_floor : float
        Lower bound on the variances (combined with ``space``).
    space : ParameterSpace, optional
    certify_tol : float
        Nats; the fit stops once the Newton decrement is below a tenth of it and is
        certified at ``certify_tol``.
    tol : ignored
        Accepted for the signature of :func:`moestats.solvers.fit_em`; Newton stops
        on its certificate, never on a relative change.
    sample_weight : ndarray (n,), optional
        Per-sample weights :math:`c_i` of the log-likelihood
        :math:`\\sum_i c_i \\log p(y_i \\mid x_i)` (default 1).

    Returns
    -------
    FitTrace
        ``log_likelihoods`` holds the value at the start and at every accepted step,
        ``n_iter`` the number of accepted steps.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(2000, np.random.default_rng(0))
    >>> fit_mle(SoftmaxGate(), X, y, truth.params).converged
    True
    """
    X = np.asarray(X, dtype=float)[None]
    y = np.asarray(y, dtype=float)[None]
    space = ParameterSpace() if space is None else space
    P = BatchedParams.stack([init])
    layout = ParamLayout(gate, *P.gate_coef.shape[1:])
    lo, hi = space.box(layout, var_floor)
    with threadpool_limits(limits=1, user_api="blas"):  # see fit_em_batched
        values, passes, certs = newton_finish(
            gate, X, y, P, lo, hi, max_iter=max_iter, certify_tol=certify_tol,
            tie=space.tie_matrix(layout),
            sample_weight=None if sample_weight is None else np.asarray(
                sample_weight, dtype=float)[None])
    return FitTrace(P.get(0), np.asarray(values[0]), len(values[0]) - 1,
                    certs[0].certified, {}, certs[0], int(passes[0]))
