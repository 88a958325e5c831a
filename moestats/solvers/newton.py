"""Batched trust-region Newton ascent over a box, with the exact Hessian.

Maximises A smooth objectives :math:`f_a(\\theta)` at once (one per replication, small
:math:`p`). From :math:`\\theta` with gradient :math:`g` and Hessian :math:`H`, on the
free coordinates :math:`F` (those not held at a bound by an outward gradient),

.. math::

    \\delta_F = (M_{FF} + \\mu I)^{-1} g_F,\\qquad M = -H,\\qquad
    \\mu = \\max\\bigl(\\lambda,\\ \\max(0, -\\lambda_{\\min}(M_{FF})) + \\epsilon\\bigr),

(a Levenberg-Marquardt / trust-region step), projected on the box. The step is
accepted only if :math:`f` rises, so the iterates are monotone; the damping
:math:`\\lambda` shrinks when the quadratic model predicts the gain well
(:math:`\\rho > 3/4`) and grows when it does not (:math:`\\rho < 1/4`) or when a step
is rejected. Iterations stop when the regularised Newton decrement of
:mod:`moestats.solvers.certify` is below ``stop_gain`` (the point is then certified up to
that gain), after ``max_iter`` accepted steps, or when no step along the model
raises :math:`f` (stalled).
"""

from __future__ import annotations

import numpy as np

from .certify import FLAT_REGULARISATION, decrement, free_coordinates

__all__ = ["newton_ascent", "NewtonResult"]

#: rejected trial steps before a replication is declared stalled
MAX_REJECTIONS = 30


class NewtonResult:
    """Outcome of :func:`newton_ascent` (arrays over the A replications).

    Attributes: ``theta`` (A, p), ``value`` (A,), ``grad`` (A, p), ``hess`` (A, p, p)
    at the endpoint; ``n_iter`` (A,) accepted steps; ``passes`` (A,) evaluations
    (derivative and value passes); ``values`` list of per-replication lists of the
    accepted objective values; ``stalled`` (A,) bool.
    """

    def __init__(self, theta, value, grad, hess, n_iter, passes, values, stalled):
        self.theta, self.value, self.grad, self.hess = theta, value, grad, hess
        self.n_iter, self.passes, self.values, self.stalled = n_iter, passes, values, stalled


def _steps(grad, hess, free, lam):
    """Damped Newton steps and their regularisation floor, per replication."""
    A, p = grad.shape
    step = np.zeros((A, p))
    floor = np.zeros(A)
    for a in range(A):
        f = free[a]
        if not f.any():
            continue
        M = -hess[a][np.ix_(f, f)]
        eig, vec = np.linalg.eigh(M)
        floor[a] = max(0.0, -eig[0]) + FLAT_REGULARISATION * max(1.0, eig[-1])
        mu = max(lam[a], floor[a])
        step[a, f] = vec @ ((vec.T @ grad[a, f]) / (eig + mu))
    return step, floor


def newton_ascent(derivs, value_of, theta, lo, hi, *, max_iter=100, stop_gain=1e-4,
                  derivatives=None, max_rejections=MAX_REJECTIONS, full_trials=True):
    """Maximise A objectives by trust-region Newton over the box ``[lo, hi]``.

    Parameters
    ----------
    derivs : callable
        ``derivs(theta, idx) -> (value (m,), grad (m, p), hess (m, p, p))`` for the
        replications ``idx`` (an int array) at ``theta`` (m, p).
    value_of : callable
        ``value_of(theta, idx) -> value (m,)`` (``-inf`` where undefined).
    theta : ndarray (A, p)
        Start, inside the box.
    lo, hi : ndarray (p,) or (A, p)
    max_iter : int
        Accepted steps at most.
    stop_gain : float or ndarray (A,)
        Stop once the regularised Newton decrement is below this.
    derivatives : tuple, optional
        ``(value, grad, hess)`` at ``theta`` if already known.
    max_rejections : int
        Rejected trial steps in a row before a replication is declared stalled.
    full_trials : bool, default=True
        Evaluate the first trial step of every iteration with ``derivs`` (value,
        gradient and Hessian in one pass, reused when the step is accepted, as most
        are) rather than ``value_of`` followed by ``derivs``.

    Returns
    -------
    NewtonResult

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda t: -np.sum((t - 1.0) ** 4, axis=1)
    >>> def derivs(t, idx):
    ...     return f(t), -4 * (t - 1) ** 3, np.stack([np.diag(-12 * (r - 1) ** 2) for r in t])
    >>> res = newton_ascent(derivs, lambda t, idx: f(t), np.zeros((1, 2)),
    ...                     np.full(2, -5.0), np.full(2, 5.0), stop_gain=1e-12)
    >>> bool(abs(res.value[0]) < 1e-10)
    True
    """
    theta = np.array(theta, dtype=float)
    A, p = theta.shape
    lo = np.broadcast_to(lo, (A, p))
    hi = np.broadcast_to(hi, (A, p))
    all_idx = np.arange(A)
    stop_gain = np.broadcast_to(np.asarray(stop_gain, dtype=float), (A,))
    if derivatives is None:
        with np.errstate(all="ignore"):
            derivatives = derivs(theta, all_idx)
        passes0 = 1
    else:
        passes0 = 0
    value, grad, hess = (np.array(a, dtype=float) for a in derivatives)
    passes = np.full(A, passes0)
    n_iter = np.zeros(A, dtype=int)
    lam = np.zeros(A)
    stalled = np.zeros(A, dtype=bool)
    values = [[float(v)] for v in value]
    live = all_idx.copy()
    while live.size:
        free = free_coordinates(theta[live], grad[live], lo[live], hi[live])
        finite = np.all(np.isfinite(grad[live]), axis=1) & np.all(
            np.isfinite(hess[live]).reshape(live.size, -1), axis=1)
        stalled[live[~finite]] = True
        live, free = live[finite], free[finite]
        gain = decrement(grad[live], hess[live], free)[0]
        go = ~(gain <= stop_gain[live]) & np.isfinite(gain) & (n_iter[live] < max_iter)
        live, free = live[go], free[go]
        if not live.size:
            break
        searching = np.arange(live.size)
        accepted = np.zeros(live.size, dtype=bool)
        have = np.zeros(live.size, dtype=bool)  # derivatives known at the accepted point
        new_theta = theta[live].copy()
        new_grad = np.empty((live.size, p))
        new_hess = np.empty((live.size, p, p))
        new_value = np.empty(live.size)
        for trial in range(max_rejections):
            if not searching.size:
                break
            idx = live[searching]
            step, floor = _steps(grad[idx], hess[idx], free[searching], lam[idx])
            cand = np.clip(theta[idx] + step, lo[idx], hi[idx])
            delta = cand - theta[idx]
            predicted = (np.einsum("ap,ap->a", grad[idx], delta)
                         + 0.5 * np.einsum("ap,apq,aq->a", delta, hess[idx], delta))
            with np.errstate(all="ignore"):
                if trial == 0 and full_trials:
                    # most first trials are accepted: one pass gives the value and the
                    # derivatives the next step needs
                    v, g, h = derivs(cand, idx)
                else:
                    v, g, h = value_of(cand, idx), None, None
            passes[idx] += 1
            actual = v - value[idx]
            ok = np.isfinite(v) & (actual > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = np.where(predicted > 0, actual / predicted, 0.0)
            base = np.maximum(lam[idx], floor)
            lam[idx] = np.where(
                ok, np.where(rho > 0.75, base * 0.25, np.where(rho < 0.25, base * 2.0, base)),
                np.maximum(4.0 * base, 1e-6 * np.maximum(1.0, np.abs(value[idx]))))
            lam[idx] = np.where(ok & (lam[idx] <= floor * 1.0001), 0.0, lam[idx])
            new_theta[searching[ok]] = cand[ok]
            new_value[searching[ok]] = v[ok]
            accepted[searching[ok]] = True
            if g is not None:
                new_grad[searching[ok]], new_hess[searching[ok]] = g[ok], h[ok]
                have[searching[ok]] = True
            searching = searching[~ok]
        stalled[live[~accepted]] = True
        moved = live[accepted]
        if moved.size:
            theta[moved] = new_theta[accepted]
            value[moved] = new_value[accepted]
            known = accepted & have
            grad[live[known]], hess[live[known]] = new_grad[known], new_hess[known]
            redo = live[accepted & ~have]
            if redo.size:
                with np.errstate(all="ignore"):
                    v, g, h = derivs(theta[redo], redo)
                passes[redo] += 1
                value[redo], grad[redo], hess[redo] = v, g, h
            n_iter[moved] += 1
            for a in moved:
                values[a].append(float(value[a]))
        live = moved
    return NewtonResult(theta, value, grad, hess, n_iter, passes, values, stalled)
