"""Rate fitting for convergence-rate studies: ``loss(n) ~ C n^slope``.

A simulation study produces one loss per (sample size ``n``, replication). The
rate is read off the power-law model

.. math::

    \\log L(n) = \\log C + \\text{slope} \\cdot \\log n ,

fitted by ordinary least squares of ``log(stat_n)`` on ``log n``, where
``stat_n`` is a location statistic (mean, median or trimmed mean) of the losses
observed at ``n``. Occasional optimiser failures (EM stuck in a bad fixed point,
NaN/inf losses) can dominate the mean and swing the slope (the user guide's *Simulations*, rates),
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
With ``n_boot > 0`` every local slope gets a stratified-bootstrap interval (the
same resampling as :func:`fit_rate`), and :func:`last_decade_slope` fits the rate
over the last decade of ``n`` only, so that a plateau is not summarised by one
straight line. :func:`cell_theory_slope` gives the theory slope of a parameter
block of a Voronoi cell of a given size (the user guide's *Simulations*, rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["RateFit", "fit_rate", "fit_rates", "local_slopes", "last_decade_slope",
           "cell_theory_slope", "STATISTICS"]

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


def _boot_stats(groups, idx_use, statistic, trim, n_boot, gen):
    """Stratified bootstrap of the per-n statistic: array (n_boot, len(idx_use)).

    For every used ``n`` (in order) the ``r`` valid losses are resampled with
    replacement ``n_boot`` times and the statistic recomputed.
    """
    boot = np.empty((n_boot, len(idx_use)))
    for j, i in enumerate(idx_use):
        g = groups[i]
        idx = gen.integers(0, g.size, size=(n_boot, g.size))
        boot[:, j] = _statistic(g[idx], statistic, trim, axis=1)
    return boot


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
    distinct ``n`` with a finite statistic are required.

    Bootstrap: for ``b = 1..n_boot`` and every ``n_i`` independently, draw
    ``r_i`` of the ``r_i`` valid losses at ``n_i`` with replacement, recompute
    ``S_i^*`` and the OLS slope ``slope_b^*``. The interval is the
    ``(1 - ci)/2`` and ``(1 + ci)/2`` empirical quantiles of ``slope_b^*``.

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
    x = np.log(n_values[use])
    slope, intercept = _ols(x, np.log(stat_values[use]))

    ci_low = ci_high = float("nan")
    slopes = intercepts = np.empty(0)
    if n_boot > 0:
        gen = np.random.default_rng(rng)
        boot = _boot_stats(groups, use, statistic, trim, n_boot, gen)
        xc = x - x.mean()
        yb = np.log(boot)
        slopes = (yb - yb.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        intercepts = yb.mean(axis=1) - slopes * x.mean()
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


def local_slopes(n, losses, *, window=5, statistic="median", trim=0.1, failed=None,
                 n_boot=0, ci=0.95, rng=None):
    """Local power-law slopes over sliding windows of consecutive sample sizes.

    With :math:`S_i` the statistic of the valid losses at the usable sizes
    :math:`n_1 < \\dots < n_m`, window :math:`w` and :math:`u_i = \\log n_i`, the
    local slope of the window starting at :math:`s` is the OLS slope

    .. math::

        \\hat s_s = \\frac{\\sum_{i=s}^{s+w-1} (u_i - \\bar u)(\\log S_i - \\overline{\\log S})}
                         {\\sum_{i=s}^{s+w-1} (u_i - \\bar u)^2},

    i.e. with ``window=2`` the slope between consecutive sample sizes,
    :math:`(\\log S_{i+1} - \\log S_i) / (u_{i+1} - u_i)`.

    Parameters
    ----------
    n, losses, failed, statistic, trim
        As in :func:`fit_rate` (failed rows are dropped; an ``n`` whose rows all
        failed is skipped).
    window : int, 2 <= window <= number of usable unique n
        Number of consecutive unique ``n`` per window (step 1).
    n_boot : int >= 0, default=0
        Bootstrap resamples of the intervals (0: no interval, ``ci_low`` and
        ``ci_high`` are NaN).
    ci : float in (0, 1), default=0.95
        Level of the percentile intervals.
    rng : None, int or numpy.random.Generator
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per window with columns ``n_center`` (geometric mean of the
        window's ``n``), ``slope``, ``ci_low`` and ``ci_high`` (the percentile
        interval), ``n_low`` and ``n_high`` (window ends).

    Notes
    -----
    For ``L = C n^s`` every local slope equals ``s``. For a rate slower than any
    polynomial, e.g. ``L = 1/log n``, ``d log L / d log n = -1/log n``, so the
    local slope increases towards 0 as ``n`` grows; a loss that stops decreasing
    (a plateau) has local slopes that go to 0 while a global fit still reports a
    negative slope.

    The intervals use the stratified bootstrap of :func:`fit_rate`: one set of
    ``n_boot`` resamples of the replications within each ``n``, shared by all
    windows (so neighbouring intervals are correlated, as the windows overlap).
    Each interval is marginal (pointwise in ``n``), not simultaneous over the
    windows.

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import local_slopes
    >>> n = np.repeat([1e2, 1e3, 1e4, 1e5], 3)
    >>> loss = np.maximum(n ** -0.5, 0.01)       # a plateau from n = 1e4 on
    >>> local_slopes(n, loss, window=2)["slope"].round(3).tolist()
    [-0.5, -0.5, 0.0]
    """
    _check_options(statistic, trim)
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)
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
    yb = None
    if n_boot > 0:
        yb = np.log(_boot_stats(groups, keep, statistic, trim, n_boot,
                                np.random.default_rng(rng)))
    alpha = 1.0 - float(ci)
    rows = []
    for s in range(len(keep) - window + 1):
        xs, ys = x[s : s + window], y[s : s + window]
        lo = hi = float("nan")
        if yb is not None:
            xc = xs - xs.mean()
            seg = yb[:, s : s + window]
            boot = (seg - seg.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
            lo, hi = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
        rows.append(
            {
                "n_center": float(np.exp(xs.mean())),
                "slope": _ols(xs, ys)[0],
                "ci_low": lo,
                "ci_high": hi,
                "n_low": float(nk[s]),
                "n_high": float(nk[s + window - 1]),
            }
        )
    return pd.DataFrame(rows, columns=["n_center", "slope", "ci_low", "ci_high", "n_low",
                                       "n_high"])


def last_decade_slope(n, losses, *, decades=1.0, failed=None, **kwargs) -> RateFit:
    """The rate fitted over the last ``decades`` decades of ``n`` only.

    With :math:`n_{\\max}` the largest ``n`` with a valid loss, :func:`fit_rate`
    on the rows with :math:`n \\ge n_{\\max} / 10^{\\text{decades}}`. Beside the
    slope over the whole grid it shows where the curve is going: for a power
    law both agree; for a loss that flattens (a plateau, or a rate slower than
    any polynomial) the last-decade slope is closer to 0.

    Parameters
    ----------
    n, losses, failed
        As in :func:`fit_rate`.
    decades : float > 0, default=1.0
        Width of the range, in decades of ``n``.
    **kwargs
        Passed to :func:`fit_rate` (``statistic``, ``n_boot``, ``ci``, ``rng``,
        ``trim``).

    Returns
    -------
    RateFit
        Its :attr:`~RateFit.n_values` are those of the last decade only.

    Raises
    ------
    ValueError
        If fewer than 2 distinct ``n`` with valid losses lie in the range (and
        for the inputs :func:`fit_rate` refuses).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats.rates import fit_rate, last_decade_slope
    >>> n = np.repeat(np.geomspace(1e2, 1e5, 10), 2)
    >>> loss = n ** -0.5 + 1e-2                # converges to a plateau at 0.01
    >>> round(fit_rate(n, loss, n_boot=0).slope, 2)
    -0.31
    >>> round(last_decade_slope(n, loss, n_boot=0).slope, 2)
    -0.18
    """
    if not (isinstance(decades, (int, float)) and not isinstance(decades, bool)
            and decades > 0 and math.isfinite(decades)):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    n_arr = np.asarray(n, dtype=float)
    loss_arr = np.asarray(losses, dtype=float)
    n_values, groups, _ = _group(n_arr, loss_arr, failed)
    valid = [v for v, g in zip(n_values, groups) if g.size]
    if not valid:
        raise ValueError("no valid losses: no last decade to fit")
    lower = max(valid) / 10.0 ** decades
    sel = n_arr >= lower * (1 - 1e-12)
    fail = None if failed is None else np.asarray(failed)[sel]
    if np.unique(n_arr[sel][np.isfinite(loss_arr[sel]) & (
            True if fail is None else ~fail)]).size < 2:
        raise ValueError(
            f"need at least 2 distinct n with valid losses in the last {decades:g} "
            f"decade(s), n >= {lower:g}; got {sorted(set(n_arr[sel].tolist()))}")
    return fit_rate(n_arr[sel], loss_arr[sel], failed=fail, **kwargs)


#: the parameter blocks whose cell exponent is that of the gate slope (the user guide's *Simulations*)
_SLOW_BLOCKS = ("gate_coef", "expert_intercept", "temperature", "gate_slope_over_temperature")
#: the blocks at the faster exponent 1/rbar of a cell with m >= 2 atoms
_FAST_BLOCKS = ("expert_coef", "expert_var")


def cell_theory_slope(block, size):
    """Theory slope of the error of one parameter block of a Voronoi cell.

    Papers.md section 5 ([D]): a true atom matched by one fitted atom has all
    its parameter errors at :math:`n^{-1/2}`; matched by :math:`m \\ge 2`
    fitted atoms, :math:`\\beta_1` and :math:`b` at :math:`n^{-1/(2\\bar r(m))}`
    and :math:`a` and :math:`\\nu` at :math:`n^{-1/\\bar r(m)}`, with
    :math:`\\bar r(2) = 4`, :math:`\\bar r(3) = 6`; the cell's weight sum
    :math:`\\sum_{i \\in A_j} e^{\\beta_{0i}}` at :math:`n^{-1/2}` whatever
    :math:`m`. The temperature (and :math:`\\beta_1/\\tau`) takes the exponent of
    :math:`\\beta_1` (the user guide's *Simulations*, losses and gauges).

    ============ ========= =========== ===========
    block         m = 1     m = 2       m = 3
    ============ ========= =========== ===========
    β₁, b, τ      −1/2      −1/8        −1/12
    a, ν          −1/2      −1/4        −1/6
    weight        −1/2      −1/2        −1/2
    ============ ========= =========== ===========

    Parameters
    ----------
    block : str
        ``"gate_coef"``, ``"expert_coef"``, ``"expert_intercept"``,
        ``"expert_var"``, ``"temperature"``, ``"gate_slope_over_temperature"``
        or ``"weight"``.
    size : int
        Cell size :math:`m = |A_j|` (0: an empty cell).

    Returns
    -------
    float or None
        None where the theory gives no rate: an empty cell (its weight error is
        the true weight; its parameters are undefined), and :math:`m \\ge 4`
        (only :math:`\\bar r(m) \\ge 7` is known) for the parameter blocks.

    Examples
    --------
    >>> from moestats.rates import cell_theory_slope
    >>> cell_theory_slope("gate_coef", 2), cell_theory_slope("expert_var", 2)
    (-0.125, -0.25)
    >>> cell_theory_slope("expert_intercept", 3), cell_theory_slope("expert_coef", 3)
    (-0.08333333333333333, -0.16666666666666666)
    >>> cell_theory_slope("weight", 3), cell_theory_slope("gate_coef", 1)
    (-0.5, -0.5)
    >>> cell_theory_slope("gate_coef", 4) is None
    True
    """
    if block not in _SLOW_BLOCKS + _FAST_BLOCKS + ("weight",):
        raise ValueError(f"unknown parameter block {block!r}; known: "
                         f"{_SLOW_BLOCKS + _FAST_BLOCKS + ('weight',)}")
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise ValueError(f"size must be an integer >= 0, got {size!r}")
    size = int(size)
    if size == 0:
        return None
    if block == "weight" or size == 1:
        return -0.5
    rbar = {2: 4, 3: 6}.get(size)  # [D, Lemma 1]; moestats.losses.rbar
    if rbar is None:
        return None
    return -1.0 / (2 * rbar) if block in _SLOW_BLOCKS else -1.0 / rbar
