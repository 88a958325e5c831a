"""Fault injection: random SIGKILLs of a quick sweep, each followed by a resume.

Run from the repository root::

    python benchmarks/fault_injection.py                 # 20 SIGKILLs + 4 SIGTERM/SIGINT
    python benchmarks/fault_injection.py --kills 5 --signals 0 --out /tmp/fi.json

What it does:

1. writes a small sweep config (``softmax-over``, fitted k = 3, sample sizes 5000 ...
   100000, 96 replications: 480 fits, one to two minutes on 2 cores; see ``SWEEP``)
   in a temporary directory;
2. *reference*: runs it uninterrupted (``moestats run CONFIG --n-jobs J``);
3. *faulted*: launches the same command on another results directory again and
   again, each time stopping the driver after a random delay (uniform in
   [``--min-delay``, ``--max-delay``] s): ``--kills`` times by SIGKILL, and
   ``--signals`` times by SIGTERM or SIGINT (alternating, spread among the kills;
   these two are sent no earlier than the driver's first line: an interrupt during
   Python's own start-up, before moestats runs, is Python's). A launch that finishes
   before its signal has completed the sweep: that store is compared with the
   reference (as below), and the faulted run starts over. While a launch runs, the
   driver's child processes are recorded every 0.1 s; this script is a child subreaper
   (Linux ``PR_SET_CHILD_SUBREAPER``), so any process the killed driver leaves behind
   becomes its child and is seen (and reaped). After each signal it checks that every
   such process ends (deadline 30 s; the time taken is reported), that ``/dev/shm``
   holds no ``sem.loky-<pid>-*`` or ``joblib_memmapping_folder_<pid>_*`` of the
   driver, the exit status (killed by SIGKILL, 143, 130), and after SIGTERM/SIGINT the
   one-line message and no traceback;
4. finally runs the command to completion and compares the store with the reference:
   every result column but the wall time (params, log-likelihoods, losses, ...) must
   be bit-identical.

Results: ``benchmarks/results/fault_injection.json`` and ``.md``, with the machine
(CPU, cores, load averages at start and end, CPU used by other processes meanwhile).
The script exits with 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_em import cpu_snapshot, load_average, machine_info, other_cores  # noqa: E402

DEFAULT_OUT = HERE / "results" / "fault_injection.json"
RESULT_COLUMNS = ["fitted", "n", "replication", "status", "loss", "losses", "errors",
                  "log_likelihood", "n_iter", "converged", "params", "init", "assignment",
                  "loss_gauge", "cells"]
SWEEP = """
setup = "softmax-over"
fitted = ["k3"]
seed = 12
density_sample = 200
[solver]
max_iter = 400
[quick]
sample_sizes = {sizes}
replications = {reps}
"""


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def become_subreaper() -> bool:
    """Make orphaned descendants children of this process (Linux); False if impossible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _stat(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])  # state, ppid
    except (OSError, IndexError, ValueError):
        return None, None


def children_of(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state, ppid = _stat(entry.name)
            if ppid == pid and state not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def alive(pid):
    state, _ = _stat(pid)
    return state is not None and state not in ("Z", "X")


def reap(pids):
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def shm_entries(pid):
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    return sorted(p.name for p in shm.iterdir()
                  if p.name.startswith((f"sem.loky-{pid}-", f"joblib_memmapping_folder_{pid}_")))


def rows_in(store):
    from moestats.simulation import ResultStore
    if not store.exists():
        return 0
    with contextlib.suppress(Exception):
        with ResultStore(store, readonly=True) as s:
            return len(s)
    return None


def command(config, results, n_jobs, batch_size):
    return [sys.executable, "-m", "moestats.simulation", "run", str(config), "--n-jobs",
            str(n_jobs), "--batch-size", str(batch_size), "--results", str(results),
            "--no-progress", "--no-report"]


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def one_launch(cmd, store, sig, delay, subreaper):
    """Launch, signal after ``delay`` s; return a record of what happened."""
    before = rows_in(store)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    seen = set()
    # SIGKILL lands at any time; SIGTERM/SIGINT once moestats runs (its first line):
    # during Python's own start-up (imports) they are Python's, not moestats's
    while proc.poll() is None and (time.perf_counter() - t0 < delay or (
            sig != signal.SIGKILL and not any(x.startswith("moestats: ") for x in lines))):
        seen.update(children_of(proc.pid))
        time.sleep(0.1)
    rec = {"signal": signal.Signals(sig).name, "delay_s": round(delay, 2),
           "sent_after_s": round(time.perf_counter() - t0, 2), "rows_before": before,
           "driver_pid": proc.pid}
    if proc.poll() is not None:
        proc.wait()
        reader.join(10)
        rec.update(finished_before_signal=True, returncode=proc.returncode,
                   wall_s=round(time.perf_counter() - t0, 2), rows_after=rows_in(store),
                   stderr_tail=[x.rstrip() for x in lines[-2:]])
        return rec
    seen.update(children_of(proc.pid))
    os.kill(proc.pid, sig)
    t_kill = time.perf_counter()
    proc.wait(timeout=120)
    reader.join(10)
    err = "".join(lines)
    rec.update(finished_before_signal=False, returncode=proc.returncode,
               children_seen=len(seen))
    # processes left by the driver: those seen, and (as subreaper) our orphaned children
    deadline = t_kill + 30
    left = []
    while time.perf_counter() < deadline:
        orphans = set(children_of(os.getpid())) if subreaper else set()
        left = sorted(p for p in seen | orphans if alive(p))
        reap(seen | orphans)
        if not left and not shm_entries(proc.pid):
            break
        time.sleep(0.05)
    rec["cleanup_s"] = round(time.perf_counter() - t_kill, 2)
    rec["processes_left"] = left
    rec["shm_left"] = shm_entries(proc.pid)
    rec["rows_after"] = rows_in(store)
    lines = [line for line in err.splitlines() if line.strip()]
    rec["traceback"] = "Traceback" in err
    if sig != signal.SIGKILL:
        rec["last_line"] = lines[-1] if lines else ""
        rec["message_ok"] = bool(lines) and re.fullmatch(
            r"moestats: interrupted; \d+ fits? stored, rerun the same command to resume",
            lines[-1]) is not None
        rec["exit_code_ok"] = proc.returncode == 128 + sig
    else:
        rec["exit_code_ok"] = proc.returncode == -signal.SIGKILL
    return rec


def frames_equal(a, b):
    import pandas as pd

    from moestats.simulation import ResultStore
    with ResultStore(a, readonly=True) as s, ResultStore(b, readonly=True) as t:
        fa = s.to_frame(expand=False)[RESULT_COLUMNS].sort_values(
            ["fitted", "n", "replication"]).reset_index(drop=True)
        fb = t.to_frame(expand=False)[RESULT_COLUMNS].sort_values(
            ["fitted", "n", "replication"]).reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(fa, fb, check_exact=True)
        return True, len(fa), len(fb), None
    except AssertionError as exc:
        return False, len(fa), len(fb), str(exc)[:500]


def write_markdown(res, path):
    m, c, s = res["machine"], res["config"], res["summary"]
    load = lambda v: "?" if v is None else (  # noqa: E731
        "(" + ", ".join(f"{x:.2f}" for x in v) + ")")
    lines = [f"# Fault injection ({m['timestamp_utc']}, {res['status']})", "",
             f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, nproc {m.get('nproc')}; load "
             f"average (1, 5, 15 min) at start {load(res['load_average_start'])}, at end "
             f"{load(res.get('load_average_end'))}; other processes used on average "
             f"{res.get('other_processes_cores', float('nan')):.2f} cores during the run. "
             f"Python {m['python']}, moestats {m['moestats']}; subreaper "
             f"{'on' if res['subreaper'] else 'off'}.", "",
             f"Sweep: `{c['setup']}`, fitted {c['fitted']}, sample sizes {c['sample_sizes']}, "
             f"{c['replications']} replications ({c['tasks']} fits), `--n-jobs {c['n_jobs']} "
             f"--batch-size {c['batch_size']}`; signal delays uniform in "
             f"[{c['min_delay']}, {c['max_delay']}] s after launch; seed {c['seed']}.", "",
             "| check | result |", "| --- | --- |",
             f"| SIGKILLs landed | {s['sigkills']} |",
             f"| SIGTERM / SIGINT landed | {s['sigterms']} / {s['sigints']} |",
             f"| launches that finished before their signal | {s['finished_before_signal']} |",
             f"| kills that landed before the first row of their launch | "
             f"{s['kills_without_progress']} |",
             f"| rows gained per killed launch (median, max) | {s['rows_gained_median']}, "
             f"{s['rows_gained_max']} |",
             f"| driver children seen per kill (median, max) | {s['children_median']}, "
             f"{s['children_max']} |",
             f"| processes left after a kill (total) | {s['processes_left']} |",
             f"| time until every child ended (median, max) | {s['cleanup_median_s']} s, "
             f"{s['cleanup_max_s']} s |",
             f"| /dev/shm entries of killed drivers left | {s['shm_left']} |",
             f"| tracebacks | {s['tracebacks']} |",
             f"| exit codes as documented (137 by SIGKILL, 143, 130) | {s['exit_codes_ok']} |",
             f"| SIGTERM/SIGINT one-line message | {s['messages_ok']} |",
             f"| final store = uninterrupted run (bit-identical rows) | {s['identical']} "
             f"({s['rows_final']} / {s['rows_reference']} rows) |",
             f"| stores completed by resuming / bit-identical to the uninterrupted run | "
             f"{s['stores_completed']} / {s['stores_identical']} (signals each: "
             f"{s['signals_per_store']}) |",
             f"| reference run / final resume wall time | {res['reference']['wall_s']} s / "
             f"{res['final']['wall_s']} s |",
             f"| total wall time | {res.get('wall_s')} s |", "",
             "Per launch: the signal and when it was sent (s after launch), the rows stored "
             "before -> after, the driver's child processes seen, the time until they had all "
             "ended (s), the driver's exit status (-9: killed by SIGKILL):", "",
             "| # | signal | sent at | rows | children | cleanup | exit |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(res["launches"]):
        first = " (finished first)" if r.get("finished_before_signal") else ""
        lines.append(f"| {i + 1} | {r['signal']}{first} | {r['sent_after_s']} | "
                     f"{r['rows_before']} -> {r.get('rows_after')} | "
                     f"{r.get('children_seen', '')} | {r.get('cleanup_s', '')} | "
                     f"{r['returncode']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    ap.add_argument("--signals", type=int, default=4,
                    help="SIGTERM/SIGINT to land besides (alternating; default 4)")
    ap.add_argument("--min-delay", type=float, default=0.5)
    ap.add_argument("--max-delay", type=float, default=9.0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--sizes", default="5000,10000,20000,50000,100000")
    ap.add_argument("--replications", type=int, default=96)
    ap.add_argument("--seed", type=int, default=20250612)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    subreaper = become_subreaper()
    sizes = [int(s) for s in args.sizes.split(",")]
    t_start = time.perf_counter()
    snap = cpu_snapshot()
    res = {"status": "partial", "machine": machine_info(), "load_average_start": load_average(),
           "subreaper": subreaper,
           "config": {"setup": "softmax-over", "fitted": ["k3"], "sample_sizes": sizes,
                      "replications": args.replications, "tasks": len(sizes) * args.replications,
                      "n_jobs": args.n_jobs, "batch_size": args.batch_size,
                      "kills": args.kills, "signals": args.signals, "min_delay": args.min_delay,
                      "max_delay": args.max_delay, "seed": args.seed},
           "launches": []}
    work = Path(tempfile.mkdtemp(prefix="moestats-fault-injection-"))
    config = work / "sweep.toml"
    config.write_text(SWEEP.format(sizes=sizes, reps=args.replications))
    ref_dir, run_dir = work / "reference", work / "faulted"
    store = run_dir / "softmax-over-quick.sqlite"

    log(f"reference run in {ref_dir}")
    t0 = time.perf_counter()
    ref = subprocess.run(command(config, ref_dir, args.n_jobs, args.batch_size), cwd=ROOT,
                         env=env(), capture_output=True, text=True)
    res["reference"] = {"returncode": ref.returncode, "wall_s": round(time.perf_counter() - t0, 1)}
    if ref.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{ref.stderr}")
    log(f"reference: {res['reference']['wall_s']} s")

    plan = [signal.SIGKILL] * args.kills
    for i in range(args.signals):  # spread SIGTERM/SIGINT among the kills
        plan.insert(rng.randrange(len(plan) + 1),
                    signal.SIGTERM if i % 2 == 0 else signal.SIGINT)
    landed = since = 0
    lineages = []
    for sig in plan:
        while True:
            delay = rng.uniform(args.min_delay, args.max_delay)
            rec = one_launch(command(config, run_dir, args.n_jobs, args.batch_size), store,
                             sig, delay, subreaper)
            res["launches"].append(rec)
            log(f"{rec['signal']} after {rec['sent_after_s']} s: rows {rec['rows_before']} -> "
                f"{rec.get('rows_after')}, children {rec.get('children_seen')}, cleanup "
                f"{rec.get('cleanup_s')} s, left {rec.get('processes_left')} "
                f"{rec.get('shm_left')}, rc {rec['returncode']}")
            if not rec["finished_before_signal"]:
                landed += 1
                since += 1
                break
            if rec["returncode"] != 0:
                raise SystemExit(f"a launch failed: {rec}")
            # the sweep completed, resumed across the signals since the last restart:
            # check it, then start the faulted run over
            same, n_rows, _, diff = frames_equal(store, ref_dir / "softmax-over-quick.sqlite")
            lineages.append({"signals": since, "rows": n_rows, "identical": same,
                             "diff": diff})
            log(f"the sweep completed after {since} signals (identical to the reference: "
                f"{same}); starting the faulted run over")
            since = 0
            for p in run_dir.iterdir():
                p.unlink()

    log("final run")
    t0 = time.perf_counter()
    fin = subprocess.run(command(config, run_dir, args.n_jobs, args.batch_size), cwd=ROOT,
                         env=env(), capture_output=True, text=True)
    res["final"] = {"returncode": fin.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                    "rows_before": None}
    same, n_final, n_ref, diff = frames_equal(store, ref_dir / "softmax-over-quick.sqlite")
    lineages.append({"signals": since, "rows": n_final, "identical": same, "diff": diff})
    res["lineages"] = lineages
    killed = [r for r in res["launches"] if not r["finished_before_signal"]]
    gained = sorted((r["rows_after"] or 0) - (r["rows_before"] or 0) for r in killed)
    children = sorted(r["children_seen"] for r in killed)
    cleanup = sorted(r["cleanup_s"] for r in killed)
    med = lambda v: v[len(v) // 2] if v else None  # noqa: E731
    res["summary"] = {
        "sigkills": sum(r["signal"] == "SIGKILL" for r in killed),
        "sigterms": sum(r["signal"] == "SIGTERM" for r in killed),
        "sigints": sum(r["signal"] == "SIGINT" for r in killed),
        "finished_before_signal": sum(r["finished_before_signal"] for r in res["launches"]),
        "kills_without_progress": sum(g == 0 for g in gained),
        "rows_gained_median": med(gained), "rows_gained_max": max(gained, default=None),
        "children_median": med(children), "children_max": max(children, default=None),
        "processes_left": sum(len(r["processes_left"]) for r in killed),
        "cleanup_median_s": med(cleanup), "cleanup_max_s": max(cleanup, default=None),
        "shm_left": sum(len(r["shm_left"]) for r in killed),
        "tracebacks": sum(r["traceback"] for r in killed),
        "exit_codes_ok": all(r["exit_code_ok"] for r in killed) and fin.returncode == 0,
        "messages_ok": all(r.get("message_ok", True) for r in killed),
        "identical": same, "rows_final": n_final, "rows_reference": n_ref, "diff": diff,
        "stores_completed": len(lineages),
        "stores_identical": sum(x["identical"] for x in lineages),
        "signals_per_store": [x["signals"] for x in lineages],
    }
    s = res["summary"]
    ok = (s["stores_identical"] == s["stores_completed"] and s["processes_left"] == 0
          and s["shm_left"] == 0 and s["tracebacks"] == 0 and s["exit_codes_ok"] and s["messages_ok"]
          and n_final == res["config"]["tasks"])
    res.update(status="ok" if ok else "FAILED", load_average_end=load_average(),
               other_processes_cores=other_cores(snap, cpu_snapshot()),
               wall_s=round(time.perf_counter() - t_start, 1), workdir=str(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    write_markdown(res, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())
    if ok:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
