"""The result of one solver run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..params import MoEParams

__all__ = ["FitTrace"]


@dataclass
class FitTrace:
    """Outcome of a solver run.

    Attributes
    ----------
    params : MoEParams
        Final parameters.
    log_likelihoods : ndarray
        Observed log-likelihood at the start and after every iteration.
    n_iter : int
        Iterations run.
    converged : bool
        Whether the relative change of the log-likelihood fell below ``tol``.
    events : dict
        Numerical repairs made along the way, e.g. ``{"empty_experts": {1},
        "singular_experts": set(), "floored_variances": {0}}``.
    """

    params: MoEParams
    log_likelihoods: np.ndarray
    n_iter: int
    converged: bool
    events: dict = field(default_factory=dict)

    @property
    def log_likelihood(self) -> float:
        """Final observed log-likelihood."""
        return float(self.log_likelihoods[-1])
