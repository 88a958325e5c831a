"""Why top-K fits stay uncertified: more rounds of the boundary search (issue 9, item 6).

A top-K fit is certified only when a round of exact line searches over the selection
boundaries gains at most ``certify_tol``. The finish runs at most
:data:`moestats.solvers.finish.MAX_SELECTION_ROUNDS` (20) rounds of (Newton, boundary
search). This script takes the uncertified fits of a stored sweep, rebuilds each
replication's data from its seed, restarts the finish from the stored parameters with
``--rounds`` rounds, and records whether the fit then certifies, how many nats the extra
rounds gained in total, and how the main loss moved. It tells apart "the search needs
more rounds" (the gain dies out and the fit certifies) from "the likelihood keeps rising
along the selection boundaries" (the gain per round stays above the tolerance).

Usage::

    python benchmarks/check_topk_rounds.py results/topk-over-k4-quick \
        --config simulations/topk-over-k4.toml --rounds 200

Writes ``benchmarks/results/check_topk_rounds.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a sweep's results directory (one store)")
    ap.add_argument("--config", type=Path, required=True, help="the sweep's TOML config")
    ap.add_argument("--form", default="quick")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--limit", type=int, default=40, help="uncertified fits to retry at most")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_topk_rounds.json")
    args = ap.parse_args(argv)

    from moestats.params import MoEParams
    from moestats.simulation import ResultStore
    from moestats.simulation.task import LOSS_GAUGE, _losses, prepare_task
    from moestats.simulation.spec import Task, load_spec
    from moestats.solvers import finish as finish_mod
    from moestats.solvers import fit_em_batched

    (path,) = args.results.glob("*.sqlite")
    store = ResultStore(path)
    spec = load_spec(args.config, args.form)
    if store.fingerprint != spec.fingerprint():
        raise SystemExit(f"{path} was not written by {args.config} ({args.form})")
    df = store.to_frame()
    todo = df[(df.status == "ok") & (df.converged == 0)].head(args.limit)
    finish_mod.MAX_SELECTION_ROUNDS = args.rounds
    rows = []
    t0 = time.perf_counter()
    for _, r in todo.iterrows():
        task = Task(r.fitted, int(r.n), int(r.replication))
        config, gate, X, y, _, _, floor = prepare_task(spec, task)
        start = MoEParams.from_dict(json.loads(r.params))
        (trace,) = fit_em_batched(gate, X[None], y[None], start, max_iter=1, tol=0.0,
                                  var_floor=floor, space=spec.space,
                                  certify_tol=spec.certify_tol, backend=spec.backend)
        loss = _losses(config, spec.setup_obj.truth, trace.params, gate, None)[0]
        cert = trace.certificate
        rows.append({"fitted": r.fitted, "n": int(r.n), "replication": int(r.replication),
                     "stored_loglik": float(r.log_likelihood),
                     "retried_loglik": float(trace.log_likelihood),
                     "gain": float(trace.log_likelihood - r.log_likelihood),
                     "certified": bool(trace.converged),
                     "last_round_gain": None if cert is None else cert.boundary_gain,
                     "stored_loss": float(r.loss), "retried_loss": float(loss)})
        print(rows[-1], flush=True)
    out = {"benchmark": "check_topk_rounds", "store": str(path), "rounds": args.rounds,
           "loss_gauge": LOSS_GAUGE, "machine": machine_info(), "load_average": load_average(),
           "wall_s": time.perf_counter() - t0, "fits": rows,
           "certified_after": int(sum(r["certified"] for r in rows)), "retried": len(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    gains = np.array([r["gain"] for r in rows]) if rows else np.zeros(0)
    lines = [f"# Top-K boundary search with {args.rounds} rounds ({path.name})", "",
             f"Retried {len(rows)} uncertified fits: {out['certified_after']} certified after "
             f"{args.rounds} rounds; total log-likelihood gain median "
             f"{np.median(gains) if gains.size else float('nan'):.3g}, max "
             f"{gains.max() if gains.size else float('nan'):.3g} nats. Load {out['load_average']}.",
             "", "| fitted | n | rep | gain (nats) | certified | last round gain | loss: stored -> retried |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lrg = "-" if r["last_round_gain"] is None else f"{r['last_round_gain']:.2g}"
        lines.append(f"| {r['fitted']} | {r['n']} | {r['replication']} | {r['gain']:.3g} | "
                     f"{r['certified']} | {lrg} | {r['stored_loss']:.3g} -> {r['retried_loss']:.3g} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
