"""The EM engine: one batched loop for every gate family and backend.

Tolerances
----------
- A replication gives the same result, bit for bit, alone or inside a batch, on NumPy
  and on Numba (EM phase and second-order finish).
- Numba and the array-API path (run under ``array_api_strict``) add in another order
  than NumPy. For the EM phase alone (``certify=False``) they are held to the same
  ``n_iter`` and ``converged``, the final log-likelihood to 1e-11 relative and every
  parameter to ``|a - b| <= 1e-9 (1 + |b|)``. With the finish, which stops once the
  Newton decrement is below 1e-4 nats, the certified log-likelihoods agree to 1e-6
  nats and the parameters to 1e-5 relative.
"""

import functools

import numpy as np
import pytest

from moestats import (ActivationGate, GaussianMoE, MoEParams, SoftmaxGate, TemperatureGate,
                      TopKGate, TrueModel, UniformDesign)
from moestats.sampling import near_truth_init
from moestats.setups import get_setup
from moestats.solvers import THEORY_SPACE, ParameterSpace, fit_em
from moestats.solvers.batched_em import BatchedParams, batched_e_step, fit_em_batched

R = 3
N = 500
FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var",
          "temperature")
PARAM_RTOL = 1e-9
LL_RTOL = 1e-11

#: a 3-expert truth for the top-2 gate (slope selection: experts {0, 2} for x > 0, {1, 2} below)
_TOP2_TRUTH = TrueModel(
    MoEParams(gate_coef=[[6.0], [-6.0], [0.0]], gate_intercept=[0.5, 0.5, 0.0],
              expert_coef=[[-3.0], [3.0], [0.0]], expert_intercept=[1.0, 1.0, -2.0],
              expert_var=[0.1, 0.15, 0.1]),
    TopKGate(2), UniformDesign(-1.0, 1.0))

#: name -> (fitted gate, true model, fitted number of experts)
CASES = {
    "softmax": (SoftmaxGate(), get_setup("softmax-exact").truth, 2),
    "top2-of-3": (TopKGate(2), _TOP2_TRUTH, 3),
    "top1": (TopKGate(1), get_setup("topk-exact").truth, 2),
    "temperature-fixed": (TemperatureGate(0.5), get_setup("temperature").truth, 2),
    "temperature-learned": (TemperatureGate(0.5, learn_temperature=True),
                            get_setup("temperature").truth, 2),
    "tanh-learned": (ActivationGate("tanh", 0.5, learn_temperature=True),
                     get_setup("activation").truth, 2),
}


@functools.lru_cache(maxsize=None)
def _problem(name, n=N, seed=0):
    """R data sets of one setup and R starts near (not at) the truth."""
    gate, truth, k = CASES[name]
    rng = np.random.default_rng(seed)
    X, y, inits = [], [], []
    for _ in range(R):
        Xr, yr = truth.sample(n, rng)
        init, _ = near_truth_init(truth.params, k, n, rng, fit_intercept=gate.fits_intercept,
                                  gate_sd=0.3, expert_sd=0.3, var_sd=0.05, gate_exponent=0.0,
                                  expert_exponent=0.0, var_exponent=0.0,
                                  perturb_temperature=gate.learns_temperature)
        if not gate.learns_temperature:
            init = init.replace(temperature=gate.initial_temperature())
        X.append(Xr)
        y.append(yr)
        inits.append(init)
    return gate, np.stack(X), np.stack(y), tuple(inits)


@functools.lru_cache(maxsize=None)
def _batched(name, backend, certify=True):
    gate, X, y, inits = _problem(name)
    return tuple(fit_em_batched(gate, X, y, list(inits), backend=backend, certify=certify))


def _assert_same_fit(a, b, exact, rtol=PARAM_RTOL, ll_atol=0.0):
    assert (a.n_iter, a.converged) == (b.n_iter, b.converged)
    for f in FIELDS:
        va, vb = np.asarray(getattr(a.params, f)), np.asarray(getattr(b.params, f))
        if exact:
            np.testing.assert_array_equal(va, vb, err_msg=f)
        else:
            np.testing.assert_allclose(va, vb, rtol=rtol, atol=rtol, err_msg=f)
    if exact:
        np.testing.assert_array_equal(a.log_likelihoods, b.log_likelihoods)
    else:
        np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=LL_RTOL,
                                   atol=ll_atol)


# ------------------------------------------------------------- NumPy = Numba
@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_em_phase_equals_numpy(name):
    ref = _batched(name, "numpy", False)
    got = _batched(name, "numba", False)
    for r in range(R):
        _assert_same_fit(got[r], ref[r], exact=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_certified_fit_equals_numpy(name):
    ref = _batched(name, "numpy")
    got = _batched(name, "numba")
    for r in range(R):
        assert ref[r].converged, ref[r].certificate
        _assert_same_fit(got[r], ref[r], exact=False, rtol=1e-5, ll_atol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "top2-of-3"])
def test_array_api_path_under_array_api_strict_equals_numpy(name):
    xp = pytest.importorskip("array_api_strict")
    gate, X, y, inits = _problem(name)
    got = fit_em_batched(gate, xp.asarray(X), xp.asarray(y), list(inits), backend=xp,
                         certify=False)
    ref = _batched(name, "numpy", False)
    for r in range(R):
        _assert_same_fit(got[r], ref[r], exact=False)
        assert isinstance(got[r].params.gate_coef, np.ndarray)


def test_batched_e_step_backends_agree():
    xp = pytest.importorskip("array_api_strict")
    gate, X, y, inits = _problem("top2-of-3")
    resp, log_p = batched_e_step(gate, list(inits), X, y, backend="numpy")
    for backend in ("numba", xp):
        r2, lp2 = batched_e_step(gate, list(inits), X, y, backend=backend)
        np.testing.assert_allclose(np.asarray(r2), resp, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(lp2), log_p, rtol=1e-12)


# ------------------------------------------------------------- per replication
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_log_likelihood_never_decreases_and_fits_are_certified(name, backend):
    for trace in _batched(name, backend):
        lls = trace.log_likelihoods
        assert np.all(np.diff(lls) >= -1e-9 * np.abs(lls[:-1])), np.diff(lls).min()
        assert trace.converged and trace.certificate.certified, trace.certificate
        assert trace.certificate.predicted_gain <= 1e-3
        assert trace.passes == trace.certificate.passes > trace.n_iter


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_converged_replication_stops_changing(backend):
    """Replications stop at different iterations; a stopped one is not touched again."""
    gate, X, y, inits = _problem("temperature-fixed")
    full = fit_em_batched(gate, X, y, list(inits), tol=1e-13, backend=backend, certify=False)
    n_iters = [t.n_iter for t in full]
    assert len(set(n_iters)) >= 2, n_iters   # traces of different lengths
    for t in full:
        assert t.converged and len(t.log_likelihoods) == t.n_iter + 1
    first = int(np.argmin(n_iters))
    short = fit_em_batched(gate, X, y, list(inits), tol=1e-13, max_iter=n_iters[first],
                           backend=backend, certify=False)
    assert short[first].converged
    for f in FIELDS:  # the same whether the others went on or not
        np.testing.assert_array_equal(getattr(short[first].params, f),
                                      getattr(full[first].params, f))
    later = [r for r in range(R) if n_iters[r] > n_iters[first]]
    assert later and not any(short[r].converged for r in later)
    assert all(short[r].params != full[r].params for r in later)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["softmax", "temperature-learned", "top2-of-3"])
def test_replication_does_not_depend_on_the_batch(name, backend):
    gate, X, y, inits = _problem(name)
    together = _batched(name, backend)[1]
    alone = fit_em_batched(gate, X[1:2], y[1:2], [inits[1]], backend=backend)[0]
    for f in FIELDS:  # bit for bit
        np.testing.assert_array_equal(getattr(alone.params, f), getattr(together.params, f))
    np.testing.assert_array_equal(alone.log_likelihoods, together.log_likelihoods)
    assert (alone.n_iter, alone.converged) == (together.n_iter, together.converged)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_on_error_record_keeps_the_others_going(backend):
    gate, X, y, inits = _problem("softmax")
    y = y.copy()
    y[1, 5] = np.nan  # its statistics are NaN: the linear solve fails
    with pytest.raises(ValueError, match="replication 0 failed at iteration 1: LinAlgError"):
        fit_em(gate, X[1], y[1], inits[1])
    traces = fit_em_batched(gate, X, y, list(inits), backend=backend, on_error="record")
    bad = traces[1]
    assert "LinAlgError" in bad.events["error"] and not bad.converged
    assert bad.params == inits[1] and bad.n_iter == 0 and len(bad.log_likelihoods) == 1
    ref = _batched("softmax", backend)
    for r in (0, 2):
        assert "error" not in traces[r].events
        _assert_same_fit(traces[r], ref[r], exact=True)
    with pytest.raises(ValueError, match=r"replication 1 failed at iteration 1: LinAlgError"):
        fit_em_batched(gate, X, y, list(inits), backend=backend)


def test_per_replication_var_floor_and_batched_params():
    gate, X, y, inits = _problem("temperature-fixed")
    P = BatchedParams.stack(inits)
    assert len(P) == R and P.expert_coef.shape == (R, 2, 1)
    assert P.get(2) == inits[2] and P.unstack() == list(inits)
    traces = fit_em_batched(gate, X, y, P, var_floor=np.array([1e-8, 1.0, 1e-8]))
    assert traces[1].params.expert_var.min() == 1.0 and traces[1].events["floored_variances"]
    assert traces[1].certificate.n_active_bounds >= 1 and traces[1].converged
    np.testing.assert_array_equal(traces[0].params.expert_coef,
                                  _batched("temperature-fixed", "numpy")[0].params.expert_coef)
    assert P.get(0) == inits[0]  # the start is not modified


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_naming_the_problem():
    gate, X, y, inits = _problem("softmax")
    with pytest.raises(ValueError, match=r"X must be \(R, n, d\) and y \(R, n\); got X of shape "
                                         r"\(500, 1\) and y of shape \(500,\)"):
        fit_em_batched(gate, X[0], y[0], inits[0])
    with pytest.raises(ValueError, match=r"got X of shape \(3, 500, 1\) and y of shape \(3, 499\)"):
        fit_em_batched(gate, X, y[:, 1:], list(inits))
    with pytest.raises(ValueError, match=r"init has 2 replications, X has 3"):
        fit_em_batched(gate, X, y, list(inits[:2]))
    with pytest.raises(ValueError, match=r"init has 1 features, X has 2"):
        fit_em_batched(gate, np.concatenate([X, X], axis=2), y, list(inits))
    wide = MoEParams([[1.0], [1.0], [0.0]], [0.0, 0.0, 0.0], [[1.0]] * 3, [0.0] * 3, [1.0] * 3)
    with pytest.raises(ValueError, match=r"init\[1\] has 3 experts on 1 features, init\[0\] has 2"):
        fit_em_batched(gate, X, y, [inits[0], wide, inits[2]])
    with pytest.raises(ValueError, match=r"backend must be .*got 'cuda'"):
        fit_em_batched(gate, X, y, list(inits), backend="cuda")
    with pytest.raises(ValueError, match=r"on_error must be 'raise' or 'record', got 'skip'"):
        fit_em_batched(gate, X, y, list(inits), on_error="skip")


# ------------------------------------------------------------------ estimator
@pytest.mark.parametrize("gate", [SoftmaxGate(), TopKGate(2)], ids=["softmax", "top2"])
def test_estimator_numba_backend_equals_numpy(gate):
    truth = _TOP2_TRUTH if isinstance(gate, TopKGate) else get_setup("temperature").truth
    k = truth.params.n_experts
    X, yv = TrueModel(truth.params, truth.gate, UniformDesign(-1, 1)).sample(
        800, np.random.default_rng(3))
    ref = GaussianMoE(k, gate=gate, backend="numpy", random_state=0).fit(X, yv)
    got = GaussianMoE(k, gate=gate, backend="numba", random_state=0).fit(X, yv)
    assert (ref.backend_, got.backend_) == ("numpy", "numba")
    np.testing.assert_allclose(got.log_likelihood_, ref.log_likelihood_, rtol=1e-8)
    assert got.converged_ == ref.converged_
    # the same maximum, possibly under another labelling of equivalent starts
    np.testing.assert_allclose(np.sort(got.expert_coef_, axis=0), np.sort(ref.expert_coef_, axis=0),
                               rtol=1e-5, atol=1e-6)
    # the MLE solver always runs on the NumPy reference
    mle = GaussianMoE(k, gate=gate, solver="mle", backend="numba", random_state=0,
                      max_iter=50).fit(X, yv)
    assert mle.backend_ == "numpy"


def test_estimator_auto_backend_uses_the_problem_size(monkeypatch):
    import moestats.backends as backends
    X, yv = get_setup("temperature").truth.sample(300, np.random.default_rng(0))
    assert GaussianMoE(2, random_state=0).fit(X, yv).backend_ == "numpy"
    monkeypatch.setattr(backends, "NUMBA_MIN_SAMPLE_REPLICATIONS", 300)
    assert GaussianMoE(2, random_state=0).fit(X, yv).backend_ == "numba"
