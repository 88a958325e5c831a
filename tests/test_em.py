"""EM: exact M-steps, monotone log-likelihood and gate steps for every gate family, MLE agreement."""

import numpy as np
import pytest

from moestats import SoftmaxGate, TopKGate, TrueModel, UniformDesign
from moestats.experts import expert_m_step, weighted_statistics
from moestats.likelihood import e_step, log_likelihood
from moestats.solvers import BatchedParams, ParamLayout, fit_em, fit_mle
from moestats.solvers.derivatives import gate_objective_derivatives, observed_loglik
from moestats.solvers.gate_steps import fit_gate_to_responsibilities

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


@pytest.mark.parametrize("certify", [False, True], ids=["em", "em+finish"])
@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_log_likelihood_never_decreases(name, certify, rng):
    gate = GATE_CASES[name]
    k, d = 3, 2
    _, X, y = _data(gate, k, d, 400, rng)
    start = params_for(gate, k, d, rng)  # a poor start: many iterations of real progress
    with np.errstate(all="ignore"):
        trace = fit_em(gate, X, y, start, tol=0.0, max_iter=40, var_floor=1e-8,
                       certify=certify)
    lls = trace.log_likelihoods
    drops = np.diff(lls)
    assert np.all(drops >= -1e-9 * np.abs(lls[:-1])), drops.min()
    assert lls[-1] > lls[0] + 1.0  # it did climb
    np.testing.assert_allclose(lls[-1], log_likelihood(gate, trace.params, X, y), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_gate_step_never_decreases_its_objective(name, rng):
    """Q for the dense families; the observed likelihood with the experts fixed for top-K."""
    gate = GATE_CASES[name]
    k, d = 3, 2
    _, X, y = _data(gate, k, d, 300, rng)
    p = params_for(gate, k, d, rng)
    resp, _ = e_step(gate, p, X, y)
    q = fit_gate_to_responsibilities(gate, p, X, y, resp)
    if isinstance(gate, TopKGate):
        def objective(params):
            return observed_loglik(gate, X[None], y[None], BatchedParams.stack([params]))[0]
    else:
        def objective(params):
            return gate_objective_derivatives(gate, X[None], resp[None],
                                              BatchedParams.stack([params]), order=0)[0][0]
    before, after = objective(p), objective(q)
    assert after > before + 1e-6  # a random start is not a stationary point
    np.testing.assert_array_equal(q.expert_coef, p.expert_coef)


@pytest.mark.parametrize("name", ["softmax", "temperature-fixed", "tanh-learned", "top2-slope"])
def test_em_and_mle_reach_the_same_likelihood(name, rng):
    gate = GATE_CASES[name]
    k, d = 2, 1
    truth, X, y = _data(gate, k, d, 2000, rng)
    start = truth.replace(expert_intercept=truth.expert_intercept + 0.3,
                          gate_coef=truth.gate_coef * 0.8)
    em = fit_em(gate, X, y, start)
    mle = fit_mle(gate, X, y, start)
    assert em.converged and mle.converged
    np.testing.assert_allclose(mle.log_likelihood, em.log_likelihood, rtol=0, atol=2e-3)
    assert em.params.allclose(mle.params, rtol=1e-3, atol=1e-3)


def test_top1_keeps_intercepts_at_zero(rng):
    gate = TopKGate(1)
    _, X, y = _data(gate, 3, 1, 300, rng)
    start = params_for(gate, 3, 1, rng)
    trace = fit_em(gate, X, y, start, tol=1e-8, max_iter=50)
    np.testing.assert_array_equal(trace.params.gate_intercept, 0.0)


def test_param_layout_round_trip(rng):
    for name, gate in GATE_CASES.items():
        p = params_for(gate, 3, 2, rng)
        L = ParamLayout(gate, 3, 2)
        P = BatchedParams.stack([p, p])
        theta = L.pack(P)
        assert theta.shape == (2, L.size) and len(L.names()) == L.size, name
        assert L.unpack(theta, P).get(1).allclose(p, rtol=1e-14, atol=0), name
