"""Consistency benchmark of the choice of k: AIC, BIC, ICL and the dendrogram criterion.

Run from the repository root::

    python benchmarks/bench_selection.py --quick         # smoke form, about a minute
    nice -n 10 python benchmarks/bench_selection.py      # full form (R = 50), ~30-40 min
    python benchmarks/bench_selection.py --reps 100 --out /tmp/sel.json

For each softmax truth -- ``softmax-exact`` (the [D] truth: k* = 2, d = 1, X ~ U[0, 1])
and ``softmax-d2-exact`` (k* = 3, d = 2, X ~ U[-1, 1]^2) -- and each n in {1e3, 1e4},
R replications: sample (X, y) from the truth (``np.random.default_rng([seed, k*, n, r])``),
run ``select_n_experts(X, y, range(1, K_max + 1), criterion="bic", n_init=10,
space=THEORY_SPACE, random_state=...)`` with ``K_max = k* + 2`` (every k fitted, certified
fits, parameter space Θ of the theory sweeps: ν ∈ [0.01, 100], every coordinate in
[-100, 100]; papers.md section 3), and record the k chosen by

* **AIC, BIC, ICL**: argmin over k of the table (identifiable df; lower is better);
* **DSC**: the dendrogram selection criterion on the K_max fit, as the library computes it
  (``result.dendrogram_``: merge dissimilarity "grouped", masses at x = 0, the paper's);
* three DSC variants read off the same K_max fit (no extra fit): ``dissimilarity="spec"``
  (papers.md's form), ``origin="mean"`` (masses read at the mean of x), and the
  **authors' code's dissimilarity** (``HD_NMoE/dendogram.py`` of
  github.com/maitrungnguyen/Dendrogram_SGMoE, restated here: unnormalised masses
  e^{β0} in the fitted reference gauge, Δb² + ‖(Δa, Δν)‖, the gate slopes left out --
  its known defect), for comparison only.

Reported per (truth, n): the fraction of replications choosing k* for every criterion
(with a Wilson 95% interval), the distribution of the chosen k, how many of the fits were
certified, and the wall time per replication (all K_max fits plus the dendrograms).
A replication is one process on one core (``n_jobs=1``, Numba on 1 thread, BLAS on 1
thread); the machine's load average and the CPU other processes used are recorded.

Results: ``benchmarks/results/bench_selection.json`` and ``.md`` (rewritten every few
replications, ``"status": "partial"`` until the end).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_em import cpu_snapshot, load_average, machine_info, other_cores  # noqa: E402

from moestats.setups import get_setup  # noqa: E402
from moestats.solvers import THEORY_SPACE  # noqa: E402
from moestats.selection import build_dendrogram, select_n_experts  # noqa: E402

DEFAULT_OUT = HERE / "results" / "bench_selection.json"
SEED = 20251014
CASES = (("softmax-exact", 2), ("softmax-d2-exact", 3))
CRITERIA = ("AIC", "BIC", "ICL", "DSC", "DSC_spec", "DSC_mean", "DSC_refcode")
LABELS = {"AIC": "AIC", "BIC": "BIC", "ICL": "ICL", "DSC": "DSC",
          "DSC_spec": "DSC (spec form)", "DSC_mean": "DSC (origin = mean x)",
          "DSC_refcode": "DSC (authors' code distance)"}
FULL = {"ns": (1_000, 10_000), "reps": 50, "n_init": 10}
QUICK = {"ns": (1_000,), "reps": 2, "n_init": 3}
SELECTION_FILES = ("moestats/selection/criteria.py", "moestats/selection/dendrogram.py",
                   "moestats/selection/select.py", "moestats/estimator.py")


def refcode_dissimilarity(total_mass):
    """The authors' code's distance (restated, defect included: no gate slope), on our
    atoms, whose masses are normalised: ``total_mass`` = Σ_j e^{β0j} in the fitted
    reference gauge restores its unnormalised weights 1/(e^{-β0i} + e^{-β0l})."""
    def dist(a, b):
        w = total_mass * a.mass * b.mass / (a.mass + b.mass)
        return w * ((a.expert_intercept - b.expert_intercept) ** 2
                    + np.sqrt(np.sum((a.expert_coef - b.expert_coef) ** 2)
                              + (a.expert_var - b.expert_var) ** 2))
    return dist


def one_replication(setup_id, kstar, n, rep, n_init):
    truth = get_setup(setup_id).truth
    K = kstar + 2
    X, y = truth.sample(n, np.random.default_rng([SEED, kstar, n, rep]))
    seed = int(np.random.SeedSequence([SEED, kstar, n, rep, 1]).generate_state(1)[0])
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = select_n_experts(X, y, range(1, K + 1), criterion="bic", n_init=n_init,
                               random_state=seed, space=THEORY_SPACE)
        est = res.estimators_[K]
        dends = {"DSC": res.dendrogram_,
                 "DSC_spec": build_dendrogram(est, X, y, dissimilarity="spec"),
                 "DSC_mean": build_dendrogram(est, X, y, origin="mean"),
                 "DSC_refcode": build_dendrogram(est, X, y, dissimilarity=refcode_dissimilarity(
                     float(np.sum(np.exp(est.params_.gate_intercept)))))}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t = res.table
    chosen = {c: int(t["k"][t[c].idxmin()]) for c in ("AIC", "BIC", "ICL")}
    chosen.update({name: d.best_n_experts() for name, d in dends.items()})
    return {"setup": setup_id, "kstar": kstar, "n": n, "rep": rep, "K_max": K, "seed": seed,
            "chosen": chosen, "wall_s": wall, "cpu_s": cpu,
            "certified": [bool(v) for v in t["converged"]],
            "log_likelihood": [float(v) for v in t["log_likelihood"]],
            "dsc_heights": [float(v) for v in res.dendrogram_.linkage[:, 2]],
            "dsc_dic": [float(lv.dic) for lv in res.dendrogram_.levels[:-1]],
            "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}"
                                for w in caught})}


def wilson(k, m, z=1.959964):
    if m == 0:
        return (None, None)
    p = k / m
    den = 1 + z * z / m
    mid = (p + z * z / (2 * m)) / den
    half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def summarise(rows, kstar, K):
    m = len(rows)
    out = {"R": m, "fraction_kstar": {}, "ci95": {}, "chosen_counts": {}}
    for c in CRITERIA:
        ks = [r["chosen"][c] for r in rows]
        hits = sum(k == kstar for k in ks)
        out["fraction_kstar"][c] = hits / m if m else None
        out["ci95"][c] = wilson(hits, m)
        out["chosen_counts"][c] = {str(k): ks.count(k) for k in range(1, K + 1)}
    out["wall_s_per_rep_mean"] = float(np.mean([r["wall_s"] for r in rows])) if m else None
    out["wall_s_total"] = float(np.sum([r["wall_s"] for r in rows]))
    out["cpu_s_per_rep_mean"] = float(np.mean([r["cpu_s"] for r in rows])) if m else None
    out["fits_certified"] = int(sum(sum(r["certified"]) for r in rows))
    out["fits"] = int(sum(len(r["certified"]) for r in rows))
    return out


def code_state():
    root = HERE.parent

    def git(*a):
        try:
            res = subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                 timeout=30)
            return res.stdout.rstrip() if res.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    status = git("status", "--porcelain", "--", "moestats")
    out = {"git_head": git("rev-parse", "HEAD"),
           "uncommitted_moestats_files": status.splitlines() if status else [],
           "sha256": {}}
    for rel in SELECTION_FILES:
        with contextlib.suppress(OSError):
            out["sha256"][rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()[:16]
    return out


def _n(n):
    return f"{n:.0e}".replace("e+0", "e").replace("e+", "e")


def _pct(v):
    return "" if v is None else f"{100 * v:.0f}%"


def write_markdown(result, path: Path):
    m, c = result["machine"], result["config"]
    lines = [f"# Choosing k: consistency benchmark ({'quick' if c['quick'] else 'full'} run, "
             f"{m['timestamp_utc']}, {result['status']})", "",
             f"Command: `{result['command']}`. Machine: {m['cpu_model']}, {m['cpu_count']} "
             f"CPUs, nproc {m.get('nproc')}; load average (1, 5, 15 min) at start "
             f"{_load(result['load_average_start'])}, at end "
             f"{_load(result.get('load_average_end'))}; other processes used on average "
             f"{_fmt(result.get('other_processes_cores_whole_run'), '.2f')} cores during the "
             f"run. This run: one process, Numba on {result.get('numba_threads')} thread(s), "
             f"`n_jobs=1`. Python {m['python']}, numpy {m['numpy']}, moestats {m['moestats']}; "
             f"git {str(result['code']['git_head'])[:10]} with "
             f"{len(result['code']['uncommitted_moestats_files'])} uncommitted moestats "
             "file(s). Total wall time "
             f"{_fmt(result.get('total_wall_s', 0) / 60, '.1f')} min.", "",
             f"Each replication: `select_n_experts(X, y, range(1, K_max + 1), "
             f"n_init={c['n_init']}, space=THEORY_SPACE)`, K_max = k* + 2; AIC/BIC/ICL from its "
             "table (identifiable df, lower is better); DSC from the K_max fit's dendrogram "
             "(default: dissimilarity 'grouped', masses e^{β0} normalised at x = 0) and three "
             "variants read off the same fit. Fraction of the R replications that chose k*, "
             "with a Wilson 95% interval.", "",
             "| truth | n | R | " + " | ".join(LABELS[k] for k in CRITERIA)
             + " | certified fits | wall s / rep |",
             "|---|---|---|" + "---|" * len(CRITERIA) + "---|---|"]
    for cell in result["cells"]:
        s = cell["summary"]
        vals = []
        for k in CRITERIA:
            lo, hi = s["ci95"][k]
            vals.append(f"{_pct(s['fraction_kstar'][k])} [{_pct(lo)}, {_pct(hi)}]"
                        if lo is not None else "")
        lines.append(f"| {cell['setup']} (k* = {cell['kstar']}) | {_n(cell['n'])} | {s['R']} | "
                     + " | ".join(vals) + f" | {s['fits_certified']}/{s['fits']} | "
                     f"{_fmt(s['wall_s_per_rep_mean'], '.1f')} |")
    lines += ["", "Chosen k (counts over the replications, k = 1..K_max):", "",
              "| truth | n | " + " | ".join(LABELS[k] for k in CRITERIA) + " |",
              "|---|---|" + "---|" * len(CRITERIA)]
    for cell in result["cells"]:
        s = cell["summary"]
        vals = [" ".join(f"{k}:{v}" for k, v in s["chosen_counts"][c].items() if v)
                for c in CRITERIA]
        lines.append(f"| {cell['setup']} | {_n(cell['n'])} | " + " | ".join(vals) + " |")
    lines += ["", "Notes: the DSC is sweep-free (one K_max fit); here its K_max fit is the same "
              "as the information criteria's (one seed per k). The authors' code distance "
              "column restates `HD_NMoE/dendogram.py` (unnormalised masses in the fitted "
              "reference gauge, no gate slope) for comparison; it is not offered by the "
              "library.", ""]
    path.write_text("\n".join(lines) + "\n")


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def _load(v):
    return "?" if v is None else "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke form (n = 1e3, R = 2)")
    ap.add_argument("--reps", type=int, default=None, help="replications per (truth, n)")
    ap.add_argument("--n-init", type=int, default=None, help="starts per fit")
    ap.add_argument("--ns", default=None, help="sample sizes, comma-separated")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="JSON results path (the markdown goes beside it)")
    ap.add_argument("--numba-threads", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps is not None:
        cfg["reps"] = args.reps
    if args.n_init is not None:
        cfg["n_init"] = args.n_init
    if args.ns is not None:
        cfg["ns"] = tuple(int(float(v)) for v in args.ns.split(",") if v.strip())
    threads = None
    with contextlib.suppress(Exception):
        from moestats.backends import numba_kernels as nk
        nk.set_num_threads(args.numba_threads)
        threads = nk.get_num_threads()
    limiter = contextlib.nullcontext()
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(1, user_api="blas")
    with limiter:
        return run(args, cfg, threads)


def run(args, cfg, threads):
    t_start = time.perf_counter()
    snap = cpu_snapshot()
    result = {"benchmark": "bench_selection", "status": "partial",
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "config": {"quick": args.quick, **cfg, "ns": list(cfg["ns"]), "seed": SEED,
                         "cases": [list(c) for c in CASES], "K_max": "k* + 2",
                         "space": THEORY_SPACE.as_dict(), "criteria": list(CRITERIA)},
              "machine": machine_info(), "numba_threads": threads, "code": code_state(),
              "load_average_start": load_average(), "cells": []}

    def save():
        result["load_average_end"] = load_average()
        result["other_processes_cores_whole_run"] = other_cores(snap, cpu_snapshot())
        result["total_wall_s"] = time.perf_counter() - t_start
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        write_markdown(result, args.out.with_suffix(".md"))

    for setup_id, kstar in CASES:
        for n in cfg["ns"]:
            cell = {"setup": setup_id, "kstar": kstar, "n": n, "rows": [], "summary": None}
            result["cells"].append(cell)
            for rep in range(cfg["reps"]):
                row = one_replication(setup_id, kstar, n, rep, cfg["n_init"])
                cell["rows"].append(row)
                cell["summary"] = summarise(cell["rows"], kstar, kstar + 2)
                print(f"[{time.perf_counter() - t_start:7.1f}s] {setup_id} n={n} rep={rep} "
                      f"chosen {row['chosen']} ({row['wall_s']:.1f} s)", flush=True)
                if rep % 5 == 4 or rep == cfg["reps"] - 1:
                    save()
    result["code_at_end"] = code_state()
    result["status"] = "complete"
    save()
    print(args.out.with_suffix(".md").read_text())
    return result


if __name__ == "__main__":
    main()
