"""Bootstrap of a fitted mixture of experts, with label alignment.

Replicate :math:`b = 1, \\dots, B` draws a data set :math:`(X^{(b)}, y^{(b)})`,

* ``kind="nonparametric"``: :math:`n` pairs resampled with replacement;
* ``kind="parametric"``: the same :math:`X`, :math:`y^{(b)}_i \\sim
  p_{\\hat\\theta}(\\cdot \\mid x_i)` from the fitted model,

refits the model **starting from the fit** :math:`\\hat\\theta` (one start, the
fit's hyperparameters, certified as every fit), and relabels the refit to the fit's
labels and gauge (:func:`moestats.inference.alignment.align_to_reference`) before any
statistic is taken: without it, label switching inflates the standard errors
(the user guide's *Inference* and *Choosing k*). The reported parameters :math:`\\psi` are those of the Wald
summary (:mod:`moestats.inference.parameters`); the bootstrap standard error is the
standard deviation of :math:`\\psi^{(b)}` over the replicates, the interval of level
:math:`1 - \\alpha` the percentile interval
:math:`[\\psi_{(\\alpha/2)}, \\psi_{(1-\\alpha/2)}]`.

Replicate :math:`b` draws from its own stream, :math:`\\text{SeedSequence}(\\text{seed})
.\\text{spawn}(B)[b]`, and runs with one BLAS thread, so results are reproducible by
seed and the same for any ``n_jobs`` (replicates run in parallel with joblib's loky
backend).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ..sampling import sample_conditional
from .alignment import align_to_reference
from .parameters import StandardErrors, parameter_rows, row_values
from .table import SummaryFrame, check_alpha

__all__ = ["bootstrap", "BootstrapResult"]

KINDS = ("nonparametric", "parametric")


def _seed_sequence(random_state):
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state!r}")
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(2**31 - 1)))
    raise ValueError("random_state must be None, an int >= 0, a SeedSequence, a Generator "
                     f"or a RandomState, got {random_state!r}")


def _replicate(base, X, y, params, gate, kind, seed):
    """One replicate: (aligned params or None, order, certified, log-likelihood, message)."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    if kind == "nonparametric":
        idx = rng.integers(0, n, size=n)
        Xb, yb = X[idx], y[idx]
    else:
        Xb, yb = X, sample_conditional(gate, params, X, rng)[0]
    est = clone(base)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            est.fit(Xb, yb)
        except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as exc:
            return None, None, False, np.nan, f"{type(exc).__name__}: {exc}"
    aligned, order = align_to_reference(est.params_, params, gate)
    return aligned, order, bool(est.converged_), float(est.log_likelihood_), ""


def bootstrap(estimator, X, y, n_boot=200, kind="nonparametric", n_jobs=1,
              random_state=None):
    """Bootstrap a fitted :class:`~moestats.GaussianMoE` (see the module docstring).

    Parameters
    ----------
    estimator : GaussianMoE
        A fitted estimator; its hyperparameters (gate, solver, parameter space,
        tolerances) are used for every refit, started from ``estimator.params_``.
    X : array-like (n, d)
    y : array-like (n,)
        The data the estimator was fitted on.
    n_boot : int, default=200
        Number of replicates (>= 1).
    kind : {"nonparametric", "parametric"}, default="nonparametric"
    n_jobs : int or None, default=1
        Parallel workers (joblib, loky backend); -1 for all cores.
    random_state : int, SeedSequence, Generator, RandomState or None
        Seed of the replicate streams.

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import GaussianMoE, bootstrap, get_setup
    >>> X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(0))
    >>> est = GaussianMoE(2, random_state=0).fit(X, y)
    >>> boot = bootstrap(est, X, y, n_boot=20, random_state=0)
    >>> boot.replicates.shape, boot.summary().columns.tolist()[:3]
    ((20, 8), ['estimate', 'std. error', 'ci lower'])
    """
    check_is_fitted(estimator)
    if not isinstance(n_boot, numbers.Integral) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be 'nonparametric' or 'parametric', got {kind!r}")
    if n_jobs is not None and (not isinstance(n_jobs, numbers.Integral)
                               or isinstance(n_jobs, bool) or n_jobs == 0):
        raise ValueError(f"n_jobs must be None or a non-zero integer, got {n_jobs!r}")
    X, y = estimator._check_Xy(X, y)
    seeds = _seed_sequence(random_state).spawn(int(n_boot))
    params, gate = estimator.params_, estimator.gate_
    base = clone(estimator).set_params(init=params, n_init=1, warm_start=False,
                                       random_state=0)
    if n_jobs in (None, 1):
        out = [_replicate(base, X, y, params, gate, kind, s) for s in seeds]
    else:
        out = Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_replicate)(base, X, y, params, gate, kind, s) for s in seeds)
    return BootstrapResult(estimator, out, kind, getattr(estimator, "feature_names_in_", None))


class BootstrapResult:
    """Replicates of a bootstrap, aligned to the fit, and their statistics.

    Attributes
    ----------
    kind : str
    n_boot : int
    rows : list of ParamRow
        The reported parameters (as in the Wald summary).
    names : list of str
    estimates : ndarray (m,)
        The fit's values.
    replicates : ndarray (n_ok, m)
        Values of the successful replicates, after alignment.
    replicate_params : list of MoEParams
        The aligned refits (successful replicates).
    orders : ndarray of int (n_boot, k)
        The relabelling of every replicate (``-1`` rows for failed refits).
    certified : ndarray of bool (n_boot,)
        Whether each refit was certified.
    log_likelihoods : ndarray (n_boot,)
    failures : list of (int, str)
        Replicates whose refit raised, with the message (excluded).
    """

    def __init__(self, estimator, out, kind, feature_names=None):
        params, gate = estimator.params_, estimator.gate_
        k = params.n_experts
        self.kind, self.n_boot = kind, len(out)
        self.gate, self.params = gate, params
        self.rows = parameter_rows(gate, params, feature_names)
        self.names = [r.name for r in self.rows]
        self.estimates = row_values(self.rows, params)
        self.orders = np.full((len(out), k), -1, dtype=int)
        self.certified = np.zeros(len(out), dtype=bool)
        self.log_likelihoods = np.full(len(out), np.nan)
        self.failures, self.replicate_params = [], []
        for b, (p, order, cert, ll, msg) in enumerate(out):
            if p is None:
                self.failures.append((b, msg))
                continue
            self.orders[b], self.certified[b], self.log_likelihoods[b] = order, cert, ll
            self.replicate_params.append(p)
        self.replicates = (np.array([row_values(self.rows, p) for p in self.replicate_params])
                           if self.replicate_params else np.empty((0, len(self.rows))))
        ok = self.orders[:, 0] >= 0
        self.n_relabelled = int(np.sum(np.any(self.orders[ok] != np.arange(k), axis=1)))
        self.reasons = [r.reason for r in self.rows]

    def _masked(self, values):
        return np.where([bool(r) for r in self.reasons], np.nan, values)

    @property
    def std_errors(self) -> np.ndarray:
        """Standard deviation of every reported parameter over the replicates, (m,)."""
        if self.replicates.shape[0] < 2:
            return np.full(len(self.rows), np.nan)
        return self._masked(self.replicates.std(axis=0, ddof=1))

    @property
    def standard_errors(self) -> StandardErrors:
        """Bootstrap standard errors in the layout of the fitted attributes."""
        p = self.params
        return StandardErrors.from_rows(self.rows, self.std_errors, p.n_experts,
                                        p.n_features, self.gate)

    def conf_int(self, alpha=0.05):
        """Percentile intervals of level ``1 - alpha`` (DataFrame: lower, upper)."""
        import pandas as pd
        alpha = check_alpha(alpha)
        if self.replicates.shape[0] == 0:
            lo = hi = np.full(len(self.rows), np.nan)
        else:
            lo, hi = np.quantile(self.replicates, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
        return pd.DataFrame({"lower": self._masked(lo), "upper": self._masked(hi)},
                            index=pd.Index(self.names, name="parameter"))

    def summary(self, alpha=0.05) -> SummaryFrame:
        """Table: estimate, bootstrap std. error, percentile interval, bias, note."""
        ci = self.conf_int(alpha)
        bias = (self.replicates.mean(axis=0) - self.estimates
                if self.replicates.shape[0] else np.full(len(self.rows), np.nan))
        shown = np.array([r.shown for r in self.rows])
        frame = SummaryFrame({"estimate": self.estimates, "std. error": self.std_errors,
                              "ci lower": ci["lower"].to_numpy(),
                              "ci upper": ci["upper"].to_numpy(),
                              "bias": self._masked(bias), "note": self.reasons},
                             index=self.names)[shown]
        frame.index.name = "parameter"
        frame.title = f"Gaussian mixture of experts: {self.kind} bootstrap"
        frame.header = [("Replicates", self.n_boot),
                        ("Used", self.replicates.shape[0]),
                        ("Relabelled", self.n_relabelled),
                        ("Not certified", int(np.sum(~self.certified))
                         - len(self.failures)),
                        ("Failed", len(self.failures)), ("Interval", "percentile")]
        frame.alpha = check_alpha(alpha)
        return frame

    def __repr__(self):
        return (f"BootstrapResult(kind={self.kind!r}, n_boot={self.n_boot}, "
                f"used={self.replicates.shape[0]}, relabelled={self.n_relabelled})")
