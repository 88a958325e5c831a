"""Convergence-rate figures: loss against n with fitted slopes and their bands,
per-parameter errors, and the summary figure of a sweep (matplotlib object API; every
function returns a Figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._common import (ROUNDING_ZERO, _check_band, _configs, _draw_rate, _grid, _log_axis,
                      _new_axes, _statistics, _zero_reason, loss_axis_label)
from .counts import plot_fit_counts, plot_passes
from .slopes import plot_local_slopes

__all__ = ["PARAMETER_ERROR_COLUMNS", "plot_rate", "plot_parameter_errors",
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


def _loss_name(loss_name, configs):
    """The one loss name of the plotted configurations (``loss_name`` may be a dict)."""
    if not isinstance(loss_name, dict):
        return loss_name
    names = {loss_name.get(c.name) for c in configs}
    if len(names) > 1:
        raise ValueError(
            f"one loss per axis: the configurations plotted have the losses "
            f"{ {c.name: loss_name.get(c.name) for c in configs} }; plot them separately")
    return names.pop()


def plot_rate(results, *, column="loss", fitted=None, statistic=("median", "mean"),
              theory_slope=None, band=(0.1, 0.9), rate_fits=None, ax=None,
              title=None, ylabel=None, loss_name=None, certified_only=True, n_boot=1000,
              rng=0):
    """Log-log plot of one loss against the sample size, with its fitted rates.

    For each fitted configuration (one colour each):

    - the per-``n`` median (open squares) and mean (filled circles) of the fits
      used, and whiskers between the per-``n`` quantiles ``band`` of the fits;
    - for each statistic in ``statistic`` (by default the median, solid, and the
      mean, dash-dotted) the OLS line of :func:`moestats.rates.fit_rate` over its
      n-range with its 95% pointwise bootstrap band (:meth:`RateFit.band`) and, in
      the legend, its slope and bootstrap CI;
    - the theory slope as a dashed line through the median fit's centre
      (:attr:`RateFit.centre`: the geometric centre of the n-range and the median
      fit's value there; the first fitted statistic's when the median is not
      fitted), over the same n-range;
    - the uncertified fits, each as a cross at its loss: they are left out of every
      statistic and fit (``certified_only``) and counted in the legend.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results, one row per (fitted, n, replication); see
        :mod:`moestats.plotting` for the columns. A ``loss_gauge`` column names the
        gauge on the y label; a ``certified`` column or the ``certificate`` JSON
        says which fits are certified.
    column : str, default="loss"
        Loss column to plot.
    fitted : str or list of str, optional
        Configuration(s) to plot; all those in ``results`` by default.
    statistic : str or sequence of str, default=("median", "mean")
        Statistic(s) whose power law is fitted and drawn.
    theory_slope : float or dict, optional
        Theoretical slope (e.g. ``-0.5``), or ``{fitted: slope}``; None (or a
        missing key / None value) draws no reference line.
    band : (float, float) or None, default=(0.1, 0.9)
        Quantiles of the spread whiskers over replications; None for none.
    rate_fits : dict, optional
        Precomputed ``{fitted: RateFit}`` or ``{fitted: {statistic: RateFit}}``
        used instead of fitting.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new Figure is made otherwise.
    title : str, optional
        Axes title.
    ylabel : str, optional
        Y label; by default :func:`loss_axis_label` of ``loss_name`` and the gauges
        recorded in ``loss_gauge`` (e.g. ``"D2 (gauge: slope)"``).
    loss_name : str or dict, optional
        The loss's name (``"D2"``), or ``{fitted: name}``: the configurations
        plotted must share one loss (one loss per axis).
    certified_only : bool, default=True
        Leave uncertified fits out of the statistics (still drawn and counted);
        False includes them (the legend says so).
    n_boot : int, default=1000
        Bootstrap resamples of the slope CI and the line's band (0: none).
    rng : None, int or numpy.random.Generator, default=0
        Seed of the bootstrap (an int seeds every configuration identically).

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure, or ``ax.figure``.

    Raises
    ------
    ValueError
        An unknown statistic, column or configuration, or configurations with
        different ``loss_name``.

    Notes
    -----
    Failed fits (status not ``"ok"`` or a non-finite loss) are excluded and counted
    in the configuration's first legend label. If a rate cannot be fitted (fewer
    than two ``n`` with valid losses, or a statistic of 0) a :class:`UserWarning` is
    issued and its line omitted. Artist gids: ``"mean:<fitted>"``,
    ``"median:<fitted>"``, ``"band:<fitted>"`` (whiskers),
    ``"fit:<statistic>:<fitted>"`` and ``"fitband:<statistic>:<fitted>"``,
    ``"theory:<fitted>"``, ``"uncertified:<fitted>"``. Both axes are logarithmic
    with decade ticks labelled ``1e2, 1e3, ...``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import plot_rate
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([100, 1000, 10000], 20)
    >>> df = pd.DataFrame({"fitted": "k2", "n": n, "status": "ok", "loss_gauge": "slope",
    ...                    "loss": 3 * n ** -0.5 * rng.lognormal(0, 0.3, n.size)})
    >>> ax = plot_rate(df, theory_slope=-0.5, loss_name="D1", n_boot=200).axes[0]
    >>> ax.get_ylabel()
    'D1 (gauge: slope)'
    >>> lo, hi = ax.get_xlim()
    >>> [ax.xaxis.get_major_formatter()(t) for t in ax.get_xticks() if lo <= t <= hi]
    ['1e2', '1e3', '1e4']
    """
    statistics = _statistics(statistic)
    band = _check_band(band)
    fig, ax = _new_axes(ax, (6.4, 6.0))
    rate_fits = rate_fits or {}
    configs = _configs(results, column, fitted)
    name = _loss_name(loss_name, configs)
    for i, cfg in enumerate(configs):
        _draw_rate(ax, cfg, f"C{i}", column=column, statistics=statistics, band=band,
                   theory_slope=theory_slope, rate_fits=rate_fits.get(cfg.name),
                   markers=("mean", "median"), n_boot=n_boot, rng=rng,
                   certified_only=certified_only)
    _log_axis(ax, "both")
    ax.set_xlabel("sample size n")
    gauges = sorted({g for c in configs for g in c.gauges})
    ax.set_ylabel(loss_axis_label(column, name, gauges) if ylabel is None else ylabel)
    _grid(ax)
    if title is not None:
        ax.set_title(title)
    # Below the axes: the legend never hides the data.
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncols=min(len(configs), 2), frameon=False)
    return fig


def plot_parameter_errors(results, *, fitted=None, columns=None, theory=None,
                          statistic="median", band=(0.1, 0.9), certified_only=True,
                          n_boot=1000, rng=0):
    """Per-parameter errors, maximum over the cells: one log-log panel per block.

    The errors of the user guide's *Simulations*, losses and gauges, :math:`\\max_j \\max_{i\\in A_j}
    \\|\\Delta\\cdot_{ij}\\|`: the maximum over the Voronoi cells hides the slow
    (doubled) cells behind the fast ones, so for an over-specified fit read
    :func:`plot_cell_rates` instead; this figure is the worst cell's error.

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
        slopes, drawn dashed through the median fit's centre.
    statistic : {"mean", "median", "trimmed"}, default="median"
        Statistic shown as markers and fitted (median by default: robust to
        the occasional failed EM run).
    band : (float, float) or None, default=(0.1, 0.9)
        Quantiles of the spread whiskers over replications.
    certified_only : bool, default=True
        Leave uncertified fits out (drawn as crosses, counted in the legend).
    n_boot : int, default=1000
        Bootstrap resamples of the slope CIs and bands.
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

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import plot_parameter_errors
    >>> n = np.repeat([100, 1000, 10000], 5)
    >>> df = pd.DataFrame({"n": n, "err_gate_coef": n ** -0.125, "err_weight": n ** -0.5})
    >>> fig = plot_parameter_errors(df, theory={"err_weight": -0.5}, n_boot=0)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['err_gate_coef', 'err_weight']
    """
    statistics = _statistics(statistic)
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
    gauges = set()
    for ax, col in zip(axes, columns):
        configs = _configs(results, col, fitted)
        for i, cfg in enumerate(configs):
            gauges.update(cfg.gauges)
            _draw_rate(ax, cfg, f"C{i}", column=col, statistics=statistics, band=band,
                       theory_slope=theory.get(col), rate_fits=None,
                       markers=(statistics[0],), n_boot=n_boot, rng=rng,
                       certified_only=certified_only, label_band=False)
        _log_axis(ax, "both")
        if all(_zero_reason(c.values[~c.excluded(certified_only)]) for c in configs):
            # only rounding-level errors: nothing drawn, so give the log axes limits
            ax.set_xlim(np.min(results["n"]) / 1.5, np.max(results["n"]) * 1.5)
            ax.set_ylim(ROUNDING_ZERO / 1e4, ROUNDING_ZERO * 10)
        ax.set_title(PARAMETER_ERROR_COLUMNS.get(col, col))
        ax.set_xlabel("sample size n")
        ax.set_ylabel(col)
        _grid(ax)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  frameon=False)
    what = f"{100 * band[0]:g}\u2013{100 * band[1]:g}% whiskers, " if band else ""
    fig.suptitle(
        f"Voronoi-matched parameter errors, maximum over the cells "
        f"(gauge: {'/'.join(sorted(gauges)) or 'not recorded'}): {statistics[0]} over "
        f"replications (markers), {what}OLS fit of log {statistics[0]} on log n "
        "with its 95% band",
        fontsize="medium",
    )
    return fig


def plot_rate_summary(results, *, column="loss", theory_slope=None, title=None,
                      fitted=None, statistic=("median", "mean"), local_statistic="median",
                      window="auto", band=(0.1, 0.9), rate_fits=None, ylabel=None,
                      loss_name=None, certified_only=True, decades=1.0, n_boot=1000, rng=0,
                      figsize=(14.0, 10.0)):
    """The rate figure of a sweep: rate plot, curvature check, fit counts, passes.

    Top left, :func:`plot_rate` (one loss, its name and gauge on the y axis, median
    and mean fits with 95% bands, theory line through the median fit's centre,
    uncertified fits as crosses); top right, :func:`plot_local_slopes` (local slopes
    with intervals, the slopes over the whole range and over the last decade);
    bottom left, :func:`plot_fit_counts` (certified / uncertified / failed fits per
    n); bottom right, :func:`plot_passes` (passes over the data per fit).

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results (see :mod:`moestats.plotting`).
    column : str, default="loss"
        Loss column.
    theory_slope : float or dict, optional
        Theoretical slope (or ``{fitted: slope}``) for both top panels.
    title : str, optional
        Figure title (suptitle).
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default).
    statistic : str or sequence of str, default=("median", "mean")
        Statistics of the rate fits (top left).
    local_statistic : str, default="median"
        Statistic of the local slopes (top right).
    window : int or "auto", default="auto"
        Window of the local slopes (:func:`plot_local_slopes`).
    band, rate_fits, ylabel, loss_name, certified_only, n_boot, rng
        As in :func:`plot_rate`.
    decades : float, default=1.0
        The last range of n of the curvature check, in decades.
    figsize : (float, float), default=(14.0, 10.0)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        A Figure with four Axes (rate, local slopes, counts, passes).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import plot_rate_summary
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([100, 300, 1000, 3000, 10000], 10)
    >>> df = pd.DataFrame({"n": n, "loss": n ** -0.5 * rng.lognormal(0, 0.3, n.size)})
    >>> fig = plot_rate_summary(df, theory_slope=-0.5, loss_name="D1", n_boot=100)
    >>> [ax.get_title() for ax in fig.axes]
    ['D1 vs n', 'curvature check: local slopes', 'fits per n', 'passes per fit']
    """
    fig = Figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(3.0, 1.3), width_ratios=(1.15, 1.0))
    ax_rate = fig.add_subplot(grid[0, 0])
    ax_local = fig.add_subplot(grid[0, 1])
    ax_counts = fig.add_subplot(grid[1, 0], sharex=ax_rate)
    ax_passes = fig.add_subplot(grid[1, 1])
    plot_rate(results, column=column, fitted=fitted, statistic=statistic,
              theory_slope=theory_slope, band=band, rate_fits=rate_fits, ax=ax_rate,
              ylabel=ylabel, loss_name=loss_name, certified_only=certified_only,
              n_boot=n_boot, rng=rng)
    plot_local_slopes(results, column=column, fitted=fitted, window=window,
                      statistic=local_statistic, theory_slope=theory_slope, ax=ax_local,
                      n_boot=n_boot, rng=rng, decades=decades, certified_only=certified_only)
    plot_fit_counts(results, fitted=fitted, column=column, ax=ax_counts)
    plot_passes(results, fitted=fitted, column=column, ax=ax_passes)
    name = loss_name if isinstance(loss_name, str) else column
    ax_rate.set_title(f"{name} vs n")
    ax_local.set_title("curvature check: local slopes")
    ax_counts.set_title("fits per n")
    ax_passes.set_title("passes per fit")
    if title is not None:
        fig.suptitle(title)
    return fig
