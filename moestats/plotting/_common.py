"""Shared pieces of the rate figures: labels, log ticks, per-configuration data, one rate curve."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator

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


def _n_text(n):
    """A sample size as plain text: ``1e4``, ``3.2e3``, ``500``."""
    n = float(n)
    if n < 1e3:
        return f"{n:.0f}"
    k = math.floor(math.log10(n))
    m = n / 10 ** k
    return f"1e{k}" if abs(m - 1) < 0.05 else f"{m:.1f}e{k}"


def _prefix(name):
    return f"{name}: " if name is not None else ""


def _lookup(value, name):
    """A per-configuration option: a scalar, or a dict keyed by ``fitted``."""
    if isinstance(value, dict):
        return value.get(name)
    return value


def _is_density(column, loss_name=None):
    return "density" in str(column) or (loss_name is not None and "density" in str(loss_name))


def loss_axis_label(column, loss_name=None, gauges=()):
    """The axis label of a loss: its name and its gauge.

    ``"D2 (gauge: slope)"``; a density error (gauge-free) says so; a loss whose
    gauge the results do not record says that too.

    Examples
    --------
    >>> from moestats.plotting import loss_axis_label
    >>> loss_axis_label("loss", "D2", ["slope"])
    'D2 (gauge: slope)'
    >>> loss_axis_label("loss_density")
    'loss_density (Hellinger density error; gauge-free)'
    >>> loss_axis_label("loss", "D1")
    'D1 (gauge: not recorded)'
    """
    name = loss_name or column
    if _is_density(column, loss_name):
        return f"{name} (Hellinger density error; gauge-free)"
    gauges = [g for g in gauges if isinstance(g, str)]
    return f"{name} (gauge: {'/'.join(gauges) if gauges else 'not recorded'})"


# ------------------------------------------------------------------- ticks
class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers: ``1e2``, ``1e3`` (``0.1``, ``1``, ``10``), and
    ``2``, ``5``, ``0.03`` for the minor ticks labelled on a short axis."""

    def _num_to_string(self, x, vmin, vmax):
        k = math.log10(x)
        if abs(k - round(k)) < 1e-9:
            k = int(round(k))
            return {-1: "0.1", 0: "1", 1: "10"}.get(k, f"1e{k}")
        if 1e-3 <= x < 1e3:
            return f"{x:.3g}"
        k = math.floor(k + 1e-9)
        return f"{x / 10 ** k:.2g}e{k}"


def _log_axis(ax, which="both"):
    """Log scale with decade ticks labelled ``1e2, 1e3, ...`` on ``which`` axis/axes."""
    axes = {"x": [ax.xaxis], "y": [ax.yaxis], "both": [ax.xaxis, ax.yaxis]}[which]
    for axis in axes:
        (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
        axis.set_major_locator(LogLocator(base=10.0))
        axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1.0, 0.4)))
        axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1.0, 0.4)))


def _grid(ax):
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.15)


# ------------------------------------------------------------ configurations
@dataclass
class _Config:
    """One fitted configuration's rows: float ``n`` and ``values``; boolean ``failed``
    (status not "ok") and ``uncertified`` (a stored certificate that does not hold);
    ``cert_known`` (a certificate is stored); ``passes`` (float, NaN if unknown);
    ``gauges`` (the loss gauges recorded)."""

    name: object
    n: np.ndarray
    values: np.ndarray
    failed: np.ndarray
    uncertified: np.ndarray
    cert_known: np.ndarray
    passes: np.ndarray
    gauges: list

    @property
    def key(self):
        return self.name if self.name is not None else ""

    def excluded(self, certified_only=True):
        """Rows left out of every statistic: failed, non-finite, or (by default)
        uncertified."""
        out = self.failed | ~np.isfinite(self.values)
        return out | self.uncertified if certified_only else out


def _certified_column(df):
    """``(certified, known)`` boolean arrays from a ``certified`` column or the
    ``certificate`` JSON (known False where no certificate is stored)."""
    m = len(df)
    if "certified" in df.columns:
        col = pd.array(df["certified"], dtype="boolean")
        known = ~np.asarray(col.isna(), dtype=bool)
        return np.asarray(col.fillna(True), dtype=bool), known
    if "certificate" in df.columns:
        cert, known = np.ones(m, bool), np.zeros(m, bool)
        for i, text in enumerate(df["certificate"]):
            try:
                c = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                c = None
            if isinstance(c, dict) and c.get("certified") is not None:
                cert[i], known[i] = bool(c["certified"]), True
        return cert, known
    return np.ones(m, bool), np.zeros(m, bool)


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


def _config_frames(results, fitted):
    """``[(name, frame)]`` per configuration (name None without a ``fitted`` column)."""
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
    return frames


def _configs(results, column, fitted):
    """Split ``results`` by configuration: a list of :class:`_Config`."""
    _check_frame(results, column)
    out = []
    for name, df in _config_frames(results, fitted):
        n = df["n"].to_numpy(dtype=float)
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        failed = ((df["status"] != "ok").to_numpy(dtype=bool) if "status" in df.columns
                  else np.zeros(n.shape, dtype=bool))
        certified, known = _certified_column(df)
        passes = (pd.to_numeric(df["passes"], errors="coerce").to_numpy(dtype=float)
                  if "passes" in df.columns else np.full(n.shape, np.nan))
        gauges = (sorted({g for g in df["loss_gauge"] if isinstance(g, str)})
                  if "loss_gauge" in df.columns else [])
        out.append(_Config(name, n, values, failed, ~failed & known & ~certified, known,
                           passes, gauges))
    return out


def _per_n(n, values, excluded, band, trim=0.1):
    """Per-n statistics (mean, median, trimmed mean) and band quantiles of the
    values not ``excluded``; the trimmed mean is that of :func:`moestats.rates.fit_rate`."""
    ok = np.isfinite(values) & ~excluded
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
    return n_values, stats


#: errors at or below this are rounding: a block fixed by the gauge or by the model's
#: form (e.g. within-cell weight shares of a top-1 truth, which sum to 1)
ROUNDING_ZERO = 1e-12


def _zero_reason(used):
    """Why the errors ``used`` estimate nothing (they are all 0, or all at the rounding
    level ``ROUNDING_ZERO``), or ``""`` when they do."""
    if used.size and np.all(used == 0):
        return "identically 0 (fixed by the gauge)"
    if used.size and np.all(np.abs(used) <= ROUNDING_ZERO):
        return f"identically 0 up to rounding (<= {ROUNDING_ZERO:g}: fixed by the model)"
    return ""


def _try_fit(name, column, n, values, excluded, statistic, n_boot, rng, fit=fit_rate):
    try:
        return fit(n, values, statistic=statistic, n_boot=n_boot, rng=rng, failed=excluded)
    except ValueError as exc:
        warnings.warn(f"no {statistic} rate fit for {_prefix(name)}{column}: {exc}",
                      UserWarning, stacklevel=3)
        return None


def _check_band(band):
    if band is None:
        return None
    lo, hi = (float(b) for b in band)
    if not (0.0 <= lo < hi <= 1.0):
        raise ValueError(f"band must be two quantiles 0 <= low < high <= 1, got {band!r}")
    return lo, hi


def _statistics(statistic):
    """The statistics to fit, median first (the theory line's anchor)."""
    from ..rates import STATISTICS
    stats = [statistic] if isinstance(statistic, str) else list(statistic)
    for s in stats:
        if s not in STATISTICS:
            raise ValueError(f"unknown statistic {s!r}; expected one of {STATISTICS}")
    if not stats:
        raise ValueError("statistic is empty")
    return stats


_FIT_STYLE = {"median": ("-", 1.8, 0.24), "mean": ("-.", 1.3, 0.10),
              "trimmed": (":", 1.3, 0.10)}


def _draw_fit(ax, rate_fit, color, gid, label, style):
    """A fitted line over its n-range with its pointwise bootstrap band."""
    lo, hi = rate_fit.n_range
    grid = np.geomspace(lo, hi, 40) if hi > lo else np.array([lo, hi])
    linestyle, width, alpha = style
    ax.plot(grid, rate_fit.predict(grid), color=color, linestyle=linestyle, linewidth=width,
            gid=f"fit:{gid}", label=label)
    b_lo, b_hi = rate_fit.band(grid)
    if np.isfinite(b_lo).all():
        ax.fill_between(grid, b_lo, b_hi, color=color, alpha=alpha, linewidth=0,
                        gid=f"fitband:{gid}", label="_nolegend_")


def _draw_theory(ax, anchor_fit, slope, color, gid, label):
    """The theory line through ``anchor_fit``'s centre, over its n-range."""
    lo, hi = anchor_fit.n_range
    if not hi > lo:
        return
    ends = np.array([lo, hi])
    ax.plot(ends, anchor_fit.theory_line(slope, ends), color=color, linestyle="--",
            linewidth=1.3, alpha=0.9, gid=f"theory:{gid}", label=label)


def _draw_rate(ax, cfg, color, *, column, statistics, band, theory_slope, rate_fits,
               markers, n_boot, rng, certified_only=True, label_band=True,
               show_uncertified=True):
    """Markers, spread whiskers, fitted lines with bands, theory line and uncertified
    fits of one configuration; returns ``{statistic: RateFit}``."""
    excluded = cfg.excluded(certified_only)
    pre, key = _prefix(cfg.name), cfg.key
    zero = _zero_reason(cfg.values[~excluded])
    if zero:  # nothing to estimate: no markers at the rounding level, only the legend
        ax.plot([], [], color=color, marker="s", linestyle="none", gid=f"zero:{key}",
                label=f"{pre}{zero}")
        return {}
    n_values, st = _per_n(cfg.n, cfg.values, excluded, band)
    n_rows = cfg.n.size
    bad = cfg.failed | ~np.isfinite(cfg.values)
    n_failed = int(bad.sum())
    notes = []
    if n_failed:
        notes.append(f"{n_failed} of {n_rows} fits failed")
    failed_txt = f" ({'; '.join(notes)})" if notes else ""

    if band is not None:
        has = np.isfinite(st["low"])
        if has.any():
            ax.vlines(n_values[has], st["low"][has], st["high"][has], color=color,
                      alpha=0.45, linewidth=1.0, gid=f"band:{key}",
                      label=(f"{pre}{100 * band[0]:g}\u2013{100 * band[1]:g}% of fits"
                             if label_band else "_nolegend_"))
    for k, stat in enumerate(markers):
        filled = stat != "median" or len(markers) == 1
        ax.plot(n_values, st[stat], linestyle="none",
                marker="s" if stat == "median" else "o", markersize=5, color=color,
                markerfacecolor=color if filled else "none", markeredgewidth=1.2,
                gid=f"{stat}:{key}", label=f"{pre}{stat}" + (failed_txt if k == 0 else ""))

    unc = cfg.uncertified & ~bad
    if show_uncertified and unc.any():
        what = "excluded from the statistics" if certified_only else "included"
        shown = unc & (cfg.values > 0)
        ax.plot(cfg.n[shown], cfg.values[shown], linestyle="none", marker="x", markersize=6,
                color=color, markeredgewidth=1.3, gid=f"uncertified:{key}",
                label=f"{pre}uncertified fits: {int(unc.sum())} of {n_rows} ({what})")

    fits = {}
    given = rate_fits if isinstance(rate_fits, dict) else (
        {rate_fits.statistic: rate_fits} if isinstance(rate_fits, RateFit) else {})
    for stat in statistics:
        rf = given.get(stat) or _try_fit(cfg.name, column, cfg.n, cfg.values, excluded,
                                         stat, n_boot, rng)
        if rf is None:
            continue
        fits[stat] = rf
        _draw_fit(ax, rf, color, f"{stat}:{key}", f"{pre}{stat} fit, {_fit_label(rf)}",
                  _FIT_STYLE[stat])
    for stat, rf in given.items():  # a precomputed fit of another statistic
        if stat not in fits:
            fits[stat] = rf
            _draw_fit(ax, rf, color, f"{stat}:{key}", f"{pre}{stat} fit, {_fit_label(rf)}",
                      _FIT_STYLE[stat])

    slope = _lookup(theory_slope, cfg.name)
    anchor = fits.get("median") or next(iter(fits.values()), None)
    if slope is not None and anchor is not None:
        n_c, _ = anchor.centre
        _draw_theory(ax, anchor, slope, color, key,
                     f"{pre}{_theory_label(slope)} through the {anchor.statistic} fit "
                     f"at n = {_n_text(n_c)}")
    return fits


def _x_grid(x, num=400):
    """``num`` points evenly spaced over the range of ``x`` (widened by 1 if constant)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, num)


def _expert_label(j, a, b, x="x"):
    """The mean line of expert ``j`` (0-based): ``"expert 1: 2.5 x − 0.3"``."""
    return f"expert {j + 1}: {_fmt(a, '.3g')} {x} {'+' if b >= 0 else _MINUS} {abs(b):.3g}"


def _new_axes(ax, figsize):
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.subplots()
    return ax.figure, ax
