"""Second-order finish and certificate of a fit (the user guide's *Solvers and certificates*).

EM is monotone but, in singular regimes (over-specified fits, top-K, learned
temperature), sublinear: it makes tiny steps far from the maximum, and a small
relative change of the likelihood is no evidence of convergence. The finish
maximises the observed log-likelihood from EM's endpoint by trust-region Newton with
its exact Hessian (:func:`moestats.solvers.newton.newton_ascent`, on the
free-parameter vector of :class:`~moestats.solvers.batched_params.ParamLayout`, inside
the parameter space's box), and ends with the stationarity certificate of
:mod:`moestats.solvers.certify`. For the top-K family the likelihood is only
piecewise smooth in the gate slopes :math:`\\beta_1` (the selection moves with them, and
at a selection boundary the likelihood jumps, so its maximum over :math:`\\beta_1` can
sit at a kink where no gradient vanishes). Rounds of Newton (on every coordinate, then
on all but :math:`\\beta_1`) alternate with exact line searches of the selection
boundaries along every slope coordinate
(:func:`moestats.solvers.selection_search.selection_line_search`) until the searches
gain less than a tenth of ``certify_tol``. The certificate of a top-K fit is then the
second-order certificate with :math:`\\beta_1` held fixed, plus the last boundary
search's gain (``Certificate.boundary_gain``) below ``certify_tol``: a maximum over
every smooth direction and over every slope coordinate, not over every direction of
:math:`\\beta_1` at once.
"""

from __future__ import annotations

import numpy as np

from ..gates import TopKGate
from .batched_params import ParamLayout
from .certify import certify, free_coordinates, negative_curvature
from .derivatives import observed_derivatives, observed_loglik
from .newton import newton_ascent

__all__ = ["newton_finish", "probe_negative_curvature", "MAX_SELECTION_ROUNDS"]

#: probes of a negative-curvature direction: predicted curvature gains of
#: certify_tol * 4**m, m = 0..PROBE_STEPS-1, in both directions
PROBE_STEPS = 11

#: rounds of (Newton, boundary search) for the top-K family at most (a fit stops as soon
#: as a round gains less than certify_tol). 20 left 77 of 320 top-2-of-4 fits
#: (topk-over-k4, quick) uncertified, still gaining 1e-3 to 1e-2 nats per round; with 200,
#: 22 of 24 of them certified, after a median 0.2 (max 1.0) nats more
#: (benchmarks/check_topk_rounds.py, benchmarks/results/check_topk_rounds.md).
MAX_SELECTION_ROUNDS = 200


def probe_negative_curvature(value, theta, grad, hess, lo, hi, certify_tol):
    """Follow the information's negative-curvature direction on the likelihood itself.

    For every replication whose observed information has a negative eigenvalue
    :math:`\\lambda` beyond rounding, the likelihood is evaluated at
    :math:`\\theta \\pm t_m v` (clipped to the box), with
    :math:`t_m = \\sqrt{2\\,\\mathrm{tol}\\,4^m/|\\lambda|}`, :math:`m = 0, \\dots,` ``PROBE_STEPS`` - 1,
    steps whose predicted curvature gain :math:`|\\lambda| t^2/2` runs from ``certify_tol``
    to about :math:`10^6` times it.

    Returns
    -------
    theta : ndarray (A, p)
        The best probe where it raised the likelihood by more than ``certify_tol``
        (the fit goes on from there), else unchanged.
    escaped : ndarray (A,) of bool
        Replications moved off a saddle.
    probed : ndarray (A,) of bool
        Replications with a negative curvature that no probe could climb.
    passes : ndarray (A,) of int
    """
    A, p = theta.shape
    free = free_coordinates(theta, grad, lo, hi)
    eig, direction = negative_curvature(grad, hess, free)
    todo = np.nonzero(np.any(direction != 0, axis=1))[0]
    escaped = np.zeros(A, dtype=bool)
    probed = np.zeros(A, dtype=bool)
    passes = np.zeros(A, dtype=int)
    theta = theta.copy()
    if not todo.size:
        return theta, escaped, probed, passes
    base = value(theta[todo], todo)
    best = base.copy()
    best_theta = theta[todo].copy()
    for m in range(PROBE_STEPS):
        t = np.sqrt(2.0 * certify_tol * 4.0 ** m / np.abs(eig[todo]))
        for sign in (1.0, -1.0):
            cand = np.clip(theta[todo] + sign * t[:, None] * direction[todo], lo[todo], hi[todo])
            with np.errstate(all="ignore"):
                v = value(cand, todo)
            passes[todo] += 1
            better = np.isfinite(v) & (v > best)
            best[better] = v[better]
            best_theta[better] = cand[better]
    escaped[todo] = best > base + certify_tol
    probed[todo] = ~escaped[todo]
    theta[todo] = np.where(escaped[todo, None], best_theta, theta[todo])
    return theta, escaped, probed, passes


class _TiedLayout:
    """The free-parameter vector :math:`\\varphi` of a structured space,
    :math:`\\theta = J\\varphi` (:meth:`ParameterSpace.tie_matrix`), with the
    :class:`ParamLayout` interface the finish uses. The gate slopes are never tied or
    pinned here for the top-K gate, so their positions are those of ``L``."""

    def __init__(self, L, J):
        self.L, self.J = L, J
        self.size = J.shape[1]
        self.counts = J.sum(axis=0)
        self.rep = np.argmax(J, axis=0)  # one full coordinate per column
        self.gate_slope = L.gate_slope

    def reduce(self, theta):
        return theta @ self.J / self.counts

    def pack(self, P):
        return self.reduce(self.L.pack(P))

    def unpack(self, phi, template):
        return self.L.unpack(phi @ self.J.T, template)

    def derivatives(self, full):
        J = self.J

        def reduced(Psub, idx, order):
            value, grad, hess = full(Psub, idx, order)
            return (value, None if grad is None else grad @ J,
                    None if hess is None else J.T @ hess @ J)
        return reduced


def newton_finish(gate, X, y, P, lo, hi, *, max_iter=200, certify_tol=1e-3,
                  derivatives=None, sample_weight=None, tie=None, selection_kernel="numpy"):
    """Maximise the observed likelihood of R replications from ``P``; certify the endpoints.

    Parameters
    ----------
    gate : Gate
    X : ndarray (R, n, d)
    y : ndarray (R, n)
    P : BatchedParams
        Starting parameters (updated in place to the endpoints).
    lo, hi : ndarray (p,) or (R, p)
        Box of the free-parameter vector (:meth:`ParameterSpace.box`).
    max_iter : int
        Newton steps at most (per round).
    certify_tol : float
        Nats; see :mod:`moestats.solvers.certify`.
    derivatives : callable, optional
        ``derivatives(P_sub, idx, order) -> (value, grad, hess)`` for the replications
        ``idx`` (``P_sub`` aligned with them); ``order=0`` the value only. Default: the
        NumPy reference (:mod:`moestats.solvers.derivatives`); the EM engine passes its
        backend's (``ops.observed_derivatives``).
    sample_weight : ndarray (R, n), optional
        Per-sample weights of the log-likelihood (the default ``derivatives`` only;
        not with the top-K gate, whose boundary searches are unweighted).
    tie : ndarray (p, q), optional
        :math:`J` of a structured parameter space (:meth:`ParameterSpace.tie_matrix`):
        the finish and the certificate work in :math:`\\varphi` with
        :math:`\\theta = J\\varphi` (pinned slopes left out, tied variances one
        coordinate).
    selection_kernel : {"numpy", "numba"}
        Candidate evaluation of the top-K boundary searches
        (:func:`~moestats.solvers.selection_search.selection_line_search`'s ``kernel``).

    Returns
    -------
    values : list of lists
        Accepted log-likelihoods per replication (the first is the start's).
    passes : ndarray (R,)
        Passes over the data used.
    certificates : list of Certificate

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> from moestats.solvers.batched_params import BatchedParams, ParamLayout
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(2000, np.random.default_rng(0))
    >>> P = BatchedParams.stack([truth.params])
    >>> lo, hi = np.full(8, -np.inf), np.full(8, np.inf)
    >>> values, passes, certs = newton_finish(SoftmaxGate(), X[None], y[None], P, lo, hi)
    >>> certs[0].certified, values[0][-1] >= values[0][0]
    (True, True)
    """
    R, n, d = X.shape
    k = P.gate_coef.shape[1]
    L = ParamLayout(gate, k, d)
    lo = np.broadcast_to(lo, (R, L.size))
    hi = np.broadcast_to(hi, (R, L.size))
    template = P.copy()
    theta = np.clip(L.pack(P), lo, hi)
    if tie is not None:
        L = _TiedLayout(L, tie)
        lo, hi, theta = lo[:, L.rep], hi[:, L.rep], np.clip(L.reduce(theta), lo[:, L.rep],
                                                             hi[:, L.rep])

    if derivatives is None:
        def derivatives(Psub, idx, order):
            c = None if sample_weight is None else sample_weight[idx]
            if order == 0:
                return observed_loglik(gate, X[idx], y[idx], Psub, c), None, None
            return observed_derivatives(gate, X[idx], y[idx], Psub, order=order,
                                        sample_weight=c)

    if tie is not None:
        derivatives = L.derivatives(derivatives)

    def derivs(th, idx):
        return derivatives(L.unpack(th, template.take(idx)), idx, 2)

    def value(th, idx):
        return derivatives(L.unpack(th, template.take(idx)), idx, 0)[0]

    values = [[] for _ in range(R)]
    passes = np.zeros(R, dtype=int)
    all_rows = np.arange(R)

    def ascend(theta, lo_, hi_, max_rejections=30, rows=all_rows):
        """Newton from ``theta`` for the replications ``rows`` (theta, lo_, hi_ theirs)."""
        res = newton_ascent(lambda th, idx: derivs(th, rows[idx]),
                            lambda th, idx: value(th, rows[idx]), theta, lo_, hi_,
                            max_iter=max_iter, stop_gain=0.1 * certify_tol,
                            max_rejections=max_rejections)
        passes[rows] += res.passes
        for a, r in enumerate(rows):
            values[r].extend(res.values[a][0 if not values[r] else 1:])
        return res

    def escape_saddles(res, lo_, hi_):
        """Probe negative curvature at ``res``; Newton on from the replications that
        escaped (only those: a replication's probes do not depend on its batch)."""
        theta, val, grad, hess = (a.copy() for a in (res.theta, res.value, res.grad, res.hess))
        probed = np.zeros(R, dtype=bool)
        rows = all_rows
        for _ in range(MAX_SELECTION_ROUNDS):
            moved, escaped, probed[rows], used = probe_negative_curvature(
                lambda th, idx: value(th, rows[idx]), theta[rows], grad[rows], hess[rows],
                lo_[rows], hi_[rows], certify_tol)
            passes[rows] += used
            moved, rows = moved[escaped], rows[escaped]
            if not rows.size:
                break
            sub = ascend(moved, lo_[rows], hi_[rows], rows=rows)
            theta[rows], val[rows], grad[rows], hess[rows] = sub.theta, sub.value, sub.grad, sub.hess
        res.theta, res.value, res.grad, res.hess = theta, val, grad, hess
        return res, probed

    if not (isinstance(gate, TopKGate) and k > 1):
        res, probed = escape_saddles(ascend(theta, lo, hi), lo, hi)
        P.put(all_rows, L.unpack(res.theta, template))
        return values, passes, certify(res.grad, res.hess, res.theta, lo, hi, certify_tol,
                                       passes, probed)

    from .gate_steps import _move_selection
    slopes = L.gate_slope

    def slopes_fixed(theta, rows=all_rows):
        lo_f, hi_f = lo[rows].copy(), hi[rows].copy()
        lo_f[:, slopes] = hi_f[:, slopes] = theta[:, slopes]
        return lo_f, hi_f

    # Rounds run per replication until its boundary search gains at most a tenth of the
    # tolerance: a replication's rounds do not depend on the others in the batch.
    boundary_gain = np.full(R, np.inf)
    theta = theta.copy()
    active = all_rows
    for _ in range(MAX_SELECTION_ROUNDS):
        # Newton on every coordinate (it moves the selection too), then on all but the
        # gate slopes (smooth: certifiable), then exact searches of the boundaries
        sub = ascend(theta[active], lo[active], hi[active], max_rejections=8, rows=active).theta
        res = ascend(sub, *slopes_fixed(sub, active), rows=active)
        moved = L.unpack(res.theta, template.take(active))
        passes[active] += _move_selection(gate, X[active], y[active], moved, lo[active],
                                          hi[active], max_sweeps=2, kernel=selection_kernel)
        theta[active] = L.pack(moved)
        after = value(theta[active], active)
        passes[active] += 1
        gain = np.maximum(after - res.value, 0.0)
        boundary_gain[active] = gain
        for a in np.nonzero(gain > 0)[0]:
            values[active[a]].append(float(after[a]))
        active = active[gain > 0.1 * certify_tol]
        if not active.size:
            break
    lo_f, hi_f = slopes_fixed(theta)
    res, probed = escape_saddles(ascend(theta, lo_f, hi_f), lo_f, hi_f)
    P.put(all_rows, L.unpack(res.theta, template))
    certs = certify(res.grad, res.hess, res.theta, lo_f, hi_f, certify_tol, passes, probed)
    n_slopes = slopes.stop - slopes.start
    for r, cert in enumerate(certs):
        cert.n_active_bounds = max(0, cert.n_active_bounds - n_slopes)
        cert.boundary_gain = float(boundary_gain[r])
        if boundary_gain[r] > certify_tol and cert.certified:
            cert.certified = False
            cert.reason = (f"moving the selection boundaries still gained "
                           f"{boundary_gain[r]:.3g} nats in the last round")
    return values, passes, certs
