"""Solvers: pure functions from data and a start to a :class:`FitTrace`."""

from .batched_em import BatchedParams, fit_em_batched
from .em import em_iteration, fit_em
from .gate_step import gate_step
from .init import init_from_responsibilities, kmeans_init, random_init
from .mle import fit_mle, log_likelihood_and_gradient
from .trace import FitTrace

__all__ = ["FitTrace", "fit_em", "fit_em_batched", "BatchedParams", "fit_mle", "em_iteration", "gate_step", "kmeans_init",
           "random_init", "init_from_responsibilities", "log_likelihood_and_gradient"]
