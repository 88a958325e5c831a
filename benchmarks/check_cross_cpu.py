"""How closely another CPU reproduces a sweep's results (issue 9, item 6).

Runs the quick form of each given config twice, in fresh processes: once as this machine
compiles and dispatches (Numba for the host CPU, NumPy's and OpenBLAS's runtime
dispatch), and once as a different CPU would (``--variant``): ``avx2``, Numba code for
``x86-64-v3`` (AVX2 + FMA), OpenBLAS's Haswell kernels and NumPy's AVX-512 dispatch
disabled; or ``skylake-avx512``, Numba code for Intel's AVX-512 server cores and
OpenBLAS's SkylakeX kernels. Vector width changes the order of the reassociated sums in the kernels and the
BLAS/LAPACK arithmetic of the small solves, so the two runs differ in the last bits; the
script measures what that does to the results: fits that change status (ok/failed,
certified/uncertified), the largest log-likelihood difference, the largest relative
difference of the main loss, and of the fitted parameters.

Usage::

    python benchmarks/check_cross_cpu.py softmax-over topk-over --variant skylake-avx512

Writes JSON and a markdown table beside it (machine, load, the two environments).

Examples
--------
A dry run on a tiny custom config (not executed here: it runs two sweeps)::

    python benchmarks/check_cross_cpu.py softmax-exact --quick-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the emulated "other CPUs": an AVX2 machine, and an Intel AVX-512 server
OTHER_CPUS = {
    "avx2": {
        "NUMBA_CPU_NAME": "x86-64-v3",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX "
                                    "AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    },
    "skylake-avx512": {
        "NUMBA_CPU_NAME": "skylake-avx512",
        "OPENBLAS_CORETYPE": "SkylakeX",
    },
}


def run(config, results, env_extra):
    env = {**os.environ, **env_extra}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moestats.simulation", "run",
                    str(ROOT / "simulations" / f"{config}.toml"), "--quick", "--n-jobs", "2",
                    "--results", str(results), "--no-progress", "--no-report"],
                   check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def frame(results, config):
    from moestats.simulation import ResultStore
    (path,) = Path(results).glob("*.sqlite")
    return ResultStore(path).to_frame().sort_values(["fitted", "n", "replication"]).reset_index(
        drop=True)


def compare(a, b):
    key = ["fitted", "n", "replication"]
    m = a.merge(b, on=key, suffixes=("_a", "_b"))
    ok_a, ok_b = m.status_a == "ok", m.status_b == "ok"
    both = ok_a & ok_b
    cert_a = m.converged_a.fillna(False).astype(bool)
    cert_b = m.converged_b.fillna(False).astype(bool)
    dll = (m.log_likelihood_a - m.log_likelihood_b).abs()[both]
    rloss = ((m.loss_a - m.loss_b).abs() / m.loss_a.abs().clip(lower=1e-300))[both]
    dpar = []
    for pa, pb in zip(m.params_a[both], m.params_b[both]):
        va = np.concatenate([np.ravel(v) for v in json.loads(pa).values()])
        vb = np.concatenate([np.ravel(v) for v in json.loads(pb).values()])
        dpar.append(float(np.max(np.abs(va - vb) / np.maximum(1.0, np.abs(va)))))
    dpar = np.asarray(dpar)
    return {
        "fits": int(len(m)),
        "status_changes": int((ok_a != ok_b).sum()),
        "certificate_changes": int((both & (cert_a != cert_b)).sum()),
        "max_abs_loglik_diff": float(dll.max()) if len(dll) else None,
        "median_abs_loglik_diff": float(dll.median()) if len(dll) else None,
        "fits_loglik_diff_above_1e-3": int((dll > 1e-3).sum()),
        "max_rel_loss_diff": float(rloss.max()) if len(rloss) else None,
        "median_rel_loss_diff": float(rloss.median()) if len(rloss) else None,
        "fits_rel_loss_diff_above_1e-3": int((rloss > 1e-3).sum()),
        "max_param_diff": float(dpar.max()) if dpar.size else None,
        "bit_identical_fits": int((dpar == 0).sum()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--variant", choices=sorted(OTHER_CPUS), default="skylake-avx512")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/check_cross_cpu.json")
    args = ap.parse_args(argv)
    other = OTHER_CPUS[args.variant]
    out = {"benchmark": "check_cross_cpu", "machine": machine_info(),
           "load_average_start": load_average(), "variant": args.variant,
           "other_cpu_environment": other, "configs": {}}
    for config in args.configs:
        with tempfile.TemporaryDirectory() as tmp:
            ta = run(config, Path(tmp) / "host", {})
            tb = run(config, Path(tmp) / "other", other)
            res = compare(frame(Path(tmp) / "host", config), frame(Path(tmp) / "other", config))
        res.update(wall_host_s=ta, wall_other_s=tb)
        out["configs"][config] = res
        print(config, res, flush=True)
    out["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Cross-CPU reproduction of the quick sweeps", "",
             f"Machine: {out['machine'].get('cpu_model')}, load at start "
             f"{out['load_average_start']}, at end {out['load_average_end']}. The other CPU is "
             f"emulated ({args.variant}): " + ", ".join(f"`{k}={v}`" for k, v in other.items())
             + ".", "",
             "| config | fits | status changes | certificate changes | max abs dLL | fits dLL > 1e-3 "
             "| max rel dloss | fits rel dloss > 1e-3 | max param diff | bit-identical fits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c, r in out["configs"].items():
        lines.append(f"| {c} | {r['fits']} | {r['status_changes']} | {r['certificate_changes']} | "
                     f"{r['max_abs_loglik_diff']:.2e} | {r['fits_loglik_diff_above_1e-3']} | "
                     f"{r['max_rel_loss_diff']:.2e} | {r['fits_rel_loss_diff_above_1e-3']} | "
                     f"{r['max_param_diff']:.2e} | {r['bit_identical_fits']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
