"""Progress of a fit on stdout (``GaussianMoE(verbose=...)``).

A :class:`FitMonitor` is the ``monitor`` callback of
:func:`moestats.solvers.fit_em_batched`: it prints each EM iteration's
log-likelihood (every 10th with ``verbose=1``, all with ``verbose=2``) of every start
run to its maximum, and each fit's certificate, on the data's scale (the solver's
standardised log-likelihood plus ``offset``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FitMonitor"]


class FitMonitor:
    """Print the progress of a fit.

    Parameters
    ----------
    verbose : int
        0: silent; 1: starts, every 10th EM iteration, certificates; 2: every iteration.
    offset : float
        Added to the solver's log-likelihoods (the standardisation's Jacobian).

    Examples
    --------
    >>> import numpy as np
    >>> m = FitMonitor(2, offset=-1.0)
    >>> m("em", 3, np.array([0]), np.array([-10.0]))
    iteration    3  start 0  log-likelihood -11.000000
    """

    def __init__(self, verbose=0, offset=0.0):
        if not (isinstance(verbose, (int, np.integer)) and not isinstance(verbose, bool)
                and verbose >= 0):
            raise ValueError(f"verbose must be an integer >= 0, got {verbose!r}")
        self.verbose = int(verbose)
        self.offset = float(offset)

    def short_runs(self, lls):
        """Report the log-likelihoods after the short runs of every start."""
        if self.verbose and lls is not None:
            vals = " ".join(f"{v + self.offset:.4f}" for v in np.asarray(lls))
            print(f"short runs of {len(lls)} starts: log-likelihood {vals}", flush=True)

    def __call__(self, stage, it, rows, values):
        if not self.verbose:
            return
        if stage == "em":
            if self.verbose >= 2 or it % 10 == 0 or it == 1:
                for r, v in zip(rows, values):
                    print(f"iteration {it:4d}  start {int(r)}  log-likelihood "
                          f"{v + self.offset:.6f}", flush=True)
            return
        for r, cert in zip(rows, values):
            if cert is None:
                continue
            verdict = "certified" if cert.certified else f"NOT certified ({cert.reason})"
            print(f"finish  start {int(r)}: {verdict}; predicted gain "
                  f"{cert.predicted_gain:.2e} nats, {cert.passes} passes", flush=True)
