"""Solvers: pure functions from data and starts to :class:`FitTrace` objects.

One EM engine (:func:`fit_em_batched`; :func:`fit_em` is its R = 1 case), direct
maximum likelihood by trust-region Newton (:func:`fit_mle`), the second-order finish
and stationarity certificate every fit ends with, the parameter space, and the starts.
"""

from .batched_em import BatchedParams, fit_em_batched
from .batched_params import ParamLayout
from .certify import Certificate
from .em import fit_em
from .init import init_from_responsibilities, kmeans_init, random_init
from .mle import fit_mle, log_likelihood_and_gradient
from .space import THEORY_SPACE, ParameterSpace
from .trace import FitTrace

__all__ = ["FitTrace", "fit_em", "fit_em_batched", "BatchedParams", "ParamLayout",
           "fit_mle", "kmeans_init", "random_init", "init_from_responsibilities",
           "log_likelihood_and_gradient", "Certificate", "ParameterSpace", "THEORY_SPACE"]
