"""EM: exact M-steps, monotone log-likelihood for every gate family, MLE agreement."""

import numpy as np
import pytest

from moestats import MoEParams, SoftmaxGate, TopKGate, TrueModel, UniformDesign
from moestats.experts import expert_m_step, weighted_statistics
from moestats.likelihood import e_step, log_likelihood
from moestats.solvers import em_iteration, fit_em, fit_mle, gate_step, log_likelihood_and_gradient
from moestats.solvers.mle import pack_params, unpack_params

from conftest import GATE_CASES, params_for


def _data(gate, k, d, n, rng):
    truth = params_for(gate, k, d, rng, scale=2.0)
    truth = truth.replace(expert_coef=3 * truth.expert_coef,
                          expert_intercept=3 * truth.expert_intercept)
    X, y = TrueModel(truth, gate, UniformDesign(-1, 1, d)).sample(n, rng)
    return truth, X, y


def test_expert_step_is_weighted_least_squares(rng):
    n, d, k = 200, 2, 3
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    resp = rng.dirichlet(np.ones(k), size=n)
    coef, intercept, var, report = expert_m_step(
        X, y, resp, np.zeros((k, d)), np.zeros(k), np.ones(k), 1e-8)
    Xt = np.hstack([X, np.ones((n, 1))])
    for j in range(k):
        sw = np.sqrt(resp[:, j])
        theta = np.linalg.lstsq(Xt * sw[:, None], y * sw, rcond=None)[0]
        np.testing.assert_allclose(np.r_[coef[j], intercept[j]], theta, rtol=1e-10)
        resid = y - Xt @ theta
        np.testing.assert_allclose(var[j], np.sum(resp[:, j] * resid**2) / resp[:, j].sum())
    assert report.empty == report.singular == report.floored == []
    mass, sxx, sxy = weighted_statistics(X, y, resp)
    np.testing.assert_allclose(mass, resp.sum(0))
    np.testing.assert_allclose(sxx[1], (Xt * resp[:, 1:2]).T @ Xt)


def test_expert_step_repairs_empty_singular_and_collapsing(rng):
    n = 50
    X = np.column_stack([np.ones(n), np.ones(n)])  # collinear with the intercept: singular
    y = 2.0 * np.ones(n)                           # exact fit: variance collapses to 0
    resp = np.zeros((n, 3))
    resp[:, 0] = 1.0                               # experts 1, 2 get nothing
    coef, intercept, var, report = expert_m_step(
        X, y, resp, np.full((3, 2), 7.0), np.full(3, 7.0), np.ones(3), 1e-6)
    assert report.empty == [1, 2] and report.singular == [0] and report.floored == [0]
    assert np.all(np.isfinite(coef)) and var[0] == 1e-6
    np.testing.assert_allclose(X @ coef[0] + intercept[0], 2.0)  # min-norm solution fits
    np.testing.assert_array_equal(coef[1:], 7.0)  # empty experts keep their parameters


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_em_log_likelihood_never_decreases(name, rng):
    gate = GATE_CASES[name]
    k, d = 3, 2
    _, X, y = _data(gate, k, d, 400, rng)
    start = params_for(gate, k, d, rng)  # a poor start: many iterations of real progress
    with np.errstate(all="ignore"):
        trace = fit_em(gate, X, y, start, tol=0.0, max_iter=40, var_floor=1e-8)
    lls = trace.log_likelihoods
    drops = np.diff(lls)
    assert np.all(drops >= -1e-9 * np.abs(lls[:-1])), drops.min()
    assert lls[-1] > lls[0] + 1.0  # it did climb


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_gate_step_never_decreases_its_objective(name, rng):
    gate = GATE_CASES[name]
    k, d = 3, 2
    _, X, y = _data(gate, k, d, 300, rng)
    p = params_for(gate, k, d, rng)
    resp, _ = e_step(gate, p, X, y)
    from moestats.likelihood import log_expert_density
    le = log_expert_density(p, X, y)
    use = le if gate.ecm_gate_step else None
    before = gate.objective_and_gradient(p, X, resp, use)[0]
    q = gate_step(gate, p, X, resp, le)
    after = gate.objective_and_gradient(q, X, resp, use)[0]
    assert after >= before
    assert after > before + 1e-6  # a random start is not a stationary point


@pytest.mark.parametrize("name", ["softmax", "top2-slope", "temperature-fixed", "tanh-learned",
                                  "gelu-learned"])
def test_log_likelihood_gradient_matches_finite_differences(name, rng):
    gate = GATE_CASES[name]
    k, d = 3, 2
    _, X, y = _data(gate, k, d, 80, rng)
    p = params_for(gate, k, d, rng)
    theta = pack_params(gate, p)
    _, grad = log_likelihood_and_gradient(gate, p, X, y)
    h = 1e-6
    numeric = np.array([
        (log_likelihood(gate, unpack_params(gate, theta + h * e, p), X, y)
         - log_likelihood(gate, unpack_params(gate, theta - h * e, p), X, y)) / (2 * h)
        for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["softmax", "temperature-fixed", "tanh-learned"])
def test_em_and_mle_reach_the_same_likelihood(name, rng):
    gate = GATE_CASES[name]
    k, d = 2, 1
    truth, X, y = _data(gate, k, d, 2000, rng)
    start = truth.replace(expert_intercept=truth.expert_intercept + 0.3,
                          gate_coef=truth.gate_coef * 0.8)
    em = fit_em(gate, X, y, start, tol=1e-12, max_iter=5000)
    mle = fit_mle(gate, X, y, start, tol=1e-14, max_iter=5000)
    assert em.converged
    np.testing.assert_allclose(mle.log_likelihood, em.log_likelihood, rtol=1e-7)
    assert em.params.allclose(mle.params, rtol=1e-3, atol=1e-3)


def test_em_iteration_fixed_point_at_mle(rng):
    """At a converged EM solution one more iteration moves nothing (a fixed point)."""
    gate = SoftmaxGate()
    truth, X, y = _data(gate, 2, 1, 1000, rng)
    trace = fit_em(gate, X, y, truth, tol=1e-14, max_iter=5000)
    again = em_iteration(gate, trace.params, X, y, 1e-8)
    assert again.allclose(trace.params, rtol=1e-6, atol=1e-6)


def test_top1_keeps_intercepts_at_zero(rng):
    gate = TopKGate(1)
    _, X, y = _data(gate, 3, 1, 300, rng)
    start = params_for(gate, 3, 1, rng)
    trace = fit_em(gate, X, y, start, tol=1e-8, max_iter=50)
    np.testing.assert_array_equal(trace.params.gate_intercept, 0.0)
