"""Standard errors: observed information against finite differences, invariance to the
units of the data, the summary table, the NaN rules, and coverage (slow)."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from moestats import (ActivationGate, GaussianMoE, MoEParams, SoftmaxGate, TemperatureGate,
                      TopKGate, get_setup)
from moestats.inference import observed_information, per_sample_scores, wald_covariance
from moestats.inference.information import REASON_BOUND, REASON_SINGULAR
from moestats.inference.parameters import REASON_IDENTITY_TAU, REASON_TOP1
from moestats.solvers import ParamLayout
from moestats.solvers.batched_params import BatchedParams
from moestats.solvers.derivatives import observed_derivatives

ROOT = Path(__file__).resolve().parents[1]


def _fit(setup_id, n=2000, seed=0, fitted=0, **kw):
    s = get_setup(setup_id)
    X, y = s.truth.sample(n, np.random.default_rng(seed))
    cfg = s.fitted[fitted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(cfg.n_experts, gate=cfg.gate, random_state=seed, **kw).fit(X, y)
    return est, X, y


@pytest.mark.parametrize("setup_id,fitted", [("softmax-exact", 0), ("activation", 0),
                                             ("temperature", 0), ("topk-over", 0)])
def test_observed_information_is_minus_the_jacobian_of_the_gradient(setup_id, fitted):
    est, X, y = _fit(setup_id, n=600, fitted=fitted)
    gate, p = est.gate_, est.params_
    L = ParamLayout(gate, p.n_experts, p.n_features)
    P = BatchedParams.stack([p])
    theta = L.pack(P)
    info, grad = observed_information(gate, p, X, y)
    eps = 1e-6
    jac = np.zeros_like(info)
    for q in range(L.size):
        hi, lo = theta.copy(), theta.copy()
        hi[0, q] += eps
        lo[0, q] -= eps
        g = [observed_derivatives(gate, X[None], y[None], L.unpack(t, P), order=1)[1][0]
             for t in (hi, lo)]
        jac[:, q] = (g[0] - g[1]) / (2 * eps)
    scale = np.abs(info).max()
    assert np.abs(info + jac).max() < 1e-5 * scale
    # per-sample scores add up to the gradient
    S = per_sample_scores(gate, p, X, y)
    np.testing.assert_allclose(S.sum(axis=0), grad, atol=1e-8 * max(1.0, np.abs(S).max()))


def test_covariance_is_the_inverse_information_on_the_users_scale():
    est, X, y = _fit("softmax-exact")
    info, _ = observed_information(est.gate_, est.params_, X, y)
    np.testing.assert_allclose(est.covariance_ @ info, np.eye(info.shape[0]), atol=1e-8)
    assert est.inference().parameter_names == ParamLayout(est.gate_, 2, 1).names()


def test_computed_lazily_and_reset_by_fit():
    est, X, y = _fit("softmax-exact", n=500)
    assert est._inference_cache == {}
    se = est.standard_errors_.expert_coef_
    assert "observed" in est._inference_cache
    est.fit(X[:400], y[:400])
    assert est._inference_cache == {}
    assert not np.allclose(est.standard_errors_.expert_coef_, se)


def test_standard_errors_follow_the_units_of_x_and_y():
    est, X, y = _fit("softmax-exact")
    p = est.params_
    c, s, shift = 1000.0, 7.0, 3.0
    # x -> c x + shift, y -> s y: the same maximum in the new units
    q = MoEParams(p.gate_coef / c, p.gate_intercept - p.gate_coef[:, 0] * shift / c,
                  s * p.expert_coef / c,
                  s * (p.expert_intercept - p.expert_coef[:, 0] * shift / c),
                  s * s * p.expert_var)
    est2 = GaussianMoE(2, init=q, random_state=0).fit(c * X + shift, s * y)
    a, b = est.standard_errors_, est2.standard_errors_
    np.testing.assert_allclose(b.expert_coef_, s * a.expert_coef_ / c, rtol=1e-4)
    np.testing.assert_allclose(b.gate_coef_, a.gate_coef_ / c, rtol=1e-4)
    np.testing.assert_allclose(b.expert_var_, s * s * a.expert_var_, rtol=1e-4)
    # intercepts move with the shift; the slope-free intercept (at x = shift) does not
    cov1, cov2 = est.covariance_, est2.covariance_
    assert np.all(np.isfinite(cov2))
    # pure scaling (no shift): intercept standard errors scale with s only
    q0 = q.replace(gate_intercept=p.gate_intercept, expert_intercept=s * p.expert_intercept)
    est3 = GaussianMoE(2, init=q0, random_state=0).fit(c * X, s * y)
    np.testing.assert_allclose(est3.standard_errors_.expert_intercept_,
                               s * a.expert_intercept_, rtol=1e-4)
    np.testing.assert_allclose(est3.standard_errors_.gate_intercept_,
                               a.gate_intercept_, rtol=1e-4)
    assert cov1.shape == cov2.shape


def test_summary_names_shape_and_print():
    s = get_setup("softmax-d2-exact")
    X, y = s.truth.sample(3000, np.random.default_rng(1))
    Xdf = pd.DataFrame(X, columns=["temp", "pressure"])
    est = GaussianMoE(3, random_state=0).fit(Xdf, y)
    table = est.summary()
    assert isinstance(table, pd.DataFrame)
    assert table.shape == (3 * 4 + 2 * 3, 7)
    assert table.index[0] == "expert 1: temp" and "gate 2: pressure" in table.index
    assert "gate 3: temp" not in table.index                    # the reference is fixed
    assert table.columns.tolist() == ["estimate", "std. error", "z", "p-value", "ci lower",
                                      "ci upper", "note"]
    assert np.all(np.isfinite(table["std. error"])) and (table["note"] == "").all()
    text = str(table)
    assert "Wald inference" in text and "P>|z|" in text and "[0.025" in text
    ci = est.conf_int(0.1)
    assert ci.shape == (18, 2) and np.all(ci["lower"] < ci["upper"])
    assert np.allclose(ci["lower"], est.summary(alpha=0.1)["ci lower"])
    # the z statistic and the interval agree with estimate and standard error
    row = table.loc["expert 1: temp"]
    assert np.isclose(row["z"], row["estimate"] / row["std. error"])
    assert np.isclose(row["ci upper"] - row["estimate"], 1.959964 * row["std. error"])
    # positive parameters: log-scale interval, no z
    var = table.loc["expert 1: variance"]
    assert np.isnan(var["z"]) and var["ci lower"] > 0
    se = est.standard_errors_
    assert se.expert_coef_.shape == (3, 2) and np.all(se.gate_coef_[-1] == 0)


def test_robust_close_to_observed_when_well_specified():
    est, X, y = _fit("softmax-exact", n=4000)
    a = est.inference("observed").std_errors
    b = est.inference("robust").std_errors
    assert np.all(np.abs(b / a - 1) < 0.25)
    assert "robust" in str(est.summary(cov_type="robust"))


def test_robust_differs_under_heteroscedastic_noise():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(4000, 1))
    y = np.where(X[:, 0] > 0, 2 * X[:, 0], -1 - X[:, 0]) + (0.1 + 0.6 * np.abs(X[:, 0])) \
        * rng.standard_normal(4000)
    est = GaussianMoE(2, random_state=0).fit(X, y)
    a = est.inference("observed").std_errors
    b = est.inference("robust").std_errors
    assert np.max(np.abs(b / a - 1)) > 0.3


def test_identity_temperature_reports_ratio_and_nan_for_beta1_and_tau():
    est, X, y = _fit("temperature")
    table = est.summary()
    assert np.isnan(table.loc["gate 1: x0", "std. error"])
    assert table.loc["gate 1: x0", "note"] == REASON_IDENTITY_TAU
    assert np.isnan(table.loc["gate: temperature", "std. error"])
    ratio = table.loc["gate 1: x0 / temperature"]
    assert np.isfinite(ratio["std. error"]) and ratio["std. error"] > 0
    se = est.standard_errors_
    assert np.isnan(se.gate_coef_[0, 0]) and np.isnan(se.temperature_)
    assert np.isclose(se.gate_slope_over_temperature_[0, 0], ratio["std. error"])
    assert set(se.notes) == {"gate 1: x0", "gate: temperature"}
    cov = est.covariance_
    L = ParamLayout(est.gate_, 2, 1)
    assert np.all(np.isnan(cov[L.log_temperature.start]))
    assert np.all(np.isfinite(cov[np.ix_(range(L.expert_coef.start, L.size),
                                         range(L.expert_coef.start, L.size))]))


def test_learned_tanh_temperature_has_standard_errors():
    est, X, y = _fit("activation")
    table = est.summary()
    assert np.all(np.isfinite(table["std. error"]))
    assert "gate: temperature" in table.index


def test_top1_gate_slopes_have_no_standard_error():
    est, X, y = _fit("topk-exact")
    table = est.summary()
    assert table.loc["gate 1: x0", "note"] == REASON_TOP1
    assert np.isnan(table.loc["gate 1: x0", "std. error"])
    assert "gate 1: intercept" not in table.index
    experts = table[table.index.str.startswith("expert")]
    assert np.all(np.isfinite(experts["std. error"]))
    assert np.all(est.standard_errors_.gate_intercept_ == 0)


def test_split_expert_gives_singular_information():
    est, X, y = _fit("softmax-exact")
    p = est.params_
    # expert 1 split into two identical halves: a critical point of the k = 3 likelihood
    split = MoEParams(np.r_[p.gate_coef[:1], p.gate_coef], np.r_[p.gate_intercept[:1],
                      p.gate_intercept] - np.r_[np.log(2), np.log(2), 0.0],
                      np.r_[p.expert_coef[:1], p.expert_coef],
                      np.r_[p.expert_intercept[:1], p.expert_intercept],
                      np.r_[p.expert_var[:1], p.expert_var])
    wc = wald_covariance(SoftmaxGate(), split, X, y)
    L = ParamLayout(SoftmaxGate(), 3, 1)
    flagged = {q for q, r in enumerate(wc.reasons) if r == REASON_SINGULAR}
    assert {L.gate_intercept.start, L.gate_intercept.start + 1} <= flagged
    assert L.expert_coef.start in flagged and L.expert_coef.start + 1 in flagged
    third = [L.expert_coef.start + 2, L.expert_intercept.start + 2, L.log_var.start + 2]
    assert not flagged & set(third)
    assert np.all(np.isfinite(np.diag(wc.covariance)[third]))
    assert np.all(np.isnan(wc.covariance[sorted(flagged)]))


def test_parameter_at_a_bound_is_held_fixed():
    est, X, y = _fit("softmax-exact", space={"var_bounds": (0.12, 100.0)})
    assert np.isclose(est.expert_var_.min(), 0.12)
    table = est.summary()
    j = int(np.argmin(est.expert_var_))
    assert table.loc[f"expert {j + 1}: variance", "note"] == REASON_BOUND
    assert np.isnan(est.standard_errors_.expert_var_[j])
    assert np.isfinite(table.loc[f"expert {j + 1}: x0", "std. error"])


def test_bad_input_raises():
    est = GaussianMoE(2)
    with pytest.raises(NotFittedError):
        est.summary()
    with pytest.raises(NotFittedError):
        est.covariance_
    est, X, y = _fit("softmax-exact", n=400)
    with pytest.raises(ValueError, match="alpha must be a number in \\(0, 1\\), got 1.5"):
        est.summary(alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        est.conf_int(alpha=0)
    with pytest.raises(ValueError, match="cov_type must be .* got 'sandwich'"):
        est.summary(cov_type="sandwich")
    with pytest.raises(ValueError, match="singular_rtol"):
        wald_covariance(est.gate_, est.params_, X, y, singular_rtol=2.0)
    with pytest.raises(ValueError, match="X must be"):
        observed_information(est.gate_, est.params_, X[:, 0], y)


def test_gate_families_all_give_a_summary():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(800, 2))
    y = np.where(X[:, 0] > 0, 2.0, -2.0) + X[:, 1] + 0.3 * rng.standard_normal(800)
    for gate in (TopKGate(2), TemperatureGate(0.5), ActivationGate("sigmoid", 1.0,
                                                                   learn_temperature=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = GaussianMoE(3, gate=gate, random_state=0, n_init=2).fit(X, y)
        table = est.summary()
        assert len(table) >= 3 * 4 and table["estimate"].notna().all()


@pytest.mark.slow
def test_wald_coverage_quick():
    """The coverage benchmark's quick form: 60 replications per truth."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_coverage
    results = bench_coverage.run(bench_coverage.QUICK, log=lambda *a: None)
    for case in results["cases"].values():
        for cov_type in ("observed", "robust"):
            overall = case["coverage"][cov_type]["overall"]
            assert 0.85 <= overall <= 1.0, (case["name"], cov_type, overall)
