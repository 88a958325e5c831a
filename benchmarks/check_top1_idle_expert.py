"""What do the per-cell rates of ``topk-over``'s top-1-of-3 fits measure?

In d = 1 a top-1 gate selects the expert with the largest slope β₁ⱼx: the largest β₁
for x > 0, the smallest for x < 0, so one of three experts can be selected nowhere in
the covariate range and has no data. This reads the stores of the top-1-of-3 fits under
both start protocols and, for every certified fit,

- finds the idle expert (selected at none of 4,000 grid points of [−1, 1]);
- compares its fitted (a, b, ν) with its start (the stored ``init``): an idle expert's
  EM update has zero responsibilities, so it should not move;
- reports its Voronoi error (against the true atom of its cell) and the error of the
  selected atom of the same cell, and their slopes on n (median over fits), beside the
  slopes of the start's noise.

Usage::

    python benchmarks/check_top1_idle_expert.py --store near-truth=results/rerun080/topk-over \\
        --store agnostic=results/rerun080/topk-over-agnostic

Writes ``benchmarks/results/check_top1_idle_expert.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402
from check_large_n import write_outputs  # noqa: E402
from check_reproduction import store_frame  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "check_top1_idle_expert"
BLOCKS = ("expert_coef", "expert_intercept", "expert_var")
GRID = np.linspace(-1.0, 1.0, 4000)  # even: no point at x = 0, where slopes tie


def _vector(params, name):
    return np.asarray(params[name], dtype=float).reshape(len(params["expert_var"]), -1)


def idle_rows(frame, truth):
    """One row per certified k3-top1 fit: the idle expert, its movement, its errors."""
    from moestats import MoEParams
    from moestats.losses import align_to_truth
    rows = []
    ok = frame[(frame["fitted"] == "k3-top1") & (frame["status"] == "ok")
               & frame["certified"].fillna(False).astype(bool)]
    for rec in ok.to_dict("records"):
        fit = json.loads(rec["params"])
        start = json.loads(rec["init"]) if isinstance(rec["init"], str) else None
        slopes = np.asarray(fit["gate_coef"], float)[:, 0]
        chosen = np.argmax(np.outer(GRID, slopes), axis=1)
        share = np.bincount(chosen, minlength=slopes.size) / GRID.size
        idle = np.flatnonzero(share == 0)
        row = dict(n=int(rec["n"]), replication=int(rec["replication"]),
                   idle=int(idle[0]) if idle.size else None)
        if idle.size:
            j = row["idle"]
            al = align_to_truth(MoEParams.from_dict(fit), truth, gauge="slope+unit-norm",
                                relative_weights=True)
            t = int(al.assignment[j])
            mates = [i for i in np.flatnonzero(al.assignment == t) if i != j]
            for name in BLOCKS:
                f, tr = _vector(fit, name), np.asarray(truth.as_dict()[name], float).reshape(
                    truth.n_experts, -1)
                row[f"idle_{name}"] = float(np.linalg.norm(f[j] - tr[t]))
                row[f"mate_{name}"] = (float(max(np.linalg.norm(f[i] - tr[t]) for i in mates))
                                       if mates else None)
                if start is not None:
                    row[f"moved_{name}"] = float(np.linalg.norm(f[j] - _vector(start, name)[j]))
            row["cell_size"] = 1 + len(mates)
        rows.append(row)
    return rows


def _slope(rows, key):
    from moestats.rates import fit_rate
    pts = [(r["n"], r[key]) for r in rows if r.get(key) is not None and r[key] > 0]
    if len({n for n, _ in pts}) < 2:
        return None
    n, v = np.array(pts, float).T
    rf = fit_rate(n, v, statistic="median", n_boot=500, rng=0)
    return dict(slope=float(rf.slope), ci=[float(rf.ci_low), float(rf.ci_high)])


def summarise(rows):
    with_idle = [r for r in rows if r["idle"] is not None]
    out = dict(fits=len(rows), with_idle=len(with_idle),
               doubled_cell=sum(r.get("cell_size") == 2 for r in with_idle))
    for name in BLOCKS:
        moved = [r.get(f"moved_{name}") for r in with_idle if r.get(f"moved_{name}") is not None]
        out[f"unmoved_{name}"] = int(sum(m == 0.0 for m in moved)) if moved else None
        out[f"max_moved_{name}"] = float(max(moved)) if moved else None
        out[f"idle_slope_{name}"] = _slope(with_idle, f"idle_{name}")
        out[f"mate_slope_{name}"] = _slope(with_idle, f"mate_{name}")
        out[f"idle_above_mate_{name}"] = int(sum(
            r[f"mate_{name}"] is not None and r[f"idle_{name}"] > r[f"mate_{name}"]
            for r in with_idle))
    return out


def _s(d):
    return "—" if d is None else f"{d['slope']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]"


def render(payload):
    m = payload["machine"]
    lines = ["# topk-over, top-1 of 3: the idle expert", "",
             f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
             f"nproc {m.get('nproc')}, moestats {m.get('moestats')}; load {payload['load']}.",
             "", "Idle: selected at none of 4,000 grid points of [−1, 1]. Moved: ‖fit − start‖ "
             "of the idle expert's block. Errors in the slope+unit-norm gauge against the true "
             "atom of its Voronoi cell; 'mate': the other atom(s) of that cell. Slopes: OLS of "
             "log(median error) on log n, 95% bootstrap intervals. The near-truth start's "
             "noise has sd 0.05·n^−0.083 on a and b and 0.005·n^−0.25 on ν "
             "(`moestats.sampling.near_truth_init`).", "",
             "| protocol | block | certified fits | with an idle expert | idle expert unmoved "
             "| largest move | idle error slope | mate error slope | idle error > mate's |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for proto, s in payload["summary"].items():
        for name in BLOCKS:
            unmoved = ("no start stored" if s[f"unmoved_{name}"] is None
                       else f"{s[f'unmoved_{name}']} of {s['with_idle']}")
            moved = "—" if s[f"max_moved_{name}"] is None else f"{s[f'max_moved_{name}']:.1e}"
            lines.append(
                f"| {proto} | {name} | {s['fits']} | {s['with_idle']} | {unmoved} | {moved} | "
                f"{_s(s[f'idle_slope_{name}'])} | {_s(s[f'mate_slope_{name}'])} | "
                f"{s[f'idle_above_mate_{name}']} of {s['doubled_cell']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from moestats import get_setup
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", action="append", required=True,
                    help="<protocol>=<results directory of a topk-over sweep>")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    truth = get_setup("topk-over").truth.params
    summary, rows = {}, {}
    for item in args.store:
        proto, sep, directory = item.partition("=")
        if not sep:
            raise SystemExit(f"--store must be <protocol>=<directory>, got {item!r}")
        rows[proto] = idle_rows(store_frame(Path(directory)), truth)
        summary[proto] = summarise(rows[proto])
    payload = dict(command="python benchmarks/check_top1_idle_expert.py " + shlex.join(
        sys.argv[1:] if argv is None else argv), machine=machine_info(), load=load_average(),
        summary=summary, rows=rows)
    write_outputs(args.out, payload, render)


if __name__ == "__main__":
    main()
