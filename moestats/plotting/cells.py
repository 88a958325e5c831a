"""Per-cell parameter rates: for each true atom (Voronoi cell), its parameter errors
against n with the theory slopes of its cell size (the user guide's *Simulations*, rates; issue 9 item 3).

The theory of the over-specified fit is about cells: a true atom matched by one fitted
atom has all its errors at :math:`n^{-1/2}`; matched by :math:`m \\ge 2` atoms,
:math:`\\beta_1` and :math:`b` at :math:`n^{-1/(2\\bar r(m))}` and :math:`a`, :math:`\\nu`
at :math:`n^{-1/\\bar r(m)}` (:func:`moestats.rates.cell_theory_slope`). The maximum over
the cells (:func:`~moestats.plotting.plot_parameter_errors`) hides the slow cells; this
module reads the per-cell columns ``cell{j}_size`` and ``cell{j}_<block>`` of the results
(:meth:`moestats.simulation.ResultStore.to_frame`).

Which size? A cell's size is random: the near-truth start gives the extra atoms to the
true atoms at random, so with k = 3 and k* = 2 either cell is the doubled one in about
half of the replications, and the modal size of a cell at one n is a coin flip. By
default (``by="size"``) every cell size is therefore its own series, with its own fit
and theory line, drawn where at least ``min_fits`` fits had that size; ``by="modal"``
keeps, at each n, the fits whose cell had the modal size there, fits the rate over the
n where that is the cell's overall modal size, and draws the other n as grey open
markers. Either way the bottom row counts the fits of every size per n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..rates import cell_theory_slope
from ._common import (_draw_fit, _draw_theory, _fit_label, _grid, _log_axis, _n_text,
                      _per_n, _slope_text)
from .cell_tables import BYS, CELL_BLOCKS, _fit, _mode, _series, cell_errors

__all__ = ["plot_cell_rates"]

_MARKERS = {0: "D", 1: "o", 2: "s", 3: "^"}


def _size_color(size):
    return {0: "0.45", 1: "C0", 2: "C1", 3: "C2"}.get(int(size), f"C{int(size)}")


def _no_fit_reason(ser, reason):
    """A short legend text for a series without a fit."""
    if reason.startswith("identically"):
        return reason
    n_used = np.unique(ser["n"][ser["fit"]]).size
    if n_used < 2:
        return f"no fit ({n_used} n with enough fits)"
    return "no fit (" + reason.split(";")[0][:60] + ")"


def plot_cell_rates(results, *, fitted=None, blocks=None, by="size", statistic="median",
                    band=(0.1, 0.9), min_fits=3, certified_only=True, cell_labels=None,
                    title=None, n_boot=1000, rng=0):
    """Per-cell parameter errors against n, with the theory slopes of the cell size.

    One column per true atom (cell), one row per parameter block (:data:`CELL_BLOCKS`
    present in the results, the weight sums last), and a bottom row counting the fits
    of every cell size per n. In each panel, for each cell size (``by="size"``, one
    colour per size: 1 blue, 2 orange, 3 green) or for the modal size
    (``by="modal"``; see the module docstring): the per-n ``statistic`` of the errors
    of the fits with that size (markers) and their ``band`` quantiles (whiskers); the
    OLS line of the log statistic on log n with its 95% bootstrap band, its slope and
    CI in the legend; and, dashed, the theory slope of that size
    (:func:`moestats.rates.cell_theory_slope`) through the fit's centre (the
    geometric centre of its n-range and the fitted value there).

    Parameters
    ----------
    results : pandas.DataFrame
        Results of one setup with per-cell columns (:func:`cell_errors`).
    fitted : str, optional
        The configuration to draw; needed when ``results`` holds several.
    blocks : list of str, optional
        Blocks to draw (default: every block present, in :data:`CELL_BLOCKS` order).
    by : {"size", "modal"}, default="size"
    statistic : {"median", "mean", "trimmed"}, default="median"
    band : (float, float), default=(0.1, 0.9)
    min_fits : int, default=3
        Fits of a size needed at one n to draw that n.
    certified_only : bool, default=True
        Leave uncertified fits out (counted in the bottom row and the title).
    cell_labels : list of str, optional
        Column titles (default ``"cell j (true atom j)"``).
    title : str, optional
        Prefix of the figure title.
    n_boot, rng
        Bootstrap of the slope intervals and bands.

    Returns
    -------
    matplotlib.figure.Figure
        Axes in row-major order; artists per size ``s`` carry the gids
        ``"median:<s>"`` (markers, or the statistic's name), ``"band:<s>"``,
        ``"fit:<statistic>:<s>"``, ``"fitband:<statistic>:<s>"``, ``"theory:<s>"``,
        ``"offmodal:<s>"`` (``by="modal"``), and in the bottom row ``"count:<s>"``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import plot_cell_rates
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([1e3, 1e4, 1e5], 8)
    >>> df = pd.DataFrame({"n": n, "cell0_size": 2, "cell1_size": 1,
    ...     "cell0_expert_coef": n ** -0.25 * rng.lognormal(0, .1, n.size),
    ...     "cell1_expert_coef": n ** -0.5 * rng.lognormal(0, .1, n.size)})
    >>> fig = plot_cell_rates(df, n_boot=0)
    >>> theory = [l for l in fig.axes[0].get_lines() if l.get_gid() == "theory:2"][0]
    >>> x, y = theory.get_data()
    >>> round(float(np.log(y[1] / y[0]) / np.log(x[1] / x[0])), 6)
    -0.25
    """
    if by not in BYS:
        raise ValueError(f"by must be one of {BYS}, got {by!r}")
    long = cell_errors(results, fitted=fitted, certified_only=certified_only)
    names = list(pd.unique(long["fitted"]))
    if len(names) > 1:
        raise ValueError(f"results hold the configurations {names}; pass fitted= (one)")
    present = list(pd.unique(long["block"]))
    blocks = present if blocks is None else list(blocks)
    missing = [b for b in blocks if b not in present]
    if missing:
        raise ValueError(f"no per-cell column for block(s) {missing}; present: {present}")
    cells = sorted(long["cell"].unique())
    nrows, ncols = len(blocks) + 1, len(cells)
    fig = Figure(figsize=(4.6 * ncols + 0.4, 2.9 * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False,
                        gridspec_kw={"height_ratios": [3] * len(blocks) + [1.8]})
    band = tuple(band) if band is not None else None
    for c, cell in enumerate(cells):
        for r, block in enumerate(blocks):
            d = long[(long["cell"] == cell) & (long["block"] == block)]
            ax = axes[r, c]
            _cell_panel(ax, d, by, statistic, band, min_fits, n_boot, rng)
            if not any(np.any(np.asarray(line.get_ydata(), float) > 0)
                       for line in ax.get_lines()):
                ax.set_ylim(1e-3, 1.0)  # nothing positive to draw (e.g. fixed by the gauge)
            _log_axis(ax, "both")
            _grid(ax)
            ax.set_title(f"{cell_labels[c] if cell_labels else f'cell {cell}'}: "
                         f"{CELL_BLOCKS.get(block, block)}", fontsize="small")
            ax.set_ylabel("error" if block != "weight" else "weight-sum error")
        first = long[(long["cell"] == cell) & (long["block"] == blocks[0])]
        _count_panel(axes[-1, c], first, certified_only)
        for r in range(nrows - 1):
            axes[r, c].sharex(axes[-1, c])
    gauges = (sorted({g for g in results.get("loss_gauge", pd.Series(dtype=object))
                      if isinstance(g, str)}))
    what = ("a series per cell size |A| (the fits whose cell had that size; the cell sizes "
            "vary across replications: bottom row)" if by == "size" else
            "at each n the fits with the modal cell size there (grey open: n where it "
            "differs from the cell's overall modal size, not fitted)")
    fig.suptitle(
        f"{title + ': ' if title else ''}per-cell parameter errors "
        f"(gauge: {'/'.join(gauges) or 'not recorded'}; "
        f"{'certified fits only' if certified_only else 'all fits that did not fail'})\n"
        f"{what}\n{statistic} over fits (markers), "
        f"{f'{100 * band[0]:g}' + chr(0x2013) + f'{100 * band[1]:g}% whiskers, ' if band else ''}"
        "OLS fit with 95% band\ndashed: theory for the size "
        "(|A|=1: \u22121/2; 2: \u22121/8 for \u03b2\u2081, b and \u22121/4 for a, \u03bd; "
        "3: \u22121/12, \u22121/6; weight sums \u22121/2) through the fit's centre",
        fontsize="medium")
    return fig


def _cell_panel(ax, d, by, statistic, band, min_fits, n_boot, rng):
    for ser in _series(d, by, min_fits):
        s = ser["size"]
        color = _size_color(s)
        rf = _fit(ser, statistic, n_boot, rng)
        theory = cell_theory_slope(d["block"].iloc[0], s) \
            if d["block"].iloc[0] in CELL_BLOCKS else None
        th = "no theory" if theory is None else f"theory {_slope_text(theory)}"
        if isinstance(rf, str) and rf.startswith("identically"):
            # nothing to estimate: no markers at the rounding level, only the legend
            ax.plot([], [], color=color, marker=_MARKERS.get(s, "v"), linestyle="none",
                    label=f"|A|={s} ({ser['fits']} fits): {rf}")
            continue
        n_values, st = _per_n(ser["n"], ser["values"], ~ser["use"], band)
        has = np.isfinite(st[statistic])
        fit_n = set(np.unique(ser["n"][ser["fit"]]).tolist())
        on = has & np.array([m in fit_n for m in n_values])
        ax.plot(n_values[on], st[statistic][on], linestyle="none",
                marker=_MARKERS.get(s, "v"), markersize=4.5, color=color,
                gid=f"{statistic}:{s}", label="_nolegend_")
        if (has & ~on).any():
            ax.plot(n_values[has & ~on], st[statistic][has & ~on], linestyle="none",
                    marker="o", markersize=4.5, color="0.55", markerfacecolor="none",
                    gid=f"offmodal:{s}", label="other modal size (not fitted)")
        if band is not None and has.any():
            ax.vlines(n_values[has], st["low"][has], st["high"][has], color=color,
                      alpha=0.4, linewidth=1.0, gid=f"band:{s}")
        if isinstance(rf, str):
            ax.plot([], [], color=color, marker=_MARKERS.get(s, "v"), linestyle="none",
                    label=f"|A|={s} ({ser['fits']} fits): {_no_fit_reason(ser, rf)}; {th}")
            continue
        lo, hi = rf.n_range
        fixed = f", {ser['gauge_fixed']} fixed by the gauge left out" if ser["gauge_fixed"] else ""
        _draw_fit(ax, rf, color, f"{statistic}:{s}",
                  f"|A|={s} ({ser['fits']} fits{fixed}, n {_n_text(lo)}\u2013{_n_text(hi)}): "
                  f"{_fit_label(rf)}; {th}", ("-", 1.5, 0.2))
        if theory is not None:
            _draw_theory(ax, rf, theory, color, str(s), "_nolegend_")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="xx-small", loc="lower left")


def _count_panel(ax, d, certified_only):
    """Fits per n of every cell size, and the fits left out (failed or uncertified)."""
    n = d["n"].to_numpy(float)
    n_values = np.unique(n)
    size = d["size"].to_numpy(float)
    ok = d["fit_ok"].to_numpy(bool) & np.isfinite(size)
    for s in np.unique(size[ok]):
        counts = [int((ok & (n == m) & (size == s)).sum()) for m in n_values]
        modal_n = sum(_mode(size[ok & (n == m)]) == s for m in n_values)
        ax.plot(n_values, counts, marker=_MARKERS.get(int(s), "v"), markersize=4,
                color=_size_color(s), linewidth=1.1, gid=f"count:{int(s)}",
                label=f"|A|={int(s)}: {sum(counts)} fits (modal at {modal_n} of "
                      f"{n_values.size} n)")
    left = [int((~ok & (n == m)).sum()) for m in n_values]
    if any(left):
        ax.plot(n_values, left, marker="x", color="0.35", linewidth=0.8, linestyle=":",
                gid="count:left-out",
                label=f"left out: {sum(left)} "
                      f"({'failed or uncertified' if certified_only else 'failed'})")
    _log_axis(ax, "x")
    _grid(ax)
    top = max([1] + [line.get_ydata().max() for line in ax.get_lines() if len(line.get_ydata())])
    ax.set_ylim(bottom=-0.5, top=1.45 * top + 0.5)
    ax.set_xlabel("sample size n")
    ax.set_ylabel("fits per n")
    ax.legend(fontsize="xx-small", loc="upper left", ncols=2)
