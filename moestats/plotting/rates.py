"""Convergence-rate figures: loss against n with fitted slopes, per-parameter errors,
local slopes, summaries (matplotlib object API; every function returns a Figure)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..rates import STATISTICS, local_slopes
from ._common import (_MINUS, _check_band, _configs, _draw_rate, _lookup, _new_axes, _prefix,
                      _slope_text)

__all__ = ["PARAMETER_ERROR_COLUMNS", "plot_rate", "plot_parameter_errors", "plot_local_slopes",
           "plot_rate_summary"]

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
