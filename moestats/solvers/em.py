"""Expectation-maximisation for Gaussian mixtures of experts (a generalised EM).

One iteration, from parameters :math:`G^{(t)}`:

1. E-step: :math:`r_{ij} = w_j(x_i)\\,\\mathcal N(y_i\\mid a_j^\\top x_i+b_j,\\nu_j)
   / p_{G^{(t)}}(y_i\\mid x_i)`, in log space.
2. Expert step: weighted least squares and weighted variances
   (:func:`moestats.experts.expert_m_step`), variances floored at ``var_floor``.
3. Gate step: :func:`moestats.solvers.gate_step.gate_step`, which never decreases
   its objective.

Each step is a (conditional) maximisation of the EM surrogate or of the observed
likelihood, so :math:`\\ell(G^{(t+1)}) \\ge \\ell(G^{(t)})`. Iterations stop when
:math:`|\\ell^{(t+1)} - \\ell^{(t)}| \\le \\mathrm{tol}\\,|\\ell^{(t)}|`.
"""

from __future__ import annotations

import numpy as np

from ..experts import expert_m_step
from ..likelihood import e_step, log_expert_density
from .gate_step import gate_step
from .trace import FitTrace

__all__ = ["fit_em", "em_iteration"]


def em_iteration(gate, params, X, y, var_floor, *, resp=None, events=None,
                 gate_max_iter=20):
    """One EM iteration from ``params``; returns the new parameters.

    ``resp`` may be passed when the E-step at ``params`` is already known.
    ``events`` (a dict of sets) collects the numerical repairs of the expert step.
    """
    if resp is None:
        resp, _ = e_step(gate, params, X, y)
    coef, intercept, var, report = expert_m_step(
        X, y, resp, params.expert_coef, params.expert_intercept, params.expert_var,
        var_floor)
    if events is not None:
        events.setdefault("empty_experts", set()).update(report.empty)
        events.setdefault("singular_experts", set()).update(report.singular)
        events.setdefault("floored_variances", set()).update(report.floored)
    params = params.replace(expert_coef=coef, expert_intercept=intercept, expert_var=var)
    log_expert = log_expert_density(params, X, y) if gate.ecm_gate_step else None
    return gate_step(gate, params, X, resp, log_expert, max_iter=gate_max_iter)


def fit_em(gate, X, y, init, *, tol=1e-6, max_iter=2000, var_floor=1e-8,
           gate_max_iter=20):
    """Fit by EM from ``init``.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    init : MoEParams
        Starting parameters.
    tol : float
        Relative change of the log-likelihood that stops the iterations.
    max_iter : int
    var_floor : float
        Lower bound on the expert variances.
    gate_max_iter : int
        Inner iterations of each gate step.

    Returns
    -------
    FitTrace
        ``log_likelihoods[t]`` is the observed log-likelihood after ``t`` iterations.
    """
    params = init
    events: dict = {}
    resp, log_p = e_step(gate, params, X, y)
    lls = [float(log_p.sum())]
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        params = em_iteration(gate, params, X, y, var_floor, resp=resp, events=events,
                              gate_max_iter=gate_max_iter)
        resp, log_p = e_step(gate, params, X, y)
        lls.append(float(log_p.sum()))
        if abs(lls[-1] - lls[-2]) <= tol * abs(lls[-2]):
            converged = True
            break
    return FitTrace(params, np.asarray(lls), n_iter, converged, events)
