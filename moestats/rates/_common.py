"""Shared pieces of the rate fits: statistics, grouping by n, the stratified bootstrap."""

from __future__ import annotations

import math

import numpy as np

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
    n_values, inverse = np.unique(n, return_inverse=True)
    groups = [losses[(inverse == i) & ok] for i in range(n_values.size)]
    n_failed_per_n = np.bincount(inverse[~ok], minlength=n_values.size)
    return n_values, groups, n_failed_per_n.astype(int)


def _log_statistic(stat, n_values, statistic):
    """``log`` of the per-n statistics ``stat`` at ``n_values``; a loss of exactly 0 is a
    valid observation, but a statistic of 0 has no logarithm (ValueError naming the n)."""
    stat = np.asarray(stat, dtype=float)
    zero = stat <= 0
    if zero.any():
        raise ValueError(
            f"the {statistic} loss is 0 at n = {np.asarray(n_values)[zero]}: log(0) is "
            "undefined in a power-law fit; mark these rows in `failed` or add a floor"
        )
    return np.log(stat)


def _log_boot(boot):
    """``log`` of bootstrap statistics (resamples x n) and how many resamples were left
    out: one whose statistic is 0 at some n (it drew only zero losses there) has no
    log-log slope."""
    keep = np.all(boot > 0, axis=1)
    return np.log(boot[keep]), int((~keep).sum())


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
