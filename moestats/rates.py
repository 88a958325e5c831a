"""Rate fitting for convergence-rate studies: ``loss(n) ~ C n^slope``.

A simulation study produces one loss per (sample size ``n``, replication). The
rate is read off the power-law model

.. math::

    \\log L(n) = \\log C + \\text{slope} \\cdot \\log n ,

fitted by ordinary least squares of ``log(stat_n)`` on ``log n``, where
``stat_n`` is a location statistic (mean, median or trimmed mean) of the losses
observed at ``n``. Occasional optimiser failures (EM stuck in a bad fixed point,
NaN/inf losses) can dominate the mean and swing the slope (papers.md section 5),
so the median and trimmed mean are offered beside the mean, and failed fits are
excluded from the statistic and *counted*, never silently averaged.

Uncertainty is a stratified percentile bootstrap: the replications are
resampled with replacement within each ``n`` independently, the statistic per
``n`` and the OLS slope are recomputed, and the percentiles of the bootstrap
slopes form the confidence interval. All randomness comes from a
:class:`numpy.random.Generator`; the global NumPy random state is never used.

:func:`local_slopes` fits the same model on sliding windows of consecutive
sample sizes: for a rate slower than any polynomial (e.g. ``1/log n``) the local
slope drifts towards 0 as ``n`` grows, while for a power law it is constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["RateFit", "fit_rate", "fit_rates", "local_slopes", "STATISTICS"]

STATISTICS = ("mean", "median", "trimmed")


def _statistic(values, statistic, trim, axis=-1):
    if statistic == "mean":
        return np.mean(values, axis=axis)
    if statistic == "median":
        return np.median(values, axis=axis)
    # Same definition as scipy.stats.trim_mean (int(trim * r) values cut from
    # each end), without its per-call overhead, which dominates the bootstrap.
    values = np.sort(values, axis=axis)
    r = values.shape[axis]
    cut = int(trim * r)
    return np.take(values, np.arange(cut, r - cut), axis=axis).mean(axis=axis)


def _check_options(statistic, trim):
    if statistic not in STATISTICS:
        raise ValueError(
            f"unknown statistic {statistic!r}; expected one of {STATISTICS}"
        )
    if not (0.0 <= float(trim) < 0.5):
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")


def _group(n, losses, failed):
    """Validate inputs and split the valid losses by unique ``n``.

    Returns ``(n_values, groups, n_failed_per_n)`` where ``groups[i]`` holds the
    finite, non-failed losses observed at ``n_values[i]``.
    """
    n = np.asarray(n, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if n.ndim != 1 or losses.ndim != 1:
        raise ValueError(
            f"n and losses must be 1-d arrays, got shapes {n.shape} and {losses.shape}"
        )
    if n.shape != losses.shape:
        raise ValueError(
            f"n and losses must have the same length, got {n.size} and {losses.size}"
        )
    if failed is None:
        failed = np.zeros(n.shape, dtype=bool)
    else:
        failed = np.asarray(failed)
        if failed.dtype != bool or failed.shape != n.shape:
            raise ValueError(
                "failed must be a boolean mask of the same length as n "
                f"({n.size}), got dtype {failed.dtype} and shape {failed.shape}"
            )
    bad_n = ~np.isfinite(n) | (n <= 0)
    if bad_n.any():
        raise ValueError(
            f"sample sizes n must be positive and finite, got {np.unique(n[bad_n])}"
        )
    ok = np.isfinite(losses) & ~failed
    neg = ok & (losses < 0)
    if neg.any():
        raise ValueError(
            f"losses must be non-negative, got {losses[neg][:5]} "
            f"at n = {np.unique(n[neg])}"
        )
    zero = ok & (losses == 0)
    if zero.any():
        raise ValueError(
            "zero loss at n = "
            f"{np.unique(n[zero])}: log(0) is undefined in a power-law fit; "
            "mark these rows in `failed` or add a floor"
        )
    n_values, inverse = np.unique(n, return_inverse=True)
    groups = [losses[(inverse == i) & ok] for i in range(n_values.size)]
    n_failed_per_n = np.bincount(inverse[~ok], minlength=n_values.size)
    return n_values, groups, n_failed_per_n.astype(int)


def _ols(x, y):
    """Slope and intercept of the OLS line of ``y`` on ``x``."""
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    return slope, float(y.mean() - slope * x.mean())


def _frozen(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _jsonable(a):
    return [None if not math.isfinite(v) else v for v in np.asarray(a, float).tolist()]


@dataclass(frozen=True, eq=False)
class RateFit:
    """Result of :func:`fit_rate`: ``loss(n) ~ exp(intercept) n^slope``.

    Attributes
    ----------
    slope, intercept : float
        OLS estimates in ``log stat = intercept + slope log n``.
    ci_low, ci_high : float
        Stratified-bootstrap percentile interval for the slope (NaN if
        ``n_boot == 0``).
    ci_level : float
        Nominal coverage of the interval, e.g. 0.95.
    statistic : str
        ``"mean"``, ``"median"`` or ``"trimmed"``.
    n_values : ndarray
        Sorted unique sample sizes (including those whose fits all failed).
    stat_values : ndarray
        Statistic of the valid losses at each ``n`` (NaN when all failed).
    n_failed : int
        Total number of failed rows (NaN/inf loss or flagged in ``failed``).
    n_failed_per_n : ndarray of int
        Failed rows at each ``n``.
    n_reps_per_n : ndarray of int
        Valid (used) replications at each ``n``.
    n_boot : int
        Number of bootstrap resamples.
    method : str
        Human-readable description of the estimator.
    trim : float
        Proportion cut from each end for ``"trimmed"``.
    """

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    ci_level: float
    statistic: str
    n_values: np.ndarray
    stat_values: np.ndarray
    n_failed: int
    n_failed_per_n: np.ndarray
    n_reps_per_n: np.ndarray
    n_boot: int
    method: str
    trim: float = 0.1

    @property
    def n_used(self) -> int:
        """Number of distinct ``n`` entering the fit (finite statistic)."""
        return int(np.isfinite(self.stat_values).sum())

    def predict(self, n):
        """Fitted loss ``exp(intercept) * n**slope`` at sample size(s) ``n``."""
        return np.exp(self.intercept) * np.asarray(n, dtype=float) ** self.slope

    def as_dict(self) -> dict:
        """JSON-serialisable dict (arrays as lists, non-finite floats as None)."""
        d = {
            "slope": self.slope,
            "intercept": self.intercept,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }
        d = {k: (v if math.isfinite(v) else None) for k, v in d.items()}
        d.update(
            ci_level=float(self.ci_level),
            statistic=self.statistic,
            trim=float(self.trim),
            n_values=_jsonable(self.n_values),
            stat_values=_jsonable(self.stat_values),
            n_failed=int(self.n_failed),
            n_failed_per_n=[int(v) for v in self.n_failed_per_n],
            n_reps_per_n=[int(v) for v in self.n_reps_per_n],
            n_boot=int(self.n_boot),
            method=self.method,
        )
        return d

    def __str__(self) -> str:
        if math.isfinite(self.ci_low) and math.isfinite(self.ci_high):
            ci = f"[{100 * self.ci_level:g}% CI {self.ci_low:.3g}, {self.ci_high:.3g}]"
        else:
            ci = "[no CI]"
        return (
            f"slope {self.slope:.3g} {ci} "
            f"({self.statistic}, {self.n_used} n, {self.n_failed} failed)"
        )


def fit_rate(
    n,
    losses,
    *,
    statistic="mean",
    trim=0.1,
    n_boot=1000,
    ci=0.95,
    rng=None,
    failed=None,
) -> RateFit:
    """Fit ``loss(n) ~ C n^slope`` with a stratified bootstrap CI for the slope.

    Parameters
    ----------
    n : array_like, shape (m,)
        Sample size of each observation (one row per (n, replication)).
    losses : array_like, shape (m,)
        Loss of each observation. NaN or inf marks a failed fit.
    statistic : {"mean", "median", "trimmed"}
        Location statistic of the losses within each ``n``; ``"trimmed"`` is
        the trimmed mean of :func:`scipy.stats.trim_mean` (``int(trim * r)``
        of the ``r`` valid losses cut from each end).
    trim : float in [0, 0.5)
        Trimming proportion for ``"trimmed"``.
    n_boot : int >= 0
        Bootstrap resamples; 0 skips the bootstrap (CI is NaN).
    ci : float in (0, 1)
        Confidence level of the percentile interval.
    rng : None, int or numpy.random.Generator
        Passed to :func:`numpy.random.default_rng`.
    failed : array_like of bool, shape (m,), optional
        Extra failure flags; flagged rows are treated like NaN losses.

    Returns
    -------
    RateFit

    Notes
    -----
    With ``S_i`` the statistic of the valid losses at the unique sizes ``n_i``,
    ``x_i = log n_i`` and ``y_i = log S_i``, the model
    ``log L = log C + slope * log n`` is fitted by OLS::

        slope = sum (x_i - xbar)(y_i - ybar) / sum (x_i - xbar)^2
        intercept = ybar - slope * xbar          (= log C)

    Failed rows (non-finite loss or ``failed``) are excluded from ``S_i`` and
    counted; an ``n`` whose rows all failed is left out of the fit. At least two
    distinct ``n`` with a finite statistic are required.

    Bootstrap: for ``b = 1..n_boot`` and every ``n_i`` independently, draw
    ``r_i`` of the ``r_i`` valid losses at ``n_i`` with replacement, recompute
    ``S_i^*`` and the OLS slope ``slope_b^*``. The interval is the
    ``(1 - ci)/2`` and ``(1 + ci)/2`` empirical quantiles of ``slope_b^*``.
    """
    _check_options(statistic, trim)
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)
    n_values, groups, n_failed_per_n = _group(n, losses, failed)
    reps = np.array([g.size for g in groups], dtype=int)
    stat_values = np.full(n_values.size, np.nan)
    for i, g in enumerate(groups):
        if g.size:
            stat_values[i] = _statistic(g, statistic, trim)
    use = np.flatnonzero(np.isfinite(stat_values))
    if use.size < 2:
        raise ValueError(
            "need at least 2 distinct n with a finite statistic (valid losses) to "
            f"fit a rate; n values {n_values.tolist()} have "
            f"{reps.tolist()} valid and {n_failed_per_n.tolist()} failed replications"
        )
    x = np.log(n_values[use])
    slope, intercept = _ols(x, np.log(stat_values[use]))

    ci_low = ci_high = float("nan")
    if n_boot > 0:
        gen = np.random.default_rng(rng)
        boot = np.empty((n_boot, use.size))
        for j, i in enumerate(use):
            g = groups[i]
            idx = gen.integers(0, g.size, size=(n_boot, g.size))
            boot[:, j] = _statistic(g[idx], statistic, trim, axis=1)
        xc = x - x.mean()
        yb = np.log(boot)
        slopes = (yb - yb.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        alpha = 1.0 - float(ci)
        ci_low, ci_high = (float(q) for q in np.quantile(slopes, [alpha / 2, 1 - alpha / 2]))

    label = f"{trim:g}-trimmed mean" if statistic == "trimmed" else statistic
    method = f"OLS of log({label} loss) on log n"
    method += f"; stratified bootstrap percentile CI ({n_boot} resamples)" if n_boot else "; no CI"
    return RateFit(
        slope=slope,
        intercept=intercept,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_level=float(ci),
        statistic=statistic,
        n_values=_frozen(n_values),
        stat_values=_frozen(stat_values),
        n_failed=int(n_failed_per_n.sum()),
        n_failed_per_n=_frozen(n_failed_per_n),
        n_reps_per_n=_frozen(reps),
        n_boot=n_boot,
        method=method,
        trim=float(trim),
    )


def fit_rates(n, losses, statistics=STATISTICS, **kw) -> dict[str, RateFit]:
    """:func:`fit_rate` for each statistic in ``statistics``; keyword arguments
    are passed through. Returns ``{statistic: RateFit}``.

    An integer (or None) ``rng`` seeds every statistic's bootstrap identically;
    a :class:`numpy.random.Generator` is consumed in order.
    """
    return {s: fit_rate(n, losses, statistic=s, **kw) for s in statistics}


def local_slopes(n, losses, *, window=5, statistic="median", trim=0.1, failed=None):
    """Local power-law slopes over sliding windows of consecutive sample sizes.

    Parameters
    ----------
    n, losses, failed, statistic, trim
        As in :func:`fit_rate` (failed rows are dropped; an ``n`` whose rows all
        failed is skipped).
    window : int, 2 <= window <= number of usable unique n
        Number of consecutive unique ``n`` per window (step 1).

    Returns
    -------
    pandas.DataFrame
        One row per window with columns ``n_center`` (geometric mean of the
        window's ``n``), ``slope`` (OLS slope of ``log stat`` on ``log n`` in the
        window), ``n_low`` and ``n_high`` (window ends).

    Notes
    -----
    For ``L = C n^s`` every local slope equals ``s``. For a rate slower than any
    polynomial, e.g. ``L = 1/log n``, ``d log L / d log n = -1/log n``, so the
    local slope increases towards 0 as ``n`` grows.
    """
    _check_options(statistic, trim)
    n_values, groups, _ = _group(n, losses, failed)
    keep = [i for i, g in enumerate(groups) if g.size]
    if isinstance(window, bool) or int(window) != window or not (2 <= window <= len(keep)):
        raise ValueError(
            f"window must be an integer with 2 <= window <= {len(keep)} "
            f"(the number of unique n with valid losses), got {window!r}"
        )
    window = int(window)
    nk = n_values[keep]
    x = np.log(nk)
    y = np.log([_statistic(groups[i], statistic, trim) for i in keep])
    rows = []
    for s in range(len(keep) - window + 1):
        xs, ys = x[s : s + window], y[s : s + window]
        rows.append(
            {
                "n_center": float(np.exp(xs.mean())),
                "slope": _ols(xs, ys)[0],
                "n_low": float(nk[s]),
                "n_high": float(nk[s + window - 1]),
            }
        )
    return pd.DataFrame(rows, columns=["n_center", "slope", "n_low", "n_high"])
