"""Does ``moestats run <setup> --full`` reproduce the committed figure?

Compares, task by task, the committed results table of a sweep
(``figures/<name>-results.csv.gz``, the data behind the committed figure) with the store
of a rerun of the same config (``moestats run simulations/<config>.toml --full --results
<dir>``), and reports for every pair

- the tasks both hold, and how many changed status (ok/failed) or certificate verdict;
- the largest absolute log-likelihood difference, and how many fits moved by more than
  the certificate's tolerance (1e-3 nats: another maximum);
- the largest relative difference of the main loss, and how many fits moved by more
  than 1e-3 relative;
- the slope of the median main loss (certified fits) from each, and their difference;
- for the fits whose main loss moved by more than 1e-3 relative: how far their density
  error (gauge-free) moved, and how many of the rerun's fits have a gate slope at the
  bound of the config's parameter space (``[space] coef_bound``), where the likelihood is
  flat along the gate and the parameter loss is not determined by the density.

Usage::

    python benchmarks/check_reproduction.py --pair softmax-exact-full=results/softmax-exact-full-v070 ...
        [--out benchmarks/results/check_reproduction]

Each ``--pair`` is ``<committed name>=<rerun results directory>``. Writes ``<out>.json``
and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["fitted", "n", "replication"]
LL_TOL = 1e-3
LOSS_TOL = 1e-3


def store_frame(directory: Path, with_sessions=False):
    """All results of the one store in a sweep's results ``directory`` (read-only), and
    with ``with_sessions`` its recorded run sessions and its sweep spec."""
    from moestats.simulation import ResultStore
    paths = sorted(Path(directory).glob("*.sqlite"))
    if not paths:
        raise SystemExit(f"no store in {directory}: run the sweep first")
    store = ResultStore(paths[0], readonly=True)
    try:
        frame = store.to_frame()
        return (frame, store.sessions(), store.spec_dict) if with_sessions else frame
    finally:
        store.close()


def session_cost(sessions) -> dict:
    """The wall time of a rerun from its store's run sessions: the session part of
    :func:`moestats.simulation.report.sweep_timing` (seconds in all, the workers and
    machines, the highest 1-minute load at a session's start; sessions stopped before
    their first fit are not counted, only named in ``empty_sessions``)."""
    from moestats.simulation.report import sweep_timing
    timing = sweep_timing(pd.DataFrame(), sessions)
    return {key: timing[key] for key in
            ("sessions", "empty_sessions", "wall_s", "workers", "machines", "max_load")}


def _certified(df):
    return (df["status"] == "ok") & df["certified"].fillna(False).astype(bool)


def _median_slope(df):
    from moestats.rates import fit_rate
    out = {}
    for fitted, part in df.groupby("fitted"):
        losses = part["loss"].astype(float).to_numpy()
        bad = ~_certified(part).to_numpy() | ~np.isfinite(losses)
        if np.unique(part["n"][~bad]).size < 2:
            continue
        out[fitted] = fit_rate(part["n"].to_numpy(float), losses, statistic="median",
                               n_boot=0, failed=bad).slope
    return out


def _fit_seconds(df):
    """Seconds spent in the fits of a results table (None without the column)."""
    if "wall_time" not in df:
        return None
    return float(pd.to_numeric(df["wall_time"], errors="coerce").sum())


def _max_gate_slope(params) -> float:
    """The largest absolute gate slope of a stored fit (its ``params`` JSON)."""
    if not isinstance(params, str):
        return float("nan")
    return float(np.max(np.abs(json.loads(params)["gate_coef"])))


def moved_fits(a: pd.DataFrame, b: pd.DataFrame, moved: np.ndarray, coef_bound) -> dict:
    """What the fits whose main loss moved have in common: the largest relative change
    of their density error, their median main loss, and how many of the rerun's fits
    have a gate slope at ``coef_bound`` (within 1%) or beyond half of it."""
    out = dict(fits=int(moved.sum()), max_rel_ddensity=None, gate_at_bound=None,
               coef_bound=coef_bound, median_loss=None)
    if not moved.any():
        return out
    out["median_loss"] = float(np.median(b["loss"].astype(float).to_numpy()[moved]))
    if "loss_density" in a and "loss_density" in b:
        da = a["loss_density"].astype(float).to_numpy()[moved]
        db = b["loss_density"].astype(float).to_numpy()[moved]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(da - db) / np.abs(da)
        rel = rel[np.isfinite(rel)]
        out["max_rel_ddensity"] = float(rel.max()) if rel.size else None
    if "params" in b and coef_bound is not None:
        slopes = np.array([_max_gate_slope(p) for p in b["params"].to_numpy()[moved]])
        out["gate_at_bound"] = int((slopes >= 0.99 * coef_bound).sum())
        out["gate_beyond_half"] = int((slopes >= 0.5 * coef_bound).sum())
        out["median_gate_slope"] = float(np.nanmedian(slopes))
    return out


def compare(committed: pd.DataFrame, rerun: pd.DataFrame, coef_bound=None) -> dict:
    """Task-by-task differences between two result tables of the same sweep
    (``coef_bound``: the bound on the gate slopes of the rerun's parameter space)."""
    a = committed.set_index(KEYS)
    b = rerun.set_index(KEYS)
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    both_ok = ((a["status"] == "ok") & (b["status"] == "ok")).to_numpy()
    signed = (b["log_likelihood"].astype(float) - a["log_likelihood"].astype(float))
    signed = signed.to_numpy()[both_ok]
    dll = np.abs(signed)
    la, lb = a["loss"].astype(float).to_numpy()[both_ok], b["loss"].astype(float).to_numpy()[both_ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_all = np.abs(la - lb) / np.abs(la)
    rel = rel_all[np.isfinite(rel_all)]
    moved = np.zeros(len(common), bool)
    moved[both_ok] = np.isfinite(rel_all) & (rel_all > LOSS_TOL)
    sa, sb = _median_slope(committed), _median_slope(rerun)
    changed = (_certified(a) != _certified(b)).to_numpy()
    cert_changes = [dict(fitted=k[0], n=int(k[1]), replication=int(k[2]),
                         committed=bool(_certified(a).iloc[i]), rerun=bool(_certified(b).iloc[i]),
                         dll=float(b["log_likelihood"].iloc[i] - a["log_likelihood"].iloc[i]),
                         rerun_certificate=str(b["certificate"].iloc[i]))
                    for i, k in enumerate(a.index) if changed[i]]
    return dict(
        committed_tasks=int(len(committed)), rerun_tasks=int(len(rerun)), common=int(len(common)),
        status_changes=int((a["status"] != b["status"]).sum()),
        certificate_changes=int((_certified(a) != _certified(b)).sum()),
        max_abs_dll=float(dll.max()) if dll.size else None,
        fits_dll_over_tol=int((dll > LL_TOL).sum()),
        rerun_higher=int((signed > LL_TOL).sum()), rerun_lower=int((signed < -LL_TOL).sum()),
        max_rel_dloss=float(rel.max()) if rel.size else None,
        fits_rel_dloss_over_tol=int((rel > LOSS_TOL).sum()),
        identical_loss=int((la == lb).sum()),
        fit_cpu_s=dict(committed=_fit_seconds(a), rerun=_fit_seconds(b)),  # common tasks
        slopes={f: dict(committed=sa.get(f), rerun=sb.get(f)) for f in sorted(set(sa) | set(sb))},
        moved=moved_fits(a, b, moved, coef_bound),
        certificate_changed=cert_changes,
    )


def _g(x, fmt=".1e"):
    return "—" if x is None else format(x, fmt)


def render(payload) -> str:
    m = payload["machine"]
    lines = [
        "# Reruns against the committed results",
        "",
        f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, nproc "
        f"{m.get('nproc')}, moestats {m.get('moestats')}; load {payload['load']}. Compares "
        "the committed results table behind each figure (`figures/<name>-results.csv.gz`, "
        f"as of commit {payload.get('figures_commit', 'not recorded')}) with "
        "the store of a rerun of its config, task by task (same seed, n and replication). "
        f"'Another maximum': |Δℓ| > {LL_TOL} nats (the certificate's tolerance). Slope: OLS "
        "of log(median main loss) on log n over the certified fits.",
        "",
        "| sweep | rerun | tasks in common | status changes | certificate changes | "
        "max abs Δℓ | another maximum | max rel Δloss | rel Δloss > 1e-3 | loss bit-identical | "
        "median slope: committed → rerun | s in the common fits: committed → rerun | rerun wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (directory, r) in payload["pairs"].items():
        slopes = "; ".join(
            f"{f} {_g(s['committed'], '+.3f')} → {_g(s['rerun'], '+.3f')}"
            for f, s in r["slopes"].items())
        lines.append(
            f"| {name} | `{directory}` | {r['common']} of {r['committed_tasks']} | "
            f"{r['status_changes']} | {r['certificate_changes']} | {_g(r['max_abs_dll'])} | "
            f"{r['fits_dll_over_tol']} ({r['rerun_higher']} higher, {r['rerun_lower']} lower) | "
            f"{_g(r['max_rel_dloss'])} | "
            f"{r['fits_rel_dloss_over_tol']} | {r['identical_loss']} | {slopes} | "
            f"{_g(r['fit_cpu_s']['committed'], '.0f')} → {_g(r['fit_cpu_s']['rerun'], '.0f')} | "
            f"{_wall(r['cost'])} |")
    partial = [name for name, (_, r) in payload["pairs"].items()
               if r["common"] < r["committed_tasks"]]
    if partial:
        lines += ["", "Partial reruns (" + ", ".join(partial) + "): the tasks in common are "
                  "compared fit by fit; their slope column is over the rerun's few sizes and "
                  "says nothing, and the wall time is that of the part rerun."]
    moved = {name: r["moved"] for name, (_, r) in payload["pairs"].items()
             if r.get("moved", {}).get("fits")}
    if moved:
        lines += ["", "Fits whose main loss moved by more than 1e-3 relative:", "",
                  "| sweep | fits | median main loss (rerun) | max rel Δ density error | "
                  "rerun fits with a gate slope at the bound (≥ 99%) | beyond half the bound | "
                  "median largest gate slope |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, mv in moved.items():
            lines.append(
                f"| {name} | {mv['fits']} | {_g(mv['median_loss'])} | "
                f"{_g(mv['max_rel_ddensity'])} | "
                f"{_g(mv['gate_at_bound'], 'd')} of {mv['fits']} (bound {_g(mv['coef_bound'], 'g')}) | "
                f"{_g(mv.get('gate_beyond_half'), 'd')} | {_g(mv.get('median_gate_slope'), '.3g')} |")
    changes = [(name, c) for name, (_, r) in payload["pairs"].items()
               for c in r.get("certificate_changed", [])]
    if changes:
        lines += ["", "Fits whose certificate verdict changed (the rerun's certificate):", "",
                  "| sweep | fitted | n | replication | certified: committed → rerun | Δℓ | "
                  "rerun certificate |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {c['fitted']} | {c['n']} | {c['replication']} | "
                  f"{c['committed']} → {c['rerun']} | {c['dll']:+.3g} | "
                  f"`{c['rerun_certificate']}` |" for name, c in changes]
    machines = sorted({m for _, r in payload["pairs"].values() for m in r["cost"]["machines"]})
    if machines:
        lines += ["", "Reruns made on: " + "; ".join(machines) + ". Rerun wall time: the "
                  "store's recorded run sessions (a session's time runs from its start to its "
                  "last stored fit; the highest 1-minute load at a session's start in brackets)."]
    return "\n".join(lines) + "\n"


def _wall(cost) -> str:
    if not cost["sessions"]:
        return "not recorded"
    load = "" if cost["max_load"] is None else f", load {cost['max_load']:.1f}"
    empty = (f", {cost['empty_sessions']} more stopped before a fit"
             if cost.get("empty_sessions") else "")
    return (f"{cost['wall_s']:.0f} s ({cost['sessions']} session(s){empty}, "
            f"{'; '.join(cost['workers'])}{load})")


def figures_commit(figures: Path) -> str:
    """The last commit that changed the committed tables in ``figures`` (they are
    rebuilt from time to time, so a comparison names the ones it read)."""
    try:
        out = subprocess.run(["git", "-C", str(figures), "log", "-1", "--format=%h %cs", "--", "."],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return out or "not in a git checkout"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", action="append", required=True,
                    help="<committed name>=<rerun results directory>")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_reproduction")
    args = ap.parse_args(argv)
    pairs = {}
    for item in args.pair:
        name, sep, directory = item.partition("=")
        if not sep:
            raise SystemExit(f"--pair must be <name>=<directory>, got {item!r}")
        table = args.figures / f"{name}-results.csv.gz"
        if not table.exists():
            raise SystemExit(f"no committed results table {table}")
        committed = pd.read_csv(table)
        rerun, sessions, spec = store_frame(Path(directory), with_sessions=True)
        bound = spec.get("space", {}).get("coef_bound")
        pairs[name] = (directory, dict(compare(committed, rerun, bound), cost=session_cost(sessions)))
    payload = dict(command="python benchmarks/check_reproduction.py " + shlex.join(
        sys.argv[1:] if argv is None else argv), machine=machine_info(), load=load_average(),
        figures_commit=figures_commit(args.figures), pairs=pairs)
    from check_large_n import write_outputs  # it imports this module
    write_outputs(args.out, payload, render)


if __name__ == "__main__":
    main()
