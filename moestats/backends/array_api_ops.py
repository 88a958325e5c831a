"""The array-API backend of the batched EM engine (CuPy, or any array namespace).

:class:`ArrayAPIOps` keeps the data on the device and runs the E-step, the expert
statistics, the residual sums and the softmax gate's objective, gradient and -Hessian
there with the kernels of :mod:`moestats.backends.array_api`; only what the small
host-side solves need comes back as NumPy arrays: (R, k, d+1, d+1) statistics,
(R, P, P) Hessians, per-replication log-likelihoods. The gate log weights of the
non-softmax families are computed on the host and sent over.
"""

from __future__ import annotations

import numpy as np

from ..gates import SoftmaxGate
from .host_ops import (_Data, all_rows, batched_log_weights, reference_gate_derivatives,
                       reference_observed_derivatives)

__all__ = ["ArrayAPIOps", "to_numpy", "cupy_namespace"]


def to_numpy(a):
    """An array of any namespace as a NumPy array on the host."""
    if isinstance(a, np.ndarray):
        return a
    from array_api_compat import is_cupy_array
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


class ArrayAPIOps:
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
    #: the -Hessian comes with the objective's pass
    hessian_passes = 0

    @staticmethod
    def fuses(gate, k):
        """Whether :meth:`e_step` with ``extra`` also gives ``(stats, q0)`` (not here)."""
        return False

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
        if all_rows(rows, self.X.shape[0]):
            return self.X, self.y
        key = rows.tobytes()
        if key != self._key:
            i = self._idx(rows)
            self._key = key
            self._val = (self.xp.take(self.X, i, axis=0), self.xp.take(self.y, i, axis=0))
        return self._val

    def take(self, a, keep):
        return self.xp.take(a, self._idx(np.nonzero(keep)[0]), axis=0)

    def observed_derivatives(self, gate, P, rows, order=2):
        """The NumPy reference on the host copies (the finish runs on the host)."""
        return reference_observed_derivatives(self.data, gate, P, rows, order)

    def gate_derivatives(self, gate, P, rows, target, target_pos, *, observed, order=2):
        """The NumPy reference on the host copies (the gate steps of the non-softmax
        families run on the host)."""
        return reference_gate_derivatives(self.data, gate, P, rows,
                                          None if target is None else to_numpy(target),
                                          target_pos, observed, order)

    @staticmethod
    def host(a):
        return to_numpy(a)

    def loglik(self, log_p):
        return to_numpy(self.xp.sum(log_p, axis=-1))

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
            log_w = self._dev(batched_log_weights(gate, P, rows, Xh))
        joint = log_w + self.k.expert_log_density(
            X, y, self._dev(P.expert_coef[rows]), self._dev(P.expert_intercept[rows]),
            self._dev(P.expert_var[rows]))
        resp, log_p = self.k.normalize_log_joint(joint)
        return resp, log_p, None

    def expert_log_density(self, P, rows):
        X, y = self._take(rows)
        return to_numpy(self.k.expert_log_density(
            X, y, self._dev(P.expert_coef[rows]), self._dev(P.expert_intercept[rows]),
            self._dev(P.expert_var[rows])))

    def statistics(self, resp, rows):
        X, y = self._take(rows)
        return tuple(to_numpy(a) for a in self.k.weighted_statistics(X, y, resp))

    def rss(self, resp, theta, rows):
        X, y = self._take(rows)
        return to_numpy(self.k.weighted_rss(X, y, resp, self._dev(theta)))

    def q_eval(self, rows, resp, rpos, coef, intercept):
        """Softmax gate objective, packed gradient and -Hessian (all NumPy)."""
        xp = self.xp
        X, _ = self._take(rows)
        r = resp if all_rows(rpos, resp.shape[0]) else xp.take(resp, self._idx(rpos), axis=0)
        log_w = self._log_softmax(X, coef, intercept)
        w = xp.exp(log_w)
        positive = r > 0
        terms = r * xp.where(positive, log_w, xp.zeros_like(log_w))
        value = xp.sum(xp.sum(terms, axis=-1), axis=-1)
        row_mass = xp.sum(r, axis=-1)
        G = r - xp.expand_dims(row_mass, axis=-1) * w
        g_coef = to_numpy(xp.matrix_transpose(G) @ X)            # (A, k, d)
        g_int = to_numpy(xp.sum(G, axis=-2))                     # (A, k)
        A = g_coef.shape[0]
        grad = np.concatenate([g_coef[:, :-1].reshape(A, -1), g_int[:, :-1]], axis=1)
        return to_numpy(value), grad, self._neg_hessian(X, w, row_mass)

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
                blocks[:, j, l] = to_numpy((Xt_T * xp.expand_dims(c, axis=-2)) @ Xt)
                blocks[:, l, j] = blocks[:, j, l]
        H = blocks.transpose(0, 1, 3, 2, 4).reshape(A, k1 * q, k1 * q)
        d = q - 1
        order = [j * q + p for j in range(k1) for p in range(d)] + [j * q + d for j in range(k1)]
        return -H[:, order][:, :, order]

    def neg_hessian(self, rows, resp, rpos, state):
        return state


def cupy_namespace():
    import array_api_compat.cupy as xp  # imports CuPy
    return xp
