"""``GaussianMoE``: the scikit-learn estimator (orchestration only; the maths is in the solvers)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import RegressorTags, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .backends import get_backend
from .gates import make_gate
from .inference.estimator_methods import (InformationCriteriaMixin, PredictiveMixin,
                                          WaldInferenceMixin)
from .input_checks import (check_data_scale, check_hyperparameters, reconcile_init_params,
                           warm_start_usable)
from .likelihood import log_likelihood_samples
from .params import MoEParams
from .sampling import sample_conditional
from .solvers import ParameterSpace
from .solvers.monitor import FitMonitor as _Monitor
from .solvers.run_starts import fit_starts, report_repairs
from .solvers.scaling import Standardizer
from .solvers.starts import emem, make_starts
from .structure import n_free, structured_space
from .weights import check_sample_weight
from .weights import positive_weight_rows as _positive_weight_rows

__all__ = ["GaussianMoE", "NumericalRepairWarning"]


def _check_y_numeric(y):
    """Refuse a non-numeric target with a message naming its dtype (numpy's own error for
    strings is about ``add.reduce``)."""
    kind = getattr(np.asarray(y), "dtype", np.dtype(float)).kind
    if kind in "USaVMm":
        raise ValueError(f"y must be numeric, got an array of dtype "
                         f"{np.asarray(y).dtype}; convert it with y.astype(float)")


class NumericalRepairWarning(UserWarning):
    """A fit had to repair numerical trouble (empty expert, singular system, floored variance, failed start)."""


class GaussianMoE(PredictiveMixin, WaldInferenceMixin, InformationCriteriaMixin,
                  BaseEstimator):
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
        family name for its default; ``"constant"``: constant weights (the softmax gate
        without covariates, the mixture of linear regressions).
    solver : {"em", "mle"}, default="em"
        Generalised EM (monotone in the likelihood, batched over the starts) followed
        by a second-order finish, or direct maximisation of the likelihood by
        trust-region Newton with its exact Hessian. Both end with the stationarity
        certificate (see ``converged_``).
    tol : float, default=1e-6
        Relative change of the log-likelihood that ends the EM phase. It is *not*
        the convergence criterion: a fit is converged only when certified.
    max_iter : int, default=2000
        EM iterations (``solver="em"``) or Newton steps (``solver="mle"``) at most.
    n_init : int, default=10
        Number of different starts (ignored for an ``MoEParams`` init or a warm start).
    init : {"mixed", "kmeans", "random"} or MoEParams, default="mixed"
        "mixed": the starts cycle through k-means on standardised (x, y) (each from
        its own seed and subsample), random partitions (flexmix's default) and random
        lines (:func:`moestats.solvers.starts.make_starts`); "kmeans" or "random"
        (random partitions) use one kind only. An ``MoEParams``: used as given (this is
        how simulations start near the truth), except for what the gate fixes: nonzero
        gate intercepts with the top-1 gate (they do not enter its density) are set to
        0, and a temperature other than a gate's fixed one (``learn_temperature=False``,
        or 1 for a gate without one) is replaced by it; each replacement issues a
        ``UserWarning`` naming it. Another number of experts or features raises.
    n_keep : int, default=3
        With more starts than this, every start runs ``short_iter`` EM iterations and
        only the best ``n_keep`` are run to their maximum (short-run selection, "emEM").
    short_iter : int, default=50
        EM iterations of the short runs (``tests/test_init.py`` checks that 10 starts
        with 50 short iterations reach the best of 50 long random-partition runs on
        three-regime problems, where 20 short iterations did not always).
    var_floor : float or "auto", default="auto"
        Lower bound on the expert variances; "auto" is ``1e-6`` times the squared
        robust scale of y (1.4826 times its median absolute deviation), so that one
        outlier cannot inflate it.
    space : ParameterSpace, dict or None, default=None
        The parameter space :math:`\\Theta` the likelihood is maximised over (absolute
        variance bounds, a bound on every gate and expert coordinate; see
        :class:`moestats.solvers.ParameterSpace`). Default: no bounds but ``var_floor``.
        With a finite ``coef_bound`` the data are not rescaled internally.
    certify_tol : float, default=1e-3
        Nats. A fit is certified (``converged_``) when the second-order model of the
        observed log-likelihood at its endpoint predicts at most this much further gain
        and shows no direction of ascent (:mod:`moestats.solvers.certify`).
    backend : {"auto", "numpy", "numba", "cupy"}, default="auto"
        Array backend of the EM passes over the data (see :mod:`moestats.backends`):
        "numpy" is the reference, "numba" compiled CPU kernels; the results agree to
        rounding, not bit for bit. "auto" is :func:`moestats.backends.get_backend`:
        "numba" from :data:`moestats.backends.NUMBA_MIN_SAMPLE_REPLICATIONS` samples on
        when Numba imports, else "numpy". A backend asked for by name that cannot run
        here raises :class:`moestats.backends.BackendUnavailableError` (an
        ``ImportError``) at ``fit``. ``solver="mle"`` runs on NumPy.
    random_state : int, RandomState or None
    warm_start : bool, default=False
        Start a new ``fit`` from the previous solution (``n_init`` then ignored). When
        ``n_experts`` has changed since (``set_params``), a ``UserWarning`` says the warm
        start is ignored and the fit starts from ``init``; another number of features
        raises scikit-learn's ``ValueError``.
    gate_features, expert_features : sequence of int or str, or None, default=None
        The columns of ``X`` (indices, or names when ``X`` is a DataFrame) that feed
        the gate and the experts: :math:`w_j(x_G)` and :math:`a_j^\\top x_E + b_j`
        (None: all columns). The other slopes are held at 0 (:mod:`moestats.structure`);
        they appear in the fitted attributes as 0 and get no standard error. With
        ``gate="constant"`` the gate has no covariate (the mixture of linear
        regressions). Not ``gate_features`` with the top-K gate.
    shared_variance : bool, default=False
        Equal expert variances :math:`\\nu_1 = \\dots = \\nu_k` (flexmix's and
        mixtools' equal-variance mixture of regressions).
    verbose : int, default=0
        0: silent. 1: the starts, every 10th EM iteration's log-likelihood of every
        start run to its maximum, and each fit's certificate. 2: every EM iteration.
        Printed to stdout, on the data's scale.

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
        EM iterations of the kept start.
    converged_ : bool
        Whether the kept fit is a **certified** local maximum (``certificate_``).
    certificate_ : Certificate
        Predicted remaining gain, projected gradient norm, extreme eigenvalues of the
        observed information (in the solver's standardised coordinates), active
        bounds and passes over the data.
    n_passes_ : int
        Passes over the data of the kept start's fit.
    start_log_likelihoods_ : ndarray
        Final log-likelihood of every start that was run to its maximum.
    short_run_log_likelihoods_ : ndarray or None
        Log-likelihood of every start after the short runs (None without them).
    n_features_in_ : int
    space_ : ParameterSpace
        The parameter space of the fit, with its structure (``gate_features``,
        ``expert_features``, ``shared_variance`` resolved to column indices).
    backend_ : str
        The backend the fit ran on ("numpy" for ``solver="mle"``).
    covariance_ : ndarray (p, p)
        Inverse observed information of the free parameters on the user's scale
        (computed on first access from the training data, which the estimator keeps a
        reference to; see :meth:`inference`).
    standard_errors_ : StandardErrors
        Wald standard errors in the layout of the fitted attributes (:meth:`summary`,
        :meth:`conf_int`, :func:`moestats.bootstrap` for the bootstrap).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import GaussianMoE, get_setup
    >>> X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(0))
    >>> est = GaussianMoE(2, random_state=0).fit(X, y)
    >>> est.converged_, sorted(est.expert_coef_.round(0).ravel().tolist())  # any labels
    (True, [-20.0, 20.0])
    """

    def __init__(self, n_experts=2, *, gate="softmax", solver="em", tol=1e-6,
                 max_iter=2000, n_init=10, init="mixed", n_keep=3, short_iter=50,
                 var_floor="auto", space=None, certify_tol=1e-3, backend="auto",
                 random_state=None, warm_start=False, gate_features=None,
                 expert_features=None, shared_variance=False, verbose=0):
        self.n_experts = n_experts
        self.gate = gate
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.n_keep = n_keep
        self.short_iter = short_iter
        self.var_floor = var_floor
        self.space = space
        self.certify_tol = certify_tol
        self.backend = backend
        self.random_state = random_state
        self.warm_start = warm_start
        self.gate_features = gate_features
        self.expert_features = expert_features
        self.shared_variance = shared_variance
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    def _check_hyperparameters(self):
        """The validated gate (a clone), after checking every hyperparameter."""
        return check_hyperparameters(self)

    def _check_init_params(self, params, d, gate):
        # top-1: beta_0 does not enter; a fixed tau is the gate's: replaced, with a warning
        warm = self.warm_start and params is getattr(self, "params_", None)
        return reconcile_init_params(params, self.n_experts, d, gate, source=(
            "the previous fit's params_ (warm_start)" if warm else "init"))

    def n_free_parameters(self, n_features):
        """Number of free parameters: gate (reference fixed) plus ``k (d + 2)`` expert ones,
        less the slopes and variances a fitted structure pins or ties."""
        gate = getattr(self, "gate_", None) or make_gate(
            "softmax" if self.gate == "constant" else self.gate)
        return n_free(gate, self.n_experts, n_features, getattr(self, "space_", None))

    # ------------------------------------------------------------------ fit
    def _space(self):
        space = self.space
        if space is None:
            return ParameterSpace()
        if isinstance(space, dict):
            return ParameterSpace.from_dict(space)
        if not isinstance(space, ParameterSpace):
            raise ValueError(f"space must be a ParameterSpace, a dict or None, got {space!r}")
        return space

    def _default_floor(self, y):
        """``var_floor="auto"``: 1e-6 times the squared robust scale of y (MAD-based),
        so that one outlier cannot inflate it."""
        med = np.median(y)
        mad = 1.4826 * np.median(np.abs(y - med))
        scale2 = mad * mad if mad > 0 else float(np.var(y))
        return 1e-6 * scale2 if scale2 > 0 else 1e-12 * max(1.0, float(np.max(y * y)))

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``(X, y)`` by maximum likelihood; certify the result.

        The solvers work in standardised coordinates
        (:class:`moestats.solvers.scaling.Standardizer`); parameters and
        log-likelihoods are reported on the data's scale. With ``init="kmeans"`` or
        ``"random"`` (or ``"mixed"``), ``n_init`` different starts are run for
        ``short_iter`` EM iterations together, the best ``n_keep`` are run to
        their maximum, and the fit with the highest log-likelihood is kept (a
        ConvergenceWarning says when it is not certified).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights :math:`c_i`: the fit maximises
            :math:`\\sum_i c_i \\log p(y_i \\mid x_i)` (weighted EM scales the
            responsibilities of sample :math:`i` by :math:`c_i`; integer weights fit
            exactly as repeated rows). Samples of weight 0 are dropped; the passes run
            on the NumPy backend (``backend_`` says so); the starts themselves are drawn
            unweighted. The top-K gate takes integer weights only (fitted as repeated
            rows). Standard errors then treat the weights as frequencies.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> est.converged_, est.certificate_.predicted_gain < est.certify_tol
        (True, True)
        """
        gate = self._check_hyperparameters()
        warm = warm_start_usable(self)  # False, with a warning, after n_experts changed
        _check_y_numeric(y)
        X, y = validate_data(self, X, y, reset=not warm, y_numeric=True, dtype=np.float64)
        check_data_scale(X, y)  # y whose squares overflow float64, X beyond its range
        X, y, weights = _positive_weight_rows(X, y, sample_weight, gate)
        n, d = X.shape
        space = structured_space(
            self._space(), gate, self.gate, gate_features=self.gate_features,
            expert_features=self.expert_features, shared_variance=self.shared_variance,
            n_features=d, feature_names=getattr(self, "feature_names_in_", None))
        n_params = n_free(gate, self.n_experts, d, space)
        if n < n_params:
            raise ValueError(
                f"n_samples = {n} is smaller than the number of free parameters "
                f"({n_params}) of a {self.n_experts}-expert model on {d} feature(s)")
        floor = self._default_floor(y) if self.var_floor == "auto" else float(self.var_floor)
        if np.isfinite(space.coef_bound):
            scaler = Standardizer.identity(n, d)  # a box stays a box only unscaled
        else:
            scaler = Standardizer(X, y, center=gate.shift_invariant)
        Xs, ys = scaler.data(X, y)
        floor_s = scaler.var_floor(floor)
        space_s = scaler.space(space)
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        backend = get_backend(self.backend, X, n_samples=n) if (
            self.solver == "em" and weights is None) else "numpy"
        offset = scaler.log_likelihood_offset() * (1.0 if weights is None else
                                                  float(weights.sum()) / n)
        monitor = _Monitor(self.verbose, offset)

        short = None
        if warm or isinstance(self.init, MoEParams):
            given = self.params_ if warm else self.init
            starts = [scaler.to_internal(self._check_init_params(given, d, gate))]
        else:
            kinds = "mixed" if self.init == "mixed" else (
                "kmeans" if self.init == "kmeans" else "random_partition")
            n_starts = 1 if warm else self.n_init
            with np.errstate(over="ignore", under="ignore", divide="ignore"):
                starts = make_starts(gate, Xs, ys, self.n_experts, n_starts, rng, floor_s,
                                     gate.initial_temperature(), kinds=kinds)
                if len(starts) > self.n_keep:
                    starts, short = emem(gate, Xs, ys, starts, short_iter=self.short_iter,
                                         n_keep=self.n_keep, backend=backend,
                                         var_floor=floor_s, sample_weight=weights,
                                         space=space_s)
                    monitor.short_runs(short)
        traces = fit_starts(gate, Xs, ys, starts, solver=self.solver, tol=self.tol,
                            max_iter=self.max_iter, var_floor=floor_s, space=space_s,
                            certify_tol=self.certify_tol, backend=backend,
                            sample_weight=weights, monitor=monitor)
        lls = np.array([t.log_likelihood if "error" not in t.events else -np.inf
                        for t in traces])
        if not np.any(np.isfinite(lls)):
            raise RuntimeError("every start failed: " + "; ".join(
                f"start {i}: {t.events.get('error', 'non-finite log-likelihood')}"
                for i, t in enumerate(traces)))
        failed = [f"start {i}: {t.events['error']}" for i, t in enumerate(traces)
                  if "error" in t.events]
        if failed:
            warnings.warn("dropped failed start(s): " + "; ".join(failed),
                          NumericalRepairWarning, stacklevel=2)
        # the highest maximum found; if it is not certified, say so (ConvergenceWarning)
        best = traces[int(np.argmax(lls))]
        report_repairs(best.events, NumericalRepairWarning)
        if not best.converged:
            reason = best.certificate.reason if best.certificate is not None else (
                f"stopped after max_iter = {self.max_iter} iterations")
            warnings.warn(
                f"the best of {len(traces)} fitted start(s) is not a certified maximum: "
                f"{reason}; increase max_iter, or see certificate_", ConvergenceWarning,
                stacklevel=2)
        self._set_fitted(gate, best, scaler, offset)
        self.start_log_likelihoods_ = lls + offset
        self.short_run_log_likelihoods_ = None if short is None else short + offset
        self.backend_ = backend
        # kept (by reference) for the inference computed on demand (covariance_, summary)
        self.space_ = space
        self._train_data = (X, y)
        self._train_weights = weights
        self._inference_cache = {}
        return self

    def _set_fitted(self, gate, trace, scaler, offset):
        p = scaler.to_user(trace.params)
        self.gate_ = gate
        self.params_ = p
        self.gate_coef_ = p.gate_coef
        self.gate_intercept_ = p.gate_intercept
        self.temperature_ = p.temperature
        self.gate_slope_over_temperature_ = p.gate_coef / p.temperature
        self.expert_coef_ = p.expert_coef
        self.expert_intercept_ = p.expert_intercept
        self.expert_var_ = p.expert_var
        self.log_likelihood_ = trace.log_likelihood + offset
        self.log_likelihoods_ = trace.log_likelihoods + offset
        self.n_iter_ = trace.n_iter
        self.converged_ = trace.converged
        self.certificate_ = trace.certificate
        self.n_passes_ = trace.passes
        self.fit_events_ = trace.events

    # -------------------------------------------------------------- predict
    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def _check_Xy(self, X, y):
        check_is_fitted(self)
        _check_y_numeric(y)
        return validate_data(self, X, y, reset=False, y_numeric=True, dtype=np.float64)

    def score_samples(self, X, y):
        """Per-sample log-likelihood :math:`\\log p(y_i \\mid x_i)`, shape (n_samples,)."""
        X, y = self._check_Xy(X, y)
        return log_likelihood_samples(self.gate_, self.params_, X, y)

    def score(self, X, y, sample_weight=None):
        """Mean log-likelihood :math:`\\frac1n\\sum_i \\log p(y_i \\mid x_i)`
        (weighted mean :math:`\\sum_i c_i \\log p(y_i \\mid x_i) / \\sum_i c_i` with
        ``sample_weight``, validated as in :meth:`fit`)."""
        X, y = self._check_Xy(X, y)
        c = check_sample_weight(sample_weight, X)
        return float(np.average(log_likelihood_samples(self.gate_, self.params_, X, y),
                                weights=c))

    def sample(self, X, random_state=None):
        """Draw :math:`y_i \\sim p(\\cdot \\mid x_i)` from the fitted model, shape (n_samples,)."""
        X = self._check_X(X)
        rng = np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))
        return sample_conditional(self.gate_, self.params_, X, rng)[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.target_tags.required = True
        tags.regressor_tags = RegressorTags(poor_score=True)
        return tags
