"""Backends: the array-API kernels under ``array_api_strict``, the Numba kernels, thread
independence, and the choice of backend.

Tolerances: the array-API kernels equal the NumPy reference to 1e-12 relative; the
Numba kernels to 1e-10 relative (to the scale of each output); Numba results are
bit-identical whatever the number of threads.
"""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import moestats.backends as backends
from moestats import SoftmaxGate, TopKGate
from moestats.backends import (BackendUnavailableError, available_backends, get_backend,
                               numpy_kernels)
from moestats.backends import array_api as aa
from moestats.experts import expert_log_density, weighted_statistics
from moestats.gates import softmax_q_hessian
from moestats.likelihood import e_step, normalize_log_joint

from conftest import random_params


def _assert_rel(got, ref, rel):
    """``|got - ref| <= rel * max|ref|`` elementwise (finite scale), same ``inf`` positions."""
    got, ref = np.asarray(got), np.asarray(ref)
    finite = np.isfinite(ref)
    scale = np.max(np.abs(ref[finite])) if finite.any() else 1.0
    np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * scale)


def _problem(R, n=3001, d=2, k=3, seed=0):
    """R replications of data, parameters, top-2 log weights (with -inf) and responsibilities.

    ``n`` spans several Numba chunks (1024) and is not a multiple of the block sizes.
    """
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(max(R, 1)):
        p = random_params(k, d, rng, scale=2.0)
        X = rng.uniform(-1, 1, size=(n, d))
        y = rng.normal(size=n) * 2.0
        log_w = TopKGate(2).log_weights(p, X)
        resp = rng.dirichlet(np.ones(k), size=n)
        reps.append(dict(p=p, X=X, y=y, log_w=log_w, resp=resp))
    stack = {key: np.stack([r[key] for r in reps]) for key in ("X", "y", "log_w", "resp")}
    for name in ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept",
                 "expert_var"):
        stack[name] = np.stack([getattr(r["p"], name) for r in reps])
    if R == 0:  # no replication axis
        stack = {key: v[0] for key, v in stack.items()}
    return reps, stack


def _reference(reps):
    """Per-replication NumPy reference outputs, stacked."""
    out = {"led": [], "resp": [], "log_p": [], "mass": [], "sxx": [], "sxy": [], "rss": [],
           "theta": []}
    for r in reps:
        p = r["p"]
        led = expert_log_density(r["X"], r["y"], p.expert_coef, p.expert_intercept,
                                 p.expert_var)
        resp, log_p = normalize_log_joint(r["log_w"] + led)
        mass, sxx, sxy = weighted_statistics(r["X"], r["y"], r["resp"])
        theta = np.concatenate([p.expert_coef, p.expert_intercept[:, None]], axis=1)
        Xt = np.hstack([r["X"], np.ones((len(r["y"]), 1))])
        resid = r["y"][:, None] - Xt @ theta.T
        rss = np.sum(r["resp"] * resid**2, axis=0)
        for key, v in zip(out, (led, resp, log_p, mass, sxx, sxy, rss, theta)):
            out[key].append(v)
    return {key: np.stack(v) for key, v in out.items()}


@pytest.fixture(scope="module")
def xps():
    return pytest.importorskip("array_api_strict")


# ------------------------------------------------------------- array-API kernels
@pytest.mark.parametrize("R", [0, 3], ids=["no-R-axis", "R=3"])
def test_array_api_kernels_under_strict_equal_the_reference(R, xps):
    reps, s = _problem(R, n=700)
    ref = _reference(reps)
    if R == 0:
        ref = {key: v[0] for key, v in ref.items()}
    a = {key: xps.asarray(v) for key, v in s.items()}
    led = aa.expert_log_density(a["X"], a["y"], a["expert_coef"], a["expert_intercept"],
                                a["expert_var"])
    assert isinstance(led, type(a["X"]))  # it ran in array_api_strict
    _assert_rel(np.asarray(led), ref["led"], 1e-12)
    assert np.isinf(s["log_w"]).any()  # top-2 of 3: -inf log weights
    resp, log_p = aa.normalize_log_joint(a["log_w"] + xps.asarray(ref["led"]))
    _assert_rel(np.asarray(resp), ref["resp"], 1e-12)
    _assert_rel(np.asarray(log_p), ref["log_p"], 1e-12)
    assert np.all(np.asarray(resp)[np.isinf(s["log_w"])] == 0.0)
    mass, sxx, sxy = aa.weighted_statistics(a["X"], a["y"], a["resp"])
    for got, key in ((mass, "mass"), (sxx, "sxx"), (sxy, "sxy")):
        assert tuple(got.shape) == ref[key].shape
        _assert_rel(np.asarray(got), ref[key], 1e-12)
    rss = aa.weighted_rss(a["X"], a["y"], a["resp"], xps.asarray(ref["theta"]))
    _assert_rel(np.asarray(rss), ref["rss"], 1e-12)


def test_array_api_normalize_handles_all_minus_inf_rows(xps):
    joint = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf],
                      [-1e308, -1e308, -np.inf], [800.0, 0.0, -np.inf]])
    for arr in (xps.asarray(joint), joint):  # strict, and plain NumPy through array_api_compat
        with warnings.catch_warnings(), np.errstate(divide="raise", invalid="raise",
                                                    over="raise"):
            warnings.simplefilter("error")
            resp, log_p = aa.normalize_log_joint(arr)
        resp, log_p = np.asarray(resp), np.asarray(log_p)
        assert not np.isnan(resp).any() and not np.isnan(log_p).any()
        assert log_p[1] == -np.inf and np.all(resp[1] == 0.0)
        np.testing.assert_allclose(resp.sum(axis=1)[[0, 2, 3]], 1.0, rtol=1e-15)
        np.testing.assert_allclose(log_p[[0, 2, 3]],
                                   numpy_kernels.row_logsumexp(joint)[[0, 2, 3]], rtol=1e-15)
        np.testing.assert_allclose(resp[2], [0.5, 0.5, 0.0])


# ------------------------------------------------------------------ Numba kernels
@pytest.fixture(scope="module")
def nk():
    from moestats.backends import numba_kernels
    return numba_kernels


@pytest.mark.parametrize("R", [0, 3], ids=["no-R-axis", "R=3"])
def test_numba_kernels_equal_the_reference(R, nk):
    reps, s = _problem(R)
    ref = _reference(reps)
    if R == 0:
        ref = {key: v[0] for key, v in ref.items()}
    led = nk.expert_log_density(s["X"], s["y"], s["expert_coef"], s["expert_intercept"],
                                s["expert_var"])
    _assert_rel(led, ref["led"], 1e-10)
    # fused E-step from (top-2, -inf) log weights, and the normalisation alone
    resp, log_p = nk.e_step(s["X"], s["y"], s["log_w"], s["expert_coef"],
                            s["expert_intercept"], s["expert_var"])
    _assert_rel(resp, ref["resp"], 1e-10)
    _assert_rel(log_p, ref["log_p"], 1e-10)
    resp2, log_p2 = nk.normalize_log_joint(s["log_w"], ref["led"])
    _assert_rel(resp2, ref["resp"], 1e-10)
    _assert_rel(log_p2, ref["log_p"], 1e-10)
    _assert_rel(nk.row_logsumexp(s["log_w"] + ref["led"]), ref["log_p"], 1e-10)
    mass, sxx, sxy = nk.weighted_statistics(s["X"], s["y"], s["resp"])
    _assert_rel(mass, ref["mass"], 1e-10)
    _assert_rel(sxx, ref["sxx"], 1e-10)
    _assert_rel(sxy, ref["sxy"], 1e-10)
    _assert_rel(nk.weighted_rss(s["X"], s["y"], s["resp"], ref["theta"]), ref["rss"], 1e-10)


@pytest.mark.parametrize("R", [0, 3], ids=["no-R-axis", "R=3"])
def test_numba_softmax_kernels_equal_the_reference(R, nk):
    reps, s = _problem(R)
    gate = SoftmaxGate()
    want_q, want_g, want_h, want_resp, want_lp = [], [], [], [], []
    for r in reps:
        p = r["p"]
        value, grad = gate.objective_and_gradient(p, r["X"], r["resp"])
        want_q.append(value)
        want_g.append(gate.pack_gradient(grad))
        want_h.append(-softmax_q_hessian(r["X"], gate.weights(p, r["X"]), r["resp"].sum(1)))
        resp, log_p = e_step(gate, p, r["X"], r["y"])
        want_resp.append(resp)
        want_lp.append(log_p)
    pick = (lambda v: np.asarray(v[0])) if R == 0 else np.asarray
    value, grad, neg_h = nk.softmax_q(s["X"], s["resp"], s["gate_coef"], s["gate_intercept"])
    _assert_rel(value, pick(want_q), 1e-10)
    _assert_rel(grad, pick(want_g), 1e-10)
    _assert_rel(neg_h, pick(want_h), 1e-10)
    value2, grad2, none = nk.softmax_q(s["X"], s["resp"], s["gate_coef"], s["gate_intercept"],
                                       hessian=False)
    assert none is None
    np.testing.assert_array_equal(grad2, grad)
    resp, log_p = nk.softmax_e_step(s["X"], s["y"], s["gate_coef"], s["gate_intercept"],
                                    s["expert_coef"], s["expert_intercept"], s["expert_var"])
    _assert_rel(resp, pick(want_resp), 1e-10)
    _assert_rel(log_p, pick(want_lp), 1e-10)


@pytest.fixture
def two_threads(nk):
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has fewer than 2 threads here")
    before = nk.get_num_threads()
    yield
    nk.set_num_threads(before)


def test_numba_results_do_not_depend_on_the_number_of_threads(nk, two_threads):
    from moestats.solvers.batched_em import fit_em_batched

    _, s = _problem(4, n=2500)
    gate = SoftmaxGate()
    y_fit = s["y"] * 0.1 + np.where(s["X"][..., 0] > 0, 1.0, -1.0)
    init = random_params(3, 2, np.random.default_rng(1))

    def run():
        out = [nk.expert_log_density(s["X"], s["y"], s["expert_coef"], s["expert_intercept"],
                                     s["expert_var"]),
               *nk.e_step(s["X"], s["y"], s["log_w"], s["expert_coef"], s["expert_intercept"],
                          s["expert_var"]),
               *nk.weighted_statistics(s["X"], s["y"], s["resp"]),
               *nk.softmax_q(s["X"], s["resp"], s["gate_coef"], s["gate_intercept"]),
               *nk.softmax_e_step(s["X"], s["y"], s["gate_coef"], s["gate_intercept"],
                                  s["expert_coef"], s["expert_intercept"], s["expert_var"])]
        for t in fit_em_batched(gate, s["X"], y_fit, init, backend="numba", max_iter=15):
            out += [t.params.gate_coef, t.params.expert_coef, t.params.expert_var,
                    t.log_likelihoods]
        return out

    nk.set_num_threads(1)
    one = run()
    nk.set_num_threads(2)
    two = run()
    assert len(one) == len(two)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------- get_backend
@pytest.mark.parametrize("env, expected", [
    ({}, "PASSIVE"),                                     # none chosen: passive waiting
    ({"OMP_WAIT_POLICY": "active"}, "active"),          # the user's choice stands
    ({"GOMP_SPINCOUNT": "1000"}, None),                 # so does a libgomp spin count
])
def test_importing_the_backends_sets_a_passive_openmp_wait_policy_unless_chosen(env, expected):
    import os
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", "import os, moestats.backends; "
         "print(os.environ.get('OMP_WAIT_POLICY'))"],
        env={**base, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)


def test_get_backend_names_and_auto_rules(monkeypatch):
    assert available_backends()[0] == "numpy" and "numba" in available_backends()
    assert get_backend("numpy") == "numpy" and get_backend("numba") == "numba"
    X = np.zeros((100, 2))
    assert get_backend() == "numpy" and get_backend("auto", X) == "numpy"
    limit = backends.NUMBA_MIN_SAMPLE_REPLICATIONS
    assert get_backend("auto", n_samples=limit) == "numba"
    assert get_backend("auto", n_samples=limit - 1) == "numpy"
    assert get_backend("auto", n_samples=limit // 4, n_replications=4) == "numba"
    big = np.zeros((limit, 1))
    assert get_backend("auto", big) == "numba"
    assert get_backend("auto", np.zeros((4, limit // 4, 1))) == "numba"   # (R, n, d)
    assert get_backend("auto", np.zeros((3, limit // 4, 1))) == "numpy"
    # without Numba, auto falls back to NumPy and "numba" by name is an ImportError
    real = backends._probe
    monkeypatch.setattr(backends, "_probe",
                        lambda name: "numba does not import (test)" if name == "numba"
                        else real(name))
    assert get_backend("auto", big) == "numpy"
    with pytest.raises(ImportError, match=r"backend 'numba' is not available: numba does not "
                                          r"import \(test\); pip install numba"):
        get_backend("numba")
    assert "numba" not in available_backends()


def test_get_backend_picks_cupy_for_cupy_arrays(monkeypatch):
    import array_api_compat

    class FakeCupyArray:
        ndim, shape = 2, (10, 1)

    monkeypatch.setattr(array_api_compat, "is_cupy_array", lambda a: isinstance(a, FakeCupyArray))
    monkeypatch.setattr(backends, "_probe", lambda name: None)
    assert get_backend("auto", np.zeros(3), FakeCupyArray()) == "cupy"
    monkeypatch.setattr(backends, "_probe",
                        lambda name: "cupy finds no CUDA device (test)" if name == "cupy"
                        else None)
    with pytest.raises(BackendUnavailableError, match=r"backend 'cupy' is not available: cupy "
                                                      r"finds no CUDA device \(test\)"):
        get_backend("auto", FakeCupyArray())


@pytest.mark.parametrize("bad", ["cuda", "NumPy", None, 3])
def test_get_backend_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match=r"backend must be 'auto' or 'numpy' or 'numba' or "
                                         r"'cupy', got " + re.escape(repr(bad))):
        get_backend(bad)


def test_unavailable_backend_errors_are_import_errors(monkeypatch):
    from moestats import GaussianMoE
    from moestats.solvers.batched_em import fit_em_batched

    assert issubclass(BackendUnavailableError, ImportError)
    if "cupy" in available_backends():
        pytest.skip("CuPy runs here")
    X = np.random.default_rng(0).uniform(size=(200, 1))
    y = X[:, 0] + 0.1 * np.random.default_rng(1).normal(size=200)
    with pytest.raises(BackendUnavailableError, match=r"backend 'cupy' is not available"):
        GaussianMoE(2, backend="cupy").fit(X, y)
    with pytest.raises(BackendUnavailableError, match=r"moestats\[cupy\]"):
        fit_em_batched(SoftmaxGate(), X[None], y[None],
                       random_params(2, 1, np.random.default_rng(2)), backend="cupy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = GaussianMoE(2, backend="cupy", solver="mle", max_iter=20).fit(X, y)
    assert est.backend_ == "numpy"  # the MLE solver always runs on the NumPy reference


# ------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cupy_backend_fit_equals_numpy():
    cp = pytest.importorskip("cupy")
    try:
        n_devices = cp.cuda.runtime.getDeviceCount()
    except Exception:  # no driver / runtime
        n_devices = 0
    if n_devices < 1:
        pytest.skip("no CUDA device")
    from moestats.setups import get_setup
    from moestats.sampling import near_truth_init
    from moestats.solvers.batched_em import fit_em_batched

    reps, s = _problem(3, n=2000)
    ref = _reference(reps)
    led = aa.expert_log_density(*(cp.asarray(s[key]) for key in (
        "X", "y", "expert_coef", "expert_intercept", "expert_var")))
    _assert_rel(cp.asnumpy(led), ref["led"], 1e-12)
    for got, key in zip(aa.weighted_statistics(cp.asarray(s["X"]), cp.asarray(s["y"]),
                                               cp.asarray(s["resp"])), ("mass", "sxx", "sxy")):
        _assert_rel(cp.asnumpy(got), ref[key], 1e-12)

    setup = get_setup("softmax-exact")
    rng = np.random.default_rng(0)
    data = [setup.truth.sample(1000, rng) for _ in range(3)]
    X = np.stack([d[0] for d in data])
    y = np.stack([d[1] for d in data])
    inits = [near_truth_init(setup.truth.params, 2, 1000, rng)[0] for _ in range(3)]
    assert get_backend("auto", cp.asarray(X)) == "cupy"
    want = fit_em_batched(SoftmaxGate(), X, y, inits, backend="numpy")
    got = fit_em_batched(SoftmaxGate(), cp.asarray(X), cp.asarray(y), inits, backend="cupy")
    for a, b in zip(got, want):
        assert (a.n_iter, a.converged) == (b.n_iter, b.converged)
        np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-11)
        np.testing.assert_allclose(a.params.gate_coef, b.params.gate_coef, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(a.params.expert_coef, b.params.expert_coef, rtol=1e-7,
                                   atol=1e-7)
