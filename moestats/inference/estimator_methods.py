"""The posterior, predictive and Wald-inference methods of
:class:`moestats.GaussianMoE`, as mixins (the estimator module keeps the fitting).

:class:`PredictiveMixin`: gate weights, posterior memberships, the predictive mean
and sd, exact mixture quantiles and intervals, the conditional density
(:mod:`moestats.inference.prediction`). :class:`WaldInferenceMixin`: the observed or
sandwich covariance, standard errors, confidence intervals and the summary table
(:mod:`moestats.inference.information`, :mod:`moestats.inference.summary`). Both use
the fitted attributes of the estimator (``gate_``, ``params_``, ...) and its input
checks (``_check_X``, ``_check_Xy``).

Examples
--------
>>> from moestats import GaussianMoE
>>> from moestats.inference.estimator_methods import PredictiveMixin
>>> issubclass(GaussianMoE, PredictiveMixin)
True
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..likelihood import e_step
from .information import wald_covariance
from .prediction import (check_level, check_levels, log_conditional_density, mixture_moments,
                         mixture_quantiles)
from .summary import WaldInference

__all__ = ["PredictiveMixin", "WaldInferenceMixin", "InformationCriteriaMixin"]


class PredictiveMixin:
    """Posterior and predictive methods of a fitted mixture of experts."""

    def predict_proba(self, X):
        """Gate weights :math:`w_j(x)`, shape (n_samples, n_experts)."""
        X = self._check_X(X)
        return self.gate_.weights(self.params_, X)

    def predict(self, X, return_std=False):
        """Conditional mean :math:`E[y\\mid x] = \\sum_j w_j(x)(a_j^\\top x + b_j)`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the conditional standard deviation of the mixture,
            :math:`s(x) = \\bigl(\\sum_j w_j(x)(\\nu_j + (\\mu_j(x) - m(x))^2)\\bigr)^{1/2}`.

        Returns
        -------
        mean : ndarray (n_samples,)
        std : ndarray (n_samples,)
            Only with ``return_std=True``.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> mean, std = est.predict([[0.1], [0.9]], return_std=True)
        >>> mean.round(1).tolist(), std.round(1).tolist()
        ([-2.9, -3.0], [1.0, 0.3])
        """
        X = self._check_X(X)
        if not isinstance(return_std, (bool, np.bool_)):
            raise ValueError(f"return_std must be True or False, got {return_std!r}")
        if return_std:
            return mixture_moments(self.gate_, self.params_, X)
        p = self.params_
        means = X @ p.expert_coef.T + p.expert_intercept
        return np.sum(self.gate_.weights(p, X) * means, axis=1)

    # ------------------------------------------------- posterior and prediction
    def predict_responsibilities(self, X, y):
        """Posterior expert memberships :math:`\\pi_{ij} = w_j(x_i)\\mathcal N(y_i \\mid
        a_j^\\top x_i + b_j, \\nu_j) / p(y_i \\mid x_i)`, shape (n_samples, n_experts).

        Unlike :meth:`predict_proba` (the gate prior :math:`w_j(x)`), these use the
        response. Rows sum to 1. Accepts DataFrames like every method.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> R = est.predict_responsibilities(X, y)
        >>> R.shape, bool(np.allclose(R.sum(axis=1), 1.0))
        ((2000, 2), True)
        """
        X, y = self._check_Xy(X, y)
        return e_step(self.gate_, self.params_, X, y)[0]

    def predict_labels(self, X, y):
        """The most probable expert of every sample, :math:`\\arg\\max_j \\pi_{ij}`
        (0-based labels), shape (n_samples,)."""
        return np.argmax(self.predict_responsibilities(X, y), axis=1)

    def conditional_density(self, X, y):
        """Predictive density :math:`p(y \\mid x)` of the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, m)
            One response per input, or ``m`` responses per input (e.g. a grid).

        Returns
        -------
        ndarray of the shape of ``y``

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> grid = np.linspace(-30, 30, 6001)
        >>> dens = est.conditional_density([[0.32]], grid[None, :])
        >>> round(float(dens.sum() * (grid[1] - grid[0])), 6)      # integrates to 1
        1.0
        """
        X = self._check_X(X)
        y = np.asarray(y, dtype=float)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must have shape (n_samples,) or (n_samples, m) with n_samples = "
                f"{X.shape[0]}, got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity")
        return np.exp(log_conditional_density(self.gate_, self.params_, X, y))

    def predict_quantiles(self, X, q):
        """Quantiles :math:`F^{-1}(q \\mid x)` of the predictive mixture, from its exact CDF.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        q : float or sequence of floats in (0, 1)

        Returns
        -------
        ndarray (n_samples,) for a scalar ``q``, else (n_samples, len(q)).

        Notes
        -----
        Vectorised bisection on :math:`F(y \\mid x) = \\sum_j w_j(x)\\Phi((y -
        \\mu_j(x))/\\sqrt{\\nu_j})`, bracketed by the component quantiles
        (:func:`moestats.inference.prediction.mixture_quantiles`), to
        :math:`10^{-10}` times the smallest expert standard deviation.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> est.predict_quantiles([[0.9]], [0.05, 0.5, 0.95]).round(2).tolist()
        [[-3.48, -3.0, -2.52]]
        """
        X = self._check_X(X)
        check_levels(q)
        return mixture_quantiles(self.gate_, self.params_, X, q)

    def predict_interval(self, X, level=0.9):
        """Equal-tailed predictive interval of probability ``level``, shape (n_samples, 2).

        The quantiles :math:`(1 \\mp \\text{level})/2` of the exact predictive mixture
        (:meth:`predict_quantiles`). Between regimes this is not
        ``mean +- z * std``: the mixture is bimodal there.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> est.predict_interval([[0.32]], level=0.9).round(1).tolist()  # between regimes
        [[0.9, 9.0]]
        >>> mean, std = est.predict([[0.32]], return_std=True)
        >>> (mean - 1.645 * std).round(1).tolist(), (mean + 1.645 * std).round(1).tolist()
        ([-0.9], [11.0])
        """
        level = check_level(level)
        return self.predict_quantiles(X, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])


class WaldInferenceMixin:
    """Wald inference of a fitted mixture of experts (observed or sandwich covariance)."""

    def inference(self, cov_type="observed"):
        """Wald inference of the fit (computed on first use, then cached).

        The observed information :math:`I = -\\nabla^2\\ell(\\hat\\theta)` of the training
        data (the exact Hessian), in the free parameters of the identifiable
        parametrisation (reference expert fixed, :math:`\\log\\nu`, :math:`\\log\\tau`),
        on the user's scale; covariance :math:`I^{-1}` (``cov_type="observed"``) or the
        sandwich :math:`I^{-1}(\\sum_i s_i s_i^\\top)I^{-1}` with the per-sample scores
        :math:`s_i` (``"robust"``). Directions the data do not identify get NaN and a
        reason (:mod:`moestats.inference.information`).

        Parameters
        ----------
        cov_type : {"observed", "robust"}, default="observed"

        Returns
        -------
        WaldInference
            ``covariance``, ``standard_errors``, ``conf_int(alpha)``, ``summary(alpha)``.
        """
        check_is_fitted(self)
        if cov_type not in ("observed", "robust"):
            raise ValueError(f"cov_type must be 'observed' or 'robust', got {cov_type!r}")
        cache = self.__dict__.setdefault("_inference_cache", {})
        if cov_type not in cache:
            data = getattr(self, "_train_data", None)
            if data is None:
                raise ValueError("this fitted estimator holds no training data (fitted by "
                                 "another version?): refit it to compute standard errors")
            X, y = data
            floor = self._default_floor(y) if self.var_floor == "auto" else float(
                self.var_floor)
            weights = getattr(self, "_train_weights", None)
            wald = wald_covariance(self.gate_, self.params_, X, y, cov_type=cov_type,
                                   space=getattr(self, "space_", None) or self._space(),
                                   var_floor=floor,
                                   sample_weight=weights)
            info = [("Gate", type(self.gate_).__name__), ("Experts", self.n_experts),
                    ("No. observations", X.shape[0] if weights is None
                     else f"{X.shape[0]} (total weight {weights.sum():.6g})"),
                    ("Log-likelihood", f"{self.log_likelihood_:.4f}"),
                    ("Certified maximum", bool(self.converged_))]
            cache[cov_type] = WaldInference(wald, self.gate_, self.params_,
                                            getattr(self, "feature_names_in_", None),
                                            dict(info))
        return cache[cov_type]

    @property
    def covariance_(self):
        """Covariance of the free-parameter vector (``cov_type="observed"``), (p, p).

        The vector of :class:`moestats.solvers.batched_params.ParamLayout` on the
        user's scale: gate slopes and intercepts of experts 1..k-1,
        :math:`\\log\\tau` (learned temperature), expert slopes, intercepts and
        :math:`\\log\\nu` (names: ``inference().parameter_names``). NaN rows and
        columns for unidentified coordinates. Computed on first access.
        """
        return self.inference("observed").covariance

    @property
    def standard_errors_(self):
        """Wald standard errors in the layout of the fitted attributes.

        A :class:`moestats.inference.StandardErrors` with ``gate_coef_``,
        ``gate_intercept_``, ``temperature_``, ``gate_slope_over_temperature_``,
        ``expert_coef_``, ``expert_intercept_``, ``expert_var_`` (variances and the
        temperature on their natural scale, by the delta method). Fixed parameters
        (the reference expert's gate row, a temperature that is not learned) have 0;
        unidentified ones NaN, with the reason in ``notes``.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> sorted(est.standard_errors_.expert_coef_.round(2).ravel().tolist())
        [0.04, 0.15]
        """
        return self.inference("observed").standard_errors

    def conf_int(self, alpha=0.05, cov_type="observed"):
        """Wald confidence intervals of level ``1 - alpha``, a DataFrame (lower, upper).

        Rows as in :meth:`summary` (plus ``"gate j: x / temperature"`` rows for the
        temperature families); variances and the temperature use the interval of their
        logarithm.
        """
        return self.inference(cov_type).conf_int(alpha)

    def summary(self, alpha=0.05, cov_type="observed"):
        """Table of estimates, standard errors, z, p-values and Wald intervals.

        A :class:`moestats.inference.SummaryFrame` (a pandas DataFrame; it prints like a
        statsmodels summary) with one row per expert and free gate parameter, named
        with ``feature_names_in_`` when the data had column names; the ``note`` column
        says why a row has no standard error.

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0).fit(X, y)
        >>> table = est.summary()
        >>> table.index[:3].tolist()
        ['expert 1: x0', 'expert 1: intercept', 'expert 1: variance']
        >>> table.columns.tolist()
        ['estimate', 'std. error', 'z', 'p-value', 'ci lower', 'ci upper', 'note']
        """
        return self.inference(cov_type).summary(alpha)

class InformationCriteriaMixin:
    """``bic`` and ``aic`` of a fitted :class:`moestats.GaussianMoE` on data.

    Both are on the deviance scale (lower is better) with :math:`p` the identifiable
    parameters of the fit (:func:`moestats.selection.n_identifiable_params`, its structure included), as
    in :func:`moestats.select_n_experts`.
    """

    def _criterion_terms(self, X, y):
        from ..likelihood import log_likelihood_samples
        from ..selection.criteria import n_identifiable_params
        X, y = self._check_Xy(X, y)
        ll = float(np.sum(log_likelihood_samples(self.gate_, self.params_, X, y)))
        p = n_identifiable_params(self.gate_, self.n_experts, X.shape[1],
                                  getattr(self, "space_", None))
        return ll, p, X.shape[0]

    def bic(self, X, y):
        """Bayesian information criterion :math:`-2\\ell + p\\log n` (lower is better),
        with :math:`p` the identifiable parameters (no scale of the top-1 slopes, no
        temperature learned with the identity activation, the structure's pinned slopes
        and tied variances left out).

        Examples
        --------
        >>> import numpy as np
        >>> from moestats import GaussianMoE, get_setup
        >>> X, y = get_setup("softmax-exact").truth.sample(500, np.random.default_rng(0))
        >>> est = GaussianMoE(2, random_state=0, n_init=2).fit(X, y)
        >>> bool(est.bic(X, y) > est.aic(X, y))
        True
        """
        ll, p, n = self._criterion_terms(X, y)
        return -2.0 * ll + p * np.log(n)

    def aic(self, X, y):
        """Akaike information criterion :math:`-2\\ell + 2p` (lower is better; :math:`p`
        as in :meth:`bic`)."""
        ll, p, _ = self._criterion_terms(X, y)
        return -2.0 * ll + 2.0 * p
