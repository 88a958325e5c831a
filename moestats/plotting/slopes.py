"""The curvature check of a rate figure: local slopes with intervals, the slope over the
last decade of n and over the whole range (matplotlib object API)."""

from __future__ import annotations

import warnings

import numpy as np

from ..rates import STATISTICS, fit_rate, last_decade_slope, local_slopes
from ._common import (_MINUS, _configs, _fit_label, _grid, _log_axis, _lookup, _n_text,
                      _new_axes, _prefix, _slope_text)

__all__ = ["plot_local_slopes", "auto_window"]


def auto_window(usable, decades=None):
    """Sample sizes per local-slope window for ``usable`` sizes spanning ``decades``.

    Up to 12 sizes (a quick grid): 2, the slopes between consecutive n. More: the
    sizes within half a decade, :math:`\\operatorname{round}(\\tfrac12 (m - 1)/D) + 1`
    for m sizes over D decades (34 on the papers' 200-point grid over 1e2-1e5, 59 on
    199 sizes over 2e3-1e5), at least 5: windows of a fixed span in log n, not of a
    fixed count, so that a dense grid does not show replication noise as curvature.
    Without ``decades``: an eighth of the sizes, at least 5.

    Examples
    --------
    >>> from moestats.plotting.slopes import auto_window
    >>> auto_window(8), auto_window(20), auto_window(200), auto_window(200, decades=3.0)
    (2, 5, 25, 34)
    """
    if usable <= 12:
        return min(2, usable)
    if decades is None or not decades > 0:
        return max(5, -(-usable // 8))
    return int(min(usable, max(5, round(0.5 * (usable - 1) / decades) + 1)))


def _decades(n):
    """:math:`\\log_{10}(\\max n / \\min n)` of the sample sizes ``n`` (0 if none)."""
    n = np.asarray(n, dtype=float)
    return float(np.log10(n.max() / n.min())) if n.size else 0.0


def plot_local_slopes(results, *, column="loss", fitted=None, window="auto",
                      statistic="median", theory_slope=None, ax=None, n_boot=1000, rng=0,
                      decades=1.0, certified_only=True):
    """Local power-law slopes with intervals: is the rate a straight line?

    Each point is the OLS slope of ``log statistic`` on ``log n`` over a window of
    ``window`` consecutive sample sizes (:func:`moestats.rates.local_slopes`), at
    the window's geometric centre, with its stratified-bootstrap interval (error
    bar). Beside them, as horizontal segments with their intervals (shaded): the
    slope over the whole range (:func:`moestats.rates.fit_rate`, dotted) and over
    the last ``decades`` decade(s) of n (:func:`moestats.rates.last_decade_slope`,
    solid). A power law gives a flat profile with the three slopes in agreement; a
    plateau or a rate slower than any polynomial shows as local slopes rising
    towards 0 and a last-decade slope above the whole-range one.

    Parameters
    ----------
    results : pandas.DataFrame
        Simulation results (see :mod:`moestats.plotting`).
    column : str, default="loss"
        Loss column.
    fitted : str or list of str, optional
        Configuration(s) to plot (all by default), one colour each.
    window : int or "auto", default="auto"
        Consecutive sample sizes per window (2: the slopes between consecutive
        n); an integer is lowered (with a :class:`UserWarning`) for a
        configuration with fewer usable ``n``. ``"auto"``: :func:`auto_window`
        (consecutive n on a grid of up to 12 sizes).
    statistic : {"mean", "median", "trimmed"}, default="median"
        Location statistic of the losses at each ``n``.
    theory_slope : float or dict, optional
        Theoretical slope, or ``{fitted: slope}``, drawn as a dashed horizontal line.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new Figure is made otherwise.
    n_boot : int, default=1000
        Bootstrap resamples of the intervals (0: none).
    rng : None, int or numpy.random.Generator, default=0
        Seed of the bootstraps.
    decades : float, default=1.0
        Width of the last range of n, in decades.
    certified_only : bool, default=True
        Leave uncertified fits out (they are counted in :func:`plot_rate`).

    Returns
    -------
    matplotlib.figure.Figure
        The new Figure, or ``ax.figure``.

    Notes
    -----
    A solid grey horizontal line marks slope 0 (no convergence). Artists carry the
    gids ``"local:<fitted>"`` (the points), ``"localci:<fitted>"`` (their error
    bars), ``"decade:<fitted>"`` and ``"decadeci:<fitted>"``, ``"global:<fitted>"``
    and ``"globalci:<fitted>"``, ``"theory:<fitted>"`` and ``"zero"``. The
    intervals are pointwise (one window at a time).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import plot_local_slopes
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat(np.geomspace(1e2, 1e5, 10).round(), 20)
    >>> df = pd.DataFrame({"n": n, "loss": (n ** -0.5 + 1e-2) * rng.lognormal(0, .2, n.size)})
    >>> ax = plot_local_slopes(df, window=3, n_boot=200).axes[0]
    >>> sorted({l.get_gid() for l in ax.get_lines()})
    ['decade:', 'global:', 'local:', 'localci:', 'zero']
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {STATISTICS}")
    auto = isinstance(window, str) and window == "auto"
    if not auto and (isinstance(window, (bool, str)) or int(window) != window or window < 2):
        raise ValueError(f"window must be 'auto' or an integer >= 2, got {window!r}")
    fig, ax = _new_axes(ax, (6.4, 4.8))
    theory_lines = []
    for i, cfg in enumerate(_configs(results, column, fitted)):
        color, pre, key = f"C{i}", _prefix(cfg.name), cfg.key
        excluded = cfg.excluded(certified_only)
        usable = np.unique(cfg.n[~excluded]).size
        w = auto_window(usable, _decades(cfg.n[~excluded])) if auto else int(window)
        if usable < 2:
            warnings.warn(f"no local slopes for {pre}{column}: only {usable} "
                          "sample size(s) with valid losses", UserWarning, stacklevel=2)
            continue
        if usable < w:
            warnings.warn(f"{pre}{column}: window lowered from {w} to {usable}, "
                          "the number of sample sizes with valid losses", UserWarning,
                          stacklevel=2)
            w = usable
        try:
            ls = local_slopes(cfg.n, cfg.values, window=w, statistic=statistic,
                              failed=excluded, n_boot=n_boot, rng=rng)
        except ValueError as exc:
            warnings.warn(f"no local slopes for {pre}{column}: {exc}", UserWarning,
                          stacklevel=2)
            continue
        x, y = ls["n_center"].to_numpy(), ls["slope"].to_numpy()
        ax.plot(x, y, marker="o", markersize=4, color=color, linewidth=1.2,
                gid=f"local:{key}", label=f"{pre}local slopes ({statistic}, windows of {w} n)")
        if n_boot:
            err = np.vstack([y - ls["ci_low"].to_numpy(), ls["ci_high"].to_numpy() - y])
            ax.errorbar(x, y, yerr=err, fmt="none", ecolor=color, elinewidth=0.9,
                        capsize=2, alpha=0.8, gid=f"localci:{key}")
        _segment(ax, fit_rate, cfg, excluded, statistic, n_boot, rng, color,
                 f"global:{key}", ":", f"{pre}whole range", {})
        _segment(ax, last_decade_slope, cfg, excluded, statistic, n_boot, rng, color,
                 f"decade:{key}", "-", f"{pre}last {decades:g} decade", {"decades": decades})
        slope = _lookup(theory_slope, cfg.name)
        if slope is not None:
            if isinstance(theory_slope, dict):
                theory_lines.append((float(slope), color, f"theory:{key}", pre))
            elif not theory_lines:
                theory_lines.append((float(slope), "0.2", f"theory:{key}", ""))
    for slope, color, gid, pre in theory_lines:
        ax.axhline(slope, color=color, linestyle="--", linewidth=1.3, gid=gid,
                   label=f"{pre}theory slope {_slope_text(slope).replace('-', _MINUS)}")
    ax.axhline(0.0, color="0.5", linewidth=0.9, zorder=0, gid="zero")
    _log_axis(ax, "x")
    ax.set_xlabel("sample size n (window centre)")
    ax.set_ylabel(f"slope of log {column} on log n")
    _grid(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  frameon=False)
    return fig


def _segment(ax, fit, cfg, excluded, statistic, n_boot, rng, color, gid, style, label,
             options):
    """A slope fitted over a range of n, as a horizontal segment with its interval."""
    try:
        rf = fit(cfg.n, cfg.values, statistic=statistic, n_boot=n_boot, rng=rng,
                 failed=excluded, **options)
    except ValueError:
        return None
    lo, hi = rf.n_range
    ax.plot([lo, hi], [rf.slope, rf.slope], color=color, linestyle=style, linewidth=2.0,
            alpha=0.9, gid=gid,
            label=f"{label} ({_n_text(lo)}\u2013{_n_text(hi)}): {_fit_label(rf)}")
    if np.isfinite(rf.ci_low):
        ax.fill_between([lo, hi], [rf.ci_low] * 2, [rf.ci_high] * 2, color=color,
                        alpha=0.12, linewidth=0, gid=gid.replace(":", "ci:", 1))
    return rf
