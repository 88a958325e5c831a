"""GaussianMoE: the scikit-learn contract, reproducibility, invariances and bad input."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from moestats import (ActivationGate, GaussianMoE, MoEParams, NumericalRepairWarning,
                      SoftmaxGate, TemperatureGate, TemperatureIdentifiabilityWarning,
                      TopKGate, TrueModel, UniformDesign)
from moestats.likelihood import log_likelihood

TRUTH = MoEParams([[4.0], [0.0]], [0.5, 0.0], [[-2.0], [2.0]], [1.0, -1.0], [0.1, 0.2])


def _data(n=600, seed=0, gate=SoftmaxGate(), params=TRUTH):
    return TrueModel(params, gate, UniformDesign(-1, 1)).sample(n, np.random.default_rng(seed))


#: scikit-learn checks that must fail, with the reason (the only ones; all others pass)
EXPECTED_FAILED_CHECKS = {
    # these fit 10-15 samples with 3-4 features: fewer samples than the 14-17 free
    # parameters of a 2-expert model, which GaussianMoE refuses with a ValueError
    # (issue 3, "n_samples smaller than the number of free parameters")
    "check_n_features_in_after_fitting": "n_samples below the number of free parameters",
    "check_estimators_nan_inf": "n_samples below the number of free parameters",
    # weights 0 and 1 on 30 features leave fewer samples than parameters
    "check_sample_weight_equivalence_on_dense_data":
        "n_samples below the number of free parameters",
    # these call score_samples(X) without y; the model is a conditional density
    # p(y | x), so its score_samples needs y (ARCHITECTURE.md contract)
    "check_regressors_no_decision_function": "score_samples(X, y) needs y",
    "check_methods_sample_order_invariance": "score_samples(X, y) needs y",
    "check_methods_subset_invariance": "score_samples(X, y) needs y",
}


@parametrize_with_checks([GaussianMoE(max_iter=50, n_init=3),
                          GaussianMoE(gate=TopKGate(2), max_iter=50, n_init=3)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", NumericalRepairWarning)
        check(estimator)


def test_fitted_attributes_and_predictions():
    X, y = _data()
    est = GaussianMoE(2, random_state=0).fit(X, y)
    k, d = 2, 1
    assert est.gate_coef_.shape == (k, d) and est.expert_var_.shape == (k,)
    assert est.n_features_in_ == 1 and est.converged_ and est.n_iter_ >= 1
    assert est.log_likelihoods_[-1] == est.log_likelihood_
    np.testing.assert_allclose(est.score(X, y) * len(y), est.log_likelihood_, rtol=1e-10)
    w = est.predict_proba(X)
    np.testing.assert_allclose(w.sum(1), 1.0)
    p = est.params_
    mean = np.sum(w * (X @ p.expert_coef.T + p.expert_intercept), axis=1)
    np.testing.assert_allclose(est.predict(X), mean)
    p_count = (k - 1) * (d + 1) + k * (d + 2)
    np.testing.assert_allclose(est.bic(X, y), -2 * est.log_likelihood_ + p_count * np.log(len(y)))
    np.testing.assert_allclose(est.aic(X, y), -2 * est.log_likelihood_ + 2 * p_count)


def test_sample_follows_the_fitted_model():
    X, y = _data(n=400)
    est = GaussianMoE(2, random_state=0).fit(X, y)
    Xs = np.repeat(X[:3], 20000, axis=0)
    ys = est.sample(Xs, random_state=1)
    np.testing.assert_array_equal(ys, est.sample(Xs, random_state=1))
    for i in range(3):
        block = ys[i * 20000:(i + 1) * 20000]
        assert abs(block.mean() - est.predict(X[i:i + 1])[0]) < 0.05


def test_reproducible_by_random_state():
    X, y = _data()
    a = GaussianMoE(3, n_init=2, random_state=7, init="random").fit(X, y)
    b = GaussianMoE(3, n_init=2, random_state=7, init="random").fit(X, y)
    assert a.params_ == b.params_
    np.testing.assert_array_equal(a.log_likelihoods_, b.log_likelihoods_)


def test_score_invariant_to_relabelling_experts():
    X, y = _data()
    est = GaussianMoE(3, random_state=0).fit(X, y)
    perm = est.params_.permute([1, 0, 2])
    perm2 = MoEParams.with_reference_gate(*(getattr(est.params_, f)[[2, 0, 1]] for f in (
        "gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")))
    ll = log_likelihood(SoftmaxGate(), est.params_, X, y)
    for q in (perm, perm2):
        np.testing.assert_allclose(log_likelihood(SoftmaxGate(), q, X, y), ll, rtol=1e-12)
        refit = GaussianMoE(3, init=q, max_iter=1).fit(X, y)
        assert np.isfinite(refit.score(X, y))


def test_init_params_used_as_given_and_warm_start():
    X, y = _data()
    est = GaussianMoE(2, init=TRUTH, tol=1e-10).fit(X, y)
    assert est.log_likelihoods_[0] == pytest.approx(log_likelihood(SoftmaxGate(), TRUTH, X, y))
    n_iter = est.n_iter_
    est.set_params(warm_start=True)
    est.fit(X, y)
    assert est.n_iter_ <= 2 and est.n_iter_ < n_iter + 1


def test_em_and_mle_solvers_agree():
    X, y = _data(n=1500)
    em = GaussianMoE(2, init=TRUTH).fit(X, y)
    mle = GaussianMoE(2, init=TRUTH, solver="mle").fit(X, y)
    assert em.converged_ and mle.converged_
    np.testing.assert_allclose(mle.log_likelihood_, em.log_likelihood_, rtol=0, atol=1e-3)


def test_convergence_warning_when_the_fit_is_not_certified():
    X, y = _data()
    start = TRUTH.replace(expert_intercept=[3.0, 2.0], gate_coef=[[-1.0], [0.0]])
    with pytest.warns(ConvergenceWarning, match="is not a certified maximum: the second-order"):
        est = GaussianMoE(2, init=start, solver="mle", max_iter=1).fit(X, y)
    assert not est.converged_ and est.certificate_.predicted_gain > 1e-3


def test_learned_identity_temperature_warns_and_reports_ratio():
    X, y = _data(gate=TemperatureGate(0.5), params=TRUTH.replace(temperature=0.5))
    with pytest.warns(TemperatureIdentifiabilityWarning):
        est = GaussianMoE(2, gate=TemperatureGate(1.0, learn_temperature=True),
                          random_state=0).fit(X, y)
    np.testing.assert_allclose(est.gate_slope_over_temperature_, est.gate_coef_ / est.temperature_)


def test_fixed_temperature_stays_fixed():
    X, y = _data()
    est = GaussianMoE(2, gate=TemperatureGate(0.3), random_state=0).fit(X, y)
    assert est.temperature_ == 0.3
    assert est.params_.temperature == 0.3


def test_top1_gate_is_fitted_without_intercepts():
    X, y = _data(gate=TopKGate(1), params=TRUTH.replace(gate_intercept=[0.0, 0.0]))
    est = GaussianMoE(2, gate=TopKGate(1), random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.gate_intercept_, 0.0)
    assert est.n_free_parameters(1) == 1 + 2 * 3


def test_topk_recovers_with_default_init():
    """The issue's acceptance line: GaussianMoE(3, gate=TopKGate(2)).fit(X, y) recovers the truth."""
    truth = MoEParams([[3.0], [-3.0], [0.0]], [0.2, -0.1, 0.0], [[-2.0], [2.0], [0.0]],
                      [3.0, -3.0, 0.0], [0.1, 0.2, 0.15])
    X, y = _data(n=6000, seed=3, gate=TopKGate(2), params=truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalRepairWarning)
        est = GaussianMoE(3, gate=TopKGate(2), n_init=3, random_state=0).fit(X, y)
    order = np.argsort(est.expert_intercept_)[::-1]
    np.testing.assert_allclose(est.expert_intercept_[order], [3.0, 0.0, -3.0], atol=0.1)
    np.testing.assert_allclose(np.sort(est.expert_var_), [0.1, 0.15, 0.2], atol=0.03)
    assert est.log_likelihood_ >= log_likelihood(TopKGate(2), truth, X, y) - 1e-6


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(n_experts=0), r"n_experts must be an integer >= 1, got 0"),
    (dict(n_experts=2.5), r"n_experts must be an integer >= 1, got 2.5"),
    (dict(gate=TopKGate(3)), r"k_active = 3 exceeds n_experts = 2"),
    (dict(gate=TopKGate(0)), r"k_active must be >= 1, got k_active = 0"),
    (dict(gate=TemperatureGate(0.0)), r"temperature must be a finite number > 0, got 0.0"),
    (dict(gate=ActivationGate("swish")), r"unknown activation 'swish'"),
    (dict(gate="dense"), r"unknown gate 'dense'"),
    (dict(solver="newton"), r"solver must be 'em' or 'mle', got 'newton'"),
    (dict(init="pca"), r"init must be 'mixed', 'kmeans', 'random' or an MoEParams, got 'pca'"),
    (dict(certify_tol=0), r"certify_tol must be a number > 0, got 0"),
    (dict(n_keep=0), r"n_keep must be an integer >= 1, got 0"),
    (dict(space=dict(var_bounds=(1.0, 0.5))), r"var_bounds needs 0 <= low < high"),
    (dict(var_floor=-1.0), r"var_floor must be 'auto' or a finite number > 0, got -1.0"),
    (dict(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
    (dict(backend="cuda"), r"backend must be 'auto' or 'numpy'.*got 'cuda'"),
    (dict(init=MoEParams([[1.0, 0.0], [0.0, 0.0]], [0.0, 0.0], [[1.0, 0.0], [1.0, 0.0]],
                         [0.0, 0.0], [1.0, 1.0])),
     r"init parameters have 2 experts and 2 features, but .* n_features = 1"),
])
def test_bad_hyperparameters_raise(kwargs, match):
    X, y = _data(n=100)
    with pytest.raises(ValueError, match=match):
        GaussianMoE(**kwargs).fit(X, y)


def test_bad_data_raise():
    X, y = _data(n=100)
    est = GaussianMoE(2)
    Xn = X.copy()
    Xn[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y)
    yi = y.copy()
    yi[0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.fit(X, yi)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"y should be a 1d array, got an array of shape \(100, 2\)"):
        est.fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match=r"n_samples = 7 is smaller than the number of free parameters \(8\)"):
        est.fit(X[:7], y[:7])
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMoE is expecting 1"):
        est.predict(np.ones((3, 2)))


def test_bad_params_raise():
    good = dict(gate_coef=[[1.0], [0.0]], gate_intercept=[0.0, 0.0], expert_coef=[[1.0], [1.0]],
                expert_intercept=[0.0, 0.0], expert_var=[1.0, 1.0])
    cases = [
        (dict(expert_var=[1.0, 0.0]), r"expert_var must be > 0, got \[1.0, 0.0\]"),
        (dict(expert_coef=[[1.0], [np.nan]]), r"expert_coef must be finite"),
        (dict(gate_intercept=[0.0, 0.0, 0.0]), r"gate_intercept has shape \(3,\), expected \(2,\)"),
        (dict(gate_coef=[[1.0], [1.0]]), r"the last expert is the reference"),
        (dict(expert_intercept=[[0.0, 0.0]]), r"expert_intercept must be a 1-d array"),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            MoEParams(**{**good, **change})
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0, got -1.0"):
        MoEParams(**good, temperature=-1.0)


def test_no_nan_parameters_under_numerical_trouble():
    """Duplicated points (an exactly fitting expert) and huge gate logits stay finite."""
    rng = np.random.default_rng(0)
    X = np.r_[np.zeros((30, 1)), rng.uniform(-1, 1, size=(300, 1))]
    y = np.r_[np.full(30, 5.0), rng.normal(size=300)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(3, n_init=3, random_state=0).fit(X, y)
    for name in ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var"):
        assert np.all(np.isfinite(getattr(est.params_, name)))
    assert np.all(est.expert_var_ > 0)
