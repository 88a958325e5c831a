"""From a results store to rate tables, CSV/JSON exports and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..rates import fit_rate
from ..setups import get_setup
from .store import ResultStore

__all__ = ["rate_table", "per_n_table", "export_report", "results_markdown"]

STATISTICS = ("mean", "median", "trimmed")


def _theory(setup_id, fitted, column="loss"):
    cfg = {c.name: c for c in get_setup(setup_id).fitted}.get(fitted)
    return None if cfg is None else cfg.theory_for(column)


def rate_table(df: pd.DataFrame, setup_id: str, *, columns=("loss",), n_boot=1000,
               seed=0) -> pd.DataFrame:
    """Fitted slopes with bootstrap intervals, per fitted configuration, column and statistic."""
    rows = []
    for fitted, part in df.groupby("fitted", sort=True):
        failed = (part["status"] != "ok").to_numpy()
        for column in columns:
            if column not in part or (column != "loss" and np.allclose(
                    part[column].astype(float), part["loss"].astype(float), equal_nan=True)):
                continue  # absent, or this configuration's main loss again
            losses = part[column].astype(float).to_numpy()
            for stat in STATISTICS:
                try:
                    fit = fit_rate(part["n"].to_numpy(), losses, statistic=stat,
                                   n_boot=n_boot, rng=seed, failed=failed)
                except ValueError as exc:
                    rows.append(dict(fitted=fitted, column=column, statistic=stat,
                                     error=str(exc)))
                    continue
                rows.append(dict(
                    fitted=fitted, column=column, statistic=stat, slope=fit.slope,
                    ci_low=fit.ci_low, ci_high=fit.ci_high, ci_level=fit.ci_level,
                    intercept=fit.intercept, theory_slope=_theory(setup_id, fitted, column),
                    n_sizes=len(fit.n_values), n_failed=fit.n_failed,
                    n_not_converged=int((part["converged"] == False).sum()),  # noqa: E712
                ))
    return pd.DataFrame(rows)


def per_n_table(df: pd.DataFrame, columns=("loss",)) -> pd.DataFrame:
    """Per (fitted, n): mean, median, 10%/90% quantiles of each column, failures, mean wall time."""
    out = []
    for (fitted, n), part in df.groupby(["fitted", "n"], sort=True):
        ok = part[part["status"] == "ok"]
        row = dict(fitted=fitted, n=n, replications=len(part), failed=len(part) - len(ok),
                   not_converged=int((ok["converged"] == False).sum()),  # noqa: E712
                   mean_n_iter=float(ok["n_iter"].mean()) if len(ok) else np.nan,
                   mean_wall_time=float(part["wall_time"].mean()))
        for c in columns:
            if c in ok:
                v = ok[c].astype(float)
                row.update({f"{c}_mean": v.mean(), f"{c}_median": v.median(),
                            f"{c}_q10": v.quantile(0.1), f"{c}_q90": v.quantile(0.9)})
        out.append(row)
    return pd.DataFrame(out)


def _loss_columns(df):
    """``loss`` and every other ``loss_*`` column that is not a copy of it."""
    main = df["loss"].astype(float)
    return ["loss"] + [c for c in df.columns if c.startswith("loss_")
                       and not np.allclose(df[c].astype(float), main, equal_nan=True)]


def export_report(store_path, out_dir=None, *, name=None, n_boot=1000, figures=True):
    """Write the per-replication results (CSV), the per-n table (CSV), the slopes (JSON)
    and the figures (PNG and SVG) of a store; return the rate table.

    Files: ``<name>-results.csv``, ``<name>-table.csv``, ``<name>-slopes.json``,
    ``<name>.png``/``.svg`` (loss against n and the local slopes) and
    ``<name>-parameters.png``/``.svg`` (per-parameter errors).
    """
    store_path = Path(store_path)
    with ResultStore(store_path) as store:
        spec = store.spec_dict
        df = store.to_frame()
    if spec is None or df.empty:
        raise ValueError(f"{store_path} holds no results")
    setup_id = spec["setup"]
    name = name or store_path.stem
    out_dir = Path(out_dir) if out_dir is not None else store_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = _loss_columns(df)
    rates = rate_table(df, setup_id, columns=columns, n_boot=n_boot)
    keep = [c for c in df.columns if c not in ("losses", "errors", "params", "init")]
    df[keep].to_csv(out_dir / f"{name}-results.csv", index=False)
    per_n_table(df, columns).to_csv(out_dir / f"{name}-table.csv", index=False)
    payload = {"spec": spec, "rates": json.loads(rates.to_json(orient="records"))}
    (out_dir / f"{name}-slopes.json").write_text(json.dumps(payload, indent=2))
    if figures:
        _figures(df, setup_id, spec, out_dir, name)
    return rates


def _figures(df, setup_id, spec, out_dir, name):
    from ..plotting import plot_parameter_errors, plot_rate_summary
    setup = get_setup(setup_id)
    theory = {c.name: c.theory_slope for c in setup.fitted}
    start = "start noise fixed in n" if spec["start"] == "near-truth-fixed" else "start near the truth"
    title = f"{setup_id} ({spec['form']}): {setup.description}; {start}"
    fig = plot_rate_summary(df, column="loss", theory_slope=theory, title=title)
    for ext in ("png", "svg"):
        fig.savefig(out_dir / f"{name}.{ext}", dpi=130, bbox_inches="tight")
    for extra in _loss_columns(df)[1:]:
        fig = plot_rate_summary(df, column=extra,
                                theory_slope={c.name: c.theory_for(extra) for c in setup.fitted},
                                title=f"{setup_id}: {extra}")
        for ext in ("png", "svg"):
            fig.savefig(out_dir / f"{name}-{extra}.{ext}", dpi=130, bbox_inches="tight")
    if any(c.startswith("err_") for c in df.columns):
        fig = plot_parameter_errors(df)
        for ext in ("png", "svg"):
            fig.savefig(out_dir / f"{name}-parameters.{ext}", dpi=130, bbox_inches="tight")


def _fmt_slope(rec):
    if rec is None or rec.get("slope") is None:
        return "n/a"
    return f"{rec['slope']:+.2f} [{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}]"


def results_markdown(slopes_files) -> str:
    """A markdown table of measured against theory slopes from ``*-slopes.json`` files.

    One row per (setup, form, fitted configuration, loss column): the loss, the theory
    slope, the slope of the mean and of the median with their 95% intervals, and the
    failed and unconverged fit counts.
    """
    lines = ["| setup | form | fitted | loss | theory slope | slope of mean [95% CI] | "
             "slope of median [95% CI] | failed / not converged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
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
            loss = cfg.loss if column == "loss" else column.removeprefix("loss_")
            theory = cfg.theory_for(column)
            theory_txt = ("no polynomial rate" if cfg.theory_slope is None and column == "loss"
                          else "—" if theory is None else f"{theory:+.2f}")
            mean = recs.get("mean")
            counts = (f"{mean.get('n_failed', 0)} / {mean.get('n_not_converged', 0)}"
                      if mean else "")
            lines.append(f"| {spec['setup']} | {spec['form']} | {fitted} | {loss} | {theory_txt} | "
                         f"{_fmt_slope(mean)} | {_fmt_slope(recs.get('median'))} | {counts} |")
    return "\n".join(lines) + "\n"
