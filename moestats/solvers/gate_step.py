"""The gate step of EM: increase the gate objective, never decrease it.

For the dense smooth families the objective is the EM gate objective
:math:`Q(\\beta) = \\sum_{ij} r_{ij} \\log w_j(x_i;\\beta)`, a soft-label
multinomial logistic regression. For the top-K family it is the observed
log-likelihood with the experts held fixed (an ECM step; see
:class:`~moestats.gates.TopKGate`). Either way every accepted step increases the
objective, so the observed log-likelihood never decreases across an EM iteration.

- Softmax: warm-started Newton (IRLS) with step halving, using the exact Hessian
  of :func:`~moestats.gates.softmax_q_hessian` (a tiny ridge keeps it invertible).
- Top-K: first, for K >= 2, Newton on :math:`Q` with the selection frozen at the
  current one (a softmax over the selected experts: smooth and concave, and the
  softmax Hessian with the masked weights is exact); the Newton point is accepted
  through a backtracking search on the likelihood with the experts fixed (the
  true :math:`Q` is :math:`-\\infty` as soon as the selection moves under a sample
  with positive responsibility, so it cannot be the acceptance test). Then the
  selection moves, on the likelihood with the experts fixed:
  the likelihood is piecewise constant in the selection (for top-1 the gate enters
  the density *only* through the selection, so its gradient is 0), so a candidate
  is made by fitting a dense softmax gate (Newton) to the posterior the experts
  would have under a dense gate, and a backtracking search on the segment from
  the current gate to that candidate keeps the first point that increases the
  likelihood. Both steps increase the likelihood with the experts fixed (an ECM
  step), so the likelihood never decreases.
- Other families: L-BFGS (scipy) warm-started at the current parameters, with the
  result kept only if it does not decrease the objective.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..gates import Gate, SoftmaxGate, softmax_q_hessian
from ..likelihood import normalize_log_joint

__all__ = ["gate_step"]


def _objective(gate, params, X, resp, log_expert, use_likelihood=None):
    if use_likelihood is None:
        use_likelihood = gate.ecm_gate_step
    use_ll = log_expert if use_likelihood else None

    def f(theta):
        p = gate.unpack(theta, params)
        value, grad = gate.objective_and_gradient(p, X, resp, use_ll)
        return value, gate.pack_gradient(grad)

    return f


def _newton(gate, params, X, resp, f, max_iter, tol):
    theta = gate.pack(params)
    value, grad = f(theta)
    row_mass = resp.sum(axis=1)
    for _ in range(max_iter):
        w = gate.weights(gate.unpack(theta, params), X)
        neg_h = -softmax_q_hessian(X, w, row_mass)
        neg_h[np.diag_indices_from(neg_h)] += 1e-10 * (1.0 + np.abs(np.diag(neg_h)).max())
        try:
            step = np.linalg.solve(neg_h, grad)
        except np.linalg.LinAlgError:
            step = grad
        if not np.all(np.isfinite(step)):
            step = grad
        # Newton decrement: the quadratic model's predicted gain; below tol the maximum is
        # reached (stopping here, not on a gain at rounding level, keeps the result
        # insensitive to the last bits of the data)
        if 0.5 * float(grad @ step) <= tol * (abs(value) + 1.0):
            break
        t, accepted = 1.0, False
        while t > 1e-12:
            cand = theta + t * step
            v, g = f(cand)
            if np.isfinite(v) and v >= value:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        gain = v - value
        theta, value, grad = cand, v, g
        if gain <= tol * (abs(value) + 1.0):
            break
    return theta


def _lbfgs(gate, params, X, f, max_iter, tol):
    return _lbfgs_vector(f, gate.pack(params), max_iter, tol)


def _lbfgs_vector(f, theta0, max_iter, tol):
    """Maximise ``f`` (value, gradient) from ``theta0`` with L-BFGS; never returns a worse point."""
    v0, _ = f(theta0)

    def neg(theta):
        v, g = f(theta)
        if not np.isfinite(v):
            return np.inf, np.zeros_like(theta)
        return -v, -g

    res = minimize(neg, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": tol * 1e-2, "gtol": 1e-10})
    if np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and -res.fun >= v0:
        return res.x
    return theta0


def _selection_search(gate, params, X, log_expert, f, max_iter, tol):
    """Move a sparse gate's selection towards a dense fit of the posterior, monotonely."""
    dense = SoftmaxGate()
    dense_params = params
    post, _ = normalize_log_joint(dense.log_weights(dense_params, X) + log_expert)
    g_dense = _objective(dense, dense_params, X, post, None)
    cand_params = dense.unpack(_newton(dense, dense_params, X, post, g_dense, max_iter, tol),
                               dense_params)
    target = gate.pack(cand_params.replace(
        gate_intercept=cand_params.gate_intercept * gate.fits_intercept))
    return _segment_search(f, gate.pack(params), target)


def _scale_and_intercepts(gate, params, X, f, max_iter, tol):
    """L-BFGS on the likelihood over a common slope scale ``c`` and the intercepts.

    :math:`\\beta_1 \\to c\\,\\beta_1` (:math:`c > 0`) leaves every top-K selection
    unchanged, and so do the intercepts under slope selection, so this sub-problem
    is smooth; it sharpens or softens the gate without moving any sample's experts.
    """
    if gate.selection != "slope" or not np.any(params.gate_coef):
        return params
    k, d = params.gate_coef.shape
    base = gate.pack(params)
    n_slopes = (k - 1) * d

    def expand(small):
        theta = base.copy()
        theta[:n_slopes] *= np.exp(small[0])
        theta[n_slopes:] = small[1:]
        return theta

    def g(small):
        v, grad = f(expand(small))
        d_logc = float(grad[:n_slopes] @ base[:n_slopes]) * np.exp(small[0])
        return v, np.concatenate([[d_logc], grad[n_slopes:]])

    small = _lbfgs_vector(g, np.concatenate([[0.0], base[n_slopes:]]), max_iter, tol)
    return gate.unpack(expand(small), params)


def _segment_search(f, theta, target, shortest=1e-3):
    """First of ``theta + t (target - theta)``, t = 1, 1/2, ..., that increases ``f``; else ``theta``."""
    value = f(theta)[0]
    t = 1.0
    while t > shortest:
        cand = theta + t * (target - theta)
        v = f(cand)[0]
        if np.isfinite(v) and v > value:
            return cand
        t *= 0.5
    return theta


class _FrozenSelection(Gate):
    """A sparse gate with its selection frozen: a softmax over fixed supports (smooth in beta)."""

    newton = True

    def __init__(self, gate, mask):
        self.gate = gate
        self.mask = mask

    @property
    def fits_intercept(self):
        return self.gate.fits_intercept

    def _support(self, z, s):
        return self.mask


def gate_step(gate, params, X, resp, log_expert=None, *, max_iter=20, tol=1e-10):
    """One gate step of (generalised) EM.

    Parameters
    ----------
    gate : Gate
    params : MoEParams
        Current parameters (the experts already updated).
    X : ndarray (n, d)
    resp : ndarray (n, k)
        Responsibilities of the E-step.
    log_expert : ndarray (n, k), optional
        Expert log-densities at ``params``; needed by ECM families (top-K).
    max_iter : int
        Newton iterations (softmax) or L-BFGS iterations (others).
    tol : float
        Relative gain below which the inner iterations stop.

    Returns
    -------
    MoEParams
        Parameters with the new gate; the objective is not lower than at ``params``.
    """
    if gate.n_free_params(params.n_experts, params.n_features) == 0:
        return params
    if gate.ecm_gate_step and log_expert is None:
        raise ValueError(f"{type(gate).__name__}'s gate step needs the expert log-densities")
    f = _objective(gate, params, X, resp, log_expert)
    if gate.ecm_gate_step:
        # 1) Newton on Q with the selection frozen, accepted along a backtracking
        #    search on the likelihood; 2) selection moves towards a dense fit
        params = _scale_and_intercepts(gate, params, X, f, max_iter, tol)
        if gate.newton:
            frozen = _FrozenSelection(gate, np.isfinite(gate.logits(params, X)))
            q = _objective(frozen, params, X, resp, None, use_likelihood=False)
            target = _newton(frozen, params, X, resp, q, max_iter, tol)
            params = gate.unpack(_segment_search(f, gate.pack(params), target), params)
        theta = _selection_search(gate, params, X, log_expert, f, max_iter, tol)
    elif gate.newton:
        theta = _newton(gate, params, X, resp, f, max_iter, tol)
    else:
        theta = _lbfgs(gate, params, X, f, max_iter, tol)
    return gate.unpack(theta, params)
