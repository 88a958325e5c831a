"""Per-cell parameter errors and their rates, as tables (issue 9 item 3).

:func:`cell_errors` puts the per-cell columns ``cell{j}_size`` and ``cell{j}_<block>`` of
the results (:meth:`moestats.simulation.ResultStore.to_frame`) in long form;
:func:`cell_rate_table` fits the slope of each cell's errors against n for every cell
size, with the theory slope of that size (:func:`moestats.rates.cell_theory_slope`).
:func:`moestats.plotting.plot_cell_rates` draws the same series; its module says how a
cell's random size is handled (``by="size"`` or ``by="modal"``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..rates import cell_theory_slope, fit_rate, last_decade_slope
from ._common import ROUNDING_ZERO, _certified_column, _config_frames, _zero_reason

__all__ = ["CELL_BLOCKS", "cell_errors", "cell_rate_table"]


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
BYS = ("size", "modal")


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


def _without_fixed(rows, err):
    """``rows`` less those whose error is exactly 0 (the gauge fixes the block in that
    fit: e.g. the reference atom's gate slope), unless no row is above the rounding
    level (then the block estimates nothing at all); and how many."""
    fixed = rows & (err == 0)
    if fixed.any() and (rows & (np.abs(err) > ROUNDING_ZERO)).any():
        return rows & ~fixed, int(fixed.sum())
    return rows, 0


def _series(d, by, min_fits):
    """Series of one (fitted, cell, block) frame: a list of dicts with ``size`` (the
    theory size), ``n``, ``values``, ``use`` (rows in the statistic), ``fit`` (rows in
    the fit), ``modal_n`` (n where this size is the cell's modal size), ``fits`` and
    ``gauge_fixed`` (fits whose error is exactly 0 in a block that is not 0 in others:
    the gauge fixes it there, so they estimate nothing and are left out)."""
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
            use, fixed = _without_fixed(usable & (size == s) & enough, err)
            if np.unique(n[use]).size < 1:
                continue
            out.append(dict(size=int(s), n=n, values=err, use=use, fit=use,
                            modal_n=int(sum(modal[m] == s for m in n_values)),
                            fits=int(use.sum()), gauge_fixed=fixed))
    else:
        overall = _mode(size[usable])
        if np.isnan(overall):
            return out
        at_modal = np.array([size[i] == modal[m] for i, m in enumerate(n)])
        enough = np.array([counts.get((m, modal[m]), 0) >= min_fits for m in n])
        at = usable & at_modal & enough
        use, _ = _without_fixed(at, err)
        fit = use & (size == overall)
        out.append(dict(size=int(overall), n=n, values=err, use=use, fit=fit,
                        modal_n=int(sum(modal[m] == overall for m in n_values)),
                        fits=int(fit.sum()), gauge_fixed=int((at & ~use & (size == overall)).sum())))
    return out


def _fit(ser, statistic, n_boot, rng, fn=fit_rate, **kw):
    """A RateFit of the series, or the reason why there is none (str; a series with
    nothing to estimate starts with ``"identically 0"``)."""
    zero = _zero_reason(ser["values"][ser["fit"]])
    if zero:
        return zero
    try:
        return fn(ser["n"], ser["values"], statistic=statistic, n_boot=n_boot, rng=rng,
                  failed=~ser["fit"], **kw)
    except ValueError as exc:
        return str(exc)


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
        ``n_sizes`` (n in the fit), ``fits`` (fits in the fit), ``gauge_fixed`` (fits
        left out because the gauge fixes the block in them: an error of exactly 0 in a
        block that is not 0 in other fits, e.g. the reference atom's gate slope),
        ``modal_n`` (n at
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
                fits=ser["fits"], gauge_fixed=ser["gauge_fixed"], modal_n=ser["modal_n"],
                n_total=int(d["n"].nunique()),
                by=by, statistic=statistic, error="" if ok else rf))
    return pd.DataFrame(rows)
