"""The batched expert M-step (closed form, inside the parameter space)."""

from __future__ import annotations

import numpy as np

from ..experts import EMPTY_MASS, SINGULAR_COND

__all__ = ["expert_step", "solve_each", "ReplicationError"]


class ReplicationError(Exception):
    """A step failed for one replication (its position ``pos`` among the active ones)."""

    def __init__(self, pos, exc):
        super().__init__(str(exc))
        self.pos, self.exc = pos, exc


def solve_each(A, b):
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


def expert_step(ops, resp, P, rows, var_lo, var_hi, coef_bound, stats=None,
                expert_features=None, shared_variance=False):
    """Closed-form expert M-step for the replications ``rows`` (updates ``P``).

    Weighted least squares of :math:`y` on :math:`\\tilde x = (x, 1)` and the
    weighted residual variance, per expert (see :mod:`moestats.experts`), inside the
    parameter space: a least-squares solution outside the box
    :math:`|a|, |b| \\le` ``coef_bound`` is replaced by the last point inside the box
    on the segment from the current (feasible) coefficients to it (the weighted
    least-squares objective is concave along the segment, so this still does not
    decrease it), and the variance is clipped to ``[var_lo, var_hi]`` (the
    constrained maximiser, the objective being unimodal in the variance).

    Parameters
    ----------
    ops : backend ops (:func:`moestats.backends.ops.make_ops`)
    resp : array (A, n, k)
    P : BatchedParams
    rows : int array (A,)
    var_lo, var_hi : ndarray (A,) and float
    coef_bound : float
    stats : tuple, optional
        ``(mass, sxx, sxy)`` if the backend already has them.
    expert_features : sequence of int, optional
        The columns the expert slopes may use (the others held at 0): the weighted
        least squares on those columns and the intercept only.
    shared_variance : bool
        One variance for all experts: :math:`\\nu = \\sum_j \\mathrm{RSS}_j /
        \\sum_j m_j`, the maximiser of the expected complete log-likelihood under
        :math:`\\nu_1 = \\dots = \\nu_k` (empty experts take it too).

    Returns
    -------
    list of (empty, singular, floored) index lists, one per replication.
    """
    A, n, k = resp.shape
    d = P.expert_coef.shape[2]
    mass, sxx, sxy = ops.statistics(resp, rows) if stats is None else stats
    free = None
    if expert_features is not None:
        # the sub-system of the free columns and the intercept
        free = np.r_[np.asarray(expert_features, dtype=int), d]
        sxx, sxy = sxx[..., free[:, None], free], sxy[..., free]
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
                    raise ReplicationError(a, exc) from exc
    good = live & (cond < SINGULAR_COND)
    singular = live & ~(cond < SINGULAR_COND)
    theta = np.zeros((A, k, sxy.shape[-1]))
    if good.any():
        sol, failed = solve_each(sxx[good], sxy[good])
        if failed.any():
            a = int(np.nonzero(good)[0][np.nonzero(failed)[0][0]])
            raise ReplicationError(a, np.linalg.LinAlgError("Singular matrix"))
        theta[good] = sol
    for a, j in zip(*np.nonzero(singular)):
        try:
            theta[a, j] = np.linalg.pinv(sxx[a, j], rcond=1e-12, hermitian=True) @ sxy[a, j]
        except np.linalg.LinAlgError as exc:  # e.g. NaN statistics: "SVD did not converge"
            raise ReplicationError(a, exc) from exc
    if free is not None:
        full = np.zeros((A, k, d + 1))
        full[..., free] = theta
        theta = full
    if np.isfinite(coef_bound):
        current = np.concatenate([P.expert_coef[rows], P.expert_intercept[rows][..., None]],
                                 axis=2)
        theta = _into_box(np.clip(current, -coef_bound, coef_bound), theta, coef_bound, live)
    with np.errstate(all="ignore"):
        rss = ops.rss(resp, theta, rows)
        if shared_variance:
            pooled = np.where(live, rss, 0.0).sum(axis=1) / np.where(live, mass, 0.0).sum(axis=1)
            v = np.broadcast_to(pooled[:, None], (A, k)).copy()
        else:
            v = rss / mass
    floored = live & ~(v >= var_lo[:, None])
    v = np.where(floored, var_lo[:, None], np.minimum(v, var_hi))
    coef = P.expert_coef[rows]
    intercept = P.expert_intercept[rows]
    var = P.expert_var[rows]
    coef[live] = theta[live][:, :d]
    intercept[live] = theta[live][:, d]
    var[live | shared_variance] = v[live | shared_variance]
    P.expert_coef[rows], P.expert_intercept[rows], P.expert_var[rows] = coef, intercept, var
    return [(np.nonzero(empty[a])[0].tolist(), np.nonzero(singular[a])[0].tolist(),
             np.nonzero(floored[a])[0].tolist()) for a in range(A)]



def _into_box(current, target, bound, live):
    """The last point of the segment ``current -> target`` inside ``[-bound, bound]``."""
    step = target - current
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(step > 0, (bound - current) / step,
                        np.where(step < 0, (-bound - current) / step, np.inf))
    t = np.clip(room.min(axis=-1, keepdims=True), 0.0, 1.0)
    return np.where(live[..., None], current + t * step, target)
