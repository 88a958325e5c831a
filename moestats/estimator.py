"""``GaussianMoE``: the scikit-learn estimator (orchestration only; the maths is in the solvers)."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import RegressorTags, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .backends import _check_name as _check_backend_name
from .backends import get_backend
from .gates import Gate, make_gate
from .likelihood import log_likelihood_samples
from .params import MoEParams
from .sampling import sample_conditional
from .solvers import fit_em, fit_mle, kmeans_init, random_init
from .solvers.batched_em import fit_em_batched

__all__ = ["GaussianMoE", "NumericalRepairWarning"]


class NumericalRepairWarning(UserWarning):
    """A fit had to repair numerical trouble (empty expert, singular system, floored variance, failed start)."""


class GaussianMoE(BaseEstimator):
    """Gaussian mixture of linear experts, fitted by maximum likelihood.

    .. math::

        p(y \\mid x) = \\sum_{j=1}^{k} w_j(x)\\,\\mathcal N(y \\mid a_j^\\top x + b_j, \\nu_j),

    with gate weights :math:`w(x)` from one of four families (softmax, top-K,
    temperature, activation; see :mod:`moestats.gates`). The last expert is the
    gate's reference (:math:`\\beta_{1k} = 0, \\beta_{0k} = 0`).

    Parameters
    ----------
    n_experts : int, default=2
        Number of experts ``k``.
    gate : Gate or str, default="softmax"
        A gate instance (``SoftmaxGate()``, ``TopKGate(k_active)``,
        ``TemperatureGate(temperature, learn_temperature)``,
        ``ActivationGate(activation, temperature, learn_temperature)``) or a
        family name for its default.
    solver : {"em", "mle"}, default="em"
        Generalised EM (monotone in the likelihood), or direct maximisation of the
        likelihood with L-BFGS-B and its analytic gradient.
    tol : float, default=1e-6
        Relative change of the log-likelihood at which EM stops (``ftol`` of L-BFGS-B).
    max_iter : int, default=2000
    n_init : int, default=1
        Number of starts; the fit with the highest log-likelihood is kept.
    init : {"kmeans", "random"} or MoEParams, default="kmeans"
        "kmeans": k-means on standardised (x, y), per-cluster least squares, a gate
        fitted to the softened labels. "random": random responsibilities. An
        ``MoEParams``: used as given (this is how simulations start near the truth).
    var_floor : float or "auto", default="auto"
        Lower bound on the expert variances; "auto" is ``1e-6 * var(y)``.
    backend : {"auto", "numpy", "numba", "cupy"}, default="auto"
        Array backend of the EM likelihood kernels (see :mod:`moestats.backends`).
        "numpy" is the reference (:func:`moestats.solvers.fit_em`); "numba" and
        "cupy" fit through :func:`moestats.solvers.batched_em.fit_em_batched` with
        one replication (compiled CPU kernels, or the GPU); the results agree with
        "numpy" to rounding, not bit for bit. "auto" is
        :func:`moestats.backends.get_backend`: "numba" from
        :data:`moestats.backends.NUMBA_MIN_SAMPLE_REPLICATIONS` samples on when Numba
        imports, else "numpy" (the estimator takes NumPy input only, so never "cupy").
        A backend asked for by name that cannot run here raises
        :class:`moestats.backends.BackendUnavailableError` (an ``ImportError``) at
        ``fit``. ``solver="mle"`` always uses the NumPy reference, whatever this says.
    random_state : int, RandomState or None
    warm_start : bool, default=False
        Start a new ``fit`` from the previous solution (``n_init`` then ignored).

    Attributes
    ----------
    params_ : MoEParams
    gate_ : Gate
        The validated gate used for the fit.
    gate_coef_, gate_intercept_ : ndarrays (k, d), (k,)
    temperature_ : float
    gate_slope_over_temperature_ : ndarray (k, d)
        :math:`\\beta_1/\\tau`, the identifiable gate slope of the temperature gate.
    expert_coef_, expert_intercept_, expert_var_ : ndarrays (k, d), (k,), (k,)
    log_likelihood_ : float
        Observed log-likelihood of the training data at the solution.
    log_likelihoods_ : ndarray
        Its trajectory over the iterations of the kept start.
    n_iter_ : int
    converged_ : bool
    n_features_in_ : int
    backend_ : str
        The backend the fit ran on ("numpy" for ``solver="mle"``).
    """

    def __init__(self, n_experts=2, *, gate="softmax", solver="em", tol=1e-6,
                 max_iter=2000, n_init=1, init="kmeans", var_floor="auto",
                 backend="auto", random_state=None, warm_start=False):
        self.n_experts = n_experts
        self.gate = gate
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.var_floor = var_floor
        self.backend = backend
        self.random_state = random_state
        self.warm_start = warm_start

    # ------------------------------------------------------------ validation
    def _check_hyperparameters(self):
        k = self.n_experts
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_experts must be an integer >= 1, got {k!r}")
        for name, low in (("max_iter", 1), ("n_init", 1)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if self.solver not in ("em", "mle"):
            raise ValueError(f"solver must be 'em' or 'mle', got {self.solver!r}")
        _check_backend_name(self.backend)
        if not (isinstance(self.init, MoEParams) or self.init in ("kmeans", "random")):
            raise ValueError(
                f"init must be 'kmeans', 'random' or an MoEParams, got {self.init!r}")
        if not (self.var_floor == "auto" or (
                isinstance(self.var_floor, numbers.Real) and self.var_floor > 0)):
            raise ValueError(f"var_floor must be 'auto' or a number > 0, got {self.var_floor!r}")
        # a string names the default of a family; an instance is cloned, never modified
        gate = clone(self.gate) if isinstance(self.gate, Gate) else make_gate(self.gate)
        gate.validate(k)
        return gate

    def _check_init_params(self, params, d, gate):
        k = self.n_experts
        if params.n_experts != k or params.n_features != d:
            raise ValueError(
                f"init parameters have {params.n_experts} experts and {params.n_features} "
                f"features, but the estimator has n_experts = {k} and the data "
                f"n_features = {d}")
        changes = {}
        if not gate.fits_intercept and np.any(params.gate_intercept != 0):
            changes["gate_intercept"] = np.zeros(k)  # top-1: beta_0 does not enter
        if not gate.learns_temperature and params.temperature != gate.initial_temperature():
            changes["temperature"] = gate.initial_temperature()  # tau is not free
        return params.replace(**changes) if changes else params

    def n_free_parameters(self, n_features):
        """Number of free parameters: gate (reference fixed) plus ``k (d + 2)`` expert ones."""
        gate = getattr(self, "gate_", None) or make_gate(self.gate)
        return gate.n_free_params(self.n_experts, n_features) + self.n_experts * (n_features + 2)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fit the model to ``(X, y)`` by maximum likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        gate = self._check_hyperparameters()
        warm = self.warm_start and hasattr(self, "params_")
        X, y = validate_data(self, X, y, reset=not warm, y_numeric=True, dtype=np.float64)
        n, d = X.shape
        n_params = gate.n_free_params(self.n_experts, d) + self.n_experts * (d + 2)
        if n < n_params:
            raise ValueError(
                f"n_samples = {n} is smaller than the number of free parameters "
                f"({n_params}) of a {self.n_experts}-expert model on {d} feature(s)")
        var_y = float(np.var(y))
        floor = (1e-6 * var_y if var_y > 0 else 1e-12) if self.var_floor == "auto" else float(self.var_floor)
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))

        if warm:
            starts = [lambda: self._check_init_params(self.params_, d, gate)]
        elif isinstance(self.init, MoEParams):
            given = self._check_init_params(self.init, d, gate)
            starts = [lambda: given]
        else:
            make = kmeans_init if self.init == "kmeans" else random_init
            starts = [
                (lambda r=np.random.default_rng(rng.integers(2**63)):
                 make(gate, X, y, self.n_experts, r, floor, gate.initial_temperature()))
                for _ in range(self.n_init)
            ]

        backend = get_backend(self.backend, X, n_samples=n) if self.solver == "em" else "numpy"
        if self.solver == "mle":
            solve = fit_mle
        elif backend == "numpy":
            solve = fit_em
        else:
            def solve(gate, X, y, init, **kwargs):
                return fit_em_batched(gate, X[None], y[None], [init], backend=backend,
                                      **kwargs)[0]
        best, failures = None, []
        for i, start in enumerate(starts):
            try:
                with np.errstate(over="ignore", under="ignore", divide="ignore"):
                    trace = solve(gate, X, y, start(), tol=self.tol,
                                  max_iter=self.max_iter, var_floor=floor)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                failures.append(f"start {i}: {exc}")
                continue
            if best is None or trace.log_likelihood > best.log_likelihood:
                best = trace
        if best is None:
            raise RuntimeError("every start failed: " + "; ".join(failures))
        if failures:
            warnings.warn("dropped failed start(s): " + "; ".join(failures),
                          NumericalRepairWarning, stacklevel=2)
        self._report_events(best.events)
        if not best.converged:
            warnings.warn(
                f"the best of {len(starts)} start(s) did not converge in max_iter = "
                f"{self.max_iter} iterations (tol = {self.tol}); increase max_iter or tol",
                ConvergenceWarning, stacklevel=2)
        self._set_fitted(gate, best)
        self.backend_ = backend
        return self

    @staticmethod
    def _report_events(events):
        labels = {"empty_experts": "expert(s) with no responsibility kept their parameters",
                  "singular_experts": "singular weighted least squares solved by pseudo-inverse",
                  "floored_variances": "variance(s) floored at var_floor"}
        for key, text in labels.items():
            if events.get(key):
                warnings.warn(f"{text}: expert index {sorted(events[key])}",
                              NumericalRepairWarning, stacklevel=3)

    def _set_fitted(self, gate, trace):
        p = trace.params
        self.gate_ = gate
        self.params_ = p
        self.gate_coef_ = p.gate_coef
        self.gate_intercept_ = p.gate_intercept
        self.temperature_ = p.temperature
        self.gate_slope_over_temperature_ = p.gate_coef / p.temperature
        self.expert_coef_ = p.expert_coef
        self.expert_intercept_ = p.expert_intercept
        self.expert_var_ = p.expert_var
        self.log_likelihood_ = trace.log_likelihood
        self.log_likelihoods_ = trace.log_likelihoods
        self.n_iter_ = trace.n_iter
        self.converged_ = trace.converged
        self.fit_events_ = trace.events

    # -------------------------------------------------------------- predict
    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def _check_Xy(self, X, y):
        check_is_fitted(self)
        return validate_data(self, X, y, reset=False, y_numeric=True, dtype=np.float64)

    def predict_proba(self, X):
        """Gate weights :math:`w_j(x)`, shape (n_samples, n_experts)."""
        X = self._check_X(X)
        return self.gate_.weights(self.params_, X)

    def predict(self, X):
        """Conditional mean :math:`E[y\\mid x] = \\sum_j w_j(x)(a_j^\\top x + b_j)`."""
        X = self._check_X(X)
        p = self.params_
        means = X @ p.expert_coef.T + p.expert_intercept
        return np.sum(self.gate_.weights(p, X) * means, axis=1)

    def score_samples(self, X, y):
        """Per-sample log-likelihood :math:`\\log p(y_i \\mid x_i)`, shape (n_samples,)."""
        X, y = self._check_Xy(X, y)
        return log_likelihood_samples(self.gate_, self.params_, X, y)

    def score(self, X, y, sample_weight=None):
        """Mean log-likelihood :math:`\\frac1n\\sum_i \\log p(y_i \\mid x_i)`."""
        return float(np.average(self.score_samples(X, y), weights=sample_weight))

    def sample(self, X, random_state=None):
        """Draw :math:`y_i \\sim p(\\cdot \\mid x_i)` from the fitted model, shape (n_samples,)."""
        X = self._check_X(X)
        rng = np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))
        return sample_conditional(self.gate_, self.params_, X, rng)[0]

    def bic(self, X, y):
        """Bayesian information criterion :math:`-2\\ell + p\\log n` (lower is better)."""
        X, y = self._check_Xy(X, y)
        ll = float(np.sum(log_likelihood_samples(self.gate_, self.params_, X, y)))
        return -2.0 * ll + self.n_free_parameters(X.shape[1]) * np.log(X.shape[0])

    def aic(self, X, y):
        """Akaike information criterion :math:`-2\\ell + 2p` (lower is better)."""
        X, y = self._check_Xy(X, y)
        ll = float(np.sum(log_likelihood_samples(self.gate_, self.params_, X, y)))
        return -2.0 * ll + 2.0 * self.n_free_parameters(X.shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.target_tags.required = True
        tags.regressor_tags = RegressorTags(poor_score=True)
        return tags
