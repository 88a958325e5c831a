"""Fit every start of an estimator: EM through the batched engine, or direct MLE.

:func:`fit_starts` is what :meth:`moestats.GaussianMoE.fit` runs after its starts are
chosen; :func:`report_repairs` turns a kept fit's numerical repairs into warnings.
"""

from __future__ import annotations

import warnings

import numpy as np

from .batched_em import fit_em_batched
from .mle import fit_mle
from .trace import FitTrace

__all__ = ["fit_starts", "report_repairs"]


def fit_starts(gate, X, y, starts, *, solver="em", tol=1e-6, max_iter=2000, var_floor,
               space, certify_tol=1e-3, backend="numpy", sample_weight=None, monitor=None):
    """Fit every start to its certified maximum.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    starts : sequence of MoEParams
    solver : {"em", "mle"}
        EM (all starts at once, :func:`~moestats.solvers.fit_em_batched`) or direct
        trust-region Newton (:func:`~moestats.solvers.fit_mle`), both certified.
    tol, max_iter, var_floor, space, certify_tol, backend
        As :func:`~moestats.solvers.fit_em_batched`.
    sample_weight : ndarray (n,), optional
        Weights of the log-likelihood.
    monitor : callable, optional
        Progress callback (:class:`moestats.solvers.monitor.FitMonitor`).

    Returns
    -------
    list of FitTrace
        One per start; a failed start has ``events["error"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> from moestats.solvers import ParameterSpace
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(1000, np.random.default_rng(0))
    >>> traces = fit_starts(SoftmaxGate(), X, y, [truth.params], var_floor=1e-8,
    ...                     space=ParameterSpace())
    >>> traces[0].converged
    True
    """
    options = dict(var_floor=var_floor, space=space, certify_tol=certify_tol)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        if solver == "mle":
            traces = []
            for i, start in enumerate(starts):
                try:
                    traces.append(fit_mle(gate, X, y, start, max_iter=max_iter,
                                          sample_weight=sample_weight, **options))
                    if monitor is not None:
                        monitor("finish", None, [i], [traces[-1].certificate])
                except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                    traces.append(FitTrace(start, np.array([-np.inf]), 0, False,
                                           {"error": f"{type(exc).__name__}: {exc}"}))
            return traces
        m = len(starts)
        return fit_em_batched(gate, np.broadcast_to(X, (m,) + X.shape),
                              np.broadcast_to(y, (m,) + y.shape), starts, tol=tol,
                              max_iter=max_iter, backend=backend, on_error="record",
                              monitor=monitor,
                              sample_weight=None if sample_weight is None else
                              np.broadcast_to(sample_weight, (m,) + y.shape), **options)


def report_repairs(events, category, stacklevel=3):
    """Warn (``category``) about each numerical repair recorded in a fit's ``events``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     report_repairs({"floored_variances": {1}}, UserWarning)
    >>> str(caught[0].message)
    'variance(s) floored at var_floor: expert index [1]'
    """
    labels = {"empty_experts": "expert(s) with no responsibility kept their parameters",
              "singular_experts": "singular weighted least squares solved by pseudo-inverse",
              "floored_variances": "variance(s) floored at var_floor"}
    for key, text in labels.items():
        if events.get(key):
            warnings.warn(f"{text}: expert index {sorted(events[key])}", category,
                          stacklevel=stacklevel)
