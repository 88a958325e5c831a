"""Gate families: weights, supports, and the VJP against finite differences."""

import warnings

import numpy as np
import pytest
from scipy.special import log_softmax

from moestats import (ActivationGate, SoftmaxGate, TemperatureGate,
                      TemperatureIdentifiabilityWarning, TopKGate, make_gate)
from moestats.gates import top_k_mask

from conftest import GATE_CASES, params_for


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_weights_are_a_distribution(name, rng):
    gate = GATE_CASES[name]
    p = params_for(gate, 4, 3, rng)
    X = rng.normal(size=(50, 3))
    w = gate.weights(p, X)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(w >= 0)
    if isinstance(gate, TopKGate):
        # exactly K experts are switched on, and their log weights are finite
        lw = gate.log_weights(p, X)
        assert np.all(np.isfinite(lw).sum(axis=1) == gate.k_active)
        assert np.all((w > 0).sum(axis=1) <= gate.k_active)


def test_softmax_matches_scipy(rng):
    p = params_for(SoftmaxGate(), 3, 2, rng)
    X = rng.normal(size=(20, 2))
    expected = log_softmax(X @ p.gate_coef.T + p.gate_intercept, axis=1)
    np.testing.assert_allclose(SoftmaxGate().log_weights(p, X), expected, rtol=1e-13)


def test_logits_by_family(rng):
    p = params_for(TemperatureGate(0.5), 3, 2, rng)
    p = p.replace(temperature=0.5)
    X = rng.normal(size=(7, 2))
    z = X @ p.gate_coef.T
    np.testing.assert_allclose(TemperatureGate(0.5).logits(p, X), z / 0.5 + p.gate_intercept)
    np.testing.assert_allclose(ActivationGate("sigmoid", 0.5).logits(p, X),
                               1 / (1 + np.exp(-z)) / 0.5 + p.gate_intercept)
    # the reference expert of the activation gate has the constant logit sigma(0)/tau
    np.testing.assert_allclose(ActivationGate("sigmoid", 0.5).logits(p, X)[:, -1], 1.0)


def test_huge_logits_do_not_overflow(rng):
    p = params_for(SoftmaxGate(), 3, 1, rng).replace(
        gate_coef=[[1e6], [-1e6], [0.0]], gate_intercept=[500.0, -700.0, 0.0])
    X = np.array([[1.0], [-1.0], [1e-3], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lw = SoftmaxGate().log_weights(p, X)
    assert np.all(np.isfinite(lw) | (lw == -np.inf))
    assert not np.any(np.isnan(lw))
    np.testing.assert_allclose(np.exp(lw).sum(axis=1), 1.0)


def test_top_k_ties_go_to_lower_index():
    scores = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0], [3.0, 1.0, 3.0]])
    np.testing.assert_array_equal(top_k_mask(scores, 1),
                                  [[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(top_k_mask(scores, 2),
                                  [[1, 1, 0], [0, 1, 1], [1, 0, 1]])


def test_top_k_selects_on_slope_not_intercept(rng):
    p = params_for(TopKGate(2), 3, 1, rng).replace(
        gate_coef=[[1.0], [2.0], [0.0]], gate_intercept=[10.0, -10.0, 0.0])
    X = np.array([[1.0]])  # slopes 1, 2, 0 -> experts 0 and 1; logits 11, -8, 0 -> 0 and 2
    assert np.isfinite(TopKGate(2).logits(p, X)).tolist() == [[True, True, False]]
    assert np.isfinite(TopKGate(2, "logit").logits(p, X)).tolist() == [[True, False, True]]


def _numeric_gradient(f, theta, h=1e-6):
    g = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", sorted(GATE_CASES))
@pytest.mark.parametrize("objective", ["Q", "loglik"])
def test_vjp_matches_finite_differences(name, objective, rng):
    """d/dtheta of Q = sum r log w (and of the log-likelihood) against central differences."""
    gate = GATE_CASES[name]
    k, d, n = 4, 2, 60
    p = params_for(gate, k, d, rng)
    X = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    from moestats.likelihood import log_expert_density
    log_expert = log_expert_density(p, X, y) if objective == "loglik" else None
    mask = np.isfinite(gate.logits(p, X))
    resp = rng.dirichlet(np.ones(k), size=n) * mask
    resp /= resp.sum(axis=1, keepdims=True)

    def f(theta):
        q = gate.unpack(theta, p)
        if isinstance(gate, TopKGate):  # stay away from selection changes
            assert np.array_equal(np.isfinite(gate.logits(q, X)), mask)
        return gate.objective_and_gradient(q, X, resp, log_expert)[0]

    theta = gate.pack(p)
    _, grad = gate.objective_and_gradient(p, X, resp, log_expert)
    analytic = gate.pack_gradient(grad)
    numeric = _numeric_gradient(f, theta)
    assert analytic.shape == (gate.n_free_params(k, d),)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


def test_free_parameter_counts():
    k, d = 4, 3
    assert SoftmaxGate().n_free_params(k, d) == 3 * 3 + 3
    assert TopKGate(1).n_free_params(k, d) == 3 * 3  # top-1: no intercepts
    assert TopKGate(2).n_free_params(k, d) == 3 * 3 + 3
    assert TemperatureGate(1.0).n_free_params(k, d) == 12
    assert TemperatureGate(1.0, learn_temperature=True).n_free_params(k, d) == 13


def test_pack_unpack_roundtrip(rng):
    for gate in GATE_CASES.values():
        p = params_for(gate, 3, 2, rng)
        q = gate.unpack(gate.pack(p), p)
        assert q.allclose(p, rtol=1e-14, atol=1e-14)


def test_identity_temperature_scale_invariance(rng):
    """(beta_1, tau) -> (c beta_1, c tau) leaves the temperature gate unchanged."""
    gate = TemperatureGate(0.7, learn_temperature=True)
    p = params_for(gate, 3, 2, rng)
    X = rng.normal(size=(30, 2))
    q = p.replace(gate_coef=3.0 * p.gate_coef, temperature=3.0 * p.temperature)
    np.testing.assert_allclose(gate.log_weights(p, X), gate.log_weights(q, X), rtol=1e-12)
    # and the PDE tau du/dtau = -beta_1 . du/dbeta_1 holds for the gradient
    resp = rng.dirichlet(np.ones(3), size=30)
    _, g = gate.objective_and_gradient(p, X, resp)
    assert np.isclose(g.log_temperature, -np.sum(g.gate_coef * p.gate_coef), rtol=1e-10)
    # a non-linear activation breaks it
    act = ActivationGate("tanh", 0.7, learn_temperature=True)
    assert not np.allclose(act.log_weights(p, X), act.log_weights(q, X))


def test_learned_identity_temperature_warns():
    with pytest.warns(TemperatureIdentifiabilityWarning, match="beta_1/tau"):
        TemperatureGate(1.0, learn_temperature=True).validate(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureGate(1.0).validate(2)
        ActivationGate("tanh", 1.0, learn_temperature=True).validate(2)


@pytest.mark.parametrize("gate, match", [
    (TopKGate(3), r"k_active = 3 exceeds n_experts = 2"),
    (TopKGate(0), r"k_active must be >= 1, got k_active = 0"),
    (TopKGate(1, selection="random"), r"selection must be 'slope' or 'logit', got 'random'"),
    (TemperatureGate(0.0), r"temperature must be a finite number > 0, got 0.0"),
    (TemperatureGate(-2.0), r"temperature must be a finite number > 0, got -2.0"),
    (ActivationGate("relu6"), r"unknown activation 'relu6'"),
    (ActivationGate(np.sin), r"needs activation_derivative"),
    (ActivationGate("tanh", temperature=float("nan")), r"temperature must be a finite"),
])
def test_bad_hyperparameters(gate, match):
    with pytest.raises(ValueError, match=match):
        gate.validate(2)


def test_make_gate():
    assert isinstance(make_gate("softmax"), SoftmaxGate)
    assert make_gate("topk").k_active == 1
    with pytest.raises(ValueError, match="unknown gate 'sparse'"):
        make_gate("sparse")


def test_top_k_mask_equals_a_stable_sort(rng):
    """The rank-count mask is the top-K of a stable descending sort, ties included."""
    for K in (1, 2, 3, 4):
        scores = rng.integers(0, 3, size=(500, 5)).astype(float)  # many ties
        top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        expected = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(expected, top, True, axis=1)
        np.testing.assert_array_equal(top_k_mask(scores, K), expected)


def test_softmax_hessian_matches_finite_differences_of_the_gradient(rng):
    from moestats.gates import softmax_q_hessian
    gate = SoftmaxGate()
    p = params_for(gate, 4, 3, rng)
    X = rng.normal(size=(200, 3))
    resp = rng.dirichlet(np.ones(4), size=200) * rng.uniform(0.5, 1.5, size=(200, 1))

    def grad(theta):
        return gate.pack_gradient(gate.objective_and_gradient(gate.unpack(theta, p), X, resp)[1])

    theta = gate.pack(p)
    h = 1e-5
    numeric = np.array([(grad(theta + h * e) - grad(theta - h * e)) / (2 * h)
                        for e in np.eye(theta.size)])
    analytic = softmax_q_hessian(X, gate.weights(p, X), resp.sum(axis=1))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(analytic) <= 1e-10)  # Q is concave
