"""Inference after the fit: standard errors, bootstrap, posterior and prediction.

Modules, one concept each:

``information``
    Observed information (the exact Hessian of the observed log-likelihood),
    per-sample scores and the Wald covariance (observed or robust sandwich), with
    the unidentified directions stated.
``parameters``
    The reported parameters (natural scale, delta method) and the layout of the
    standard errors.
``summary``
    :class:`WaldInference`: standard errors, Wald intervals and the summary table.
``table``
    :class:`SummaryFrame`: a DataFrame that prints like a statsmodels summary.
``alignment``
    Relabelling a fit to a reference model's labels and gauge.
``bootstrap``
    :func:`bootstrap`: nonparametric and parametric, aligned, parallel, seeded.
``prediction``
    The predictive mixture at given inputs: moments, CDF, quantiles, density.

The estimator exposes all of it: ``GaussianMoE.covariance_``,
``standard_errors_``, ``conf_int``, ``summary``, ``inference``,
``predict_responsibilities``, ``predict_labels``, ``predict(return_std=True)``,
``predict_quantiles``, ``predict_interval``, ``conditional_density``; and
:func:`moestats.bootstrap`.
"""

from .alignment import align_to_reference, relabel
from .bootstrap import BootstrapResult, bootstrap
from .information import (WaldCovariance, observed_information, per_sample_scores,
                          wald_covariance)
from .parameters import ParamRow, StandardErrors, parameter_rows
from .prediction import (log_conditional_density, mixture_cdf, mixture_moments,
                         mixture_quantiles)
from .summary import WaldInference
from .table import SummaryFrame

__all__ = [
    "bootstrap", "BootstrapResult", "WaldInference", "WaldCovariance", "wald_covariance",
    "observed_information", "per_sample_scores", "StandardErrors", "ParamRow",
    "parameter_rows", "SummaryFrame", "relabel", "align_to_reference", "mixture_moments",
    "mixture_cdf", "mixture_quantiles", "log_conditional_density",
]
