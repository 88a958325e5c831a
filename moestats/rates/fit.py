"""The rate fit over the whole range of n: :class:`RateFit`, :func:`fit_rate`, :func:`fit_rates`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._common import (STATISTICS, _boot_stats, _check_options, _frozen, _group, _jsonable,
                      _log_boot, _log_statistic, _ols, _statistic)


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
    boot_slopes, boot_intercepts : ndarray
        The ``n_boot`` bootstrap fits (empty without a bootstrap); they give the
        slope interval and the line's pointwise band (:meth:`band`).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import fit_rate
    >>> rng = np.random.default_rng(1)
    >>> n = np.repeat([1e2, 1e3, 1e4], 20)
    >>> fit = fit_rate(n, 3 * n ** -0.5 * rng.lognormal(0, 0.2, n.size), statistic="median",
    ...                n_boot=200, rng=1)
    >>> print(f"{fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]")
    -0.51 [-0.54, -0.49]
    >>> n_c, l_c = fit.centre            # geometric centre of the n-range, fit there
    >>> n_c, bool(np.isclose(l_c, fit.predict(1e3)))
    (1000.0, True)
    >>> lo, hi = fit.band([1e2, 1e4])    # 95% pointwise band of the fitted line
    >>> bool(np.all(lo < fit.predict([1e2, 1e4]))) and bool(np.all(fit.predict([1e2, 1e4]) < hi))
    True
    >>> float(fit.theory_line(-0.5, n_c)) == l_c
    True
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
    boot_slopes: np.ndarray = field(default=None, repr=False)
    boot_intercepts: np.ndarray = field(default=None, repr=False)

    @property
    def n_used(self) -> int:
        """Number of distinct ``n`` entering the fit (finite statistic)."""
        return int(np.isfinite(self.stat_values).sum())

    @property
    def n_range(self) -> tuple:
        """``(n_min, n_max)``: the smallest and largest ``n`` entering the fit."""
        used = self.n_values[np.isfinite(self.stat_values)]
        return float(used.min()), float(used.max())

    @property
    def centre(self) -> tuple:
        """``(n_c, L_c)``: the geometric centre of the fitted n-range and the fit there.

        :math:`n_c = \\sqrt{n_{\\min} n_{\\max}}` and :math:`L_c = e^{a} n_c^{s}`.
        A theory line :math:`L_c (n / n_c)^{s^*}` anchored here (:meth:`theory_line`)
        crosses the fitted line in the middle of the data, so the two slopes are
        compared where the fit is best determined (for a log-spaced grid,
        :math:`\\log n_c` is the mean of the :math:`\\log n`, where the OLS
        prediction has its smallest variance).
        """
        lo, hi = self.n_range
        n_c = math.sqrt(lo * hi)
        return n_c, float(self.predict(n_c))

    def predict(self, n):
        """Fitted loss ``exp(intercept) * n**slope`` at sample size(s) ``n``."""
        return np.exp(self.intercept) * np.asarray(n, dtype=float) ** self.slope

    def theory_line(self, slope, n):
        """The line of slope ``slope`` through :attr:`centre`, at sample size(s) ``n``.

        :math:`L_c (n / n_c)^{\\text{slope}}`.
        """
        n_c, l_c = self.centre
        return l_c * (np.asarray(n, dtype=float) / n_c) ** float(slope)

    def band(self, n):
        """Pointwise bootstrap band of the fitted line at sample size(s) ``n``.

        For bootstrap fits :math:`(a_b, s_b)`, the ``(1 - ci_level)/2`` and
        ``(1 + ci_level)/2`` quantiles over ``b`` of :math:`\\exp(a_b + s_b \\log
        n)`, at every ``n``. Returns ``(low, high)`` arrays (NaN without a bootstrap).
        """
        n = np.asarray(n, dtype=float)
        if self.boot_slopes is None or self.boot_slopes.size == 0:
            nan = np.full(n.shape, np.nan)
            return nan, nan.copy()
        logs = self.boot_intercepts[:, None] + self.boot_slopes[:, None] * np.log(n.ravel())
        alpha = 1.0 - self.ci_level
        lo, hi = np.quantile(logs, [alpha / 2, 1 - alpha / 2], axis=0)
        return np.exp(lo).reshape(n.shape), np.exp(hi).reshape(n.shape)

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
    distinct ``n`` with a finite statistic are required. A loss of exactly 0 is a
    valid observation (e.g. an error fixed by the gauge in some fits); a statistic
    ``S_i = 0`` has no logarithm and is an error.

    Bootstrap: for ``b = 1..n_boot`` and every ``n_i`` independently, draw
    ``r_i`` of the ``r_i`` valid losses at ``n_i`` with replacement, recompute
    ``S_i^*`` and the OLS slope ``slope_b^*``. The interval is the
    ``(1 - ci)/2`` and ``(1 + ci)/2`` empirical quantiles of ``slope_b^*``; a
    resample with ``S_i^* = 0`` at some ``n_i`` has no slope and is left out (the
    ``method`` string counts them).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import fit_rate
    >>> n = np.repeat([1e2, 1e3, 1e4], 4)
    >>> loss = 2 * n ** -0.5
    >>> loss[0] = np.nan                         # one failed fit: left out, counted
    >>> fit = fit_rate(n, loss, statistic="median", n_boot=0)
    >>> round(fit.slope, 6), fit.n_failed, fit.n_reps_per_n.tolist()
    (-0.5, 1, [3, 4, 4])
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
    label = f"{trim:g}-trimmed mean" if statistic == "trimmed" else statistic
    x = np.log(n_values[use])
    slope, intercept = _ols(x, _log_statistic(stat_values[use], n_values[use], label))

    ci_low = ci_high = float("nan")
    slopes = intercepts = np.empty(0)
    dropped = 0
    if n_boot > 0:
        gen = np.random.default_rng(rng)
        yb, dropped = _log_boot(_boot_stats(groups, use, statistic, trim, n_boot, gen))
        xc = x - x.mean()
        slopes = (yb - yb.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        intercepts = yb.mean(axis=1) - slopes * x.mean()
        alpha = 1.0 - float(ci)
        if slopes.size:
            ci_low, ci_high = (float(q) for q in np.quantile(slopes, [alpha / 2, 1 - alpha / 2]))

    left_out = f", {dropped} with a {label} of 0 at some n left out" if dropped else ""
    method = f"OLS of log({label} loss) on log n" + (
        f"; stratified bootstrap percentile CI ({n_boot} resamples{left_out})" if n_boot
        else "; no CI")
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
        boot_slopes=_frozen(slopes),
        boot_intercepts=_frozen(intercepts),
    )


def fit_rates(n, losses, statistics=STATISTICS, **kw) -> dict[str, RateFit]:
    """:func:`fit_rate` for each statistic in ``statistics``; keyword arguments
    are passed through. Returns ``{statistic: RateFit}``.

    An integer (or None) ``rng`` seeds every statistic's bootstrap identically;
    a :class:`numpy.random.Generator` is consumed in order.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import fit_rates
    >>> n = np.repeat([1e2, 1e3, 1e4], 3)
    >>> {s: round(f.slope, 6) for s, f in fit_rates(n, n ** -0.25, n_boot=0).items()}
    {'mean': -0.25, 'median': -0.25, 'trimmed': -0.25}
    """
    return {s: fit_rate(n, losses, statistic=s, **kw) for s in statistics}
