"""Figures for convergence-rate studies and fitted one-dimensional models.

Input of the rate plots is a simulation-results :class:`pandas.DataFrame` with
one row per (fitted configuration, sample size, replication):

``fitted`` (str)
    Name of the fitted configuration (e.g. ``"k3"``). Optional: without it the
    whole frame is one configuration.
``n`` (int)
    Sample size.
``replication`` (int)
    Replication index (not used by the plots).
``status`` (``"ok"`` or ``"failed"``)
    Optional; rows whose status is not ``"ok"`` are failed fits.
``loss`` (float, NaN if failed)
    And any other loss column (``loss_ratio``, ``density_error``, ...) or
    per-parameter error column (``err_gate_coef``, ``err_expert_coef``,
    ``err_expert_intercept``, ``err_expert_var``, ``err_weight``,
    ``err_temperature``, ``err_gate_slope_over_temperature``; papers.md
    section 4).

A row is a *failed fit* for a column when its status is not ``"ok"`` or the
column's value is not finite. Failed fits are excluded from every statistic,
band and rate fit, and counted in the legend (papers.md section 5: occasional EM
failures must be reported, never silently averaged). Rate fits are those of
:func:`moestats.rates.fit_rate` (OLS of the log statistic on ``log n`` with a
stratified-bootstrap CI); local slopes are those of
:func:`moestats.rates.local_slopes`.

All functions use Matplotlib's object API (:class:`matplotlib.figure.Figure`,
never ``pyplot``), so they work in any backend, threads and batch jobs; save
with ``fig.savefig(path)``. Every function returns the Figure; the single-axes
ones accept ``ax=`` to draw into an existing Axes (and then return
``ax.figure``).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .rates import STATISTICS, RateFit, fit_rate, local_slopes

__all__ = [
    "plot_rate",
    "plot_parameter_errors",
    "plot_local_slopes",
    "plot_rate_summary",
    "plot_fit_1d",
    "PARAMETER_ERROR_COLUMNS",
]

#: Per-parameter error columns, in panel order, with their panel titles.
PARAMETER_ERROR_COLUMNS = {
    "err_gate_coef": r"gate slope $\beta_1$",
    "err_expert_coef": r"expert slope $a$",
    "err_expert_intercept": r"expert intercept $b$",
    "err_expert_var": r"expert variance $\nu$",
    "err_weight": r"cell weight sums $\sum e^{\beta_0}$",
    "err_temperature": r"temperature $\tau$",
    "err_gate_slope_over_temperature": r"gate slope / temperature $\beta_1/\tau$",
}

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


# ------------------------------------------------------------- public API
def plot_rate(results, *, column="loss", fitted=None, statistic="mean",
              theory_slope=None, band=(0.1, 0.9), rate_fits=None, ax=None,
              title=None, ylabel=None, n_boot=1000, rng=0):
    """Log-log plot of a loss against the sample size, with its fitted rate.

    For each fitted configuration (one colour each): the per-``n`` mean
    (filled circles) and median (open squares) over the replications, a shaded
    band between the per-``n`` quantiles ``band``, the OLS line of
    :func:`moestats.rates.fit_rate` for ``statistic`` with its slope and
    bootstrap CI in the legend, and optionally the theory slope as a dashed
    line through the fitted line's value at the smallest ``n``.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results, one row per (fitted, n, replication); see the
        module docstring for the columns.
    column : str, default="loss"
        Loss column to plot.
    fitted : str or list of str, optional
        Configuration(s) to plot; all those in ``results`` by default (in order
        of appearance).
    statistic : {"mean", "median", "trimmed"}, default="mean"
        Statistic whose power law is fitted.
    theory_slope : float or dict, optional
        Theoretical slope (e.g. ``-0.5``), or ``{fitted: slope}``; None (or a
        missing key / None value) draws no reference line.
    band : (float, float) or None, default=(0.1, 0.9)
        Quantiles of the spread band over replications; None for no band.
    rate_fits : dict, optional
        Precomputed ``{fitted: RateFit}`` to use instead of fitting (its own
        statistic is shown in the legend).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new Figure is made otherwise.
    title, ylabel : str, optional
        Axes title (none by default) and y label (``column`` by default).
    n_boot : int, default=1000
        Bootstrap resamples of the slope CI (0: no CI).
    rng : None, int or numpy.random.Generator, default=0
        Seed of the bootstrap (an int seeds every configuration identically).

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure, or ``ax.figure``.

    Notes
    -----
    Failed fits (status not ``"ok"`` or a non-finite loss) are excluded and
    their count appears in the configuration's first legend label. If the rate
    cannot be fitted (fewer than two ``n`` with valid losses, or a zero loss) a
    :class:`UserWarning` is issued and the line is omitted. Every artist carries
    a ``gid`` of the form ``"<kind>:<fitted>"`` with kind one of ``mean``,
    ``median``, ``band``, ``fit``, ``theory``.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    band = _check_band(band)
    fig, ax = _new_axes(ax, (6.4, 6.0))
    rate_fits = rate_fits or {}
    configs = _configs(results, column, fitted)
    n_configs = len(configs)
    for i, (name, n, values, status_failed) in enumerate(configs):
        _draw_rate(ax, name, f"C{i}", n, values, status_failed, column=column,
                   statistic=statistic, band=band, theory_slope=theory_slope,
                   rate_fit=rate_fits.get(name), markers=("mean", "median"),
                   n_boot=n_boot, rng=rng)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size n")
    ax.set_ylabel(column if ylabel is None else ylabel)
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.15)
    if title is not None:
        ax.set_title(title)
    # Below the axes, one column per configuration: the legend (up to five
    # entries per configuration) never hides the data.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncols=min(n_configs, 3), frameon=False)
    return fig


def plot_parameter_errors(results, *, fitted=None, columns=None, theory=None,
                          statistic="median", band=(0.1, 0.9), n_boot=1000, rng=0):
    """Per-parameter error rates: one log-log panel per parameter block.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results with per-parameter error columns ``err_*``.
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default), one colour each.
    columns : list of str, optional
        Columns to plot, one panel each. By default every ``err_*`` column of
        ``results`` with at least one positive finite value (a block that is
        not estimated, e.g. a fixed temperature, has error 0 and is skipped),
        in the order of :data:`PARAMETER_ERROR_COLUMNS`, then the others.
    theory : dict, optional
        ``{column: slope}`` (or ``{column: {fitted: slope}}``) reference
        slopes, drawn dashed through the fitted line at the smallest ``n``;
        e.g. for a true atom matched by two fitted atoms (papers.md section 5)
        ``{"err_gate_coef": -1/8, "err_expert_intercept": -1/8,
        "err_expert_coef": -1/4, "err_expert_var": -1/4, "err_weight": -1/2}``.
    statistic : {"mean", "median", "trimmed"}, default="median"
        Statistic shown as markers and fitted (median by default: robust to
        the occasional failed EM run).
    band : (float, float) or None, default=(0.1, 0.9)
        Quantiles of the spread band over replications.
    n_boot : int, default=1000
        Bootstrap resamples of the slope CIs.
    rng : None, int or numpy.random.Generator, default=0
        Seed of the bootstrap.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per plotted column (unused grid cells are removed).

    Raises
    ------
    ValueError
        If no parameter-error column is present, or a requested column is
        missing.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    band = _check_band(band)
    if columns is None:
        errs = [c for c in results.columns if str(c).startswith("err_")]
        order = [c for c in PARAMETER_ERROR_COLUMNS if c in errs]
        order += [c for c in errs if c not in PARAMETER_ERROR_COLUMNS]
        columns = []
        for c in order:
            v = pd.to_numeric(results[c], errors="coerce").to_numpy(dtype=float)
            if np.any(np.isfinite(v) & (v > 0)):
                columns.append(c)
        if not columns:
            raise ValueError(
                "results has no err_* column with positive finite values; "
                f"columns are {list(results.columns)}"
            )
    else:
        columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in columns if c not in results.columns]
        if missing:
            raise ValueError(f"results has no column(s) {missing}")
        if not columns:
            raise ValueError("columns is empty")
    theory = theory or {}
    m = len(columns)
    ncols = min(m, 3)
    nrows = -(-m // ncols)
    fig = Figure(figsize=(4.8 * ncols, 5.0 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[m:]:
        ax.remove()
    for ax, col in zip(axes, columns):
        for i, (name, n, values, status_failed) in enumerate(_configs(results, col, fitted)):
            _draw_rate(ax, name, f"C{i}", n, values, status_failed, column=col,
                       statistic=statistic, band=band, theory_slope=theory.get(col),
                       rate_fit=None, markers=(statistic,), n_boot=n_boot, rng=rng,
                       label_band=False)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(PARAMETER_ERROR_COLUMNS.get(col, col))
        ax.set_xlabel("sample size n")
        ax.set_ylabel(col)
        ax.grid(True, which="major", alpha=0.5)
        ax.grid(True, which="minor", alpha=0.15)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  frameon=False)
    what = f"{100 * band[0]:g}\u2013{100 * band[1]:g}% quantile band, " if band else ""
    fig.suptitle(
        f"Voronoi-matched parameter errors: {statistic} over replications (markers), "
        f"{what}OLS fit of log {statistic} on log n",
        fontsize="medium",
    )
    return fig


def plot_local_slopes(results, *, column="loss", fitted=None, window="auto",
                      statistic="median", theory_slope=None, ax=None):
    """Local power-law slope profile of a loss against the sample size.

    Each point is the OLS slope of ``log statistic`` on ``log n`` over a window
    of ``window`` consecutive sample sizes (:func:`moestats.rates.local_slopes`),
    plotted at the window's geometric centre on a log x axis. A power law gives
    a flat profile; a rate slower than any polynomial drifts up towards 0.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results (see the module docstring).
    column : str, default="loss"
        Loss column.
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default), one colour each.
    window : int or "auto", default="auto"
        Consecutive sample sizes per window; an integer is lowered (with a
        :class:`UserWarning`) for a configuration with fewer usable ``n``.
        ``"auto"`` takes an eighth of the usable sample sizes, at least 5 (and at
        most their number): 5 on a quick grid, 25 on the papers' 200-point grid,
        where windows of 5 neighbouring n would mostly show replication noise.
    statistic : {"mean", "median", "trimmed"}, default="median"
        Location statistic of the losses at each ``n``.
    theory_slope : float or dict, optional
        Theoretical slope, or ``{fitted: slope}``, drawn as a dashed
        horizontal line.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new Figure is made otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure, or ``ax.figure``.

    Notes
    -----
    A solid grey horizontal line marks slope 0 (no convergence); artists carry
    the gids ``"local:<fitted>"``, ``"theory:<fitted>"`` and ``"zero"``.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    auto = isinstance(window, str) and window == "auto"
    if not auto and (isinstance(window, (bool, str)) or int(window) != window or window < 2):
        raise ValueError(f"window must be 'auto' or an integer >= 2, got {window!r}")
    fig, ax = _new_axes(ax, (6.4, 4.8))
    theory_lines = []
    for i, (name, n, values, status_failed) in enumerate(_configs(results, column, fitted)):
        color = f"C{i}"
        ok = np.isfinite(values) & ~status_failed
        usable = np.unique(n[ok]).size
        w = min(max(5, -(-usable // 8)), usable) if auto else int(window)
        if usable < 2:
            warnings.warn(f"no local slopes for {_prefix(name)}{column}: only {usable} "
                          "sample size(s) with valid losses", UserWarning, stacklevel=2)
            continue
        if usable < w:
            warnings.warn(f"{_prefix(name)}{column}: window lowered from {w} to {usable}, "
                          "the number of sample sizes with valid losses", UserWarning,
                          stacklevel=2)
            w = usable
        try:
            ls = local_slopes(n, values, window=w, statistic=statistic,
                              failed=status_failed)
        except ValueError as exc:
            warnings.warn(f"no local slopes for {_prefix(name)}{column}: {exc}",
                          UserWarning, stacklevel=2)
            continue
        key = name if name is not None else ""
        ax.plot(ls["n_center"], ls["slope"], marker="o", markersize=4, color=color,
                linewidth=1.4, gid=f"local:{key}",
                label=f"{_prefix(name)}{statistic}, window of {w} n")
        slope = _lookup(theory_slope, name)
        if slope is not None:
            if isinstance(theory_slope, dict):
                theory_lines.append((float(slope), color, f"theory:{key}", _prefix(name)))
            elif not theory_lines:
                theory_lines.append((float(slope), "0.2", f"theory:{key}", ""))
    for slope, color, gid, pre in theory_lines:
        ax.axhline(slope, color=color, linestyle="--", linewidth=1.3, gid=gid,
                   label=f"{pre}theory slope {_slope_text(slope).replace('-', _MINUS)}")
    ax.axhline(0.0, color="0.5", linewidth=0.9, zorder=0, gid="zero")
    ax.set_xscale("log")
    ax.set_xlabel("sample size n (window centre)")
    ax.set_ylabel(f"local slope of log {column} on log n")
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.15)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


def plot_rate_summary(results, *, column="loss", theory_slope=None, title=None,
                      fitted=None, statistic="mean", local_statistic="median",
                      window="auto", band=(0.1, 0.9), rate_fits=None, ylabel=None,
                      n_boot=1000, rng=0, figsize=(13.0, 5.8)):
    """Rate plot and local-slope profile side by side (one figure per setup).

    Left: :func:`plot_rate`; right: :func:`plot_local_slopes`.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results (see the module docstring).
    column : str, default="loss"
        Loss column.
    theory_slope : float or dict, optional
        Theoretical slope (or ``{fitted: slope}``) for both panels.
    title : str, optional
        Figure title (suptitle).
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default).
    statistic : str, default="mean"
        Statistic of the rate fit (left panel).
    local_statistic : str, default="median"
        Statistic of the local slopes (right panel).
    window : int or "auto", default="auto"
        Window of the local slopes (:func:`plot_local_slopes`).
    band, rate_fits, ylabel, n_boot, rng
        As in :func:`plot_rate`.
    figsize : (float, float), default=(13.0, 5.8)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        A Figure with two Axes.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    ax_rate, ax_local = fig.subplots(1, 2)
    plot_rate(results, column=column, fitted=fitted, statistic=statistic,
              theory_slope=theory_slope, band=band, rate_fits=rate_fits, ax=ax_rate,
              ylabel=ylabel, n_boot=n_boot, rng=rng)
    plot_local_slopes(results, column=column, fitted=fitted, window=window,
                      statistic=local_statistic, theory_slope=theory_slope,
                      ax=ax_local)
    ax_rate.set_title(f"{column} vs n")
    ax_local.set_title("local slopes")
    if title is not None:
        fig.suptitle(title)
    return fig


def plot_fit_1d(gate, params, X, y=None, *, true_gate=None, true_params=None, ax=None):
    """Fitted (and true) experts and gate of a model on one covariate.

    Top panel: the data ``(x, y)`` (small translucent points, if ``y`` is
    given), each expert's mean line ``a_j x + b_j`` (solid: fitted; dashed
    grey: truth) and the conditional mean
    ``E[y | x] = sum_j w_j(x) (a_j x + b_j)`` (solid black: fitted; dotted:
    truth). Bottom panel, sharing x: the gate weights ``w_j(x)`` on a grid over
    the range of ``X`` (solid: fitted, in the experts' colours; dashed grey:
    truth).

    Parameters
    ----------
    gate : moestats.Gate
        Gate family of the fitted model (e.g. ``SoftmaxGate()``).
    params : moestats.MoEParams
        Fitted parameters, with ``d = 1``.
    X : array_like of shape (n, 1) or (n,)
        Covariates; defines the plotted x range.
    y : array_like of shape (n,), optional
        Responses, drawn as points.
    true_gate : moestats.Gate, optional
        Gate of the truth (``gate`` by default).
    true_params : moestats.MoEParams, optional
        True parameters (``d = 1``); drawn dashed if given.
    ax : sequence of two matplotlib.axes.Axes, optional
        ``(top, bottom)`` Axes to draw into; a new Figure is made otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure (two Axes), or the Figure of ``ax``.

    Raises
    ------
    ValueError
        If ``X`` or a parameter set is not one-dimensional (``d != 1``), ``X``
        is empty, ``y`` has the wrong length, or ``ax`` is not two Axes.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != 1:
        raise ValueError(
            f"plot_fit_1d needs one covariate (d = 1): X must have shape (n, 1) or "
            f"(n,), got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("plot_fit_1d needs at least one observation, X is empty")
    for label, p in (("params", params), ("true_params", true_params)):
        if p is not None and p.n_features != 1:
            raise ValueError(
                f"plot_fit_1d needs one covariate (d = 1), but {label} has "
                f"d = {p.n_features} features"
            )
    if y is not None:
        y = np.asarray(y, dtype=float).ravel()
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} values but X has {X.shape[0]} rows")
    if true_gate is None:
        true_gate = gate

    if ax is None:
        fig = Figure(figsize=(9.5, 6.4), layout="constrained")
        ax_top, ax_bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    else:
        try:
            ax_top, ax_bottom = ax
        except (TypeError, ValueError):
            raise ValueError(
                "plot_fit_1d draws two panels: ax must be a pair (top, bottom) of "
                f"Axes, got {ax!r}"
            ) from None
        fig = ax_top.figure

    lo, hi = float(X.min()), float(X.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    xg = np.linspace(lo, hi, 400)
    Xg = xg[:, None]

    def curves(g, p):
        w = g.weights(p, Xg)
        means = Xg @ p.expert_coef.T + p.expert_intercept
        return w, means, (w * means).sum(axis=1)

    if y is not None:
        ax_top.scatter(X[:, 0], y, s=5, color="0.45", alpha=0.25, linewidths=0,
                       label="data", gid="data", rasterized=X.shape[0] > 5000)
    w, means, cmean = curves(gate, params)
    yspan = [cmean.min(), cmean.max()]
    if true_params is not None:
        tw, tmeans, tcmean = curves(true_gate, true_params)
        for j in range(true_params.n_experts):
            ax_top.plot(xg, tmeans[:, j], color="0.3", linestyle="--", linewidth=1.2,
                        gid=f"true_expert:{j}",
                        label="true experts" if j == 0 else "_nolegend_")
            ax_bottom.plot(xg, tw[:, j], color="0.3", linestyle="--", linewidth=1.2,
                           gid=f"true_weight:{j}",
                           label="truth" if j == 0 else "_nolegend_")
        ax_top.plot(xg, tcmean, color="k", linestyle=":", linewidth=2.0,
                    gid="true_mean", label=r"truth $E[y \mid x]$")
        yspan += [tcmean.min(), tcmean.max()]
    for j in range(params.n_experts):
        a, b = float(params.expert_coef[j, 0]), float(params.expert_intercept[j])
        ax_top.plot(xg, means[:, j], color=f"C{j}", linewidth=1.5, gid=f"expert:{j}",
                    label=f"expert {j + 1}: {_fmt(a, '.3g')} x {'+' if b >= 0 else _MINUS} "
                          f"{abs(b):.3g}")
        ax_bottom.plot(xg, w[:, j], color=f"C{j}", linewidth=1.5, gid=f"weight:{j}",
                       label=f"$w_{{{j + 1}}}(x)$")
    ax_top.plot(xg, cmean, color="k", linewidth=2.2, gid="mean",
                label=r"fitted $E[y \mid x] = \sum_j w_j(x)(a_j x + b_j)$")
    if y is not None:
        finite = y[np.isfinite(y)]
        if finite.size:
            yspan += [finite.min(), finite.max()]
    ymin, ymax = min(yspan), max(yspan)
    pad = 0.08 * (ymax - ymin) if ymax > ymin else 1.0
    ax_top.set_ylim(ymin - pad, ymax + pad)
    ax_top.set_ylabel("y")
    ax_top.grid(True, alpha=0.4)
    ax_top.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_bottom.set_ylim(-0.04, 1.04)
    ax_bottom.set_xlim(lo, hi)
    ax_bottom.set_xlabel("x")
    ax_bottom.set_ylabel("gate weight $w_j(x)$")
    ax_bottom.grid(True, alpha=0.4)
    ax_bottom.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
