"""The activation-gate slopes beyond n = 1e5: do the local slopes settle at -1/2?

``benchmarks/check_rate_disagreements.md`` found the activation-gate full-form slopes
(gelu, sigmoid, tanh k = 3) curved: their local slopes move towards -1/2 decade by
decade, and only the first decade or two exclude it. The full forms stop at n = 1e5 (the
papers' grid), so the last decade's interval is wide. This script extends the same
sweeps by one decade and measures the slopes there.

For each config in :data:`CASES` it

1. writes a copy of the shipped config whose ``[full]`` grid is ``{min = 1e5, max = 1e6,
   num = 6}`` and the replications of :data:`CASES` (same seed, truth, fitted models, start
   protocol, solver, certificate and Θ) to ``<results>/large-n/<config>-r<replications>.toml``;
2. runs it with ``moestats run <that file> --full`` into ``<results>/large-n/<config>-r<R>/``
   (resumable: rerunning the script continues where it stopped; ``--batch-size 8`` keeps
   a batch of n = 1e6 data sets in memory);
3. reads that store and the config's full-form store ``<results>/<config>-full/`` (the
   same tasks at n = 1e5, so the two must agree there: the reproduction check), and
   reports, per fitted model and loss, the slope of the median with its stratified
   bootstrap 95% interval over every decade of n from 1e2 to 1e6, and over the last two.

Only certified fits count; excluded fits are counted per decade.

Usage::

    nice -n 10 python benchmarks/check_large_n.py [--results results] [--n-jobs 2]
        [--render-only]

Writes ``benchmarks/results/check_large_n.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402
from check_reproduction import store_frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "check_large_n"

#: (config, fitted models, loss columns, replications per size at n >= 1e5): gelu and
#: sigmoid take 200 (their fits cost ~0.1 s at n = 1e5, and the one-decade interval of a
#: median slope from 40 replications is about +-0.15 wide); the tanh config 40 (its k = 3
#: fits cost ~5 s each at n = 1e6)
CASES = [
    ("activation-gelu", ("k2-gelu",), ("loss",), 200),
    ("activation-sigmoid", ("k2-sigmoid",), ("loss", "loss_voronoi_ratio"), 200),
    ("activation", ("k2-tanh", "k3-tanh"), ("loss", "loss_voronoi_ratio"), 40),
]
LARGE_GRID = "{ min = 100000, max = 1000000, num = 6 }"
THEORY = -0.5


def _store_dir(results: Path, config: str, replications: int) -> Path:
    return results / "large-n" / f"{config}-r{replications}"


def large_config(config: str, results: Path, replications: int) -> Path:
    """Write the shipped ``config`` with its ``[full]`` form moved to 1e5..1e6."""
    text = (ROOT / "simulations" / f"{config}.toml").read_text()
    full = re.search(r"^\[full\]\s*\nsample_sizes\s*=\s*\{[^}]*\}\s*\nreplications\s*=\s*\d+",
                     text, flags=re.M)
    if full is None:
        raise SystemExit(f"{config}.toml: no [full] sample_sizes and replications to replace")
    text = (text[:full.start()] + f"[full]\nsample_sizes = {LARGE_GRID}\n"
            f"replications = {replications}" + text[full.end():])
    text = re.sub(r'^description = "(.*)"$', r'description = "\1 (n = 1e5 to 1e6)"', text,
                  count=1, flags=re.M)
    path = _store_dir(results, config, replications).with_suffix(".toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_sweeps(results: Path, n_jobs: int) -> dict:
    walls = {}
    for config, _, _, reps in CASES:
        path = large_config(config, results, reps)
        cmd = ["moestats", "run", str(path), "--full", "--n-jobs", str(n_jobs),
               "--batch-size", "8", "--results", str(_store_dir(results, config, reps)),
               "--no-report", "--no-progress"]
        print("$", shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        walls[config] = time.perf_counter() - t0
    return walls


def _excluded(part):
    return ((part["status"] != "ok").to_numpy()
            | (part["certified"] == False).fillna(False).to_numpy(bool))  # noqa: E712


def overlap_check(full, large, fitted, columns):
    """Largest relative difference of the losses of the tasks both stores hold."""
    keys = ["fitted", "n", "replication"]
    a = full[full.fitted == fitted].set_index(keys)
    b = large[large.fitted == fitted].set_index(keys)
    common = a.index.intersection(b.index)
    worst = 0.0
    for col in columns:
        x = a.loc[common, col].astype(float).to_numpy()
        y = b.loc[common, col].astype(float).to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.abs(x[ok]))))
    return dict(tasks=int(len(common)), max_rel_diff=worst)


def decade_slopes(df, fitted, column, n_boot=1000, seed=0):
    """Slope of the median per decade of n, over the last two decades, and overall."""
    from moestats.rates import fit_rate
    part = df[df.fitted == fitted]
    n = part["n"].to_numpy(float)
    losses = part[column].astype(float).to_numpy()
    bad = _excluded(part) | ~np.isfinite(losses)
    lo, hi = math.floor(math.log10(n.min()) + 1e-9), math.ceil(math.log10(n.max()) - 1e-9)
    ranges = [(10.0 ** a, 10.0 ** (a + 1)) for a in range(lo, hi)]
    ranges += [(10.0 ** (hi - 2), 10.0 ** hi), (10.0 ** lo, 10.0 ** hi)]
    rows = []
    for a, b in ranges:
        sel = (n >= a * (1 - 1e-9)) & (n <= b * (1 + 1e-9))
        if np.unique(n[sel & ~bad]).size < 2:
            continue
        fit = fit_rate(n[sel], losses[sel], statistic="median", n_boot=n_boot, rng=seed,
                       failed=bad[sel])
        rows.append(dict(n_low=a, n_high=b, sizes=int(np.unique(n[sel]).size),
                         fits=int((sel & ~bad).sum()), excluded=int((sel & bad).sum()),
                         slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high))
    gauge = "/".join(sorted({g for g in part["loss_gauge"] if isinstance(g, str)})) or None
    return dict(gauge=gauge, windows=rows)


def analyse(results: Path) -> list:
    import pandas as pd
    out = []
    for config, fitteds, columns, reps in CASES:
        full = store_frame(results / f"{config}-full")
        large = store_frame(_store_dir(results, config, reps))
        both = pd.concat([full, large], ignore_index=True).drop_duplicates(
            subset=["fitted", "n", "replication"])
        for fitted in fitteds:
            part = large[large.fitted == fitted]
            entry = dict(config=config, fitted=fitted, replications=reps,
                         overlap=overlap_check(full, large, fitted, columns),
                         large_n_fits=int(len(part)),
                         large_n_uncertified=int(_excluded(part).sum()),
                         large_n_cpu_s=float(part["wall_time"].sum()), losses={})
            for col in columns:
                entry["losses"][col] = decade_slopes(both, fitted, col)
            out.append(entry)
    return out


def _fmt(x):
    return "—" if x is None or not np.isfinite(x) else f"{x:+.2f}"


def fmt_ci(d):
    """``+s.ss [+l.ll, +h.hh]`` of a slope record, or a dash."""
    if d is None or d.get("slope") is None or not np.isfinite(d["slope"]):
        return "—"
    return f"{d['slope']:+.2f} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]"


def write_outputs(out: Path, payload, render) -> None:
    """``out``.json (the payload, unless None) and ``out``.md (``render(payload)``), printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if payload is not None:
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=float))
    else:
        payload = json.loads(out.with_suffix(".json").read_text())
    out.with_suffix(".md").write_text(render(payload))
    print(out.with_suffix(".md").read_text())


def _n(x):
    return f"1e{round(math.log10(x))}"


def render(payload) -> str:
    m = payload["machine"]
    lines = [
        "# Activation-gate slopes beyond n = 1e5",
        "",
        f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
        f"nproc {m.get('nproc')}, moestats {m.get('moestats')}; load average before "
        f"{payload['load_before']}, after {payload['load_after']}.",
        "",
        "Each config's full form (n = 1e2 to 1e5, 40 replications per size) is extended by a "
        "sweep of the same config at n = 1e5 to 1e6 (6 log-spaced sizes, replications as "
        "listed; same seed, truth, start, certificate and Θ: its first 40 replications at "
        "n = 1e5 are the full form's). Slopes: OLS of log(median loss) on log n over the stated range, "
        "certified fits only, stratified bootstrap 95% intervals (1000 resamples). "
        f"Theory: {THEORY}.",
        "",
    ]
    if payload.get("walls"):
        lines += ["Sweep wall times (2 worker processes): " + ", ".join(
            f"{c} {w:.0f} s" for c, w in payload["walls"].items()) + ".", ""]
    lines += ["| config | fitted | loss (gauge) | " + " | ".join(
        f"{_n(a)}–{_n(b)}" for a, b in payload["ranges"]) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in payload["ranges"]) + " |"]
    for e in payload["entries"]:
        for col, d in e["losses"].items():
            cells = {(w["n_low"], w["n_high"]): w for w in d["windows"]}
            row = []
            for key in payload["ranges"]:
                w = cells.get(tuple(key))
                row.append("—" if w is None else
                           f"{_fmt(w['slope'])} [{_fmt(w['ci_low'])}, {_fmt(w['ci_high'])}]")
            lines.append(f"| {e['config']} | {e['fitted']} | {col} ({d['gauge']}) | "
                         + " | ".join(row) + " |")
    lines += ["", "| config | fitted | replications per size at n ≥ 1e5 | fits | uncertified | CPU s | "
              "tasks shared with the full store | max relative loss difference there |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in payload["entries"]:
        o = e["overlap"]
        lines.append(f"| {e['config']} | {e['fitted']} | {e['replications']} | {e['large_n_fits']} | "
                     f"{e['large_n_uncertified']} | {e['large_n_cpu_s']:.0f} | {o['tasks']} | "
                     f"{o['max_rel_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--render-only", action="store_true",
                    help="rebuild the report from the JSON without running or reading stores")
    args = ap.parse_args(argv)
    payload = None
    if not args.render_only:
        before = load_average()
        walls = run_sweeps(args.results, args.n_jobs)
        entries = analyse(args.results)
        ranges = sorted({(w["n_low"], w["n_high"]) for e in entries
                         for d in e["losses"].values() for w in d["windows"]},
                        key=lambda r: (r[1] - r[0] > 10 * r[0], r[1] / r[0] > 100, r[0]))
        payload = dict(command="python benchmarks/check_large_n.py " + shlex.join(
            sys.argv[1:] if argv is None else argv), machine=machine_info(),
            load_before=before, load_after=load_average(), walls=walls,
            ranges=[list(r) for r in ranges], entries=entries)
    write_outputs(OUT, payload, render)


if __name__ == "__main__":
    main()
