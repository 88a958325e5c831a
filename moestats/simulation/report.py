"""From a results store to rate tables, CSV/JSON exports and figures.

Every statistic and rate fit is taken over the *certified* fits (the stationarity
certificate of the user guide's *Solvers and certificates* holds) that did not fail; uncertified and failed fits
are counted in every table and drawn in every figure, never silently averaged. Every
loss is named with its gauge. For an over-specified configuration the report adds the
per-cell parameter rates (the user guide's *Simulations*, rates).

Faults. :func:`export_report` opens the store read-only (an SQLite ``mode=ro`` URI:
it never changes the store, and works in a read-only directory with a writable
``out_dir``), and writes every file atomically (a temporary file beside it, then a
rename: a full disk or an interrupt never leaves a half-written figure or table under
its final name). A store whose fits all failed (or none is usable) gets its tables
and no figure, with a note in ``rates.attrs["notes"]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..rates import fit_rate, last_decade_slope, local_slopes
from ..setups import get_setup
from .atomic import remove_stale_temporaries, save_figure, write_csv, write_text
from .faults import EmptyStoreError, os_error
from .store import ResultStore

__all__ = ["rate_table", "per_n_table", "local_slope_table", "per_cell_table",
           "export_report", "results_markdown", "loss_name"]

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
    from ..plotting.slopes import auto_window
    parts = []
    for fitted, part in df.groupby("fitted", sort=True):
        for column in columns:
            if column not in part:
                continue
            excluded = _excluded(part, column, certified_only)
            usable = part.loc[~excluded, "n"].nunique()
            if usable < 2:
                continue
            w = auto_window(usable) if window == "auto" else min(int(window), usable)
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
    from ..plotting.cells import cell_rate_table
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


def export_report(store_path, out_dir=None, *, name=None, n_boot=1000, figures=True,
                  certified_only=True):
    """Write the per-replication results (CSV), the per-n table (CSV), the slopes (JSON),
    the local slopes (CSV), the per-cell slopes (CSV, over-specified setups) and the
    figures (PNG and SVG) of a store; return the rate table.

    Files: ``<name>-results.csv``, ``<name>-table.csv`` (with the certified,
    uncertified and failed counts per n), ``<name>-slopes.json`` (the spec, the rate
    table and the per-cell slopes), ``<name>-local-slopes.csv``, ``<name>.png``/``.svg``
    (one loss against n, the curvature check, the fit counts and passes; one figure per
    further loss, ``<name>-<loss>.png``, e.g. ``<name>-density.png``: one loss per
    axis, so configurations with different losses get different figures),
    ``<name>-parameters.png``
    (per-parameter errors, maximum over the cells) and, for every over-specified
    configuration with per-cell errors, ``<name>-per-cell-rates-<fitted>.png`` and
    ``<name>-per-cell-slopes.csv``.

    The store is opened read-only and never changed; every file is written atomically
    (temporary file, then rename). When no fit is usable (all failed, or uncertified
    with ``certified_only``), the tables are written and the figures skipped, with a
    note in ``rates.attrs["notes"]``.

    Raises
    ------
    StoreError
        The store is missing, not a moestats store, corrupt
        (:class:`~moestats.simulation.faults.EmptyStoreError`, also a ValueError, when
        it holds no results).
    FileSystemError
        An output cannot be written (disk full, read-only, permission denied).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from moestats.simulation import ResultStore, SweepSpec
    >>> from moestats.simulation.report import export_report
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.sqlite"
    >>> spec = SweepSpec(setup="softmax-exact", fitted=("k2",), sample_sizes=(100, 1000),
    ...                  replications=2, density_sample=0)
    >>> with ResultStore(path, spec) as store:
    ...     store.add_many([{"fitted": "k2", "n": n, "replication": r, "status": "ok",
    ...                      "loss": n ** -0.5 * (1 + r / 10), "converged": True,
    ...                      "n_iter": 5, "wall_time": 0.1, "loss_gauge": "slope"}
    ...                     for n in (100, 1000) for r in range(2)])
    >>> rates = export_report(path, n_boot=0, figures=False)
    >>> rates[["statistic", "loss", "loss_gauge"]].values.tolist()[0]
    ['mean', 'D1', 'slope']
    >>> sorted(p.name for p in path.parent.iterdir() if p.suffix == ".csv" or p.suffix == ".json")
    ['demo-local-slopes.csv', 'demo-results.csv', 'demo-slopes.json', 'demo-table.csv']
    """
    store_path = Path(store_path)
    with ResultStore(store_path, readonly=True) as store:
        spec = store.spec_dict
        df = store.to_frame()
    if spec is None or df.empty:
        raise EmptyStoreError(f"{store_path} holds no results yet; run the sweep first "
                              "(moestats run), then report it")
    setup_id = spec["setup"]
    name = name or store_path.stem
    out_dir = Path(out_dir) if out_dir is not None else store_path.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, out_dir, "creating the report directory") from None
    remove_stale_temporaries(out_dir)
    columns = _loss_columns(df)
    rates = rate_table(df, setup_id, columns=columns, n_boot=n_boot,
                       certified_only=certified_only)
    cells = per_cell_table(df, setup_id, n_boot=n_boot, certified_only=certified_only)
    drop = ("losses", "errors", "params", "init", "cells")
    write_csv(df[[c for c in df.columns if c not in drop]], out_dir / f"{name}-results.csv",
              index=False)
    write_csv(per_n_table(df, columns, certified_only), out_dir / f"{name}-table.csv",
              index=False)
    write_csv(local_slope_table(df, columns, n_boot=n_boot, certified_only=certified_only),
              out_dir / f"{name}-local-slopes.csv", index=False)
    if not cells.empty:
        write_csv(cells, out_dir / f"{name}-per-cell-slopes.csv", index=False)
    payload = {"spec": spec, "certified_only": certified_only,
               "rates": json.loads(rates.to_json(orient="records")),
               "per_cell": json.loads(cells.to_json(orient="records")) if len(cells) else []}
    write_text(out_dir / f"{name}-slopes.json", json.dumps(payload, indent=2))
    rates.attrs["notes"] = []
    usable = int((~_excluded(df, "loss", certified_only)).sum())
    if figures and usable == 0:
        n_failed = int(_counts(df)["n_failed"])
        rates.attrs["notes"].append(
            f"{store_path}: no usable fit ({n_failed} of {len(df)} failed"
            + (f", {len(df) - n_failed} uncertified" if len(df) > n_failed else "")
            + "); tables written, figures skipped")
    elif figures:
        _figures(df, setup_id, spec, out_dir, name, columns, n_boot, certified_only)
    return rates


_STARTS = {"near-truth": "start near the truth (the papers')",
           "near-truth-fixed": "near-truth start, noise fixed in n",
           "agnostic": "truth-agnostic starts"}


def _start_text(spec):
    text = _STARTS.get(spec.get("start"), f"start: {spec.get('start')}")
    if spec.get("start") == "agnostic" and spec.get("n_init"):
        text += f" (best certified of {spec['n_init']})"
    return text


def _loss_groups(df, setup, columns):
    """``[(file suffix, loss name, frame, theory)]``: one figure per loss name, every
    configuration whose column carries that loss on its axis (column ``__loss``)."""
    configs = {c.name: c for c in setup.fitted}
    groups = {}
    for fitted, part in df.groupby("fitted", sort=False):
        cfg = configs.get(fitted)
        for column in columns:
            if column not in part or not np.isfinite(part[column].astype(float)).any():
                continue
            if column != "loss" and np.allclose(part[column].astype(float),
                                                part["loss"].astype(float), equal_nan=True):
                continue
            lname = loss_name(setup, cfg, column) if cfg else column
            theory = cfg.theory_for(column) if cfg else None
            groups.setdefault(lname, []).append((fitted, column, theory))
    out = []
    for i, (lname, members) in enumerate(groups.items()):
        frame = pd.concat([df[df["fitted"] == f].assign(__loss=df.loc[df["fitted"] == f, c])
                           for f, c, _ in members])
        suffix = "" if i == 0 else "-" + re.sub(r"[^A-Za-z0-9-]+", "_", lname).strip("_")
        out.append((suffix, lname, frame, {f: t for f, _, t in members}))
    return out


def _atom_labels(setup):
    p = setup.truth.params
    fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in np.ravel(v)) + ")" \
        if np.size(v) > 1 else f"{float(np.ravel(v)[0]):g}"  # noqa: E731
    return [f"true atom {j}: \u03b2\u2081={fmt(p.gate_coef[j])}, a={fmt(p.expert_coef[j])}, "
            f"b={fmt(p.expert_intercept[j])}, \u03bd={fmt(p.expert_var[j])}"
            for j in range(p.n_experts)]


def _save(fig, out_dir, stem):
    for ext in ("png", "svg"):
        save_figure(fig, out_dir / f"{stem}.{ext}", dpi=130, bbox_inches="tight")


def _figures(df, setup_id, spec, out_dir, name, columns, n_boot, certified_only):
    from ..plotting import plot_cell_rates, plot_parameter_errors, plot_rate_summary
    setup = get_setup(setup_id)
    base = (f"{setup_id} ({spec['form']}): {setup.description}\n{_start_text(spec)}; "
            f"certify_tol {spec.get('certify_tol', 'n/a')} nats; "
            f"{'certified fits only' if certified_only else 'all fits that did not fail'}")
    for suffix, lname, frame, theory in _loss_groups(df, setup, columns):
        fig = plot_rate_summary(frame, column="__loss", theory_slope=theory, title=base,
                                loss_name=lname, n_boot=n_boot,
                                certified_only=certified_only)
        fig.axes[0].set_title(f"{lname} vs n")
        fig.axes[1].set_ylabel(f"slope of log {lname} on log n")
        _save(fig, out_dir, f"{name}{suffix}")
    if any(c.startswith("err_") for c in df.columns):
        _save(plot_parameter_errors(df, n_boot=n_boot, certified_only=certified_only),
              out_dir, f"{name}-parameters")
    has_cells = df.filter(regex=r"^cell\d+_size$")
    for fitted in _over_specified(setup):
        sub = df[df["fitted"] == fitted]
        if sub.empty or has_cells.empty or not has_cells.loc[sub.index].notna().any().any():
            continue
        fig = plot_cell_rates(sub, n_boot=n_boot, certified_only=certified_only,
                              cell_labels=_atom_labels(setup),
                              title=f"{setup_id} ({spec['form']}), {fitted}, "
                                    f"{_start_text(spec)}")
        _save(fig, out_dir, f"{name}-per-cell-rates-{fitted}")


def _fmt_slope(rec, key="slope", lo="ci_low", hi="ci_high"):
    if rec is None or rec.get(key) is None:
        return "n/a"
    if rec.get(lo) is None:
        return f"{rec[key]:+.2f}"
    return f"{rec[key]:+.2f} [{rec[lo]:+.2f}, {rec[hi]:+.2f}]"


def results_markdown(slopes_files) -> str:
    """A markdown table of measured against theory slopes from ``*-slopes.json`` files.

    One row per (setup, form, start protocol, fitted configuration, loss column): the
    loss with its
    gauge, the theory slope, the slope of the mean and of the median with their 95%
    intervals, the median's slope over the last decade of n, and the uncertified and
    failed fit counts (the slopes are over the certified fits).
    """
    lines = ["| setup | form | start | fitted | loss (gauge) | theory slope | "
             "slope of mean [95% CI] | slope of median [95% CI] | median, last decade | "
             "uncertified / failed / fits |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in slopes_files:
        data = json.loads(Path(path).read_text())
        spec = data["spec"]
        setup = get_setup(spec["setup"])
        configs = {c.name: c for c in setup.fitted}
        by_key = {}
        for rec in data["rates"]:
            by_key.setdefault((rec["fitted"], rec["column"]), {})[rec["statistic"]] = rec
        for (fitted, column), recs in by_key.items():
            cfg = configs[fitted]
            any_rec = next(iter(recs.values()))
            lname = any_rec.get("loss") or (cfg.loss if column == "loss"
                                             else column.removeprefix("loss_"))
            gauge = any_rec.get("loss_gauge")
            lname += (" (gauge-free)" if "density" in lname
                      else f" ({gauge})" if gauge else " (gauge not recorded)")
            theory = cfg.theory_for(column)
            theory_txt = ((cfg.theory_text or "—") if theory is None and column == "loss"
                          else "—" if theory is None else f"{theory:+.2f}")
            mean, median = recs.get("mean"), recs.get("median")
            counts = (f"{any_rec.get('n_uncertified', 'n/a')} / {any_rec.get('n_failed', 0)} / "
                      f"{any_rec.get('n_fits', 'n/a')}")
            lines.append(
                f"| {spec['setup']} | {spec['form']} | {spec.get('start', 'near-truth')} | "
                f"{fitted} | {lname} | {theory_txt} | "
                f"{_fmt_slope(mean)} | {_fmt_slope(median)} | "
                f"{_fmt_slope(median, 'decade_slope', 'decade_ci_low', 'decade_ci_high')} | "
                f"{counts} |")
    return "\n".join(lines) + "\n"
