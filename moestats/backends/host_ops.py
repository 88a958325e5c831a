"""Host backends of the batched EM engine: NumPy (reference) and Numba.

An *ops* object owns the data of R replications and does every pass over them:
the E-step (responsibilities and per-sample log-likelihoods), the expert step's
weighted sufficient statistics and residual sums, and the softmax gate's objective,
gradient and -Hessian. The solver (:mod:`moestats.solvers.batched_em`) calls only
this interface and never branches on the backend:

- :class:`NumpyOps`: per replication, the NumPy operations of the reference
  (:func:`moestats.experts.weighted_statistics`, :func:`moestats.gates.softmax_q_hessian`),
  so a replication's numbers do not depend on the others in the batch;
- :class:`NumbaOps`: compiled kernels of :mod:`moestats.backends.numba_kernels`,
  parallel over replications and samples (bit-identical whatever the thread count).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..experts import weighted_statistics
from ..gates import ActivationGate, SoftmaxGate, TemperatureGate, TopKGate, softmax_q_hessian
from .numpy_kernels import row_logsumexp

__all__ = ["NumpyOps", "NumbaOps", "batched_log_weights", "all_rows",
           "reference_gate_derivatives", "reference_observed_derivatives"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: gate families whose logits are evaluated for all replications at once
_VECTORISED_GATES = (SoftmaxGate, TopKGate, TemperatureGate, ActivationGate)


def batched_log_weights(gate, P, rows, X):
    """Gate log weights (A, n, k) of replications ``rows`` (``X`` already their data)."""
    if type(gate) not in _VECTORISED_GATES:
        return np.stack([gate.log_weights(P.get(r), X[a]) for a, r in enumerate(rows)])
    coef = P.gate_coef[rows]
    z = X @ coef.transpose(0, 2, 1)
    h, _ = gate._activate(z)
    with np.errstate(over="ignore", invalid="ignore"):
        if gate.has_temperature:
            s = h / P.temperature[rows][:, None, None] + P.gate_intercept[rows][:, None, :]
        else:
            s = h / 1.0 + P.gate_intercept[rows][:, None, :]
    A, n, k = s.shape
    mask = gate._support(z.reshape(A * n, k), s.reshape(A * n, k))
    if mask is not None:
        s = np.where(mask.reshape(A, n, k), s, -np.inf)
    return s - row_logsumexp(s)[..., None]


def _expert_log_density(X, y, coef, intercept, var):
    resid = y[..., None] - (X @ coef.transpose(0, 2, 1) + intercept[:, None, :])
    return (-0.5 * (_LOG_2PI + np.log(var)))[:, None, :] - 0.5 * resid * resid / var[:, None, :]


def _softmax_objective(X, resp, coef, intercept):
    """Batched ``SoftmaxGate.objective_and_gradient`` (the Q form): value, packed grad, weights."""
    A, n, k = resp.shape
    s = (X @ coef.transpose(0, 2, 1)) / 1.0 + intercept[:, None, :]
    log_w = s - row_logsumexp(s)[..., None]
    w = np.exp(log_w)
    with np.errstate(invalid="ignore"):
        terms = np.where(resp > 0, resp * log_w, 0.0)
    value = terms.reshape(A, n * k).sum(axis=1)
    G = resp - resp.sum(axis=2, keepdims=True) * w
    dz = G / 1.0
    g_coef = dz.transpose(0, 2, 1) @ X
    g_int = G.sum(axis=1)
    grad = np.concatenate([g_coef[:, :-1].reshape(A, -1), g_int[:, :-1]], axis=1)
    return value, grad, w


def all_rows(idx, size):
    return idx.size == size and np.array_equal(idx, np.arange(size))


class _Data:
    """The replications' data (NumPy), with the gathers of subsets cached, and the
    optional per-sample weights (R, n) of the log-likelihood."""

    def __init__(self, X, y, sample_weight=None):
        self.X, self.y = X, y
        self.sample_weight = sample_weight
        self.R = X.shape[0]
        self._key = None
        self._val = None

    def weights(self, rows):
        """The sample weights of ``rows`` (None: all 1)."""
        c = self.sample_weight
        if c is None or all_rows(rows, self.R):
            return c
        return c[rows]

    def take(self, rows):
        if all_rows(rows, self.R):
            return self.X, self.y
        key = rows.tobytes()
        if key != self._key:
            self._key, self._val = key, (self.X[rows], self.y[rows])
        return self._val


class _HostOps:
    """What the NumPy and Numba paths share: arrays are NumPy arrays on the host."""

    def __init__(self, X, y, sample_weight=None):
        self.data = _Data(X, y, sample_weight)

    @staticmethod
    def take(a, keep):
        """``a`` (aligned with the active replications) at the boolean ``keep``."""
        return a[keep]

    @staticmethod
    def host(a):
        return a

    @staticmethod
    def fuses(gate, k):
        """Whether :meth:`e_step` with ``extra`` also gives ``(stats, q0)`` (not here)."""
        return False

    @staticmethod
    def loglik(log_p):
        """Observed log-likelihood per replication, from the per-sample ones."""
        return log_p.sum(axis=1)

    def observed_derivatives(self, gate, P, rows, order=2):
        """Observed log-likelihood, gradient and Hessian in the free-parameter vector
        (``order=0``: the value only) of the replications ``rows`` (``P`` aligned with
        them): the NumPy reference of :mod:`moestats.solvers.derivatives`."""
        return reference_observed_derivatives(self.data, gate, P, rows, order)

    def gate_derivatives(self, gate, P, rows, target, target_pos, *, observed, order=2):
        """Gate objective, gradient and Hessian (the gate part of the free-parameter vector).

        ``P`` is aligned with ``rows``. ``observed=False``: the EM objective :math:`Q`
        with the responsibilities ``target[target_pos]``; ``observed=True``: the
        observed log-likelihood with the experts of ``P`` held fixed (``target``
        unused, may be ``None``).
        The NumPy reference of :mod:`moestats.solvers.derivatives`.
        """
        return reference_gate_derivatives(self.data, gate, P, rows, target, target_pos,
                                          observed, order)


def reference_observed_derivatives(data, gate, P, rows, order):
    """:meth:`_HostOps.observed_derivatives` on host data (a :class:`_Data`)."""
    from ..solvers.derivatives import observed_derivatives, observed_loglik
    X, y = data.take(rows)
    c = data.weights(rows)
    if order == 0:
        return observed_loglik(gate, X, y, P, c), None, None
    return observed_derivatives(gate, X, y, P, order=order, sample_weight=c)


def reference_gate_derivatives(data, gate, P, rows, target, target_pos, observed, order):
    """:meth:`_HostOps.gate_derivatives` on host data (a :class:`_Data`)."""
    from ..solvers.derivatives import gate_objective_derivatives, observed_derivatives
    X, y = data.take(rows)
    if observed:
        return observed_derivatives(gate, X, y, P, order=order, gate_only=True,
                                    sample_weight=data.weights(rows))
    return gate_objective_derivatives(gate, X, target[target_pos], P, order=order)


class NumpyOps(_HostOps):
    """The batched NumPy path, with the operations of the sequential solver.

    The passes over the data run per replication with exactly the NumPy calls of
    :func:`moestats.solvers.fit_em` (BLAS per weighted Gram matrix, the same
    row log-sum-exp), so each replication's numbers are bit-identical to its
    sequential fit and do not depend on the other replications in the batch.
    """

    name = "numpy"
    #: passes over the data of one softmax -Hessian (a pass of its own here)
    hessian_passes = 1

    def e_step(self, gate, P, rows, extra=False):
        X, y = self.data.take(rows)
        log_w = batched_log_weights(gate, P, rows, X)
        joint = log_w + _expert_log_density(X, y, P.expert_coef[rows],
                                            P.expert_intercept[rows], P.expert_var[rows])
        log_p = row_logsumexp(joint)
        resp = np.exp(joint - log_p[..., None])
        c = self.data.weights(rows)
        if c is not None:
            # weighted EM: the responsibilities and the log-likelihood carry the weights
            # (every sum over samples downstream is then weighted)
            resp *= c[..., None]
            log_p = c * log_p
        return resp, log_p, None

    def expert_log_density(self, P, rows):
        X, y = self.data.take(rows)
        return _expert_log_density(X, y, P.expert_coef[rows], P.expert_intercept[rows],
                                   P.expert_var[rows])

    def statistics(self, resp, rows):
        X, y = self.data.take(rows)
        out = [weighted_statistics(X[a], y[a], resp[a]) for a in range(len(rows))]
        return tuple(np.stack(parts) for parts in zip(*out))

    def rss(self, resp, theta, rows):
        # as expert_m_step: resid = y - Xt @ theta_j, then resp_j @ resid^2, per expert
        X, y = self.data.take(rows)
        A, n, k = resp.shape
        out = np.empty((A, k))
        for a in range(A):
            Xt = np.hstack([X[a], np.ones((n, 1))])
            for j in range(k):
                resid = y[a] - Xt @ theta[a, j]
                out[a, j] = resp[a, :, j] @ (resid * resid)
        return out

    def q_eval(self, rows, resp, rpos, coef, intercept):
        X, _ = self.data.take(rows)
        r = resp if all_rows(rpos, resp.shape[0]) else resp[rpos]
        return _softmax_objective(X, r, coef, intercept)

    def neg_hessian(self, rows, resp, rpos, state):
        X, _ = self.data.take(rows)
        r = resp[rpos]
        return np.stack([-softmax_q_hessian(X[a], state[a], r[a].sum(axis=1))
                         for a in range(len(rows))])


class NumbaOps(_HostOps):
    """The Numba path: every pass over the data is a compiled kernel."""

    name = "numba"
    #: the -Hessian comes with the objective's pass
    hessian_passes = 0

    def __init__(self, X, y):
        from ..backends import numba_gates as ng
        from ..backends import numba_kernels as nk  # compiles (or loads the cache) on first use
        from ..backends import numba_softmax as ns
        from ..backends import numba_fused_gates as nf
        self.nf = nf
        self.nk = nk
        self.ns = ns
        self.ng = ng
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        super().__init__(self.X, self.y)
        # residual moments of the last softmax E-step with ``extra``, for rss(); not
        # kept from the first E-step (at the start values, where the moment form
        # cancels most), so that every fit also runs (and loads) the rss kernel early
        self._moments = None
        self._first_e_step = True

    @staticmethod
    def _c(a):
        return np.ascontiguousarray(a, dtype=np.float64)

    def fuses(self, gate, k):
        """Whether :meth:`e_step` with ``extra`` also gives the expert statistics and
        the gate objective's derivatives (``(stats, q0)``) for ``gate`` with ``k``
        experts: the softmax gate (:mod:`.numba_softmax`) and the dense temperature
        and activation gates (:mod:`.numba_fused_gates`)."""
        return k > 1 and (type(gate) is SoftmaxGate or self.nf.fuses(gate, k))

    def e_step(self, gate, P, rows, extra=False):
        """Responsibilities and per-sample log-likelihood; where :meth:`fuses`, with
        ``extra`` the same pass also gives the expert statistics and the gate
        objective, gradient and -Hessian (softmax) or Hessian (the others) at the
        current gate (``(stats, q0)``), and residual moments from which :meth:`rss`
        gets the next expert step's residual sums without another pass over the data."""
        c = self._c
        self._moments = None
        k = P.gate_coef.shape[1]
        if type(gate) is SoftmaxGate:
            resp, log_p, ex = self.ns._softmax_fused(
                self.X, self.y, rows, c(P.gate_coef[rows]), c(P.gate_intercept[rows]),
                c(P.expert_coef[rows]), c(P.expert_intercept[rows]), c(P.expert_var[rows]),
                extra)
        elif self.nf.fuses(gate, k):
            resp, log_p, ex = self.nf.dense_fused_e_step(gate, self.X, self.y, rows, P,
                                                         extra)
        else:
            return self._e_step_from_log_weights(gate, P, rows)
        if ex is None:
            return resp, log_p, None
        stats, q0, (ree, rex) = ex
        if self._first_e_step:
            self._first_e_step = False
            return resp, log_p, (stats, q0)
        theta_old = np.concatenate([c(P.expert_coef[rows]), c(P.expert_intercept[rows])[..., None]],
                                   axis=2)
        # a weak reference: rss() uses the moments only for this very resp
        self._moments = (weakref.ref(resp), rows.copy(), theta_old, ree, rex, stats[1])
        return resp, log_p, (stats, q0)

    def _e_step_from_log_weights(self, gate, P, rows):
        """E-step from the gate's log weights (compiled; a user activation's in NumPy)."""
        c = self._c
        A, n, k = rows.size, self.X.shape[1], P.gate_coef.shape[1]
        resp = np.empty((A, n, k))
        log_p = np.empty((A, n))
        if self.ng.gate_code(gate) is None:  # a user activation: NumPy
            X, _ = self.data.take(rows)
            log_w = c(batched_log_weights(gate, P, rows, X))
        else:
            tau = P.temperature[rows] if gate.has_temperature else np.ones(A)
            log_w = self.ng.gate_log_weights(gate, self.X, rows, P.gate_coef[rows],
                                             P.gate_intercept[rows], tau)
        self.nk._e_step_k(self.X, self.y, rows, log_w, c(P.expert_coef[rows]),
                          c(P.expert_intercept[rows]), c(P.expert_var[rows]), resp, log_p)
        return resp, log_p, None

    def observed_derivatives(self, gate, P, rows, order=2):
        """As :meth:`_HostOps.observed_derivatives`, in one compiled pass
        (:mod:`moestats.backends.numba_derivatives`; a user activation: NumPy)."""
        if self.ng.gate_code(gate) is None:
            return super().observed_derivatives(gate, P, rows, order)
        from . import numba_derivatives
        return numba_derivatives.observed_derivatives(gate, self.X, self.y, rows, P, order)

    def gate_derivatives(self, gate, P, rows, target, target_pos, *, observed, order=2):
        """As :meth:`_HostOps.gate_derivatives`, in one compiled pass (a user activation
        falls back to NumPy): :math:`Q` by :mod:`moestats.backends.numba_gates`, the
        observed log-likelihood (``observed=True``, ``target`` unused: the experts are
        those of ``P``) by the blocked kernel of
        :mod:`moestats.backends.numba_derivatives`."""
        if self.ng.gate_code(gate) is None:
            return super().gate_derivatives(gate, P, rows, target, target_pos,
                                            observed=observed, order=order)
        if observed:  # the blocked kernel, from the experts in P (faster than from target)
            from . import numba_derivatives
            return numba_derivatives.observed_derivatives(gate, self.X, self.y, rows, P, order,
                                                          gate_only=True)
        tau = P.temperature if gate.has_temperature else np.ones(rows.size)
        return self.ng.gate_derivatives(gate, self.X, rows, target, target_pos, P.gate_coef,
                                        P.gate_intercept, tau, observed=observed, order=order)

    def expert_log_density(self, P, rows):
        out = np.empty((rows.size, self.X.shape[1], P.expert_coef.shape[1]))
        c = self._c
        self.nk._expert_log_density_k(self.X, self.y, rows, c(P.expert_coef[rows]),
                                      c(P.expert_intercept[rows]), c(P.expert_var[rows]), out)
        return out

    def statistics(self, resp, rows):
        return self.nk._statistics(self.X, self.y, rows, self._c(resp))

    def take(self, a, keep):
        out = a[keep]
        mom = self._moments
        if mom is not None and mom[0]() is a:
            # the active replications shrank: keep the moments of those that remain, so
            # that each replication's path does not depend on the others in the batch
                self._moments = (weakref.ref(out), *(m[keep] for m in mom[1:]))
        return out

    def rss(self, resp, theta, rows):
        theta = self._c(theta)
        mom = self._moments
        if mom is not None and mom[0]() is resp and np.array_equal(mom[1], rows):
            out, ok = self.nk._rss_from_moments(*mom[3:5], mom[5], mom[2], theta)
            redo = ~ok.all(axis=1)
            if redo.any():
                out[redo] = self.nk._rss(self.X, self.y, rows[redo], self._c(resp[redo]),
                                         theta[redo])
            return out
        return self.nk._rss(self.X, self.y, rows, self._c(resp), theta)

    def q_eval(self, rows, resp, rpos, coef, intercept):
        return self.ns._softmax_q(self.X, rows, self._c(resp), rpos.astype(np.int64),
                                  self._c(coef), self._c(intercept), True)

    def neg_hessian(self, rows, resp, rpos, state):
        return state
