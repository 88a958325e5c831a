"""``sample_weight`` (weighted EM and MLE; integer weights equal repeated rows) and
``verbose`` (issue 10, item 5)."""

import numpy as np
import pytest

from moestats import (ActivationGate, GaussianMoE, SoftmaxGate, TemperatureGate, TopKGate,
                      get_setup)
from moestats.solvers.batched_params import BatchedParams
from moestats.solvers.derivatives import observed_derivatives, observed_loglik

TRUTH = get_setup("softmax-exact").truth
GATES = {  # each gate family with a truth of its own family
    "softmax": (SoftmaxGate(), "softmax-exact"),
    "temperature": (TemperatureGate(0.5), "temperature"),
    "tanh": (ActivationGate("tanh", 0.5, learn_temperature=True), "activation"),
}


def _data(n=400, seed=1, setup="softmax-exact"):
    X, y = get_setup(setup).truth.sample(n, np.random.default_rng(seed))
    counts = np.random.default_rng(seed + 1).integers(0, 4, size=n)
    return X, y, counts


@pytest.mark.parametrize("name", sorted(GATES))
def test_weighted_derivatives_equal_the_repeated_rows(name):
    gate, setup = GATES[name]
    X, y, c = _data(150, setup=setup)
    Xr, yr = np.repeat(X, c, axis=0), np.repeat(y, c)
    truth = get_setup(setup).truth.params
    params = truth.replace(temperature=0.8) if gate.has_temperature else truth
    P = BatchedParams.stack([params])
    for order in (1, 2):
        v, g, h = observed_derivatives(gate, X[None], y[None], P, order=order,
                                       sample_weight=c[None].astype(float))
        vr, gr, hr = observed_derivatives(gate, Xr[None], yr[None], P, order=order)
        np.testing.assert_allclose(v, vr, rtol=1e-12)
        np.testing.assert_allclose(g, gr, rtol=1e-9, atol=1e-9)
        if order == 2:
            np.testing.assert_allclose(h, hr, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(observed_loglik(gate, X[None], y[None], P, c[None] * 1.0),
                               observed_loglik(gate, Xr[None], yr[None], P), rtol=1e-12)


@pytest.mark.parametrize("solver", ["em", "mle"])
@pytest.mark.parametrize("name", sorted(GATES))
def test_integer_weights_fit_as_repeated_rows(name, solver):
    gate, setup = GATES[name]
    X, y, c = _data(setup=setup)
    Xr, yr = np.repeat(X, c, axis=0), np.repeat(y, c)
    start = GaussianMoE(2, gate=gate, random_state=0, backend="numpy").fit(Xr, yr).params_
    opts = dict(gate=gate, init=start, solver=solver, backend="numpy")
    rep = GaussianMoE(2, **opts).fit(Xr, yr)
    wtd = GaussianMoE(2, **opts).fit(X, y, sample_weight=c)
    assert rep.converged_ and wtd.converged_
    assert wtd.log_likelihood_ == pytest.approx(rep.log_likelihood_, rel=1e-9)
    for field in ("expert_coef_", "expert_intercept_", "expert_var_", "gate_intercept_"):
        np.testing.assert_allclose(getattr(wtd, field), getattr(rep, field),
                                   rtol=1e-5, atol=1e-6)
    # the standard errors treat the weights as frequencies
    np.testing.assert_allclose(wtd.covariance_, rep.covariance_, rtol=1e-4, atol=1e-10)
    assert wtd.score(X, y, sample_weight=c) == pytest.approx(rep.score(Xr, yr), rel=1e-9)


def test_multistart_weighted_fit_reaches_the_repeated_rows_maximum():
    X, y, c = _data()
    Xr, yr = np.repeat(X, c, axis=0), np.repeat(y, c)
    rep = GaussianMoE(2, random_state=0).fit(Xr, yr)
    wtd = GaussianMoE(2, random_state=0).fit(X, y, sample_weight=c)
    assert wtd.converged_ and wtd.backend_ == "numpy"
    assert wtd.log_likelihood_ == pytest.approx(rep.log_likelihood_, abs=1e-6)


def test_zero_weights_drop_their_samples_and_unit_weights_change_nothing():
    X, y, _ = _data()
    keep = np.arange(X.shape[0]) % 3 != 0
    sub = GaussianMoE(2, random_state=0, backend="numpy").fit(X[keep], y[keep])
    wtd = GaussianMoE(2, random_state=0).fit(X, y, sample_weight=keep.astype(float))
    assert wtd.log_likelihood_ == pytest.approx(sub.log_likelihood_, rel=1e-9)
    one = GaussianMoE(2, random_state=0).fit(X, y, sample_weight=np.ones(X.shape[0]))
    plain = GaussianMoE(2, random_state=0, backend="numpy").fit(X, y)
    assert one.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-12)


@pytest.mark.parametrize("weights, message", [
    (lambda n: -np.ones(n), r"non-negative: sample_weight\[0\] = -1.0"),
    (lambda n: np.r_[np.nan, np.ones(n - 1)], r"finite: sample_weight\[0\] = nan"),
    (lambda n: np.ones(n - 1), r"shape \(400,\)"),
    (lambda n: np.zeros(n), "sums to zero"),
    (lambda n: np.array(["a"] * n), "numeric"),
])
def test_bad_sample_weight_is_named(weights, message):
    X, y, _ = _data()
    with pytest.raises(ValueError, match=message):
        GaussianMoE(2).fit(X, y, sample_weight=weights(X.shape[0]))
    est = GaussianMoE(2, random_state=0, n_init=2).fit(X, y)
    with pytest.raises(ValueError, match=message):
        est.score(X, y, sample_weight=weights(X.shape[0]))


def test_topk_fits_integer_weights_as_repeated_rows_and_refuses_others():
    X, y, c = _data(300)
    gate = TopKGate(1)
    rep = GaussianMoE(2, gate=gate, random_state=0).fit(np.repeat(X, c, axis=0),
                                                        np.repeat(y, c))
    wtd = GaussianMoE(2, gate=gate, random_state=0).fit(X, y, sample_weight=c)
    assert wtd.log_likelihood_ == rep.log_likelihood_
    with pytest.raises(ValueError, match=r"integer sample weights only .* = 0.5"):
        GaussianMoE(2, gate=gate).fit(X, y, sample_weight=np.full(X.shape[0], 0.5))


def test_verbose_prints_iterations_and_certificate(capsys):
    X, y, _ = _data()
    GaussianMoE(2, random_state=0, n_init=4, verbose=2).fit(X, y)
    out = capsys.readouterr().out
    assert "short runs of 4 starts" in out
    assert "iteration    1" in out and "certified" in out
    GaussianMoE(2, random_state=0, n_init=4).fit(X, y)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose must be an integer >= 0, got -1"):
        GaussianMoE(2, verbose=-1).fit(X, y)
