"""Certified fits: an independent optimiser cannot improve them, for every gate family, exact-
and over-specified; bounds hold; the MLE solver is scale-free; what cannot be certified is not."""

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from moestats import (ActivationGate, GaussianMoE, MoEParams, SoftmaxGate, TemperatureGate,
                      TopKGate, TrueModel, UniformDesign, get_setup, near_truth_init)
from moestats.solvers import (THEORY_SPACE, BatchedParams, ParameterSpace, ParamLayout,
                              fit_em, fit_em_batched, fit_mle)
from moestats.solvers.certify import certify
from moestats.solvers.derivatives import observed_derivatives

CERTIFY_TOL = 1e-3

_TOP2 = MoEParams([[6.0], [-6.0], [0.0]], [0.5, 0.5, 0.0], [[-3.0], [3.0], [0.0]],
                  [1.0, 1.0, -2.0], [0.1, 0.15, 0.1])
#: name -> (true model, fitted gate); each fitted exactly (k = k*) and with one more expert
CASES = {
    "softmax": (get_setup("softmax-exact").truth, SoftmaxGate()),
    "top1": (get_setup("topk-exact").truth, TopKGate(1)),
    "top2": (TrueModel(_TOP2, TopKGate(2), UniformDesign(-1.0, 1.0)), TopKGate(2)),
    "temperature-fixed": (get_setup("temperature").truth, TemperatureGate(0.5)),
    "temperature-learned": (get_setup("temperature").truth,
                            TemperatureGate(0.5, learn_temperature=True)),
    "tanh-learned": (get_setup("activation").truth,
                     ActivationGate("tanh", 0.5, learn_temperature=True)),
}


def _fit(name, extra, n=1500, seed=0):
    truth, gate = CASES[name]
    rng = np.random.default_rng(seed)
    X, y = truth.sample(n, rng)
    k = truth.params.n_experts + extra
    init, _ = near_truth_init(truth.params, k, n, rng, fit_intercept=gate.fits_intercept,
                              gate_sd=0.2, expert_sd=0.2, var_sd=0.02, gate_exponent=0.0,
                              expert_exponent=0.0, var_exponent=0.0,
                              perturb_temperature=gate.learns_temperature)
    if not gate.learns_temperature:
        init = init.replace(temperature=gate.initial_temperature())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trace = fit_em(gate, X, y, init, space=THEORY_SPACE, certify_tol=CERTIFY_TOL)
    return gate, X, y, trace


def _polish(gate, X, y, params, fix_slopes):
    """L-BFGS-B (scipy) on the observed log-likelihood from ``params``: the gain it finds."""
    P = BatchedParams.stack([params])
    L = ParamLayout(gate, params.n_experts, params.n_features)
    lo, hi = THEORY_SPACE.box(L)
    theta0 = L.pack(P)[0]
    if fix_slopes:  # top-K: the slopes are certified by boundary searches, not by a gradient
        lo[L.gate_slope] = hi[L.gate_slope] = theta0[L.gate_slope]

    def negative(theta):
        with np.errstate(all="ignore"):
            v, g, _ = observed_derivatives(gate, X[None], y[None], L.unpack(theta[None], P), 1)
        if not np.isfinite(v[0]):
            return np.inf, np.zeros_like(theta)
        return -v[0], -g[0]

    start = -negative(theta0)[0]
    res = minimize(negative, theta0, jac=True, method="L-BFGS-B",
                   bounds=list(zip(lo, hi)),
                   options=dict(maxiter=20000, maxfun=40000, ftol=1e-15, gtol=1e-10))
    return -res.fun - start


@pytest.mark.parametrize("extra", [0, 1], ids=["exact", "over"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_certified_fit_survives_an_independent_polish(name, extra):
    gate, X, y, trace = _fit(name, extra)
    assert trace.converged, trace.certificate
    cert = trace.certificate
    assert cert.certified and cert.predicted_gain <= CERTIFY_TOL and not cert.reason
    assert trace.passes == cert.passes > 0
    gain = _polish(gate, X, y, trace.params, fix_slopes=isinstance(gate, TopKGate))
    assert gain < CERTIFY_TOL, gain
    assert not THEORY_SPACE.violations(trace.params)


def test_an_early_stop_is_not_certified():
    """EM stopped by its relative tolerance far from the maximum: the certificate says so."""
    gate, X, y, trace = _fit("softmax", 1, n=5000)
    stopped = fit_em(gate, X, y, trace.params.replace(
        gate_coef=trace.params.gate_coef + [[3.0], [-2.0], [0.0]]), tol=1e-3, certify=False)
    P = BatchedParams.stack([stopped.params])
    L = ParamLayout(gate, 3, 1)
    value, grad, hess = observed_derivatives(gate, X[None], y[None], P)
    cert = certify(grad, hess, L.pack(P), *THEORY_SPACE.box(L), CERTIFY_TOL)[0]
    assert stopped.converged and not cert.certified  # the old rule said converged
    assert trace.log_likelihood - stopped.log_likelihood > CERTIFY_TOL


def test_bounds_are_honoured_by_em_and_the_finish():
    truth = get_setup("softmax-exact").truth
    X, y = truth.sample(800, np.random.default_rng(1))
    space = ParameterSpace(var_bounds=(0.2, 5.0), coef_bound=10.0)  # truth: 0.09, 25, 20
    for certify_ in (False, True):
        trace = fit_em_batched(SoftmaxGate(), X[None], y[None], truth.params, space=space,
                               certify=certify_)[0]
        p = trace.params
        assert not space.violations(p), (certify_, p)
        assert np.all(np.diff(trace.log_likelihoods) >= -1e-9 * np.abs(trace.log_likelihoods[1:]))
    assert trace.converged and trace.certificate.n_active_bounds >= 1
    assert np.abs(p.gate_coef).max() == pytest.approx(10.0)
    mle = fit_mle(SoftmaxGate(), X, y, truth.params, space=space)
    assert not space.violations(mle.params) and mle.converged
    assert mle.log_likelihood == pytest.approx(trace.log_likelihood, abs=2e-3)


@pytest.mark.parametrize("x_scale, y_scale", [(1e4, 1.0), (1.0, 1e150), (1.0, 1e-150),
                                              (1e150, 1.0)])
@pytest.mark.parametrize("solver", ["em", "mle"])
def test_estimator_is_scale_free(solver, x_scale, y_scale):
    X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(2))
    ref = GaussianMoE(2, solver=solver, random_state=0).fit(X, y)
    got = GaussianMoE(2, solver=solver, random_state=0).fit(X * x_scale, y * y_scale)
    assert ref.converged_ and got.converged_
    n = X.shape[0]
    assert got.log_likelihood_ + n * np.log(y_scale) == pytest.approx(ref.log_likelihood_,
                                                                        abs=2e-3)
    np.testing.assert_allclose(np.sort(ref.expert_coef_[:, 0]),
                               np.sort(got.expert_coef_[:, 0] * x_scale / y_scale), rtol=1e-4)


def test_one_outlier_does_not_inflate_the_variance_floor():
    X, y = get_setup("softmax-exact").truth.sample(500, np.random.default_rng(3))
    y = y.copy()
    y[0] = 1e8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(3, random_state=0).fit(X, y)
    assert est.expert_var_.min() < 1.0  # the regimes' variances are 0.09 and 0.16


def test_saddle_escape_of_one_replication_leaves_the_others_alone():
    """The finish probes negative curvature and climbs on per replication: a fit that
    starts at the truth gets the same passes, values and endpoint alone and beside one
    that starts on the saddle of identical experts (zero gradient: the pooled least-squares
    fit, which only the probe can leave)."""
    from moestats.solvers.finish import newton_finish
    truth = get_setup("softmax-exact").truth
    X, y = truth.sample(800, np.random.default_rng(3))
    p = truth.params
    design = np.column_stack([X, np.ones(len(y))])
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    var = np.mean((y - design @ beta) ** 2)
    tied = MoEParams(np.zeros((2, 1)), np.zeros(2), np.repeat(beta[None, :1], 2, axis=0),
                     np.full(2, beta[1]), np.full(2, var))
    L = ParamLayout(SoftmaxGate(), 2, 1)
    lo, hi = THEORY_SPACE.box(L)

    def finish(starts):
        P = BatchedParams.stack(starts)
        R = len(starts)
        values, passes, certs = newton_finish(SoftmaxGate(), np.repeat(X[None], R, 0),
                                              np.repeat(y[None], R, 0), P, lo, hi)
        return P, values, passes, certs

    P1, values1, passes1, certs1 = finish([p])
    P2, values2, passes2, certs2 = finish([p, tied])
    assert P2.get(0) == P1.get(0) and values2[0] == values1[0] and passes2[0] == passes1[0]
    assert certs2[0].certified and certs2[1].certified
    # the tied start climbed off its saddle to the truth's maximum
    assert values2[1][-1] == pytest.approx(values1[0][-1], abs=CERTIFY_TOL)
    assert passes2[1] > passes2[0]
