"""Bootstrap: label alignment, agreement with the Wald standard errors,
reproducibility by seed and invariance to ``n_jobs``."""

import itertools

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from moestats import (ActivationGate, GaussianMoE, MoEParams, SoftmaxGate, TopKGate,
                      bootstrap, get_setup)
from moestats.inference import BootstrapResult, align_to_reference, relabel
from moestats.inference.bootstrap import _replicate
from moestats.inference.parameters import REASON_IDENTITY_TAU


@pytest.fixture(scope="module")
def fitted():
    X, y = get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(0))
    return GaussianMoE(2, random_state=0).fit(X, y), X, y


def _d2():
    return get_setup("softmax-d2-exact").truth.params


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_relabel_and_align_restore_every_permutation(order):
    truth = _d2()
    switched = relabel(truth, SoftmaxGate(), order)
    assert switched.gate_coef[-1].tolist() == [0.0, 0.0]
    X, _ = get_setup("softmax-d2-exact").truth.sample(200, np.random.default_rng(1))
    np.testing.assert_allclose(SoftmaxGate().weights(switched, X),
                               SoftmaxGate().weights(truth, X)[:, list(order)], atol=1e-12)
    aligned, found = align_to_reference(switched, truth, SoftmaxGate())
    assert aligned.allclose(truth, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(order)[found], np.arange(3))


def test_align_odd_activation_swaps_reference_and_keeps_it_otherwise():
    tanh = ActivationGate("tanh", 0.5)
    truth = get_setup("activation").truth.params
    X = np.linspace(-1, 1, 50)[:, None]
    switched = relabel(truth, tanh, [1, 0])
    np.testing.assert_allclose(tanh.weights(switched, X), tanh.weights(truth, X)[:, ::-1],
                               atol=1e-12)
    aligned, order = align_to_reference(switched, truth, tanh)
    assert order.tolist() == [1, 0] and aligned.allclose(truth, atol=1e-12)
    gelu = ActivationGate("gelu", 0.5)
    with pytest.raises(ValueError, match="cannot become the reference"):
        relabel(truth, gelu, [1, 0])
    assert align_to_reference(truth, truth, gelu)[1].tolist() == [0, 1]


def test_alignment_fixes_a_switched_replicate(fitted):
    est, X, y = fitted
    params, gate = est.params_, est.gate_
    switched = relabel(params, gate, [1, 0])
    # a refit started from the switched labels converges to the switched maximum ...
    base = clone(est).set_params(init=switched, n_init=1)
    seed = np.random.SeedSequence(5)
    aligned, order, certified, ll, msg = _replicate(base, X, y, params, gate,
                                                    "nonparametric", seed)
    assert certified and msg == "" and order.tolist() == [1, 0]
    # ... and is brought back to the fit's labels (close to the fit, not to its mirror)
    assert np.allclose(aligned.expert_coef, params.expert_coef, atol=1.0)
    assert np.sign(aligned.gate_coef[0, 0]) == np.sign(params.gate_coef[0, 0])
    # without alignment the standard errors would be huge
    same = _replicate(clone(est).set_params(init=params, n_init=1), X, y, params, gate,
                      "nonparametric", seed)
    result = BootstrapResult(est, [(aligned, order, True, ll, ""), same], "nonparametric")
    assert result.n_relabelled == 1
    assert np.all(result.std_errors < 0.5 * np.abs(result.estimates).max())
    naive = np.std([switched.expert_coef[0, 0], same[0].expert_coef[0, 0]])
    assert naive > 10 * result.standard_errors.expert_coef_[0, 0]


def test_nonparametric_standard_errors_close_to_wald(fitted):
    est, X, y = fitted
    boot = bootstrap(est, X, y, n_boot=150, random_state=0)
    wald = est.inference().std_errors
    ratio = boot.std_errors / wald
    assert np.all(np.abs(ratio - 1) < 0.3), ratio
    assert boot.certified.all() and not boot.failures
    ci = boot.conf_int(0.1)
    assert np.all(ci["lower"] < boot.estimates) and np.all(boot.estimates < ci["upper"])
    table = boot.summary()
    assert table.index.tolist() == est.summary().index.tolist()
    assert "percentile" in str(table)
    se = boot.standard_errors
    assert se.expert_coef_.shape == (2, 1) and se.gate_coef_[-1, 0] == 0


def test_parametric_bootstrap(fitted):
    est, X, y = fitted
    boot = bootstrap(est, X, y, n_boot=60, kind="parametric", random_state=1)
    ratio = boot.std_errors / est.inference().std_errors
    assert np.all(np.abs(ratio - 1) < 0.45), ratio


def test_reproducible_by_seed_and_independent_of_n_jobs(fitted):
    est, X, y = fitted
    a = bootstrap(est, X[:600], y[:600], n_boot=6, random_state=11)
    b = bootstrap(est, X[:600], y[:600], n_boot=6, random_state=11, n_jobs=2)
    c = bootstrap(est, X[:600], y[:600], n_boot=6, random_state=np.random.SeedSequence(11))
    np.testing.assert_array_equal(a.replicates, b.replicates)
    np.testing.assert_array_equal(a.replicates, c.replicates)
    d = bootstrap(est, X[:600], y[:600], n_boot=6, random_state=12)
    assert not np.array_equal(a.replicates, d.replicates)


def test_structural_rows_have_no_bootstrap_error():
    s = get_setup("temperature")
    X, y = s.truth.sample(800, np.random.default_rng(0))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GaussianMoE(2, gate=s.fitted[0].gate, random_state=0).fit(X, y)
    boot = bootstrap(est, X, y, n_boot=5, random_state=0)
    table = boot.summary()
    assert table.loc["gate 1: x0", "note"] == REASON_IDENTITY_TAU
    assert np.isnan(table.loc["gate 1: x0", "std. error"])
    assert np.isfinite(table.loc["gate 1: x0 / temperature", "std. error"])


def test_top2_bootstrap_runs():
    rng = np.random.default_rng(0)
    truth = MoEParams([[4.0], [-4.0], [0.0]], [0.5, -0.5, 0.0], [[2.0], [-2.0], [2.0]],
                      [3.0, -3.0, 0.0], [0.1, 0.15, 0.2])
    from moestats.sampling import sample_conditional
    X = rng.uniform(-1, 1, size=(1500, 1))
    y = sample_conditional(TopKGate(2), truth, X, rng)[0]
    est = GaussianMoE(3, gate=TopKGate(2), random_state=0).fit(X, y)
    boot = bootstrap(est, X, y, n_boot=8, random_state=0)
    assert boot.replicates.shape == (8, 3 * 3 + 2 * 2)


def test_bad_input_raises(fitted):
    est, X, y = fitted
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got 0"):
        bootstrap(est, X, y, n_boot=0)
    with pytest.raises(ValueError, match="kind must be .* got 'jackknife'"):
        bootstrap(est, X, y, kind="jackknife")
    with pytest.raises(ValueError, match="n_jobs"):
        bootstrap(est, X, y, n_jobs=0)
    with pytest.raises(ValueError, match="random_state"):
        bootstrap(est, X, y, random_state="seed")
    with pytest.raises(NotFittedError):
        bootstrap(GaussianMoE(2), X, y)
    boot = bootstrap(est, X[:300], y[:300], n_boot=2, random_state=0)
    with pytest.raises(ValueError, match="alpha"):
        boot.conf_int(alpha=-0.1)
