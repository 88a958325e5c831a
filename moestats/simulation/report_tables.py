"""The tables of a sweep report: rates with bootstrap intervals (whole range and last
decade), per-n counts and statistics, local slopes, per-cell parameter rates, over the
certified fits (uncertified and failed fits counted, never averaged).

Examples
--------
>>> from moestats.simulation.report_tables import loss_name
>>> from moestats.setups import get_setup
>>> s = get_setup("softmax-over")
>>> loss_name(s, s.fitted[0])
'D2'
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..rates import fit_rate, last_decade_slope, local_slopes
from ..setups import get_setup

__all__ = ["rate_table", "per_n_table", "local_slope_table", "per_cell_table", "loss_name",
           "STATISTICS"]

STATISTICS = ("mean", "median", "trimmed")


def _theory(setup_id, fitted, column="loss"):
    cfg = {c.name: c for c in get_setup(setup_id).fitted}.get(fitted)
    return None if cfg is None else cfg.theory_for(column)


def loss_name(setup, config, column="loss"):
    """The name of a loss column of a fitted configuration: ``"D2"``, ``"D1-topk"``,
    ``"density"``, ``"D1-temperature (beta_1/tau)"``.

    ``"loss"`` is the configuration's own loss; ``"loss_voronoi"`` its Voronoi loss
    (D1 or D2 by ``k`` against ``k*``, in the top-K or temperature form of its gate);
    ``"loss_voronoi_ratio"`` that loss on the identifiable ``beta_1/tau``.

    Examples
    --------
    >>> from moestats.setups import get_setup
    >>> from moestats.simulation.report import loss_name
    >>> s = get_setup("softmax-over")
    >>> loss_name(s, s.fitted[0]), loss_name(s, s.fitted[0], "loss_density")
    ('D2', 'density')
    """
    if column == "loss":
        return config.loss
    key = column.removeprefix("loss_")
    if key == "density":
        return "density"
    if config.loss != "density":
        base = config.loss
    else:
        k_true = setup.truth.params.n_experts
        base = ("D2" if config.n_experts > k_true else "D1") + (
            "-topk" if getattr(setup.truth.gate, "k_active", None) else "")
    if key == "voronoi":
        return base
    if key == "voronoi_ratio":
        return f"{base} (beta_1/tau)"
    return key


def _excluded(part, column="loss", certified_only=True):
    """Rows left out of the statistics: failed, non-finite, or uncertified."""
    bad = (part["status"] != "ok").to_numpy() | ~np.isfinite(
        pd.to_numeric(part[column], errors="coerce").to_numpy(float))
    if certified_only and "certified" in part:
        bad |= (part["certified"] == False).fillna(False).to_numpy(bool)  # noqa: E712
    return bad


def _counts(part, column="loss"):
    bad = (part["status"] != "ok").to_numpy() | ~np.isfinite(
        pd.to_numeric(part[column], errors="coerce").to_numpy(float))
    cert = (part["certified"] if "certified" in part
            else pd.Series(pd.NA, index=part.index, dtype="boolean"))
    return dict(n_fits=len(part), n_failed=int(bad.sum()),
                n_uncertified=int(((cert == False).fillna(False).to_numpy(bool)  # noqa: E712
                                   & ~bad).sum()),
                n_certified=int(((cert == True).fillna(False).to_numpy(bool)  # noqa: E712
                                 & ~bad).sum()),
                n_certificate_unknown=int((cert.isna().to_numpy() & ~bad).sum()))


def _gauge(part):
    gauges = sorted({g for g in part.get("loss_gauge", []) if isinstance(g, str)})
    return "/".join(gauges) if gauges else None


def rate_table(df: pd.DataFrame, setup_id: str, *, columns=("loss",), n_boot=1000,
               seed=0, certified_only=True, decades=1.0) -> pd.DataFrame:
    """Fitted slopes with bootstrap intervals, per fitted configuration, column and
    statistic, over the certified fits (``certified_only``), with the slope over the
    last ``decades`` decade(s) of n beside the whole-range slope.

    Columns: ``fitted``, ``column``, ``loss`` (its name), ``loss_gauge``,
    ``statistic``, ``slope``, ``ci_low``, ``ci_high``, ``ci_level``, ``intercept``,
    ``decade_slope``, ``decade_ci_low``, ``decade_ci_high``, ``theory_slope``,
    ``n_sizes``, ``n_fits``, ``n_failed``, ``n_uncertified``, ``n_certified``,
    ``n_certificate_unknown``, ``n_not_converged``, ``certified_only``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.simulation.report import rate_table
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([1000, 3000, 10000, 30000], 10)
    >>> df = pd.DataFrame({"fitted": "k3", "n": n, "replication": np.tile(range(10), 4),
    ...     "status": "ok", "loss": 5 * n ** -0.5 * rng.lognormal(0, .2, n.size),
    ...     "converged": True, "n_iter": 10, "wall_time": 0.1, "passes": 40,
    ...     "loss_gauge": "slope", "certified": pd.array([r != 0 for r in
    ...     np.tile(range(10), 4)], dtype="boolean")})
    >>> t = rate_table(df, "softmax-over", n_boot=200)
    >>> t[["statistic", "loss", "loss_gauge", "n_certified", "n_uncertified"]]
      statistic loss loss_gauge  n_certified  n_uncertified
    0      mean   D2      slope           36              4
    1    median   D2      slope           36              4
    2   trimmed   D2      slope           36              4
    >>> bool(t.ci_low[1] < -0.5 < t.ci_high[1])
    True
    """
    setup = get_setup(setup_id)
    configs = {c.name: c for c in setup.fitted}
    rows = []
    for fitted, part in df.groupby("fitted", sort=True):
        for column in columns:
            if column not in part or (column != "loss" and np.allclose(
                    part[column].astype(float), part["loss"].astype(float), equal_nan=True)):
                continue  # absent, or this configuration's main loss again
            excluded = _excluded(part, column, certified_only)
            losses = part[column].astype(float).to_numpy()
            lname = loss_name(setup, configs[fitted], column) if fitted in configs else column
            base = dict(fitted=fitted, column=column, loss=lname,
                        loss_gauge=None if "density" in lname else _gauge(part),
                        **_counts(part, column),
                        n_not_converged=int((part["converged"] == False).sum()),  # noqa: E712
                        certified_only=certified_only)
            for stat in STATISTICS:
                try:
                    fit = fit_rate(part["n"].to_numpy(), losses, statistic=stat,
                                   n_boot=n_boot, rng=seed, failed=excluded)
                except ValueError as exc:
                    rows.append(dict(base, statistic=stat, error=str(exc)))
                    continue
                try:
                    dec = last_decade_slope(part["n"].to_numpy(), losses, statistic=stat,
                                            n_boot=n_boot, rng=seed, failed=excluded,
                                            decades=decades)
                    dec = dict(decade_slope=dec.slope, decade_ci_low=dec.ci_low,
                               decade_ci_high=dec.ci_high)
                except ValueError:
                    dec = dict(decade_slope=np.nan, decade_ci_low=np.nan,
                               decade_ci_high=np.nan)
                rows.append(dict(
                    base, statistic=stat, slope=fit.slope, ci_low=fit.ci_low,
                    ci_high=fit.ci_high, ci_level=fit.ci_level, intercept=fit.intercept,
                    **dec, theory_slope=_theory(setup_id, fitted, column),
                    n_sizes=fit.n_used))
    return pd.DataFrame(rows)


def per_n_table(df: pd.DataFrame, columns=("loss",), certified_only=True) -> pd.DataFrame:
    """Per (fitted, n): fits, certified / uncertified / failed counts, median passes,
    and the mean, median, 10%/90% quantiles of each column over the certified fits.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.simulation.report import per_n_table
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([1000, 3000, 10000, 30000], 10)
    >>> df = pd.DataFrame({"fitted": "k3", "n": n, "replication": np.tile(range(10), 4),
    ...     "status": "ok", "loss": 5 * n ** -0.5 * rng.lognormal(0, .2, n.size),
    ...     "converged": True, "n_iter": 10, "wall_time": 0.1, "passes": 40,
    ...     "loss_gauge": "slope", "certified": pd.array([r != 0 for r in
    ...     np.tile(range(10), 4)], dtype="boolean")})
    >>> per_n_table(df)[["n", "replications", "certified", "uncertified", "failed"]]
           n  replications  certified  uncertified  failed
    0   1000            10          9            1       0
    1   3000            10          9            1       0
    2  10000            10          9            1       0
    3  30000            10          9            1       0
    """
    out = []
    for (fitted, n), part in df.groupby(["fitted", "n"], sort=True):
        counts = _counts(part)
        used = part[~_excluded(part, "loss", certified_only)]
        ok = part[part["status"] == "ok"]
        passes = pd.to_numeric(ok.get("passes"), errors="coerce") if "passes" in ok else None
        row = dict(fitted=fitted, n=n, replications=len(part), failed=counts["n_failed"],
                   certified=counts["n_certified"], uncertified=counts["n_uncertified"],
                   certificate_unknown=counts["n_certificate_unknown"],
                   not_converged=int((ok["converged"] == False).sum()),  # noqa: E712
                   median_passes=float(passes.median()) if passes is not None
                   and passes.notna().any() else np.nan,
                   mean_n_iter=float(ok["n_iter"].mean()) if len(ok) else np.nan,
                   mean_wall_time=float(part["wall_time"].mean()))
        for c in columns:
            if c in used:
                v = used[c].astype(float)
                row.update({f"{c}_mean": v.mean(), f"{c}_median": v.median(),
                            f"{c}_q10": v.quantile(0.1), f"{c}_q90": v.quantile(0.9)})
        out.append(row)
    return pd.DataFrame(out)


def local_slope_table(df: pd.DataFrame, columns=("loss",), *, statistic="median",
                      window="auto", n_boot=1000, seed=0, certified_only=True):
    """Local slopes with intervals (:func:`moestats.rates.local_slopes`) per fitted
    configuration and column: the curvature check of the rate figure, as a table.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestats.simulation.report import local_slope_table
    >>> rng = np.random.default_rng(0)
    >>> n = np.repeat([1000, 3000, 10000, 30000], 10)
    >>> df = pd.DataFrame({"fitted": "k3", "n": n, "replication": np.tile(range(10), 4),
    ...     "status": "ok", "loss": 5 * n ** -0.5 * rng.lognormal(0, .2, n.size),
    ...     "converged": True, "n_iter": 10, "wall_time": 0.1, "passes": 40,
    ...     "loss_gauge": "slope", "certified": pd.array([r != 0 for r in
    ...     np.tile(range(10), 4)], dtype="boolean")})
    >>> t = local_slope_table(df, n_boot=100)
    >>> t[["window", "n_low", "n_high"]].astype(int).values.tolist()
    [[2, 1000, 3000], [2, 3000, 10000], [2, 10000, 30000]]
    >>> bool(((t.ci_low < t.slope) & (t.slope < t.ci_high)).all())
    True
    """
    from ..plotting.slopes import _decades, auto_window
    parts = []
    for fitted, part in df.groupby("fitted", sort=True):
        for column in columns:
            if column not in part:
                continue
            excluded = _excluded(part, column, certified_only)
            usable = part.loc[~excluded, "n"].nunique()
            if usable < 2:
                continue
            w = (auto_window(usable, _decades(part.loc[~excluded, "n"]))
                 if window == "auto" else min(int(window), usable))
            ls = local_slopes(part["n"].to_numpy(), part[column].astype(float).to_numpy(),
                              window=w, statistic=statistic, failed=excluded,
                              n_boot=n_boot, rng=seed)
            parts.append(ls.assign(fitted=fitted, column=column, window=w,
                                   statistic=statistic))
    cols = ["fitted", "column", "statistic", "window", "n_center", "slope", "ci_low",
            "ci_high", "n_low", "n_high"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _over_specified(setup):
    k_true = setup.truth.params.n_experts
    return [c.name for c in setup.fitted if c.n_experts > k_true]


def per_cell_table(df: pd.DataFrame, setup_id: str, *, n_boot=1000, seed=0,
                   certified_only=True, by="size"):
    """Per-cell slopes of the over-specified configurations
    (:func:`moestats.plotting.cell_rate_table`), with the loss gauge; empty when the
    setup has none or the results hold no per-cell columns."""
    from ..plotting.cell_tables import cell_rate_table
    over = [f for f in _over_specified(get_setup(setup_id)) if f in set(df["fitted"])]
    if not over or not any(re.match(r"^cell\d+_size$", str(c)) for c in df.columns):
        return pd.DataFrame()
    parts = []
    for fitted in over:
        sub = df[df["fitted"] == fitted]
        if sub.filter(regex=r"^cell\d+_size$").notna().any().any():
            parts.append(cell_rate_table(sub, by=by, n_boot=n_boot, rng=seed,
                                         certified_only=certified_only)
                         .assign(loss_gauge=_gauge(sub)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _loss_columns(df):
    """``loss`` and every other ``loss_*`` column that is not a copy of it."""
    main = df["loss"].astype(float)
    return ["loss"] + [c for c in df.columns if c.startswith("loss_") and c != "loss_gauge"
                       and not np.allclose(df[c].astype(float), main, equal_nan=True)]
