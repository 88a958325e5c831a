"""``select_n_experts``: choose the number of experts by AIC, BIC, ICL or the DSC."""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.utils import check_X_y

from ..estimator import GaussianMoE
from ..gates import Gate, SoftmaxGate, TemperatureGate, make_gate
from ..params import MoEParams
from .criteria import information_criteria
from .dendrogram import Dendrogram, _check_gate, build_dendrogram
from .merge import DISSIMILARITIES

__all__ = ["CRITERIA", "SelectionResult", "select_n_experts"]

#: the criteria of :func:`select_n_experts`
CRITERIA = ("aic", "bic", "icl", "dsc")

_FIXED_OPTIONS = ("n_experts", "gate", "n_init", "random_state", "warm_start")


@dataclass
class SelectionResult:
    """What :func:`select_n_experts` found.

    Attributes
    ----------
    criterion : str
        ``"aic"``, ``"bic"``, ``"icl"`` or ``"dsc"``.
    table : pandas.DataFrame
        AIC/BIC/ICL: one row per ``k`` with ``k``, ``log_likelihood``, ``df``,
        ``AIC``, ``BIC``, ``ICL``, ``entropy`` (posterior entropy, nats) and
        ``converged`` (certified fit). DSC: one row per dendrogram level with ``k``,
        ``height`` (:math:`h_k`), ``log_likelihood`` (:math:`\\ell_k` of the merged
        model), ``DIC``, ``df`` and ``merged`` (see :meth:`Dendrogram.table`).
    best_n_experts : int
        The chosen ``k``.
    best_estimator_ : GaussianMoE or None
        The fitted model at ``best_n_experts``. For the DSC: refitted by maximum
        likelihood from the merged model of that level (``refit=True``), the fitted
        over-specified model when ``best_n_experts`` is its size, None with
        ``refit=False`` (the merged parameters are in ``dendrogram_``).
    estimators_ : dict of int to GaussianMoE
        Every fitted model, by ``k`` (DSC: only the over-specified one).
    dendrogram_ : Dendrogram or None
        The dendrogram of the largest fitted model (softmax-type gates and ``K >= 2``;
        built for the information criteria too, at the cost of ``K`` likelihood
        evaluations, so that the DSC can be read beside them).
    n_samples : int
    """

    criterion: str
    table: pd.DataFrame
    best_n_experts: int
    best_estimator_: GaussianMoE | None
    estimators_: dict = field(default_factory=dict)
    dendrogram_: Dendrogram | None = None
    n_samples: int = 0

    def __repr__(self):
        ks = list(self.table["k"])
        return (f"SelectionResult(criterion={self.criterion!r}, best_n_experts="
                f"{self.best_n_experts}, k={ks}, n_samples={self.n_samples}, dendrogram_="
                f"{'yes' if self.dendrogram_ is not None else 'None'})")


def _check_n_experts(n_experts):
    try:
        values = list(n_experts)
    except TypeError:
        values = [n_experts]
    if not values:
        raise ValueError(f"n_experts is empty ({n_experts!r}); give the numbers of experts "
                         "to compare, e.g. range(1, 5)")
    for k in values:
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_experts must hold integers >= 1, got {k!r} in {n_experts!r}")
    return sorted({int(k) for k in values})


def _seeds(random_state, ks):
    """One seed per k, a function of (random_state, k) only: the same for any n_jobs and
    for any other k in the list."""
    if random_state is None:
        entropy = np.random.SeedSequence().entropy
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        entropy = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        entropy = int(random_state.randint(2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        entropy = int(random_state.integers(2**63 - 1))
    else:
        raise ValueError(f"random_state must be None, an int, a RandomState or a Generator, "
                         f"got {random_state!r}")
    return {k: int(np.random.SeedSequence(entropy, spawn_key=(k,)).generate_state(1)[0])
            for k in ks}


def _fit_one(k, seed, X, y, gate, n_init, options, init=None):
    """Fit one k; warnings are recorded and returned (they are re-issued by the caller,
    so that n_jobs = 1 and n_jobs > 1 warn alike)."""
    extra = {} if init is None else {"init": init}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = GaussianMoE(k, gate=clone(gate), n_init=n_init, random_state=seed,
                          **{**options, **extra}).fit(X, y)
    return est, [(w.category, str(w.message)) for w in caught]


def _reissue(records):
    """Warn once per distinct (category, message), naming the k that raised it."""
    seen = {}
    for k, caught in records:
        for category, message in caught:
            seen.setdefault((category, message), []).append(k)
    for (category, message), ks in seen.items():
        warnings.warn(f"n_experts = {', '.join(map(str, ks))}: {message}", category,
                      stacklevel=3)


def select_n_experts(X, y, n_experts=range(1, 6), *, gate=None, criterion="bic", n_init=10,
                     n_jobs=1, random_state=None, dissimilarity="grouped", origin=None,
                     refit=True, **estimator_options) -> SelectionResult:
    """Choose the number of experts ``k`` of a Gaussian mixture of experts.

    **Information criteria** (``"aic"``, ``"bic"``, ``"icl"``): every ``k`` in
    ``n_experts`` is fitted (:class:`~moestats.GaussianMoE` with ``n_init`` starts,
    certified), and the ``k`` with the smallest criterion is chosen:

    .. math::

        \\mathrm{AIC} = -2\\hat\\ell_k + 2\\,\\mathrm{df}_k, \\quad
        \\mathrm{BIC} = -2\\hat\\ell_k + \\mathrm{df}_k\\log n, \\quad
        \\mathrm{ICL} = \\mathrm{BIC} + 2\\sum_{i,j} -r_{ij}\\log r_{ij},

    **lower is better** (deviance scale), with :math:`\\mathrm{df}_k` the identifiable
    parameters (:func:`~moestats.selection.n_identifiable_params`: no τ with the
    identity activation, no intercepts and no slope scale for top-1).

    **Dendrogram Selection Criterion** (``"dsc"``; Do, Nguyen et al., arXiv
    2510.12744): only ``K = max(n_experts)`` is fitted; its atoms are merged pairwise
    (:mod:`moestats.selection.dendrogram`) and the level minimising

    .. math::

        \\mathrm{DIC}_k = -\\bigl(h_k + \\log(n)\\,\\ell_k / n\\bigr)

    over ``k >= 2`` in ``n_experts`` is chosen (:math:`h_k`: the height of the merge
    from ``k`` atoms to ``k - 1``; :math:`\\ell_k`: log-likelihood of the merged
    model). Softmax-type gates only.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    n_experts : iterable of int, default=range(1, 6)
        Candidate numbers of experts (``k = 1`` is a linear regression).
    gate : Gate or str, default=SoftmaxGate()
    criterion : {"aic", "bic", "icl", "dsc"}, default="bic"
    n_init : int, default=10
        Starts per fit (:class:`~moestats.GaussianMoE`).
    n_jobs : int, default=1
        Fits run in parallel over ``k`` (joblib); the results do not depend on it.
    random_state : int, RandomState, Generator or None
        The fit of each ``k`` gets its own seed, a function of ``random_state`` and
        ``k`` only: the same seed gives the same result for any ``n_jobs``, and the
        fit at ``K`` is the same for ``"dsc"`` and for the other criteria.
    dissimilarity : {"grouped", "spec"} or callable, default="grouped"
        Merge dissimilarity of the dendrogram
        (:func:`~moestats.selection.merge_dissimilarity`).
    origin : None, "mean" or array-like, default=None
        Where the dendrogram reads the atoms' masses (:func:`build_dendrogram`; None:
        at ``x = 0``, the paper's).
    refit : bool, default=True
        DSC only: refit the chosen level by maximum likelihood from its merged model.
    **estimator_options
        Passed to every :class:`~moestats.GaussianMoE` (``space``, ``solver``,
        ``max_iter``, ``certify_tol``, ``backend``, ...).

    Returns
    -------
    SelectionResult

    Raises
    ------
    ValueError
        For an empty or invalid ``n_experts``, an unknown ``criterion``, an option
        that :class:`~moestats.GaussianMoE` does not take (or that this function sets),
        or the DSC with a gate other than softmax or temperature.

    Notes
    -----
    Fits that are not certified are kept (``converged`` is False in the table) and
    their warnings are re-issued once, naming the ``k``. ``GaussianMoE.bic`` counts
    all free parameters; the criteria here count identifiable ones only.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup
    >>> from moestats.selection import select_n_experts
    >>> X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(0))
    >>> res = select_n_experts(X, y, range(1, 4), n_init=3, random_state=0)
    >>> res.best_n_experts, list(res.table.columns)
    (2, ['k', 'log_likelihood', 'df', 'AIC', 'BIC', 'ICL', 'entropy', 'converged'])
    >>> bool((res.table["ICL"] >= res.table["BIC"]).all())
    True
    >>> res.dendrogram_.best_n_experts()       # the DSC read off the k = 3 fit
    2
    """
    if not isinstance(criterion, str) or criterion.lower() not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    criterion = criterion.lower()
    ks = _check_n_experts(n_experts)
    gate = SoftmaxGate() if gate is None else gate
    gate = clone(gate) if isinstance(gate, Gate) else make_gate(gate)
    dsc_ok = isinstance(gate, (SoftmaxGate, TemperatureGate))
    if criterion == "dsc":
        _check_gate(gate)
        if ks[-1] < 2:
            raise ValueError(f"the DSC needs max(n_experts) >= 2, got n_experts = {ks}")
    if not (callable(dissimilarity) or dissimilarity in DISSIMILARITIES):
        raise ValueError(f"dissimilarity must be one of {DISSIMILARITIES} or a callable, "
                         f"got {dissimilarity!r}")
    known = set(GaussianMoE().get_params())
    for name in estimator_options:
        if name in _FIXED_OPTIONS:
            raise ValueError(f"{name!r} is set by select_n_experts; pass it as its own "
                             "argument (or not at all)")
        if name not in known:
            raise ValueError(f"unknown GaussianMoE option {name!r}; known: {sorted(known)}")
    if isinstance(estimator_options.get("init"), MoEParams):
        raise ValueError("init=MoEParams fixes one k; select_n_experts needs a start "
                         "kind ('mixed', 'kmeans' or 'random')")
    Xa, ya = check_X_y(X, y, dtype=np.float64, y_numeric=True)
    n = Xa.shape[0]
    seeds = _seeds(random_state, ks)
    fit_ks = [ks[-1]] if criterion == "dsc" else ks
    out = Parallel(n_jobs=n_jobs)(
        delayed(_fit_one)(k, seeds[k], X, y, gate, n_init, estimator_options)
        for k in fit_ks)
    estimators = {k: est for k, (est, _) in zip(fit_ks, out)}
    _reissue([(k, caught) for k, (_, caught) in zip(fit_ks, out)])
    K = fit_ks[-1]
    dend = None
    if dsc_ok and K >= 2:
        dend = build_dendrogram(estimators[K], Xa, ya, dissimilarity=dissimilarity,
                                origin=origin)

    if criterion == "dsc":
        best = dend.best_n_experts(candidates=set(ks))
        table = dend.table()
        if best == K:
            best_est = estimators[K]
        elif refit:
            est, caught = _fit_one(best, seeds[best], X, y, gate, n_init, estimator_options,
                                   init=dend.level(best).params)
            _reissue([(best, caught)])
            best_est = est
        else:
            best_est = None
        return SelectionResult(criterion, table, best, best_est, estimators, dend, n)

    rows = []
    for k in ks:
        est = estimators[k]
        ic = information_criteria(est.gate_, est.params_, Xa, ya,
                                  getattr(est, "space_", None))
        rows.append({"k": k, "log_likelihood": ic["log_likelihood"], "df": ic["df"],
                     "AIC": ic["AIC"], "BIC": ic["BIC"], "ICL": ic["ICL"],
                     "entropy": ic["entropy"], "converged": bool(est.converged_)})
    table = pd.DataFrame(rows)
    column = criterion.upper()
    best = int(min(ks, key=lambda k: (float(table.loc[table["k"] == k, column].iloc[0]), k)))
    return SelectionResult(criterion, table, best, estimators[best], estimators, dend, n)
