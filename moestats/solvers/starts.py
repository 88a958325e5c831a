"""Several different starts, and the short-run selection among them ("emEM").

EM on a mixture of regressions has local maxima; the standard remedy (flexmix's
``stepFlexmix(nrep=...)``, Biernacki, Celeux & Govaert 2003's "emEM") is many
different starts, a few EM iterations from each, and the best few run to
convergence:

>>> import numpy as np
>>> from moestats import SoftmaxGate
>>> from moestats.solvers import fit_em_batched
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(0, 10, 200); X = np.column_stack([x, x ** 2])
>>> y = np.r_[5 * x[:100], 40 - (x[100:] - 5) ** 2] + 3 * rng.normal(size=200)
>>> starts = make_starts(SoftmaxGate(), X, y, 2, 10, rng, var_floor=1e-6)
>>> best, lls = emem(SoftmaxGate(), X, y, starts, var_floor=1e-6)
>>> fit = fit_em_batched(SoftmaxGate(), X[None], y[None], best, tol=1e-10, var_floor=1e-6)[0]
>>> bool(fit.log_likelihood > -620)
True
"""

from __future__ import annotations

import numpy as np

from .batched_em import fit_em_batched
from .init import kmeans_init, lines_init, random_init, random_partition_init

__all__ = ["START_KINDS", "MIXED_KINDS", "make_starts", "emem"]

#: the start kinds by name
START_KINDS = {
    "kmeans": kmeans_init,
    "random_partition": random_partition_init,
    "lines": lines_init,
    "random": random_init,
}
#: the kinds ``kinds="mixed"`` cycles through, in this order
MIXED_KINDS = ("kmeans", "random_partition", "lines")


def _kind_cycle(kinds):
    if isinstance(kinds, str):
        kinds = MIXED_KINDS if kinds == "mixed" else (kinds,)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in START_KINDS]
    if not kinds or unknown:
        raise ValueError(f"unknown start kind(s) {unknown or kinds!r}: use 'mixed' or "
                         f"names from {sorted(START_KINDS)}")
    return kinds


def _same_start(a, b):
    """Whether two starts have the same experts, up to their order."""
    def experts(p):
        E = np.column_stack([p.expert_coef, p.expert_intercept, p.expert_var])
        return E[np.lexsort(E.T[::-1])]
    A, B = experts(a), experts(b)
    return bool(np.allclose(A, B, rtol=1e-7, atol=1e-10 * (1.0 + np.abs(A).max())))


def make_starts(gate, X, y, n_experts, n_starts, rng, var_floor, temperature=1.0,
                kinds="mixed"):
    """``n_starts`` different starting points.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    n_experts, n_starts : int
    rng : numpy.random.Generator
        Each attempt draws its own child generator from it
        (``default_rng(rng.integers(2**63))``): the starts are reproducible by
        ``rng``'s state and differ from each other.
    var_floor : float
    temperature : float, default=1.0
    kinds : "mixed", a name of :data:`START_KINDS` or a sequence of names
        The kinds, cycled through; ``"mixed"`` is :data:`MIXED_KINDS`.

    Returns
    -------
    list of MoEParams
        ``n_starts`` starts. A start that fails (``ValueError``, ``LinAlgError``) or
        repeats an earlier one (the same experts in another order) is replaced by
        the next kind of the cycle. With one expert, or where no more different
        starts are found after ``3 * (n_starts + len(kinds))`` attempts, repeats
        are kept.

    Raises
    ------
    ValueError
        An unknown kind, or every attempt failed (the messages joined).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 1)); y = np.abs(X[:, 0]) + 0.1 * rng.normal(size=100)
    >>> starts = make_starts(SoftmaxGate(), X, y, 2, 4, np.random.default_rng(1), 1e-6)
    >>> len(starts), starts[0].allclose(starts[1])
    (4, False)
    """
    cycle = _kind_cycle(kinds)
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    budget = 3 * (n_starts + len(cycle))
    starts, failures, attempt = [], [], 0
    while len(starts) < n_starts and attempt < 2 * budget:
        kind = cycle[attempt % len(cycle)]
        child = np.random.default_rng(rng.integers(2**63))
        attempt += 1
        try:
            with np.errstate(all="ignore"):
                start = START_KINDS[kind](gate, X, y, n_experts, child, var_floor,
                                          temperature)
        except (ValueError, np.linalg.LinAlgError) as exc:
            failures.append(f"{kind}: {exc}")
            continue
        if (n_experts > 1 and attempt <= budget
                and any(_same_start(start, s) for s in starts)):
            continue
        starts.append(start)
    if len(starts) < n_starts:
        raise ValueError(f"found only {len(starts)} of {n_starts} starts in {attempt} "
                         "attempts: " + "; ".join(failures[-5:]))
    return starts


def emem(gate, X, y, starts, *, short_iter=20, n_keep=1, backend="numpy", var_floor,
         sample_weight=None, space=None):
    """Short-run selection ("emEM"): ``short_iter`` EM iterations from every start,
    all at once (:func:`fit_em_batched`), the runs ranked by log-likelihood.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    starts : sequence of MoEParams
        E.g. from :func:`make_starts`.
    short_iter : int, default=20
        EM iterations per start (fewer where a run converges exactly).
    n_keep : int or None, default=1
        How many of the ranked parameters to return (``None``: all).
    backend : str, default="numpy"
        As :func:`fit_em_batched`.
    var_floor : float
        Lower bound on the expert variances.
    sample_weight : ndarray (n,), optional
        Per-sample weights of the log-likelihood (as :func:`fit_em_batched`).
    space : ParameterSpace, optional
        The parameter space of the fit (bounds and structure): the short runs stay in
        it, so they rank the starts on the model that is fitted.

    Returns
    -------
    ranked : list of MoEParams
        The parameters reached after the short runs (not the starts), best
        log-likelihood first, ties in the order of ``starts``; failed runs last,
        at their last valid parameters. Its length is ``min(n_keep, len(starts))``.
    short_log_likelihoods : ndarray (len(starts),)
        The log-likelihood after each short run, in the order of ``starts``;
        ``-inf`` for a failed run.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 1)); y = np.abs(X[:, 0]) + 0.1 * rng.normal(size=100)
    >>> starts = make_starts(SoftmaxGate(), X, y, 2, 6, rng, 1e-6)
    >>> ranked, lls = emem(SoftmaxGate(), X, y, starts, n_keep=2, var_floor=1e-6)
    >>> len(ranked), lls.shape
    (2, (6,))
    """
    starts = list(starts)
    m = len(starts)
    if m == 0:
        raise ValueError("emem needs at least one start")
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        traces = fit_em_batched(gate, np.broadcast_to(X, (m,) + X.shape),
                                np.broadcast_to(y, (m,) + y.shape), starts, tol=0.0,
                                max_iter=short_iter, var_floor=var_floor,
                                backend=backend, on_error="record", certify=False,
                                space=space,
                                sample_weight=None if sample_weight is None else
                                np.broadcast_to(sample_weight, (m,) + y.shape))
    lls = np.array([t.log_likelihood if "error" not in t.events else -np.inf
                    for t in traces])
    lls[~np.isfinite(lls)] = -np.inf
    order = np.argsort(-lls, kind="stable")
    n = m if n_keep is None else max(0, min(int(n_keep), m))
    return [traces[i].params for i in order[:n]], lls
