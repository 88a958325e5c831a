"""The batched gate steps of EM: increase the gate objective, never decrease it.

- Softmax: Newton (IRLS) on :math:`Q(\\beta) = \\sum_{ij} r_{ij}\\log w_{ij}` with its
  exact Hessian, from the backend's kernels (:func:`softmax_newton`).
- Temperature and activation: trust-region Newton on :math:`Q` with the exact
  Hessian of :func:`moestats.solvers.derivatives.gate_objective_derivatives`
  (:math:`\\log\\tau` included when learned), all replications at once.
- Top-K: :math:`Q` is :math:`-\\infty` as soon as the selection moves under a sample
  with positive responsibility, so the step maximises the *observed* likelihood over
  the gate with the experts fixed (an ECM step): trust-region Newton with its exact
  Hessian inside the current selection, then exact line searches that move the
  selection boundaries (:func:`moestats.solvers.selection_search.selection_line_search`),
  which is the only way a top-1 gate moves (its likelihood is piecewise constant in
  :math:`\\beta_1`).

Every accepted step raises its objective, so the observed likelihood never decreases
across an EM iteration. Every step stays inside the parameter space's box.
"""

from __future__ import annotations

import numpy as np

from ..gates import SoftmaxGate, TemperatureGate, TopKGate
from .batched_params import ParamLayout
from .expert_step import solve_each
from .newton import newton_ascent

__all__ = ["gate_step_batched", "softmax_newton", "SAFE_STEPS"]

#: safeguarded Newton steps of an optimistic gate step where the objective is not
#: locally concave (any ascent keeps EM monotone; the finish does the rest)
SAFE_STEPS = 3
#: rejected trial steps of a gate step before it gives up (the top-K likelihood jumps
#: at selection boundaries, where long searches gain nothing)
GATE_REJECTIONS = 8


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


def softmax_newton(ops, P, rows, resp, max_iter, tol, bound=np.inf, q0=None):
    """Newton (IRLS) on the softmax gate's :math:`Q` for all replications ``rows`` at once.

    The exact Hessian of :func:`moestats.gates.softmax_q_hessian` (from the backend,
    with a tiny ridge), step halving until :math:`Q` does not decrease, candidates
    clipped to ``[-bound, bound]``, and a Newton-decrement stop: below ``tol``
    relative, the maximum is reached (stopping there rather than on a gain at
    rounding level keeps the result insensitive to the last bits of the data).
    """
    A = rows.size
    k, d = P.gate_coef.shape[1:]
    theta = _pack_softmax(P, rows)
    pos = np.arange(A)
    if q0 is None:
        q0 = ops.q_eval(rows, resp, pos, *_unpack_softmax(theta, k, d))
    value, grad, state = (np.array(a, copy=True) for a in q0)
    passes = np.zeros(A, dtype=int)
    live = pos
    for _ in range(max_iter):
        if live.size == 0:
            break
        L = live.size
        neg_h = ops.neg_hessian(rows[live], resp, live, state[live])
        passes[live] += ops.hessian_passes
        diag = np.arange(neg_h.shape[1])
        ridge = 1e-10 * (1.0 + np.abs(neg_h[:, diag, diag]).max(axis=1))
        neg_h[:, diag, diag] += ridge[:, None]
        g_live = grad[live]
        step, failed = solve_each(neg_h, g_live)
        bad = failed | ~np.all(np.isfinite(step), axis=1)
        step[bad] = g_live[bad]
        # the Newton-decrement stop
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
            cand = np.clip(theta[live[searching]] + t[searching, None] * step[searching],
                           -bound, bound)
            v, g, st = ops.q_eval(rows[live[searching]], resp, live[searching],
                                  *_unpack_softmax(cand, k, d))
            passes[live[searching]] += 1
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
    return passes


def _gate_box(layout, lo, hi):
    return lo[:, :layout.n_gate], hi[:, :layout.n_gate]


def _gate_newton(gate, ops, P, rows, target, lo, hi, max_iter, tol, observed):
    """Trust-region Newton on the gate part of the free-parameter vector (experts fixed).

    ``observed=False``: the EM objective :math:`Q` with responsibilities ``target``
    (aligned with ``rows``); ``observed=True``: the observed log-likelihood (``target``
    the expert log-densities). The derivatives come from the backend
    (``ops.gate_derivatives``).
    """
    k, d = P.gate_coef.shape[1:]
    L = ParamLayout(gate, k, d)
    sub = P.take(rows)
    full = L.pack(sub)
    rest = full[:, L.n_gate:]

    def params(th, idx):
        return L.unpack(np.concatenate([th, rest[idx]], axis=1), sub.take(idx))

    def derivs(th, idx, order=2):
        return ops.gate_derivatives(gate, params(th, idx), rows[idx], target, idx,
                                    observed=observed, order=order)

    def value(th, idx):
        return derivs(th, idx, order=0)[0]

    idx = np.arange(rows.size)
    first = derivs(full[:, :L.n_gate], idx)
    res = newton_ascent(derivs, value, full[:, :L.n_gate], *_gate_box(L, lo, hi),
                        max_iter=max_iter, stop_gain=tol * (np.abs(first[0]) + 1.0),
                        derivatives=first, max_rejections=GATE_REJECTIONS)
    P.put(rows, params(res.theta, idx))
    return res.passes + 1


def _gate_newton_step(gate, ops, P, rows, target, lo, hi, max_iter, tol, observed, q0=None):
    """One Newton step on the gate part, *not* checked for ascent (see
    :func:`gate_step_batched`'s ``optimistic``), where the objective is locally concave
    (the information positive definite on the free coordinates); elsewhere the
    safeguarded :func:`_gate_newton`. ``q0``: the objective's (value, gradient,
    Hessian) at the current gate, if the backend's E-step gave them (no pass then)."""
    from .certify import free_coordinates
    from .newton import _steps
    k, d = P.gate_coef.shape[1:]
    L = ParamLayout(gate, k, d)
    sub = P.take(rows)
    full = L.pack(sub)
    idx = np.arange(rows.size)
    if q0 is None:
        _, grad, hess = ops.gate_derivatives(gate, sub, rows, target, idx, observed=observed)
    else:
        grad, hess = q0[1], q0[2]
    glo, ghi = _gate_box(L, lo, hi)
    theta = full[:, :L.n_gate]
    free = free_coordinates(theta, grad, glo, ghi)
    concave = np.all(np.isfinite(grad), axis=1) & np.all(
        np.isfinite(hess).reshape(rows.size, -1), axis=1)
    for a in np.nonzero(concave)[0]:
        f = free[a]
        if f.any():
            eig = np.linalg.eigvalsh(-hess[a][np.ix_(f, f)])
            concave[a] = eig[0] > 1e-8 * max(1.0, eig[-1])
    passes = np.full(rows.size, int(q0 is None))
    if concave.any():
        step = _steps(grad[concave], hess[concave], free[concave],
                      np.zeros(int(concave.sum())))[0]
        full[concave, :L.n_gate] = np.clip(theta[concave] + step, glo[concave], ghi[concave])
        P.put(rows[concave], L.unpack(full[concave], sub.take(np.nonzero(concave)[0])))
    if not concave.all():
        other = np.nonzero(~concave)[0]
        # not locally concave: a few safeguarded steps suffice for a generalised EM step
        if target is None:
            sub_target = None
        elif isinstance(target, np.ndarray):
            sub_target = target[other]
        else:
            sub_target = ops.take(target, ~concave)
        passes[other] += _gate_newton(gate, ops, P, rows[other], sub_target, lo[other],
                                      hi[other], min(max_iter, SAFE_STEPS), tol, observed)
    return passes


def _pin_unidentified(gate, P, rows, lo, hi):
    """The box of a gate step, with :math:`\\log\\tau` held at its current value where
    the gate is exactly invariant to :math:`(\\beta_1, \\tau) \\to (c\\beta_1, c\\tau)`
    (a learned temperature with the identity activation, the user guide's *The model and its gates*).

    Along that direction :math:`Q` is constant, so its Hessian is singular (and
    indefinite away from the maximum) and Newton steps in :math:`(\\beta_1, \\log\\tau)`
    waste passes; every value of the identified :math:`\\beta_1/\\tau` is reached with
    :math:`\\tau` fixed, so the step loses nothing. (The second-order finish still sees
    :math:`\\tau`, and the certificate treats the flat direction as flat.)
    """
    if not (isinstance(gate, TemperatureGate) and gate.learns_temperature):
        return lo, hi
    k, d = P.gate_coef.shape[1:]
    t = ParamLayout(gate, k, d).n_gate - 1
    lo, hi = lo.copy(), hi.copy()
    lo[:, t] = hi[:, t] = np.log(P.temperature[rows])
    return lo, hi


def _move_selection(gate, X, y, sub, lo, hi, max_sweeps=10, kernel="numpy"):
    """Exact line searches of the selection boundaries, per replication (updates ``sub``)."""
    from .selection_search import selection_line_search
    from .derivatives import _expert_log_density
    log_phi, _ = _expert_log_density(X, y, sub)
    passes = np.zeros(len(sub), dtype=int)
    for a in range(len(sub)):
        coef, intercept, _, used = selection_line_search(
            gate, X[a], log_phi[a], sub.gate_coef[a], sub.gate_intercept[a],
            max_sweeps=max_sweeps, kernel=kernel)
        bound = hi[a, 0] if hi.shape[1] else np.inf
        sub.gate_coef[a] = np.clip(coef, -bound, bound)
        sub.gate_intercept[a] = np.clip(intercept, -bound, bound)
        passes[a] = used
    return passes


def gate_step_batched(gate, ops, P, rows, resp, lo, hi, *, max_iter=20, tol=1e-10,
                      q0=None, selection_search=True, optimistic=False):
    """The gate step of every active replication (updates ``P``).

    Parameters
    ----------
    gate : Gate
    ops : backend ops
    P : BatchedParams
    rows : int array (A,)
        The active replications.
    resp : array (A, n, k)
        Their responsibilities (any backend's array).
    lo, hi : ndarray (A, p)
        Box of the free-parameter vector (:meth:`ParameterSpace.box`).
    max_iter, tol : Newton iterations and relative decrement at which they stop.
    q0 : tuple, optional
        The gate objective's derivatives at the current gate, when the backend's
        E-step already computed them (:meth:`ops.fuses`): (value, gradient, -Hessian)
        for the softmax gate, (value, gradient, Hessian) in the gate part of the
        free-parameter vector for the dense temperature and activation gates (used by
        the ``optimistic`` step).
    selection_search : bool
        Top-1: also move the selection boundaries by exact line searches (one sweep;
        the finish searches them to the end, for every K).
    optimistic : bool
        Families other than softmax: take one Newton step without checking that it
        raises the objective (one pass over the data instead of two or more). The
        caller must check the observed log-likelihood of the next E-step and, where it
        fell, restore the gate and redo the step with ``optimistic=False`` (the EM
        engine does), so that EM stays monotone.

    Returns
    -------
    passes : ndarray (A,) of int
        Passes over the data used (derivative and value evaluations).
    """
    k, d = P.gate_coef.shape[1:]
    A = rows.size
    if gate.n_free_params(k, d) == 0 and not (isinstance(gate, TopKGate) and k > 1):
        return np.zeros(A, dtype=int)
    L = ParamLayout(gate, k, d)
    pinned = bool(np.any(lo[:, L.gate_slope] == hi[:, L.gate_slope]))  # gate_features
    if type(gate) is SoftmaxGate and not pinned:
        bound = float(hi[0, 0]) if hi.shape[1] else np.inf
        return softmax_newton(ops, P, rows, resp, max_iter, tol, bound, q0)
    if not isinstance(gate, TopKGate):
        lo, hi = _pin_unidentified(gate, P, rows, lo, hi)
        if optimistic and type(gate) is not SoftmaxGate:
            return _gate_newton_step(gate, ops, P, rows, resp, lo, hi, max_iter, tol,
                                     observed=False, q0=q0)
        return _gate_newton(gate, ops, P, rows, resp, lo, hi, max_iter, tol, observed=False)
    # top-K: an ECM step on the observed likelihood with the experts fixed
    passes = np.zeros(A, dtype=int)
    if ParamLayout(gate, k, d).n_gate and gate.k_active > 1:
        # the observed likelihood's derivatives come from the experts in P (no target)
        if optimistic:
            passes += _gate_newton_step(gate, ops, P, rows, None, lo, hi, max_iter, tol,
                                        observed=True)
        else:
            passes += _gate_newton(gate, ops, P, rows, None, lo, hi, max_iter, tol,
                                   observed=True)
    if selection_search and gate.k_active == 1:
        # top-1: the only way the gate moves (its likelihood is piecewise constant);
        # for K >= 2 Newton already moves the selection, and the finish searches it
        X, y = ops.data.take(rows)
        sub = P.take(rows)
        passes += _move_selection(gate, X, y, sub, lo, hi, max_sweeps=1)
        P.put(rows, sub)
    return passes


def fit_gate_to_responsibilities(gate, params, X, y, resp, *, max_iter=10):
    """One gate step of a single data set, for building starts from responsibilities.

    Parameters
    ----------
    gate : Gate
    params : MoEParams
        The experts and the current gate.
    X : ndarray (n, d)
    y : ndarray (n,)
    resp : ndarray (n, k)

    Returns
    -------
    MoEParams
        With the gate moved by :func:`gate_step_batched` (R = 1, NumPy, no bounds).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(500, np.random.default_rng(0))
    >>> resp = np.column_stack([X[:, 0] > 0.3, X[:, 0] <= 0.3]).astype(float)
    >>> start = truth.params.replace(gate_coef=np.zeros((2, 1)), gate_intercept=np.zeros(2))
    >>> bool(fit_gate_to_responsibilities(SoftmaxGate(), start, X, y, resp).gate_coef[0, 0] > 0)
    True
    """
    from ..backends.ops import make_ops
    from .batched_params import BatchedParams
    P = BatchedParams.stack([params])
    ops = make_ops("numpy", np.asarray(X, float)[None], np.asarray(y, float)[None])
    p = ParamLayout(gate, params.n_experts, params.n_features).size
    lo, hi = np.full((1, p), -np.inf), np.full((1, p), np.inf)
    gate_step_batched(gate, ops, P, np.zeros(1, dtype=np.int64),
                      np.asarray(resp, float)[None], lo, hi, max_iter=max_iter)
    return P.get(0)
