"""Shared pieces of the rate figures: labels, per-n statistics, one rate curve."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..rates import RateFit, fit_rate

_MINUS = "\u2212"


# ----------------------------------------------------------------- helpers
def _fmt(x, spec=".2f"):
    """Format a number with a typographic minus sign."""
    return format(float(x), spec).replace("-", _MINUS)


def _slope_text(slope):
    """``-0.5`` -> ``"-1/2"``, ``-0.125`` -> ``"-1/8"``, else 3 significant digits."""
    frac = Fraction(float(slope)).limit_denominator(64)
    if abs(float(frac) - float(slope)) < 1e-9:
        return str(frac)
    return f"{float(slope):.3g}"


def _theory_label(slope):
    return rf"theory $n^{{{_slope_text(slope)}}}$"


def _fit_label(rf: RateFit):
    text = f"slope {_fmt(rf.slope)}"
    if math.isfinite(rf.ci_low) and math.isfinite(rf.ci_high):
        text += (f" [{100 * rf.ci_level:g}% CI {_fmt(rf.ci_low)}, "
                 f"{_fmt(rf.ci_high)}]")
    return text


def _prefix(name):
    return f"{name}: " if name is not None else ""


def _lookup(value, name):
    """A per-configuration option: a scalar, or a dict keyed by ``fitted``."""
    if isinstance(value, dict):
        return value.get(name)
    return value


def _check_frame(results, column):
    if not isinstance(results, pd.DataFrame):
        raise TypeError(
            f"results must be a pandas DataFrame, got {type(results).__name__}"
        )
    missing = [c for c in ("n", column) if c not in results.columns]
    if missing:
        raise ValueError(
            f"results has no column(s) {missing}; columns are {list(results.columns)}"
        )


def _configs(results, column, fitted):
    """Split ``results`` by configuration.

    Returns a list of ``(name, n, values, status_failed)`` with float arrays
    ``n`` and ``values`` and the boolean mask of rows whose status is not "ok".
    """
    _check_frame(results, column)
    if "fitted" in results.columns:
        available = list(pd.unique(results["fitted"]))
        if fitted is None:
            names = available
        else:
            names = [fitted] if isinstance(fitted, str) else list(fitted)
            unknown = [f for f in names if f not in available]
            if unknown:
                raise ValueError(
                    f"fitted configuration(s) {unknown} not in results; "
                    f"available: {available}"
                )
        frames = [(name, results[results["fitted"] == name]) for name in names]
    else:
        if fitted is not None:
            raise ValueError("fitted was given but results has no 'fitted' column")
        frames = [(None, results)]
    if not frames:
        raise ValueError("no fitted configuration to plot (results is empty)")
    out = []
    for name, df in frames:
        n = df["n"].to_numpy(dtype=float)
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        if "status" in df.columns:
            status_failed = (df["status"] != "ok").to_numpy(dtype=bool)
        else:
            status_failed = np.zeros(n.shape, dtype=bool)
        out.append((name, n, values, status_failed))
    return out


def _per_n(n, values, status_failed, band, trim=0.1):
    """Per-n statistics (mean, median, trimmed mean) and band quantiles of the
    valid values; the trimmed mean is that of :func:`moestats.rates.fit_rate`."""
    ok = np.isfinite(values) & ~status_failed
    n_values = np.unique(n)
    stats = {k: np.full(n_values.size, np.nan)
             for k in ("mean", "median", "trimmed", "low", "high")}
    for i, m in enumerate(n_values):
        g = np.sort(values[ok & (n == m)])
        if g.size:
            cut = int(trim * g.size)
            stats["mean"][i] = g.mean()
            stats["median"][i] = np.median(g)
            stats["trimmed"][i] = g[cut:g.size - cut].mean()
            if band is not None:
                stats["low"][i], stats["high"][i] = np.quantile(g, band)
    return n_values, stats, int((~ok).sum()), int(n.size)


def _try_fit(name, column, n, values, status_failed, statistic, n_boot, rng):
    try:
        return fit_rate(n, values, statistic=statistic, n_boot=n_boot, rng=rng,
                        failed=status_failed)
    except ValueError as exc:
        warnings.warn(f"no rate fit for {_prefix(name)}{column}: {exc}", UserWarning,
                      stacklevel=3)
        return None


def _check_band(band):
    if band is None:
        return None
    lo, hi = (float(b) for b in band)
    if not (0.0 <= lo < hi <= 1.0):
        raise ValueError(f"band must be two quantiles 0 <= low < high <= 1, got {band!r}")
    return lo, hi


def _draw_rate(ax, name, color, n, values, status_failed, *, column, statistic,
               band, theory_slope, rate_fit, markers, n_boot, rng, label_band=True):
    """Markers, band, fitted line and theory line of one configuration."""
    n_values, st, n_failed, n_rows = _per_n(n, values, status_failed, band)
    pre = _prefix(name)
    failed_txt = f" ({n_failed} of {n_rows} fits failed)" if n_failed > 0 else ""
    key = name if name is not None else ""

    if band is not None:
        has = np.isfinite(st["low"])
        if has.any():
            ax.fill_between(
                n_values[has], st["low"][has], st["high"][has], color=color,
                alpha=0.18, linewidth=0, gid=f"band:{key}",
                label=(f"{pre}{100 * band[0]:g}\u2013{100 * band[1]:g}% quantiles"
                       if label_band else "_nolegend_"),
            )
    for k, stat in enumerate(markers):
        filled = stat != "median" or len(markers) == 1
        ax.plot(
            n_values, st[stat], linestyle="none",
            marker="s" if stat == "median" else "o", markersize=5, color=color,
            markerfacecolor=color if filled else "none", markeredgewidth=1.2,
            gid=f"{stat}:{key}",
            label=f"{pre}{stat}" + (failed_txt if k == 0 else ""),
        )

    if rate_fit is None:
        rate_fit = _try_fit(name, column, n, values, status_failed, statistic, n_boot, rng)
    if rate_fit is not None:
        used = rate_fit.n_values[np.isfinite(rate_fit.stat_values)]
        ends = np.array([used.min(), used.max()], dtype=float)
        ax.plot(ends, rate_fit.predict(ends), color=color, linewidth=1.6,
                gid=f"fit:{key}",
                label=f"{pre}{rate_fit.statistic} fit, {_fit_label(rate_fit)}")
        anchor = float(rate_fit.predict(ends[0]))
    else:  # no fit: anchor the theory line at the first valid statistic
        ok = np.isfinite(st[statistic]) & (st[statistic] > 0)
        if not ok.any():
            return None
        ends = n_values[ok][[0, -1]].astype(float)
        anchor = float(st[statistic][ok][0])

    slope = _lookup(theory_slope, name)
    if slope is not None and ends[1] > ends[0]:
        ax.plot(ends, anchor * (ends / ends[0]) ** float(slope), color=color,
                linestyle="--", linewidth=1.3, alpha=0.9, gid=f"theory:{key}",
                label=f"{pre}{_theory_label(slope)}")
    return rate_fit


def _new_axes(ax, figsize):
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.subplots()
    return ax.figure, ax
