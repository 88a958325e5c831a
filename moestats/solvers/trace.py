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
        Observed log-likelihood at the start, after every EM iteration and after
        every accepted step of the finish.
    n_iter : int
        EM iterations run (the finish's Newton steps are in ``log_likelihoods``).
    converged : bool
        Whether the fit is certified (``certificate.certified``); for runs without a
        certificate, whether the relative change of the log-likelihood fell below
        ``tol``.
    events : dict
        Numerical repairs made along the way, e.g. ``{"empty_experts": {1},
        "singular_experts": set(), "floored_variances": {0}}``.
    certificate : Certificate or None
        The stationarity certificate (:mod:`moestats.solvers.certify`).
    passes : int
        Passes over the data (E-steps, statistics, derivative and value evaluations).
    """

    params: MoEParams
    log_likelihoods: np.ndarray
    n_iter: int
    converged: bool
    events: dict = field(default_factory=dict)
    certificate: object = None
    passes: int = 0

    @property
    def log_likelihood(self) -> float:
        """Final observed log-likelihood."""
        return float(self.log_likelihoods[-1])
