"""Exact gradient and Hessian of the observed log-likelihood and of Q, for every gate family,
against central finite differences (of the value for gradients, of the analytic gradient
for Hessians)."""

import numpy as np
import pytest

from moestats import TopKGate
from moestats.solvers import BatchedParams, ParamLayout
from moestats.solvers.derivatives import (gate_forward, gate_objective_derivatives,
                                          observed_derivatives, observed_loglik)

from conftest import GATE_CASES, params_for

A, N, D, K = 2, 250, 2, 3
EPS = 1e-5


def _setup(name, rng):
    gate = GATE_CASES[name]
    X = rng.normal(size=(A, N, D))
    y = rng.normal(size=(A, N))
    P = BatchedParams.stack([params_for(gate, K, D, rng) for _ in range(A)])
    return gate, X, y, P, ParamLayout(gate, K, D)


def _central(f, theta, q):
    plus, minus = theta.copy(), theta.copy()
    plus[:, q] += EPS
    minus[:, q] -= EPS
    return [(a - b) / (2 * EPS) for a, b in zip(f(plus), f(minus))]


def _rel(a, b):
    return np.abs(a - b).max() / max(1e-12, np.abs(b).max())


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_observed_gradient_and_hessian_match_finite_differences(name, rng):
    gate, X, y, P, L = _setup(name, rng)
    theta = L.pack(P)
    value, grad, hess = observed_derivatives(gate, X, y, P)
    np.testing.assert_allclose(value, observed_loglik(gate, X, y, P), rtol=1e-13)
    np.testing.assert_allclose(hess, hess.transpose(0, 2, 1), rtol=0, atol=1e-10)
    g_fd = np.zeros_like(grad)
    h_fd = np.zeros_like(hess)
    for q in range(L.size):
        dv, dg = _central(lambda t: observed_derivatives(gate, X, y, L.unpack(t, P), 1)[:2],
                          theta, q)
        g_fd[:, q], h_fd[:, :, q] = dv, dg
    assert _rel(grad, g_fd) < 1e-7
    assert _rel(hess, h_fd) < 1e-6


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_gate_only_derivatives_are_the_gate_block(name, rng):
    gate, X, y, P, L = _setup(name, rng)
    value, grad, hess = observed_derivatives(gate, X, y, P)
    v2, g2, h2 = observed_derivatives(gate, X, y, P, gate_only=True)
    m = L.n_gate
    np.testing.assert_allclose(v2, value, rtol=1e-14)
    np.testing.assert_allclose(g2, grad[:, :m], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h2, hess[:, :m, :m], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_q_gradient_and_hessian_match_finite_differences(name, rng):
    gate, X, y, P, L = _setup(name, rng)
    resp = rng.dirichlet(np.ones(K), size=(A, N)) * rng.uniform(0.5, 1.5, size=(A, N, 1))
    if isinstance(gate, TopKGate):  # Q is finite only where the responsibilities are selected
        resp = np.where(np.isfinite(gate_forward(gate, X, P)[5]), resp, 0.0)
    m = L.n_gate
    full = L.pack(P)

    def at(t):
        return gate_objective_derivatives(gate, X, resp, L.unpack(
            np.concatenate([t, full[:, m:]], axis=1), P))

    value, grad, hess = at(full[:, :m])
    if m == 0:
        return
    g_fd = np.zeros_like(grad)
    h_fd = np.zeros_like(hess)
    for q in range(m):
        dv, dg = _central(lambda t: at(t)[:2], full[:, :m], q)
        g_fd[:, q], h_fd[:, :, q] = dv, dg
    assert _rel(grad, g_fd) < 1e-7
    assert _rel(hess, h_fd) < 1e-6
    np.testing.assert_allclose(
        gate_objective_derivatives(gate, X, resp, P, order=0)[0], value, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(set(GATE_CASES) - {"callable-learned"}))
def test_numba_kernels_equal_the_reference(name, rng):
    """The compiled gate log weights, gate derivatives (Q and observed) and full observed
    derivatives agree with the NumPy reference to 1e-12 relative."""
    pytest.importorskip("numba")
    from moestats.backends import numba_derivatives, numba_gates
    from moestats.backends.numpy_kernels import row_logsumexp
    from moestats.solvers.derivatives import _expert_log_density
    gate, X, y, P, L = _setup(name, rng)
    rows = np.arange(A)
    tau = P.temperature if gate.has_temperature else np.ones(A)
    s = gate_forward(gate, X, P)[5]
    ref_lw = s - row_logsumexp(s)[..., None]
    lw = numba_gates.gate_log_weights(gate, X, rows, P.gate_coef, P.gate_intercept, tau)
    np.testing.assert_array_equal(np.isfinite(lw), np.isfinite(ref_lw))
    finite = np.isfinite(ref_lw)
    np.testing.assert_allclose(lw[finite], ref_lw[finite], rtol=1e-12, atol=1e-12)
    resp = np.where(np.isfinite(s), rng.dirichlet(np.ones(K), size=(A, N)), 0.0)
    log_phi, _ = _expert_log_density(X, y, P)
    pairs = [
        (numba_gates.gate_derivatives(gate, X, rows, resp, rows, P.gate_coef,
                                      P.gate_intercept, tau, observed=False),
         gate_objective_derivatives(gate, X, resp, P)),
        (numba_gates.gate_derivatives(gate, X, rows, log_phi, rows, P.gate_coef,
                                      P.gate_intercept, tau, observed=True),
         observed_derivatives(gate, X, y, P, gate_only=True)),
        (numba_derivatives.observed_derivatives(gate, X, y, rows, P),
         observed_derivatives(gate, X, y, P)),
        (numba_derivatives.observed_derivatives(gate, X, y, rows, P, gate_only=True),
         observed_derivatives(gate, X, y, P, gate_only=True)),
    ]
    for got, ref in pairs:
        for g, r in zip(got, ref):
            if r is not None and r.size:
                assert _rel(g, r) < 1e-12


@pytest.mark.parametrize("name", sorted(GATE_CASES))
def test_fused_dense_e_step_equals_the_reference(name, rng):
    """The fused E-step of the dense temperature and activation gates (one pass):
    responsibilities, log-likelihood, expert statistics and Q's value, gradient and
    Hessian at the current gate equal the NumPy reference to 1e-10 relative."""
    pytest.importorskip("numba")
    from moestats.backends import numba_fused_gates
    from moestats.experts import weighted_statistics
    from moestats.solvers.batched_em import batched_e_step
    gate, X, y, P, L = _setup(name, rng)
    if not numba_fused_gates.fuses(gate, K):
        pytest.skip("not a dense temperature/activation gate with a built-in activation")
    rows = np.arange(A, dtype=np.int64)
    resp, log_p, (stats, q0, _) = numba_fused_gates.dense_fused_e_step(gate, X, y, rows, P, True)
    ref_resp, ref_log_p = batched_e_step(gate, P, X, y)
    assert _rel(resp, ref_resp) < 1e-10
    assert _rel(log_p, ref_log_p) < 1e-10
    for a in range(A):
        for got, ref in zip((s[a] for s in stats), weighted_statistics(X[a], y[a], ref_resp[a])):
            assert _rel(got, ref) < 1e-10
    for got, ref in zip(q0, gate_objective_derivatives(gate, X, ref_resp, P)):
        assert _rel(got, ref) < 1e-10


def test_vectorised_activations_are_accurate():
    """tanh and the sigmoid of the fused kernel, with their derivatives, against NumPy
    (relative 1e-14) over the whole range, the series/exp switch and overflow included."""
    pytest.importorskip("numba")
    from moestats.backends.numba_fused_gates import _activate_block
    z = np.concatenate([np.linspace(-40, 40, 2001), [0.0, -0.0, 0.0625, -0.0625,
                        np.nextafter(0.0625, 0), 1e-300, 5e-324, 800.0, -800.0, 1e5, -1e5]])
    n = z.size
    h, h1, h2 = np.empty(n), np.empty(n), np.empty(n)
    _activate_block(1, z, h, h1, h2, n)
    zl = z.astype(np.longdouble)  # reference derivatives in extended precision
    t = np.tanh(z)
    with np.errstate(over="ignore"):
        d1 = (1.0 / np.cosh(zl) ** 2).astype(float)
    np.testing.assert_allclose(h, t, rtol=1e-14, atol=0)
    np.testing.assert_allclose(h1, d1, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(h2, -2 * t * d1, rtol=1e-13, atol=1e-300)
    _activate_block(2, z, h, h1, h2, n)
    with np.errstate(over="ignore"):
        e = (1.0 / (1.0 + np.exp(-zl))).astype(float)
        d1 = (0.25 / np.cosh(0.5 * zl) ** 2).astype(float)
    np.testing.assert_allclose(h, e, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(h1, d1, rtol=1e-13, atol=1e-300)
    assert np.all(np.isfinite(h2))
