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

The setup of a store is read from its spec: a built-in setup by its id, a custom truth
(a config's ``[truth]`` table) from the truth data the spec carries
(:func:`~moestats.simulation.truth_config.setup_of_spec_dict`). ``moestats run`` passes
the config's ``description`` as the figure's title (``export_report(..., description=)``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import remove_stale_temporaries, save_figure, write_csv, write_text
from .faults import EmptyStoreError, os_error
from .report_tables import (_counts, _excluded, _loss_columns, _over_specified,
                            local_slope_table, loss_name, per_cell_table, per_n_table,
                            rate_table)
from .store import ResultStore
from .truth_config import setup_of_spec_dict

__all__ = ["rate_table", "per_n_table", "local_slope_table", "per_cell_table",
           "export_report", "results_markdown", "timing_markdown", "sweep_timing", "loss_name"]

def export_report(store_path, out_dir=None, *, name=None, n_boot=1000, figures=True,
                  certified_only=True, description=None):
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
    configuration with per-cell errors, ``<name>-per-cell-rates-<fitted>.png`` (the
    largest error over each cell's atoms, as stored), ``<name>-per-cell-rates-<fitted>-
    weighted.png`` (the theory's weighted form, recomputed from the stored parameters:
    :mod:`~moestats.simulation.cell_forms`) and ``<name>-per-cell-slopes.csv`` (both
    forms, column ``form``: ``"max"`` or ``"weighted"``).

    ``description`` (a config's ``description``) titles the figures, after the setup id
    and form; default: the setup's own description.

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
        sessions = store.sessions()
    if spec is None or df.empty:
        raise EmptyStoreError(f"{store_path} holds no results yet; run the sweep first "
                              "(moestats run), then report it")
    setup = setup_of_spec_dict(spec)
    name = name or store_path.stem
    out_dir = Path(out_dir) if out_dir is not None else store_path.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, out_dir, "creating the report directory") from None
    remove_stale_temporaries(out_dir)
    columns = _loss_columns(df)
    # the report tables take a setup id or the Setup itself (a custom truth has no id)
    rates = rate_table(df, setup, columns=columns, n_boot=n_boot,
                       certified_only=certified_only)
    weighted = _weighted_cells(df, setup)
    cells = per_cell_table(df, setup, n_boot=n_boot, certified_only=certified_only)
    if len(cells):
        cells = cells.assign(form="max")
        if weighted is not None:
            cells = pd.concat([cells, per_cell_table(
                weighted, setup, n_boot=n_boot, certified_only=certified_only).assign(
                form="weighted")], ignore_index=True)
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
               "per_cell": json.loads(cells.to_json(orient="records")) if len(cells) else [],
               "timing": sweep_timing(df, sessions)}
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
        _figures(df, setup, spec, out_dir, name, columns, n_boot, certified_only,
                 description, weighted)
    return rates


def _weighted_cells(df, setup):
    """The weighted per-cell errors (:func:`~moestats.simulation.cell_forms.weighted_cell_frame`)
    of the over-specified configurations with stored parameters, else None."""
    from .cell_forms import weighted_cell_frame
    over = [f for f in _over_specified(setup) if f in set(df["fitted"])]
    if not over or "params" not in df or not df["params"].map(
            lambda v: isinstance(v, str)).any():
        return None
    return weighted_cell_frame(df, setup, fitted=over)


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


def _figures(df, setup, spec, out_dir, name, columns, n_boot, certified_only,
             description=None, weighted=None):
    from ..plotting import plot_cell_rates, plot_parameter_errors, plot_rate_summary
    setup_id = setup.id
    base = (f"{setup_id} ({spec['form']}): {description or setup.description}\n"
            f"{_start_text(spec)}; "
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
        title = f"{setup_id} ({spec['form']}), {fitted}, {_start_text(spec)}"
        fig = plot_cell_rates(sub, n_boot=n_boot, certified_only=certified_only,
                              cell_labels=_atom_labels(setup),
                              title=title + "; largest error over a cell's atoms")
        _save(fig, out_dir, f"{name}-per-cell-rates-{fitted}")
        if weighted is not None and (weighted["fitted"] == fitted).any():
            fig = plot_cell_rates(weighted[weighted["fitted"] == fitted], n_boot=n_boot,
                                  certified_only=certified_only,
                                  cell_labels=_atom_labels(setup),
                                  title=title + "; weighted over a cell's atoms "
                                  "(the theory's form)")
            _save(fig, out_dir, f"{name}-per-cell-rates-{fitted}-weighted")


def _fmt_slope(rec, key="slope", lo="ci_low", hi="ci_high"):
    if rec is None or rec.get(key) is None:
        return "n/a"
    if rec.get(lo) is None:
        return f"{rec[key]:+.2f}"
    return f"{rec[key]:+.2f} [{rec[lo]:+.2f}, {rec[hi]:+.2f}]"


def sweep_timing(df, sessions) -> dict:
    """The cost of a sweep: its fits, their summed time, and its run sessions.

    ``fit_s`` sums the stored per-fit ``wall_time`` (a fit runs on one core, so this
    is the sweep's CPU time up to the data generation and losses outside the fits);
    ``wall_s`` sums the recorded run sessions' wall times
    (:meth:`~moestats.simulation.ResultStore.begin_session`; None when the store
    records none: one written before moestats recorded them). Only sessions that stored
    a fit count: one stopped before its first fit adds no time (a session's time ends
    at its last stored fit) and its start load says nothing about the fits;
    ``empty_sessions`` counts those.

    Examples
    --------
    >>> import pandas as pd
    >>> sweep_timing(pd.DataFrame({"wall_time": [1.0, 2.5]}),
    ...              [{"wall_s": 2.0, "fits": 2, "workers": "2 local processes",
    ...                "cpu": "AMD EPYC", "nproc": 2, "load": 0.1, "moestats": "0.8.0"}])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'fits': 2, 'fit_s': 3.5, 'sessions': 1, 'empty_sessions': 0, 'wall_s': 2.0,
     'session_fits': 2, 'workers': ['2 local processes'],
     'machines': ['AMD EPYC (nproc 2)'], 'max_load': 0.1, 'versions': ['0.8.0']}
    """
    wall = pd.to_numeric(df["wall_time"], errors="coerce") if "wall_time" in df else None
    used = [s for s in sessions if s.get("fits", 1) > 0]
    out = dict(fits=int(len(df)),
               fit_s=None if wall is None else round(float(wall.sum(skipna=True)), 3),
               sessions=len(used), empty_sessions=len(sessions) - len(used), wall_s=None,
               session_fits=None, workers=[], machines=[], max_load=None, versions=[])
    sessions = used
    if sessions:
        loads = [s["load"] for s in sessions if s.get("load") is not None]
        out.update(wall_s=round(sum(s["wall_s"] for s in sessions), 3),
                   session_fits=sum(s["fits"] for s in sessions),
                   workers=sorted({s["workers"] for s in sessions}),
                   machines=sorted({f"{s['cpu']} (nproc {s['nproc']})" for s in sessions}),
                   max_load=max(loads) if loads else None,
                   versions=sorted({s["moestats"] for s in sessions}))
    return out


def timing_markdown(slopes_files) -> str:
    """A markdown table of the sweeps' costs (:func:`sweep_timing`) from ``*-slopes.json``."""
    lines = ["| setup | form | start | fits | time in fits (CPU s) | sweep wall time | "
             "run sessions: workers, machine, highest load at a start |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in slopes_files:
        data = json.loads(Path(path).read_text())
        spec, t = data["spec"], data.get("timing")
        head = f"| {spec['setup']} | {spec['form']} | {spec.get('start', 'near-truth')} | "
        if t is None:
            lines.append(head + "— | — | — | not in this report (made before it recorded "
                         "timing) |")
            continue
        fit_s = "—" if t["fit_s"] is None else f"{t['fit_s']:.0f}"
        if t["sessions"]:
            wall = f"{t['wall_s']:.0f} s"
            if t["session_fits"] != t["fits"]:
                wall += f" ({t['session_fits']} of the fits)"
            detail = (f"{t['sessions']}: {', '.join(t['workers'])}; {', '.join(t['machines'])}; "
                      f"{t['max_load']}")
        elif t.get("empty_sessions"):
            wall, detail = "not recorded", "every run session stopped before its first fit"
        else:
            wall, detail = "not recorded", "store written before moestats recorded run sessions"
        lines.append(head + f"{t['fits']} | {fit_s} | {wall} | {detail} |")
    return "\n".join(lines) + "\n"


def results_markdown(slopes_files) -> str:
    """A markdown table of measured against theory slopes from ``*-slopes.json`` files.

    One row per (setup, form, start protocol, fitted configuration, loss column): the
    loss with its
    gauge, the theory slope, the slope of the mean and of the median with their 95%
    intervals, the median's slope over the last decade of n, the uncertified and
    failed fit counts (the slopes are over the certified fits), and the moestats
    version that made the sweep.
    """
    lines = ["| setup | form | start | fitted | loss (gauge) | theory slope | "
             "slope of mean [95% CI] | slope of median [95% CI] | median, last decade | "
             "uncertified / failed / fits | moestats |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in slopes_files:
        data = json.loads(Path(path).read_text())
        spec = data["spec"]
        setup = setup_of_spec_dict(spec)
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
                f"{counts} | {spec.get('moestats_version', '—')} |")
    return "\n".join(lines) + "\n"
