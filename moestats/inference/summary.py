"""Wald inference of a fitted mixture of experts: standard errors, intervals, summary.

From the covariance :math:`\\widehat C` of the free parameters
(:func:`moestats.inference.information.wald_covariance`), every reported parameter
:math:`\\psi_r(\\theta)` (:mod:`moestats.inference.parameters`) gets, by the delta
method,

.. math::

    \\operatorname{se}(\\hat\\psi_r) = \\sqrt{\\nabla\\psi_r^\\top \\widehat C\\,\\nabla\\psi_r},
    \\qquad z_r = \\hat\\psi_r / \\operatorname{se}(\\hat\\psi_r),\\qquad
    p_r = 2\\,\\Phi(-|z_r|),

and the Wald interval :math:`\\hat\\psi_r \\pm z_{1-\\alpha/2}\\operatorname{se}`. For the
positive parameters (variances, the temperature) the interval is the Wald interval of
the logarithm mapped back, :math:`\\hat\\psi_r \\exp(\\pm z_{1-\\alpha/2}
\\operatorname{se}/\\hat\\psi_r)` (always positive), and no z statistic is given (a test
of :math:`\\psi_r = 0` is on the boundary of the parameter space).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ..solvers.batched_params import ParamLayout
from .information import REASON_EXCLUDED, WaldCovariance
from .parameters import StandardErrors, parameter_rows, row_values
from .table import SummaryFrame, check_alpha

__all__ = ["WaldInference", "wald_interval"]


def wald_interval(estimate, se, positive, alpha):
    """Lower and upper Wald limits (log scale for ``positive`` entries)."""
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    positive = np.asarray(positive, bool)
    q = norm.ppf(1.0 - alpha / 2.0)
    lo, hi = estimate - q * se, estimate + q * se
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f = np.exp(q * se / estimate)
        lo = np.where(positive, estimate / f, lo)
        hi = np.where(positive, estimate * f, hi)
    return lo, hi


class WaldInference:
    """Standard errors, Wald intervals and the summary table of one fit.

    Usually obtained from a fitted :class:`~moestats.GaussianMoE` (``covariance_``,
    ``standard_errors_``, ``conf_int``, ``summary``, ``inference(cov_type)``).

    Parameters
    ----------
    wald : WaldCovariance
    gate : Gate
        The fitted gate.
    params : MoEParams
    feature_names : sequence of str, optional
    info : dict, optional
        Header lines of the summary (name -> value).

    Attributes
    ----------
    cov_type : str
    covariance : ndarray (p, p)
        Covariance of the free-parameter vector of the fitted gate's
        :class:`~moestats.solvers.batched_params.ParamLayout` (NaN where unidentified).
    parameter_names : list of str
        Names of the entries of that vector.
    rows : list of ParamRow
        The reported parameters.
    estimates, std_errors : ndarray (m,)
    reasons : list of str
        Why a row has no standard error ("" when it has).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import GaussianMoE, get_setup
    >>> from moestats.inference import wald_covariance
    >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
    >>> est = GaussianMoE(2, random_state=0).fit(X, y)
    >>> inf = WaldInference(wald_covariance(est.gate_, est.params_, X, y, cov_type="robust"),
    ...                     est.gate_, est.params_)
    >>> inf.summary().loc["gate 1: intercept", ["estimate", "std. error"]].round(2).tolist()
    [-8.23, 0.54]
    """

    def __init__(self, wald: WaldCovariance, gate, params, feature_names=None, info=None):
        self.wald = wald
        self.gate = gate
        self.params = params
        self.cov_type = wald.cov_type
        self.covariance, self.theta_reasons = wald.embed(gate)
        self.parameter_names = ParamLayout(gate, params.n_experts, params.n_features).names()
        self.rows = parameter_rows(gate, params, feature_names, layout=wald.layout)
        self.estimates = row_values(self.rows, params)
        self.info = dict(info or {})
        m = len(self.rows)
        self.std_errors = np.full(m, np.nan)
        self.reasons = []
        C, R = wald.covariance, wald.reasons
        G = np.zeros((m, wald.layout.size))
        for i, r in enumerate(self.rows):
            reason = r.reason or next((R[q] for q in r.grad if R[q]), "")
            if not r.grad and not reason:
                reason = "not estimated"
            self.reasons.append(reason)
            for q, v in r.grad.items():
                G[i, q] = v
        ok = np.array([not reason for reason in self.reasons])
        with np.errstate(invalid="ignore"):
            Cz = np.where(np.isnan(C), 0.0, C)
            cov_rows = G @ Cz @ G.T
        cov_rows[~ok, :] = np.nan
        cov_rows[:, ~ok] = np.nan
        self.row_covariance = cov_rows
        with np.errstate(invalid="ignore"):
            self.std_errors = np.where(ok, np.sqrt(np.maximum(np.diag(cov_rows), 0.0)), np.nan)

    @property
    def standard_errors(self) -> StandardErrors:
        """Standard errors in the layout of the fitted attributes."""
        p = self.params
        return StandardErrors.from_rows(self.rows, self.std_errors, p.n_experts,
                                        p.n_features, self.gate)

    def conf_int(self, alpha=0.05):
        """Wald confidence intervals of level ``1 - alpha`` (DataFrame: lower, upper).

        Positive parameters use the interval of their logarithm (module docstring).
        Rows without a standard error are NaN.
        """
        import pandas as pd
        alpha = check_alpha(alpha)
        lo, hi = wald_interval(self.estimates, self.std_errors,
                               [r.positive for r in self.rows], alpha)
        return pd.DataFrame({"lower": lo, "upper": hi},
                            index=pd.Index([r.name for r in self.rows], name="parameter"))

    def summary(self, alpha=0.05) -> SummaryFrame:
        """The table of estimates (statsmodels style).

        Columns: ``estimate``, ``std. error``, ``z``, ``p-value``, ``ci lower``,
        ``ci upper`` and ``note`` (why a row has no standard error). Rows: every
        expert parameter (``"expert j: <feature>"``, ``"expert j: intercept"``,
        ``"expert j: variance"``) and every free gate parameter (``"gate j: ..."``,
        ``"gate: temperature"``; ``"gate j: <feature> / temperature"`` for the
        identity activation with a learned temperature); experts are numbered from 1,
        the last is the gate's reference (its gate parameters are fixed at 0 and not
        listed), and slopes left out by ``gate_features``/``expert_features`` are not
        listed either.
        """
        alpha = check_alpha(alpha)
        lo, hi = wald_interval(self.estimates, self.std_errors,
                               [r.positive for r in self.rows], alpha)
        positive = np.array([r.positive for r in self.rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(positive, np.nan, self.estimates / self.std_errors)
        p = 2.0 * norm.sf(np.abs(z))
        # rows a structure leaves out of the model (gate_features/expert_features)
        shown = np.array([r.shown and reason != REASON_EXCLUDED
                          for r, reason in zip(self.rows, self.reasons)])
        frame = SummaryFrame({
            "estimate": self.estimates, "std. error": self.std_errors, "z": z,
            "p-value": p, "ci lower": lo, "ci upper": hi, "note": self.reasons},
            index=[r.name for r in self.rows])[shown]
        frame.index.name = "parameter"
        frame.title = "Gaussian mixture of experts: Wald inference"
        frame.header = list(self.info.items()) + [
            ("Covariance", self.cov_type),
            ("Information cond.", _cond(self.wald))]
        frame.alpha = alpha
        return frame


def _cond(wald):
    lo, hi = wald.min_eigenvalue, wald.max_eigenvalue
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0:
        return "singular"
    return f"{hi / lo:.3g}"
