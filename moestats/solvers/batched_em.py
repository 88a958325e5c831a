"""The EM engine: R replications of one (n, k, gate) problem fitted at once.

This is the one EM loop of moestats: the estimator runs it with R = 1, a sweep with
R = 40. :func:`fit_em_batched` takes ``X`` of shape (R, n, d) and ``y`` of shape
(R, n), one set of parameters per replication
(:class:`~moestats.solvers.batched_params.BatchedParams`), and per replication:

1. EM iterations (E-step; closed-form expert step, :mod:`.expert_step`; gate step,
   :mod:`.gate_steps`), each never decreasing the log-likelihood and staying inside
   the parameter space (:class:`~moestats.solvers.space.ParameterSpace`), until
   :math:`|\\ell_t - \\ell_{t-1}| \\le \\mathrm{tol}\\,|\\ell_{t-1}|` or ``max_iter``;
   a stopped replication is dropped from all further EM work;
2. with ``certify=True`` (the default), the second-order finish and the
   stationarity certificate of :mod:`.finish`: trust-region Newton with the exact
   Hessian of the observed log-likelihood, from EM's endpoint, until the regularised
   Newton decrement is below a tenth of ``certify_tol``. The trace's ``converged`` is
   then the certificate's verdict, never the relative-change rule of step 1.

Every pass over the data in step 1 runs through a backend's *ops* object
(:func:`moestats.backends.ops.make_ops`: NumPy reference, Numba kernels, or the
array-API path for CuPy); this module never branches on the backend's name. The
derivatives of the finish and of the non-softmax gate steps are NumPy code on the
host (:mod:`.derivatives`).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..backends.ops import check_batched_data, make_ops
from ..gates import SoftmaxGate, TopKGate
from .batched_params import _FIELDS, BatchedParams, ParamLayout, as_batched
from .expert_step import ReplicationError, expert_step
from .finish import newton_finish
from .gate_steps import SAFE_STEPS, gate_step_batched
from .selection_search import kernel_for_backend
from .space import ParameterSpace
from .trace import FitTrace

__all__ = ["BatchedParams", "fit_em_batched", "batched_e_step"]


def _check_finite(P, rows):
    """Positions of ``rows`` whose parameters MoEParams would refuse (non-finite, or a
    temperature or variance not positive)."""
    ok = np.ones(rows.size, dtype=bool)
    for f in _FIELDS[:-1]:
        a = getattr(P, f)[rows]
        ok &= np.all(np.isfinite(a.reshape(rows.size, -1)), axis=1)
    tau = P.temperature[rows]
    ok &= np.isfinite(tau) & (tau > 0) & np.all(P.expert_var[rows] > 0, axis=1)
    return np.nonzero(~ok)[0]


def batched_e_step(gate, params, X, y, backend="numpy"):
    """Responsibilities (R, n, k) and per-sample log-likelihoods (R, n) of R replications.

    ``backend`` as in :func:`fit_em_batched`; the arrays returned belong to its
    namespace (NumPy for ``"numpy"`` and ``"numba"``).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> X, y = truth.sample(100, np.random.default_rng(0))
    >>> resp, log_p = batched_e_step(SoftmaxGate(), truth.params, X[None], y[None])
    >>> resp.shape, bool(np.allclose(resp.sum(axis=2), 1))
    ((1, 100, 2), True)
    """
    X, y = check_batched_data(X, y)
    P = as_batched(params, X.shape[0])
    ops = make_ops(backend, X, y)
    return ops.e_step(gate, P, np.arange(X.shape[0], dtype=np.int64))[:2]


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


def _box(gate, P, space, floors):
    """Box of the free-parameter vector per replication, and the start moved into it."""
    R, k, d = P.gate_coef.shape
    L = ParamLayout(gate, k, d)
    lo, hi = space.box(L, floors)
    theta = L.pack(P)
    inside = np.clip(theta, lo, hi)
    if not np.array_equal(inside, theta):
        P.put(np.arange(R), L.unpack(inside, P))
    return lo, hi


def fit_em_batched(gate, X, y, init, **options):
    """Fit R replications by EM at once, then certify each fit.

    The work runs with BLAS on one thread (``threadpoolctl``): its matrix products are
    small (p x p, p < 50) and, on a busy machine, BLAS threads contend with Numba's and
    with other processes (measured: a 200000 x 18 Gram matrix took 4 ms on one BLAS
    thread and 0.2-1.6 s on two under load). See :func:`_fit_em_batched` for the
    parameters.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_em_batched(gate, X, y, init, **options)


def _fit_em_batched(gate, X, y, init, *, tol=1e-6, max_iter=2000, var_floor=1e-8,
                    gate_max_iter=20, backend="numpy", on_error="raise", space=None,
                    certify=True, certify_tol=1e-3, finish_max_iter=500, finish_after=20,
                    sample_weight=None, monitor=None):
    """Fit R replications by EM at once, then certify each fit.

    Parameters
    ----------
    gate : Gate
    X : array (R, n, d)
    y : array (R, n)
        NumPy arrays, or arrays of the namespace of ``backend`` (e.g. CuPy).
    init : sequence of R MoEParams, a BatchedParams, or one MoEParams (used for all)
        Starts; a start outside the parameter space is moved to its nearest point.
    tol : float
        Relative change of the log-likelihood that ends the EM phase (not a
        convergence criterion when ``certify``; see the module docstring).
    max_iter : int
        EM iterations at most.
    var_floor : float or ndarray (R,)
        Lower bound on the expert variances, shared or per replication (combined with
        ``space.var_bounds``).
    gate_max_iter : int
        Newton iterations of each gate step.
    backend : {"numpy", "numba", "cupy", "auto"} or array namespace, default="numpy"
        ``"auto"`` as :func:`moestats.backends.get_backend` with ``n_replications =
        R``. An array namespace (a module with ``asarray``, e.g. ``array_api_strict``)
        runs the array-API path of ``"cupy"`` on it.
    on_error : {"raise", "record"}
        What to do when a replication fails (non-finite parameters, a failed linear
        solve): raise (``ValueError`` naming the replication), or stop that
        replication and record the message in its ``events["error"]`` (its trace then
        ends at its last valid parameters, ``converged=False``), the others going on.
    space : ParameterSpace, optional
        The parameter space :math:`\\Theta` (default: no bounds but ``var_floor``).
    certify : bool, default=True
        Run the second-order finish and the certificate (module docstring). With
        ``False`` (short exploratory runs), ``converged`` is the relative-change rule.
    certify_tol : float, default=1e-3
        Nats: a fit is certified when further ascent can gain at most this much.
    finish_max_iter : int
        Newton steps of the finish at most.
    finish_after : int or None, default=20
        With ``certify``, EM hands over to the finish after at most this many
        iterations (``None``: only by ``tol`` or ``max_iter``). Newton with the exact
        Hessian gains more per pass over the data than EM once EM has left its start:
        ``benchmarks/check_finish_after.py`` measured on softmax-over (k = 4, n = 1e4,
        10 replications) a median of 116 passes to the certificate with 20 EM
        iterations before the finish and 164 with EM run to ``tol``.
    sample_weight : array (R, n), optional
        Positive per-sample weights :math:`c_i`: EM and the finish maximise
        :math:`\\sum_i c_i \\log p(y_i \\mid x_i)` (the responsibilities of sample
        :math:`i` are scaled by :math:`c_i`). The passes then run on the NumPy
        reference (:func:`moestats.backends.ops.make_ops`); not with the top-K gate.
    monitor : callable, optional
        Progress callback: ``monitor("em", it, rows, loglik)`` after every EM
        iteration (the active replications and their log-likelihoods) and
        ``monitor("finish", None, rows, certificates)`` after the finish.

    Returns
    -------
    list of FitTrace
        One per replication (parameters as NumPy arrays whatever the backend), with
        ``certificate`` and ``passes``.

    Raises
    ------
    ValueError
        Bad shapes (naming them), a bad ``backend`` or ``on_error``, or (with
        ``on_error="raise"``) a failed replication.
    moestats.backends.BackendUnavailableError
        ``backend`` names Numba or CuPy and it cannot run here.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup, SoftmaxGate
    >>> truth = get_setup("softmax-exact").truth
    >>> rng = np.random.default_rng(0)
    >>> data = [truth.sample(1000, rng) for _ in range(3)]
    >>> X, y = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
    >>> traces = fit_em_batched(SoftmaxGate(), X, y, truth.params)
    >>> [t.converged for t in traces], traces[0].certificate.predicted_gain < 1e-3
    ([True, True, True], True)
    """
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    if not (isinstance(certify_tol, (int, float)) and certify_tol > 0):
        raise ValueError(f"certify_tol must be a number > 0, got {certify_tol!r}")
    X, y = check_batched_data(X, y)
    R = X.shape[0]
    P = as_batched(init, R)
    if P.gate_coef.shape[2] != X.shape[2]:
        raise ValueError(f"init has {P.gate_coef.shape[2]} features, X has {X.shape[2]}")
    space = ParameterSpace() if space is None else space
    floors = np.broadcast_to(np.asarray(var_floor, dtype=float), (R,)).copy()
    lo, hi = _box(gate, P, space, floors)
    var_lo = np.exp(lo[:, ParamLayout(gate, *P.gate_coef.shape[1:]).log_var.start])
    if sample_weight is not None and isinstance(gate, TopKGate):
        raise ValueError("sample_weight is not supported with the top-K gate (its "
                         "selection-boundary searches are unweighted)")
    ops = make_ops(backend, X, y, sample_weight)

    events = [dict() for _ in range(R)]
    last_good = [None] * R
    k, d = P.gate_coef.shape[1:]
    # where the backend fuses them, the E-step also gives the next iteration's expert
    # statistics and the gate objective's derivatives (the gate step's start)
    extra = ops.fuses(gate, k)
    # non-softmax gates: one unchecked Newton step per iteration, checked by the next
    # E-step's log-likelihood (and redone with safeguards where it fell)
    optimistic = type(gate) is not SoftmaxGate
    st = _Active(np.arange(R, dtype=np.int64), *ops.e_step(gate, P, np.arange(R), extra))
    lls = [[float(v)] for v in ops.loglik(st.log_p)]
    passes = np.ones(R, dtype=int)
    stopped = np.zeros(R, dtype=bool)
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

    em_iter = max_iter if not certify or finish_after is None else min(max_iter, finish_after)
    for it in range(1, em_iter + 1):
        if st.act.size == 0:
            break
        if on_error == "record":
            saved = {int(r): P.get(r) for r in st.act}
        # expert step (a failed replication is dropped and the step redone for the others:
        # nothing is written before the step succeeds)
        while st.act.size:
            try:
                reports = expert_step(ops, st.resp, P, st.act, var_lo[st.act],
                                      space.var_bounds[1], space.coef_bound,
                                      None if st.extra is None else st.extra[0],
                                      space.expert_features, space.shared_variance)
                break
            except ReplicationError as err:
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
        act = st.act
        before, old_resp = (P.take(act), st.resp) if optimistic else (None, None)
        try:
            passes[act] += gate_step_batched(gate, ops, P, act, st.resp, lo[act], hi[act],
                                             max_iter=gate_max_iter, q0=q0,
                                             optimistic=optimistic)
        except (np.linalg.LinAlgError, FloatingPointError) as exc:
            for pos in range(act.size)[::-1]:
                fail(pos, exc, it)
        for pos in _check_finite(P, st.act)[::-1]:
            fail(pos, ValueError("the gate step gave non-finite parameters"), it)
        if st.act.size == 0:
            break
        # E-step at the new parameters, log-likelihood, stopping rule
        act = st.act
        st = _Active(act, *ops.e_step(gate, P, act, extra))
        passes[act] += 1 if extra else 2
        ll = ops.loglik(st.log_p)
        n_iter[act] = it
        prev = np.array([lls[r][-1] for r in act])
        fell = ~(ll >= prev - 1e-13 * np.abs(prev))  # NaN counts as a fall
        if optimistic and fell.any() and before.gate_coef.shape[0] == act.size:
            # the unchecked gate step lowered the likelihood: restore the gate (the
            # expert step alone cannot lower it) and take the safeguarded step
            bad = act[fell]
            keep = before.take(np.nonzero(fell)[0])
            P.gate_coef[bad], P.gate_intercept[bad] = keep.gate_coef, keep.gate_intercept
            P.temperature[bad] = keep.temperature
            passes[bad] += gate_step_batched(gate, ops, P, bad, ops.take(old_resp, fell),
                                             lo[bad], hi[bad],
                                             max_iter=min(gate_max_iter, SAFE_STEPS))
            st = _Active(act, *ops.e_step(gate, P, act, extra))
            passes[act] += 2
            ll = ops.loglik(st.log_p)
        for r, v in zip(act, ll):
            lls[r].append(float(v))
        if monitor is not None:
            monitor("em", it, act, np.asarray(ll, dtype=float))
        stop = np.abs(ll - prev) <= tol * np.abs(prev)
        stopped[act[stop]] = True
        if stop.any():
            st.keep(~stop, ops)

    ok = np.array(["error" not in ev for ev in events])
    certificates = [None] * R
    converged = stopped & ok
    if certify and ok.any():
        rows = np.nonzero(ok)[0]
        sub = P.take(rows)
        Xh, yh = ops.data.take(rows)
        values, used, certs = newton_finish(
            gate, Xh, yh, sub, lo[rows], hi[rows], max_iter=finish_max_iter,
            certify_tol=certify_tol, tie=space.tie_matrix(ParamLayout(gate, k, d)),
            derivatives=lambda Psub, idx, order: ops.observed_derivatives(
                gate, Psub, rows[idx], order),
            selection_kernel=kernel_for_backend(ops.name))
        P.put(rows, sub)
        for a, r in enumerate(rows):
            lls[r].extend(values[a][1:])
            passes[r] += used[a]
            certs[a].passes = int(passes[r])
            certificates[r] = certs[a]
            converged[r] = certs[a].certified
        if monitor is not None:
            monitor("finish", None, rows, [certificates[r] for r in rows])
    traces = []
    for r in range(R):
        params = last_good[r] if "error" in events[r] and last_good[r] is not None else P.get(r)
        traces.append(FitTrace(params, np.asarray(lls[r]), int(n_iter[r]), bool(converged[r]),
                               events[r], certificates[r], int(passes[r])))
    return traces
