"""Batched EM: R replications of one (n, k, gate) problem fitted at once.

:func:`fit_em_batched` runs the iterations of :func:`moestats.solvers.fit_em` on
``X`` of shape (R, n, d) and ``y`` of shape (R, n), with one set of parameters per
replication (:class:`BatchedParams`, a leading R axis). Each replication keeps its
own trace and stops on its own (the rule of ``fit_em``:
:math:`|\\ell_t - \\ell_{t-1}| \\le \\mathrm{tol}\\,|\\ell_{t-1}|`); a stopped
replication is dropped from all further work, so it no longer changes.

What is vectorised over the replications:

- the E-step: expert log-density, gate log weights (softmax, top-K, temperature and
  activation families), row log-normalisation into responsibilities and
  per-sample log-likelihood;
- the expert M-step: weighted sufficient statistics, then the small weighted
  least-squares solves with the condition check / pseudo-inverse fallback, the
  empty-expert rule and the variance floor of :func:`moestats.experts.expert_m_step`;
- the softmax gate's Newton step of :func:`moestats.solvers.gate_step._newton`
  (batched Hessians, batched solves, per-replication step halving, the same ridge
  and acceptance rules).

The gate steps of the other families loop over the active replications and call
:func:`moestats.solvers.gate_step.gate_step` on 2-D slices.

Backends (``backend=``; :func:`moestats.backends.get_backend` resolves ``"auto"``):

- ``"numpy"``: per replication, exactly the NumPy operations of ``fit_em`` (only the
  bookkeeping is batched), so its results are bit-identical to R calls of ``fit_em``
  and one replication's result does not depend on the others in the batch;
- ``"numba"``: the passes over the data run in :mod:`moestats.backends.numba_kernels`
  (parallel over replications and samples, bit-identical whatever the number of
  threads). Its kernels agree with the NumPy ones to about 1e-13 relative; the fitted
  parameters agree with ``fit_em``'s to about 1e-9 relative (at worst 1e-8 in the
  tested cases), which is also how far ``fit_em``'s own result moves when ``y``
  changes by one ulp: its gate steps accept or reject steps whose gain is at the
  rounding level of the objective. Log-likelihoods agree to about 1e-13 relative
  (see ``tests/test_batched_em.py``);
- ``"cupy"``: the array-API kernels of :mod:`moestats.backends.array_api` on CuPy
  arrays on the GPU (:class:`_ArrayAPIOps`); the data stay on the device and only
  small arrays (statistics, Hessians, log-likelihoods) come back to the host solves.
  Any other array namespace can be passed as ``backend`` (e.g. the module
  ``array_api_strict``) to run the same path on it; the tests do so on the CPU.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..backends.numpy_kernels import row_logsumexp
from ..experts import EMPTY_MASS, SINGULAR_COND, weighted_statistics
from ..gates import ActivationGate, SoftmaxGate, TemperatureGate, TopKGate, softmax_q_hessian
from ..params import MoEParams
from .gate_step import gate_step
from .trace import FitTrace

__all__ = ["BatchedParams", "fit_em_batched", "batched_e_step"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: gate families whose logits this module evaluates for all replications at once
_VECTORISED_GATES = (SoftmaxGate, TopKGate, TemperatureGate, ActivationGate)
_FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var",
           "temperature")


# ------------------------------------------------------------------ parameters
@dataclass
class BatchedParams:
    """Parameters of R models with a leading replication axis (mutable arrays).

    Attributes: ``gate_coef`` (R, k, d), ``gate_intercept`` (R, k), ``expert_coef``
    (R, k, d), ``expert_intercept`` (R, k), ``expert_var`` (R, k), ``temperature`` (R,).
    """

    gate_coef: np.ndarray
    gate_intercept: np.ndarray
    expert_coef: np.ndarray
    expert_intercept: np.ndarray
    expert_var: np.ndarray
    temperature: np.ndarray

    @classmethod
    def stack(cls, params) -> "BatchedParams":
        """From a sequence of :class:`MoEParams` of one shape."""
        params = list(params)
        if not params:
            raise ValueError("need at least one replication")
        shape = (params[0].n_experts, params[0].n_features)
        for r, p in enumerate(params):
            if not isinstance(p, MoEParams):
                raise TypeError(f"init[{r}] is {type(p).__name__}, expected MoEParams")
            if (p.n_experts, p.n_features) != shape:
                raise ValueError(
                    f"init[{r}] has {p.n_experts} experts on {p.n_features} features, "
                    f"init[0] has {shape[0]} on {shape[1]}")
        return cls(*(np.array([getattr(p, f) for p in params], dtype=float)
                     for f in _FIELDS))

    def __len__(self) -> int:
        return self.gate_coef.shape[0]

    def get(self, r) -> MoEParams:
        """Replication ``r`` as a (validated) :class:`MoEParams`."""
        return MoEParams(self.gate_coef[r], self.gate_intercept[r], self.expert_coef[r],
                         self.expert_intercept[r], self.expert_var[r],
                         float(self.temperature[r]))

    def set(self, r, params: MoEParams) -> None:
        """Overwrite replication ``r``."""
        for f in _FIELDS:
            getattr(self, f)[r] = getattr(params, f)

    def unstack(self) -> list:
        """The R replications as :class:`MoEParams`."""
        return [self.get(r) for r in range(len(self))]

    def copy(self) -> "BatchedParams":
        return BatchedParams(*(getattr(self, f).copy() for f in _FIELDS))


def _as_batched(init, R):
    if isinstance(init, BatchedParams):
        if len(init) != R:
            raise ValueError(f"init has {len(init)} replications, X has {R}")
        return init.copy()
    if isinstance(init, MoEParams):
        return BatchedParams.stack([init] * R)
    init = list(init)
    if len(init) != R:
        raise ValueError(f"init has {len(init)} replications, X has {R}")
    return BatchedParams.stack(init)


# ------------------------------------------------------------ NumPy pieces
def _log_weights(gate, P, rows, X):
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


def _all(idx, size):
    return idx.size == size and np.array_equal(idx, np.arange(size))


class _Data:
    """The replications' data (NumPy), with the gathers of subsets cached."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self.R = X.shape[0]
        self._key = None
        self._val = None

    def take(self, rows):
        if _all(rows, self.R):
            return self.X, self.y
        key = rows.tobytes()
        if key != self._key:
            self._key, self._val = key, (self.X[rows], self.y[rows])
        return self._val


class _HostOps:
    """What the NumPy and Numba paths share: arrays are NumPy arrays on the host."""

    def __init__(self, X, y):
        self.data = _Data(X, y)

    @staticmethod
    def take(a, keep):
        """``a`` (aligned with the active replications) at the boolean ``keep``."""
        return a[keep]

    @staticmethod
    def host(a):
        return a

    @staticmethod
    def loglik(log_p):
        """Observed log-likelihood per replication, from the per-sample ones."""
        return log_p.sum(axis=1)


class _NumpyOps(_HostOps):
    """The batched NumPy path, with the operations of the sequential solver.

    The passes over the data run per replication with exactly the NumPy calls of
    :func:`moestats.solvers.fit_em` (BLAS per weighted Gram matrix, the same
    row log-sum-exp), so each replication's numbers are bit-identical to its
    sequential fit and do not depend on the other replications in the batch.
    """

    name = "numpy"

    def e_step(self, gate, P, rows, extra=False):
        X, y = self.data.take(rows)
        log_w = _log_weights(gate, P, rows, X)
        joint = log_w + _expert_log_density(X, y, P.expert_coef[rows],
                                            P.expert_intercept[rows], P.expert_var[rows])
        log_p = row_logsumexp(joint)
        return np.exp(joint - log_p[..., None]), log_p, None

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
        r = resp if _all(rpos, resp.shape[0]) else resp[rpos]
        return _softmax_objective(X, r, coef, intercept)

    def neg_hessian(self, rows, resp, rpos, state):
        X, _ = self.data.take(rows)
        r = resp[rpos]
        return np.stack([-softmax_q_hessian(X[a], state[a], r[a].sum(axis=1))
                         for a in range(len(rows))])


class _NumbaOps(_HostOps):
    """The Numba path: every pass over the data is a compiled kernel."""

    name = "numba"

    def __init__(self, X, y):
        from ..backends import numba_kernels as nk  # compiles (or loads the cache) on first use
        self.nk = nk
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

    def e_step(self, gate, P, rows, extra=False):
        """Responsibilities and per-sample log-likelihood; for the softmax gate with
        ``extra``, the same pass also gives the expert statistics and the gate
        objective, gradient and -Hessian at the current gate (``(stats, q0)``), and
        residual moments from which :meth:`rss` gets the next expert step's residual
        sums without another pass over the data."""
        c = self._c
        self._moments = None
        if type(gate) is SoftmaxGate:
            coef, intercept = c(P.expert_coef[rows]), c(P.expert_intercept[rows])
            resp, log_p, ex = self.nk._softmax_fused(
                self.X, self.y, rows, c(P.gate_coef[rows]), c(P.gate_intercept[rows]),
                coef, intercept, c(P.expert_var[rows]), extra)
            if ex is None:
                return resp, log_p, None
            stats, q0, (ree, rex) = ex
            if self._first_e_step:
                self._first_e_step = False
                return resp, log_p, (stats, q0)
            theta_old = np.concatenate([coef, intercept[..., None]], axis=2)
            # a weak reference: rss() uses the moments only for this very resp
            self._moments = (weakref.ref(resp), rows.copy(), theta_old, ree, rex, stats[1])
            return resp, log_p, (stats, q0)
        A, n, k = rows.size, self.X.shape[1], P.gate_coef.shape[1]
        resp = np.empty((A, n, k))
        log_p = np.empty((A, n))
        X, _ = self.data.take(rows)
        log_w = c(_log_weights(gate, P, rows, X))
        self.nk._e_step_k(self.X, self.y, rows, log_w, c(P.expert_coef[rows]),
                          c(P.expert_intercept[rows]), c(P.expert_var[rows]), resp, log_p)
        return resp, log_p, None

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
        return self.nk._softmax_q(self.X, rows, self._c(resp), rpos.astype(np.int64),
                                  self._c(coef), self._c(intercept), True)

    def neg_hessian(self, rows, resp, rpos, state):
        return state


def _to_numpy(a):
    """An array of any namespace as a NumPy array on the host."""
    if isinstance(a, np.ndarray):
        return a
    from array_api_compat import is_cupy_array
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


class _ArrayAPIOps:
    """The array-API path (CuPy, or any namespace): the data stay on the device.

    The E-step, the expert statistics, the residual sums and the softmax gate's
    objective, gradient and -Hessian run on the device with the kernels of
    :mod:`moestats.backends.array_api`; only what the small host-side solves need
    comes back as NumPy arrays: (R, k, d+1, d+1) statistics, (R, P, P) Hessians,
    per-replication log-likelihoods. The gate log weights of the non-softmax families
    are computed on the host by the NumPy code and sent over, and their gate steps
    (which loop over replications anyway) run on the host with host copies of the
    data and of the responsibilities.
    """

    name = "array_api"

    def __init__(self, X, y, xp, X_dev=None, y_dev=None):
        from ..backends import array_api as kernels
        self.k = kernels
        self.xp = xp
        self.data = _Data(X, y)  # host copies, for the host-side gate steps
        self.X = xp.asarray(X) if X_dev is None else X_dev
        self.y = xp.asarray(y) if y_dev is None else y_dev
        from array_api_compat import device
        self.device = device(self.X)
        self._key = None
        self._val = None

    def _dev(self, a):
        return self.xp.asarray(np.ascontiguousarray(a), device=self.device)

    def _idx(self, idx):
        return self.xp.asarray(np.asarray(idx, dtype=np.int64), device=self.device)

    def _take(self, rows):
        if _all(rows, self.X.shape[0]):
            return self.X, self.y
        key = rows.tobytes()
        if key != self._key:
            i = self._idx(rows)
            self._key = key
            self._val = (self.xp.take(self.X, i, axis=0), self.xp.take(self.y, i, axis=0))
        return self._val

    def take(self, a, keep):
        return self.xp.take(a, self._idx(np.nonzero(keep)[0]), axis=0)

    @staticmethod
    def host(a):
        return _to_numpy(a)

    def loglik(self, log_p):
        return _to_numpy(self.xp.sum(log_p, axis=-1))

    def _log_softmax(self, X, coef, intercept):
        xp = self.xp
        s = X @ xp.matrix_transpose(self._dev(coef)) + xp.expand_dims(self._dev(intercept), axis=-2)
        _, lse = self.k.normalize_log_joint(s)
        return s - xp.expand_dims(lse, axis=-1)

    def e_step(self, gate, P, rows, extra=False):
        X, y = self._take(rows)
        if type(gate) is SoftmaxGate:
            log_w = self._log_softmax(X, P.gate_coef[rows], P.gate_intercept[rows])
        else:
            Xh, _ = self.data.take(rows)
            log_w = self._dev(_log_weights(gate, P, rows, Xh))
        joint = log_w + self.k.expert_log_density(
            X, y, self._dev(P.expert_coef[rows]), self._dev(P.expert_intercept[rows]),
            self._dev(P.expert_var[rows]))
        resp, log_p = self.k.normalize_log_joint(joint)
        return resp, log_p, None

    def expert_log_density(self, P, rows):
        X, y = self._take(rows)
        return _to_numpy(self.k.expert_log_density(
            X, y, self._dev(P.expert_coef[rows]), self._dev(P.expert_intercept[rows]),
            self._dev(P.expert_var[rows])))

    def statistics(self, resp, rows):
        X, y = self._take(rows)
        return tuple(_to_numpy(a) for a in self.k.weighted_statistics(X, y, resp))

    def rss(self, resp, theta, rows):
        X, y = self._take(rows)
        return _to_numpy(self.k.weighted_rss(X, y, resp, self._dev(theta)))

    def q_eval(self, rows, resp, rpos, coef, intercept):
        """Softmax gate objective, packed gradient and -Hessian (all NumPy)."""
        xp = self.xp
        X, _ = self._take(rows)
        r = resp if _all(rpos, resp.shape[0]) else xp.take(resp, self._idx(rpos), axis=0)
        log_w = self._log_softmax(X, coef, intercept)
        w = xp.exp(log_w)
        positive = r > 0
        terms = r * xp.where(positive, log_w, xp.zeros_like(log_w))
        value = xp.sum(xp.sum(terms, axis=-1), axis=-1)
        row_mass = xp.sum(r, axis=-1)
        G = r - xp.expand_dims(row_mass, axis=-1) * w
        g_coef = _to_numpy(xp.matrix_transpose(G) @ X)            # (A, k, d)
        g_int = _to_numpy(xp.sum(G, axis=-2))                     # (A, k)
        A = g_coef.shape[0]
        grad = np.concatenate([g_coef[:, :-1].reshape(A, -1), g_int[:, :-1]], axis=1)
        return _to_numpy(value), grad, self._neg_hessian(X, w, row_mass)

    def _neg_hessian(self, X, w, row_mass):
        """Minus :func:`moestats.gates.softmax_q_hessian`, batched, in pack order (NumPy)."""
        xp = self.xp
        Xt = self.k._with_ones(X)
        Xt_T = xp.matrix_transpose(Xt)
        A, n, q = Xt.shape
        k1 = w.shape[-1] - 1
        blocks = np.empty((A, k1, k1, q, q))
        for j in range(k1):
            for l in range(j, k1):
                c = row_mass * w[..., j] * (w[..., l] - 1.0) if j == l else \
                    row_mass * w[..., j] * w[..., l]
                # softmax_q_hessian's block is sum_i c_i xt_i xt_i^T with c = -m w_j (delta - w_l)
                blocks[:, j, l] = _to_numpy((Xt_T * xp.expand_dims(c, axis=-2)) @ Xt)
                blocks[:, l, j] = blocks[:, j, l]
        H = blocks.transpose(0, 1, 3, 2, 4).reshape(A, k1 * q, k1 * q)
        d = q - 1
        order = [j * q + p for j in range(k1) for p in range(d)] + [j * q + d for j in range(k1)]
        return -H[:, order][:, :, order]

    def neg_hessian(self, rows, resp, rpos, state):
        return state


def _cupy_namespace():
    import array_api_compat.cupy as xp  # imports CuPy
    return xp


def _make_ops(backend, X, y):
    """The ops object of ``backend`` (a name, or an array namespace) for data ``X``, ``y``."""
    if isinstance(backend, str):
        from ..backends import get_backend
        name = get_backend(backend, X, y, n_samples=X.shape[1], n_replications=X.shape[0])
        if name == "cupy":
            backend = _cupy_namespace()
        else:
            X, y = _check_data(_to_numpy(X), _to_numpy(y))
            return (_NumpyOps if name == "numpy" else _NumbaOps)(X, y)
    if not hasattr(backend, "asarray"):
        raise ValueError(
            "backend must be 'auto', 'numpy', 'numba', 'cupy' or an array namespace "
            f"(a module such as array_api_strict), got {backend!r}")
    from array_api_compat import array_namespace, is_array_api_obj
    xp = array_namespace(backend.asarray([0.0]))  # the compat wrapper of NumPy/CuPy/...
    Xh, yh = _check_data(_to_numpy(X), _to_numpy(y))
    X_dev = xp.asarray(X, dtype=xp.float64) if is_array_api_obj(X) and not isinstance(
        X, np.ndarray) else None
    y_dev = xp.asarray(y, dtype=xp.float64) if X_dev is not None else None
    return _ArrayAPIOps(Xh, yh, xp, X_dev, y_dev)


# ------------------------------------------------------------------ the steps
class _ReplicationError(Exception):
    def __init__(self, pos, exc):
        super().__init__(str(exc))
        self.pos, self.exc = pos, exc


def _solve_each(A, b):
    """Batched ``np.linalg.solve(A[i], b[i])``; a singular system gives ``None`` in its row."""
    try:
        return np.linalg.solve(A, b[..., None])[..., 0], np.zeros(len(A), dtype=bool)
    except np.linalg.LinAlgError:
        out = np.empty_like(b)
        failed = np.zeros(len(A), dtype=bool)
        for i in range(len(A)):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                failed[i] = True
        return out, failed


def _expert_step(ops, resp, P, rows, var_floor, stats=None):
    """:func:`moestats.experts.expert_m_step` for the replications ``rows`` (updates ``P``).

    Returns, per replication, (empty, singular, floored) index lists.
    """
    A, n, k = resp.shape
    d = P.expert_coef.shape[2]
    mass, sxx, sxy = ops.statistics(resp, rows) if stats is None else stats
    empty = mass < EMPTY_MASS
    cond = np.full((A, k), np.inf)
    live = ~empty
    with np.errstate(all="ignore"):
        try:
            cond[live] = np.linalg.cond(sxx[live])
        except np.linalg.LinAlgError:
            for a, j in zip(*np.nonzero(live)):
                try:
                    cond[a, j] = np.linalg.cond(sxx[a, j])
                except np.linalg.LinAlgError as exc:
                    raise _ReplicationError(a, exc) from exc
    good = live & (cond < SINGULAR_COND)
    singular = live & ~(cond < SINGULAR_COND)
    theta = np.zeros((A, k, d + 1))
    if good.any():
        sol, failed = _solve_each(sxx[good], sxy[good])
        if failed.any():
            a = int(np.nonzero(good)[0][np.nonzero(failed)[0][0]])
            raise _ReplicationError(a, np.linalg.LinAlgError("Singular matrix"))
        theta[good] = sol
    for a, j in zip(*np.nonzero(singular)):
        try:
            theta[a, j] = np.linalg.pinv(sxx[a, j], rcond=1e-12, hermitian=True) @ sxy[a, j]
        except np.linalg.LinAlgError as exc:  # e.g. NaN statistics: "SVD did not converge"
            raise _ReplicationError(a, exc) from exc
    with np.errstate(all="ignore"):
        v = ops.rss(resp, theta, rows) / mass
    floored = live & ~(v >= var_floor[:, None])
    v = np.where(floored, var_floor[:, None], v)
    coef = P.expert_coef[rows]
    intercept = P.expert_intercept[rows]
    var = P.expert_var[rows]
    coef[live] = theta[live][:, :d]
    intercept[live] = theta[live][:, d]
    var[live] = v[live]
    P.expert_coef[rows], P.expert_intercept[rows], P.expert_var[rows] = coef, intercept, var
    return [(np.nonzero(empty[a])[0].tolist(), np.nonzero(singular[a])[0].tolist(),
             np.nonzero(floored[a])[0].tolist()) for a in range(A)]


def _pack_softmax(P, rows):
    A = rows.size
    return np.concatenate([P.gate_coef[rows, :-1].reshape(A, -1),
                           P.gate_intercept[rows, :-1]], axis=1)


def _unpack_softmax(theta, k, d):
    A = theta.shape[0]
    coef = np.zeros((A, k, d))
    coef[:, :-1] = theta[:, : (k - 1) * d].reshape(A, k - 1, d)
    intercept = np.zeros((A, k))
    intercept[:, :-1] = theta[:, (k - 1) * d: (k - 1) * d + k - 1]
    return coef, intercept


def _softmax_newton(ops, P, rows, resp, max_iter, tol, q0=None):
    """``gate_step._newton`` of the softmax gate for all replications ``rows`` at once."""
    A = rows.size
    k, d = P.gate_coef.shape[1:]
    theta = _pack_softmax(P, rows)
    pos = np.arange(A)
    if q0 is None:
        q0 = ops.q_eval(rows, resp, pos, *_unpack_softmax(theta, k, d))
    value, grad, state = (np.array(a, copy=True) for a in q0)
    live = pos
    for _ in range(max_iter):
        if live.size == 0:
            break
        L = live.size
        neg_h = ops.neg_hessian(rows[live], resp, live, state[live])
        diag = np.arange(neg_h.shape[1])
        ridge = 1e-10 * (1.0 + np.abs(neg_h[:, diag, diag]).max(axis=1))
        neg_h[:, diag, diag] += ridge[:, None]
        g_live = grad[live]
        step, failed = _solve_each(neg_h, g_live)
        bad = failed | ~np.all(np.isfinite(step), axis=1)
        step[bad] = g_live[bad]
        # the Newton-decrement stop of gate_step._newton
        go = ~(0.5 * np.einsum("ij,ij->i", g_live, step) <= tol * (np.abs(value[live]) + 1.0))
        live, step = live[go], step[go]
        L = live.size
        if L == 0:
            break
        t = np.ones(L)
        accepted = np.zeros(L, dtype=bool)
        new_theta = np.empty_like(step)
        new_value = np.empty(L)
        new_grad = np.empty_like(step)
        new_state = [None] * L
        searching = np.arange(L)
        while searching.size:
            cand = theta[live[searching]] + t[searching, None] * step[searching]
            v, g, st = ops.q_eval(rows[live[searching]], resp, live[searching],
                                  *_unpack_softmax(cand, k, d))
            ok = np.isfinite(v) & (v >= value[live[searching]])
            for i in np.nonzero(ok)[0]:
                b = searching[i]
                accepted[b] = True
                new_theta[b], new_value[b], new_grad[b], new_state[b] = cand[i], v[i], g[i], st[i]
            searching = searching[~ok]
            t[searching] *= 0.5
            searching = searching[t[searching] > 1e-12]
        acc = np.nonzero(accepted)[0]
        gain = new_value[acc] - value[live[acc]]
        theta[live[acc]] = new_theta[acc]
        value[live[acc]] = new_value[acc]
        grad[live[acc]] = new_grad[acc]
        for b in acc:
            state[live[b]] = new_state[b]
        keep = np.zeros(L, dtype=bool)
        keep[acc] = ~(gain <= tol * (np.abs(new_value[acc]) + 1.0))
        live = live[keep]
    coef, intercept = _unpack_softmax(theta, k, d)
    P.gate_coef[rows], P.gate_intercept[rows] = coef, intercept


def _gate_step(gate, ops, P, rows, resp, gate_max_iter, q0=None):
    """The gate step of every active replication (updates ``P``).

    Returns the (position, exception) of the replications whose step failed (their
    parameters are left as they were).
    """
    k, d = P.gate_coef.shape[1:]
    if gate.n_free_params(k, d) == 0:
        return []
    if type(gate) is SoftmaxGate:
        _softmax_newton(ops, P, rows, resp, gate_max_iter, 1e-10, q0)
        return []
    log_expert = ops.expert_log_density(P, rows) if gate.ecm_gate_step else None
    X = ops.data.X
    resp = ops.host(resp)
    failures = []
    for a, r in enumerate(rows):
        try:
            params = P.get(r)
            new = gate_step(gate, params, X[r], resp[a],
                            None if log_expert is None else log_expert[a],
                            max_iter=gate_max_iter)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            failures.append((a, exc))
            continue
        P.set(r, new)
    return failures


def _check_finite(P, rows):
    """Positions of ``rows`` whose parameters are not all finite (MoEParams would refuse them)."""
    ok = np.ones(rows.size, dtype=bool)
    for f in _FIELDS[:-1]:
        a = getattr(P, f)[rows]
        ok &= np.all(np.isfinite(a.reshape(rows.size, -1)), axis=1)
    return np.nonzero(~ok)[0]


def batched_e_step(gate, params, X, y, backend="numpy"):
    """Responsibilities (R, n, k) and per-sample log-likelihoods (R, n) of R replications.

    ``backend`` as in :func:`fit_em_batched`; the arrays returned belong to its
    namespace (NumPy for ``"numpy"`` and ``"numba"``).
    """
    X, y = _check_data(X, y)
    P = _as_batched(params, X.shape[0])
    ops = _make_ops(backend, X, y)
    return ops.e_step(gate, P, np.arange(X.shape[0], dtype=np.int64))[:2]


def _check_data(X, y):
    """Float64 arrays of shapes (R, n, d) and (R, n); arrays of another namespace
    (e.g. CuPy) are kept in it."""
    from array_api_compat import is_array_api_obj
    arrays = []
    for a in (X, y):
        if isinstance(a, np.ndarray) or not is_array_api_obj(a):
            a = np.asarray(a, dtype=float)
        arrays.append(a)
    X, y = arrays
    if X.ndim != 3 or y.ndim != 2 or tuple(y.shape) != tuple(X.shape[:2]):
        raise ValueError(f"X must be (R, n, d) and y (R, n); got X of shape "
                         f"{tuple(X.shape)} and y of shape {tuple(y.shape)}")
    return X, y


# ------------------------------------------------------------------ the solver
def _take(obj, keep):
    """``obj`` (an array, or nested tuples of arrays aligned with the replications) at ``keep``."""
    if obj is None:
        return None
    if isinstance(obj, tuple):
        return tuple(_take(o, keep) for o in obj)
    return obj[keep]


class _Active:
    """The replications still iterating and their E-step (aligned with ``act``)."""

    def __init__(self, act, resp, log_p, extra):
        self.act, self.resp, self.log_p, self.extra = act, resp, log_p, extra

    def keep(self, mask, ops):
        self.act = self.act[mask]
        self.resp = ops.take(self.resp, mask)
        self.log_p = ops.take(self.log_p, mask)
        self.extra = _take(self.extra, mask)


def fit_em_batched(gate, X, y, init, *, tol=1e-6, max_iter=2000, var_floor=1e-8,
                   gate_max_iter=20, backend="numpy", on_error="raise"):
    """Fit R replications by EM at once; the same results as R calls of ``fit_em``.

    Parameters
    ----------
    gate : Gate
    X : array (R, n, d)
    y : array (R, n)
        NumPy arrays, or arrays of the namespace of ``backend`` (e.g. CuPy).
    init : sequence of R MoEParams, a BatchedParams, or one MoEParams (used for all)
    tol, max_iter, gate_max_iter : as :func:`moestats.solvers.fit_em`
    var_floor : float or ndarray (R,)
        Lower bound on the expert variances, shared or per replication.
    backend : {"numpy", "numba", "cupy", "auto"} or array namespace, default="numpy"
        See the module docstring; ``"auto"`` as :func:`moestats.backends.get_backend`
        with ``n_replications = R``. An array namespace (a module with ``asarray``,
        such as ``array_api_strict``) runs the array-API path of ``"cupy"`` on it.
    on_error : {"raise", "record"}
        What to do when a replication fails where ``fit_em`` would raise (non-finite
        parameters, a failed linear solve): raise (``ValueError`` naming the
        replication), or stop that replication and record the message in its
        ``events["error"]`` (its trace then ends at its last valid parameters,
        ``converged=False``), the others going on.

    Returns
    -------
    list of FitTrace
        One per replication, with the fields of ``fit_em``'s (parameters as NumPy
        arrays whatever the backend).

    Raises
    ------
    ValueError
        Bad shapes (naming them), a bad ``backend`` or ``on_error``, or (with
        ``on_error="raise"``) a failed replication.
    moestats.backends.BackendUnavailableError
        ``backend`` names Numba or CuPy and it cannot run here.
    """
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    X, y = _check_data(X, y)
    R = X.shape[0]
    P = _as_batched(init, R)
    if P.gate_coef.shape[2] != X.shape[2]:
        raise ValueError(f"init has {P.gate_coef.shape[2]} features, X has {X.shape[2]}")
    floors = np.broadcast_to(np.asarray(var_floor, dtype=float), (R,)).copy()
    ops = _make_ops(backend, X, y)

    events = [dict() for _ in range(R)]
    last_good = [None] * R
    k, d = P.gate_coef.shape[1:]
    # the Numba softmax E-step also gives the next iteration's statistics and gate start
    extra = ops.name == "numba" and type(gate) is SoftmaxGate and k > 1
    st = _Active(np.arange(R, dtype=np.int64), *ops.e_step(gate, P, np.arange(R), extra))
    lls = [[float(v)] for v in ops.loglik(st.log_p)]
    converged = np.zeros(R, dtype=bool)
    n_iter = np.zeros(R, dtype=int)
    saved = {}

    def fail(pos, exc, it):
        r = int(st.act[pos])
        if on_error == "raise":
            raise ValueError(f"replication {r} failed at iteration {it}: "
                             f"{type(exc).__name__}: {exc}") from exc
        events[r]["error"] = f"{type(exc).__name__}: {exc}"
        last_good[r] = saved.get(r)
        keep = np.ones(st.act.size, dtype=bool)
        keep[pos] = False
        st.keep(keep, ops)

    for it in range(1, max_iter + 1):
        if st.act.size == 0:
            break
        if on_error == "record":
            saved = {int(r): P.get(r) for r in st.act}
        # expert step (a failed replication is dropped and the step redone for the others:
        # nothing is written before the step succeeds)
        while st.act.size:
            try:
                reports = _expert_step(ops, st.resp, P, st.act, floors[st.act],
                                       None if st.extra is None else st.extra[0])
                break
            except _ReplicationError as err:
                fail(err.pos, err.exc, it)
        for r, (e, s_, f) in zip(st.act, reports):
            ev = events[r]
            ev.setdefault("empty_experts", set()).update(e)
            ev.setdefault("singular_experts", set()).update(s_)
            ev.setdefault("floored_variances", set()).update(f)
        for pos in _check_finite(P, st.act)[::-1]:
            fail(pos, ValueError("the expert step gave non-finite parameters"), it)
        # gate step
        q0 = None if st.extra is None else st.extra[1]
        for pos, exc in _gate_step(gate, ops, P, st.act, st.resp, gate_max_iter, q0)[::-1]:
            fail(pos, exc, it)
        for pos in _check_finite(P, st.act)[::-1]:
            fail(pos, ValueError("the gate step gave non-finite parameters"), it)
        if st.act.size == 0:
            break
        # E-step at the new parameters, log-likelihood, stopping rule
        act = st.act
        st = _Active(act, *ops.e_step(gate, P, act, extra))
        ll = ops.loglik(st.log_p)
        n_iter[act] = it
        prev = np.array([lls[r][-1] for r in act])
        for r, v in zip(act, ll):
            lls[r].append(float(v))
        stop = np.abs(ll - prev) <= tol * np.abs(prev)
        converged[act[stop]] = True
        if stop.any():
            st.keep(~stop, ops)

    traces = []
    for r in range(R):
        params = last_good[r] if "error" in events[r] and last_good[r] is not None else P.get(r)
        traces.append(FitTrace(params, np.asarray(lls[r]), int(n_iter[r]), bool(converged[r]),
                               events[r]))
    return traces
