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

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..rates import cell_theory_slope, fit_rate, last_decade_slope
from ._common import (_certified_column, _config_frames, _draw_fit, _draw_theory, _fit_label,
                      _grid, _log_axis, _n_text, _per_n, _slope_text)

__all__ = ["CELL_BLOCKS", "cell_errors", "cell_rate_table", "plot_cell_rates"]

#: the per-cell blocks, in row order, with their panel titles
CELL_BLOCKS = {
    "gate_coef": r"gate slope $\beta_1$",
    "expert_coef": r"expert slope $a$",
    "expert_intercept": r"expert intercept $b$",
    "expert_var": r"expert variance $\nu$",
    "temperature": r"temperature $\tau$",
    "gate_slope_over_temperature": r"$\beta_1/\tau$",
    "weight": r"cell weight sum $\sum_{i\in A_j} e^{\beta_{0i}}$",
}
_CELL = re.compile(r"^cell(\d+)_(.+)$")
_MARKERS = {0: "D", 1: "o", 2: "s", 3: "^"}
BYS = ("size", "modal")


def _size_color(size):
    return {0: "0.45", 1: "C0", 2: "C1", 3: "C2"}.get(int(size), f"C{int(size)}")


def cell_errors(results, *, fitted=None, certified_only=True) -> pd.DataFrame:
    """The per-cell errors in long form.

    Parameters
    ----------
    results : pandas.DataFrame
        With ``n``, ``cell{j}_size`` and ``cell{j}_<block>`` columns (and optionally
        ``fitted``, ``replication``, ``status``, ``certified``/``certificate``).
    fitted : str or list of str, optional
        Configuration(s) to keep.
    certified_only : bool, default=True
        Mark uncertified fits as unusable.

    Returns
    -------
    pandas.DataFrame
        One row per (fit, cell, block): ``fitted``, ``n``, ``replication``,
        ``cell``, ``size`` (float, NaN if unknown), ``block``, ``error``,
        ``fit_ok`` (status "ok", and certified if asked) and ``usable`` (``fit_ok``,
        size known, finite error).

    Examples
    --------
    >>> import pandas as pd
    >>> from moestats.plotting import cell_errors
    >>> df = pd.DataFrame({"n": [100, 100], "cell0_size": [1, 2], "cell0_weight": [.1, .2],
    ...                    "cell1_size": [2, 1], "cell1_weight": [.3, .4]})
    >>> cell_errors(df)[["n", "cell", "size", "block", "error"]]
         n  cell  size   block  error
    0  100     0   1.0  weight    0.1
    1  100     0   2.0  weight    0.2
    2  100     1   2.0  weight    0.3
    3  100     1   1.0  weight    0.4
    """
    parts = []
    for name, df in _config_frames(results, fitted):
        cells = sorted({int(m.group(1)) for c in df.columns if (m := _CELL.match(str(c)))})
        ok = (df["status"] == "ok").to_numpy(bool) if "status" in df else np.ones(len(df), bool)
        if certified_only:
            certified, known = _certified_column(df)
            ok = ok & ~(known & ~certified)
        rep = df["replication"].to_numpy() if "replication" in df else np.arange(len(df))
        for j in cells:
            size = pd.to_numeric(df.get(f"cell{j}_size"), errors="coerce")
            size = size.to_numpy(float) if size is not None else np.full(len(df), np.nan)
            for block in [b for b in CELL_BLOCKS if f"cell{j}_{b}" in df] + sorted(
                    m.group(2) for c in df.columns if (m := _CELL.match(str(c)))
                    and int(m.group(1)) == j and m.group(2) not in CELL_BLOCKS
                    and m.group(2) != "size"):
                err = pd.to_numeric(df[f"cell{j}_{block}"], errors="coerce").to_numpy(float)
                parts.append(pd.DataFrame({
                    "fitted": name, "n": df["n"].to_numpy(float), "replication": rep,
                    "cell": j, "size": size, "block": block, "error": err,
                    "fit_ok": ok, "usable": ok & np.isfinite(size) & np.isfinite(err)}))
    if not parts:
        raise ValueError("results has no per-cell columns cell{j}_size / cell{j}_<block> "
                         "(a store written before they were recorded?)")
    out = pd.concat(parts, ignore_index=True)
    out["n"] = out["n"].astype(int) if np.all(out["n"] % 1 == 0) else out["n"]
    return out


def _mode(sizes):
    """The modal size (the smaller on a tie); NaN for none."""
    if sizes.size == 0:
        return np.nan
    values, counts = np.unique(sizes, return_counts=True)
    return float(values[np.argmax(counts)])


def _series(d, by, min_fits):
    """Series of one (fitted, cell, block) frame: a list of dicts with ``size`` (the
    theory size), ``n``, ``values``, ``use`` (rows in the statistic), ``fit`` (rows in
    the fit), ``modal_n`` (n where this size is the cell's modal size), ``fits``."""
    n, size, err = d["n"].to_numpy(float), d["size"].to_numpy(float), d["error"].to_numpy(float)
    usable = d["usable"].to_numpy(bool)
    n_values = np.unique(n)
    modal = {m: _mode(size[usable & (n == m)]) for m in n_values}
    counts = {(m, s): int((usable & (n == m) & (size == s)).sum())
              for m in n_values for s in np.unique(size[usable])}
    out = []
    if by == "size":
        for s in np.unique(size[usable]):
            enough = np.array([counts[(m, s)] >= min_fits for m in n])
            use = usable & (size == s) & enough
            if np.unique(n[use]).size < 1:
                continue
            out.append(dict(size=int(s), n=n, values=err, use=use, fit=use,
                            modal_n=int(sum(modal[m] == s for m in n_values)),
                            fits=int(use.sum())))
    else:
        overall = _mode(size[usable])
        if np.isnan(overall):
            return out
        at_modal = np.array([size[i] == modal[m] for i, m in enumerate(n)])
        enough = np.array([counts.get((m, modal[m]), 0) >= min_fits for m in n])
        use = usable & at_modal & enough
        fit = use & (size == overall)
        out.append(dict(size=int(overall), n=n, values=err, use=use, fit=fit,
                        modal_n=int(sum(modal[m] == overall for m in n_values)),
                        fits=int(fit.sum())))
    return out


def _fit(ser, statistic, n_boot, rng, fn=fit_rate, **kw):
    """A RateFit of the series, or the reason why there is none (str)."""
    used = ser["values"][ser["fit"]]
    if used.size and np.all(used == 0):
        return "identically 0 (fixed by the gauge)"
    try:
        return fn(ser["n"], ser["values"], statistic=statistic, n_boot=n_boot, rng=rng,
                  failed=~ser["fit"], **kw)
    except ValueError as exc:
        return str(exc)


def _no_fit_reason(ser, reason):
    """A short legend text for a series without a fit."""
    if reason.startswith("identically"):
        return reason
    n_used = np.unique(ser["n"][ser["fit"]]).size
    if n_used < 2:
        return f"no fit ({n_used} n with enough fits)"
    return "no fit (" + reason.split(";")[0][:60] + ")"


def cell_rate_table(results, *, fitted=None, by="size", statistic="median", min_fits=3,
                    certified_only=True, n_boot=1000, rng=0, decades=1.0) -> pd.DataFrame:
    """Per-cell slopes: one row per (fitted, cell, cell size, block).

    Parameters
    ----------
    results : pandas.DataFrame
        Results with per-cell columns (:func:`cell_errors`).
    fitted : str or list of str, optional
    by : {"size", "modal"}, default="size"
        ``"size"``: a series per cell size (the fits whose cell had that size, at
        the n where at least ``min_fits`` did); ``"modal"``: at each n the fits
        whose cell had the modal size there, fitted over the n where it is the
        cell's overall modal size.
    statistic : {"median", "mean", "trimmed"}, default="median"
    min_fits : int, default=3
        Fits of a size needed at one n to use that n.
    certified_only : bool, default=True
        Leave uncertified fits out.
    n_boot, rng
        Bootstrap of the slope intervals (:func:`moestats.rates.fit_rate`).
    decades : float, default=1.0
        Range of the last-decade slope (:func:`moestats.rates.last_decade_slope`).

    Returns
    -------
    pandas.DataFrame
        Columns ``fitted``, ``cell``, ``size``, ``block``, ``theory_slope``
        (:func:`moestats.rates.cell_theory_slope`), ``slope``, ``ci_low``,
        ``ci_high``, ``decade_slope``, ``decade_ci_low``, ``decade_ci_high``,
        ``n_sizes`` (n in the fit), ``fits`` (fits in the fit), ``modal_n`` (n at
        which this size is the cell's modal size, of ``n_total``), ``by``,
        ``statistic``, ``error`` (why no fit, else "").

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.plotting import cell_rate_table
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([1e3, 1e4, 1e5], 8)
    >>> df = pd.DataFrame({"n": n, "cell0_size": 2, "cell1_size": 1,
    ...     "cell0_gate_coef": n ** -0.125 * rng.lognormal(0, .1, n.size),
    ...     "cell1_gate_coef": n ** -0.5 * rng.lognormal(0, .1, n.size)})
    >>> t = cell_rate_table(df, n_boot=0)
    >>> t[["cell", "size", "block", "theory_slope"]].assign(slope=t.slope.round(2))
       cell  size      block  theory_slope  slope
    0     0     2  gate_coef        -0.125  -0.13
    1     1     1  gate_coef        -0.500  -0.47
    """
    if by not in BYS:
        raise ValueError(f"by must be one of {BYS}, got {by!r}")
    long = cell_errors(results, fitted=fitted, certified_only=certified_only)
    rows = []
    for (name, cell, block), d in long.groupby(["fitted", "cell", "block"], sort=False,
                                               dropna=False):
        for ser in _series(d, by, min_fits):
            rf = _fit(ser, statistic, n_boot, rng)
            dec = _fit(ser, statistic, n_boot, rng, last_decade_slope, decades=decades)
            ok, dok = not isinstance(rf, str), not isinstance(dec, str)
            rows.append(dict(
                fitted=name, cell=int(cell), size=ser["size"], block=block,
                theory_slope=cell_theory_slope(block, ser["size"])
                if block in CELL_BLOCKS else None,
                slope=rf.slope if ok else np.nan, ci_low=rf.ci_low if ok else np.nan,
                ci_high=rf.ci_high if ok else np.nan,
                decade_slope=dec.slope if dok else np.nan,
                decade_ci_low=dec.ci_low if dok else np.nan,
                decade_ci_high=dec.ci_high if dok else np.nan,
                n_sizes=rf.n_used if ok else int(np.unique(ser["n"][ser["fit"]]).size),
                fits=ser["fits"], modal_n=ser["modal_n"], n_total=int(d["n"].nunique()),
                by=by, statistic=statistic, error="" if ok else rf))
    return pd.DataFrame(rows)


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
        rf = _fit(ser, statistic, n_boot, rng)
        theory = cell_theory_slope(d["block"].iloc[0], s) \
            if d["block"].iloc[0] in CELL_BLOCKS else None
        th = "no theory" if theory is None else f"theory {_slope_text(theory)}"
        if isinstance(rf, str):
            ax.plot([], [], color=color, marker=_MARKERS.get(s, "v"), linestyle="none",
                    label=f"|A|={s} ({ser['fits']} fits): {_no_fit_reason(ser, rf)}; {th}")
            continue
        lo, hi = rf.n_range
        _draw_fit(ax, rf, color, f"{statistic}:{s}",
                  f"|A|={s} ({ser['fits']} fits, n {_n_text(lo)}\u2013{_n_text(hi)}): "
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
