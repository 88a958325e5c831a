"""Over-specified softmax: are the doubled cells' slow a and ν rates those of light atoms?

The per-cell errors of the reports (:func:`moestats.losses.cell_parameter_errors`) are
the largest error over a cell's fitted atoms, :math:`e_j(a) = \\max_{i \\in A_j}
\\|\\Delta a_{ij}\\|`, whatever the atoms' weights. The theory ([D], papers.md section 4)
bounds the weighted loss

.. math::

    D_2 \\ge \\sum_{i \\in A_j} w_i \\bigl(\\|\\Delta\\beta_{1ij}\\|^{\\bar r}
      + \\|\\Delta a_{ij}\\|^{\\bar r/2} + |\\Delta b_{ij}|^{\\bar r}
      + |\\Delta\\nu_{ij}|^{\\bar r/2}\\bigr) \\quad (|A_j| = 2: \\bar r = 4),

so :math:`D_2 \\lesssim n^{-1/2}` gives :math:`\\|\\Delta a_{ij}\\| \\lesssim (n^{-1/2} /
w_i)^{2/\\bar r}`: the -1/4 of a and ν (and -1/8 of β₁ and b) holds for atoms whose
weight stays bounded below, which the compact Θ of the theory guarantees and the sweeps'
Θ (coordinates in [-100, 100]) does not in any useful sense. This script reads the
committed full-form store of ``softmax-over`` (and any large-n stores of
``check_large_n_cells.py``), re-aligns every certified fit to the truth in the slope gauge
(:func:`moestats.losses.align_to_truth`, as the sweep did) and, for every cell of size 2,
reports against n

* ``max``: the stored per-cell error, the largest over the two atoms;
* ``weighted``: the theory's form, :math:`(\\sum_i \\omega_i \\|\\Delta\\|^{p} )^{1/p}` with
  the within-cell relative weights :math:`\\omega_i` and :math:`p = \\bar r/2 = 2` for a
  and ν, :math:`p = \\bar r = 4` for β₁ and b (the reports' ``weighted`` per-cell form,
  :mod:`moestats.simulation.cell_forms`);
* ``heavier``: the error of the cell's heavier atom;
* ``lighter share``: the lighter atom's within-cell weight :math:`\\min_i \\omega_i`,

with the slope of the median (stratified bootstrap 95% interval) over the stated ranges
of n. If the max errors are slow because of light atoms, ``weighted`` and ``heavier``
converge at the theory's rates and the lighter share shrinks with n.

Usage::

    python benchmarks/check_doubled_cells.py [--results results] [--large DIR ...]

Writes ``benchmarks/results/check_doubled_cells.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_em import load_average, machine_info  # noqa: E402
from check_large_n import fmt_ci, write_outputs  # noqa: E402
from check_reproduction import store_frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "check_doubled_cells"
CONFIG = "softmax-over"
BLOCKS = ("gate_coef", "expert_coef", "expert_intercept", "expert_var")
THEORY = {"gate_coef": -1 / 8, "expert_coef": -1 / 4, "expert_intercept": -1 / 8,
          "expert_var": -1 / 4}
RANGES = [(2e3, 1e5), (1e4, 1e5), (1e5, 1e6), (2e3, 1e6)]


def doubled_cell_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (certified fit, cell of size 2): the four error forms per block.

    ``max`` is the stored per-cell error, ``weighted`` the library's weighted form
    (:func:`moestats.simulation.cell_forms.weighted_cell_frame`); ``heavier`` and the
    lighter share come from the same alignment (:func:`moestats.losses.align_to_truth`).
    """
    from moestats.losses import align_to_truth
    from moestats.setups import get_setup
    from moestats.simulation.cell_forms import weighted_cell_frame
    setup = get_setup(CONFIG)
    ok = (frame["status"] == "ok") & frame["certified"].fillna(False).astype(bool)
    frame = frame[ok]
    weighted = weighted_cell_frame(frame, setup)
    rows = []
    for idx, rec in zip(frame.index, frame.itertuples()):
        params = {k: np.asarray(v, dtype=float) for k, v in json.loads(rec.params).items()}
        al = align_to_truth(params, setup.truth.params, gauge="slope")
        b0 = params["gate_intercept"]
        for j, cell in enumerate(al.cells):
            if cell.size != 2:
                continue
            omega = np.exp(b0[cell] - np.logaddexp.reduce(b0[cell]))
            row = dict(fitted=rec.fitted, n=rec.n, replication=rec.replication, cell=j,
                       lighter_share=float(omega.min()))
            heavy = int(np.argmax(omega))
            for block in BLOCKS:
                diff = al.fit_blocks[block][cell] - al.true_blocks[block][al.assignment[cell]]
                err = np.linalg.norm(diff.reshape(len(cell), -1), axis=1)
                row[f"{block}:max"] = float(frame.at[idx, f"cell{j}_{block}"])
                row[f"{block}:weighted"] = float(weighted.at[idx, f"cell{j}_{block}"])
                row[f"{block}:heavier"] = float(err[heavy])
            rows.append(row)
    return pd.DataFrame(rows)


def slopes(cells: pd.DataFrame) -> list:
    from moestats.rates import fit_rate
    out = []
    columns = [c for c in cells.columns if ":" in c] + ["lighter_share"]
    for (fitted, j), part in cells.groupby(["fitted", "cell"]):
        n = part["n"].to_numpy(float)
        for col in columns:
            values = part[col].to_numpy(float)
            for lo, hi in RANGES:
                sel = (n >= lo * (1 - 1e-9)) & (n <= hi * (1 + 1e-9))
                per_n = pd.Series(n[sel]).value_counts()
                keep = sel & np.isin(n, per_n[per_n >= 3].index)
                if np.unique(n[keep]).size < 2:
                    continue
                zero = ~(values[keep] > 0)  # an atom exactly at the truth (left out, counted)
                r = fit_rate(n[keep], values[keep], statistic="median", n_boot=1000, rng=0,
                             failed=zero)
                block, _, form = col.partition(":")
                out.append(dict(fitted=fitted, cell=int(j), block=block, form=form or "share",
                                theory=THEORY.get(block), n_low=lo, n_high=hi,
                                sizes=int(np.unique(n[keep]).size), fits=int(keep.sum()),
                                zero=int(zero.sum()),
                                slope=r.slope, ci_low=r.ci_low, ci_high=r.ci_high))
    return out


def render(payload) -> str:
    m = payload["machine"]
    rows = payload["slopes"]
    ranges = [tuple(r) for r in payload["ranges"]]
    lines = ["# Over-specified softmax: the doubled cells' errors by atom weight", "",
             f"Command: `{payload['command']}`. {m['timestamp_utc']}; {m.get('cpu_model')}, "
             f"nproc {m.get('nproc')}, moestats {m.get('moestats')}; load average "
             f"{payload['load']}. Stores: " + ", ".join(f"`{s}`" for s in payload["stores"])
             + f"; {payload['cells']} doubled cells of certified fits.", "",
             "Slope of the median error of each cell of size 2 against n (stratified "
             "bootstrap 95% interval), in four forms: `max` over the two atoms (the reports' "
             "per-cell error), `weighted` (the theory's form: the within-cell weighted p-mean, "
             "p = 2 for a and ν, 4 for β₁ and b), `heavier` (the heavier atom's error), and "
             "`share` (the lighter atom's within-cell weight).", "",
             "| fitted | cell | block | form | theory | " + " | ".join(
                 f"{lo:.0e}–{hi:.0e}" for lo, hi in ranges) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in ranges) + " |"]
    keys = []
    for r in rows:
        k = (r["fitted"], r["cell"], r["block"], r["form"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        cells = {(r["n_low"], r["n_high"]): r for r in rows
                 if (r["fitted"], r["cell"], r["block"], r["form"]) == k}
        th = next(iter(cells.values()))["theory"]
        lines.append(f"| {k[0]} | {k[1]} | {k[2] or '—'} | {k[3]} | "
                     f"{'—' if th is None else f'{th:+.3f}'} | "
                     + " | ".join(fmt_ci(cells[r]) if r in cells else "—" for r in ranges) + " |")
    med = payload["lighter_share_median"]
    lines += ["", "Median lighter share per decade of n: " + "; ".join(
        f"{d['fitted']} cell {d['cell']} {d['decade']}: {d['median']:.3f}" for d in med) + ".",
        ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--large", type=Path, nargs="*", default=None,
                    help="large-n stores (default: those of check_large_n_cells.py present)")
    args = ap.parse_args(argv)
    stores = [args.results / f"{CONFIG}-full"]
    if args.large is None:
        from check_large_n_cells import LARGE_DEFAULT
        stores += [args.results / d for d in LARGE_DEFAULT if (args.results / d).is_dir()]
    else:
        stores += list(args.large)
    frame = pd.concat([store_frame(s) for s in stores], ignore_index=True).drop_duplicates(
        subset=["fitted", "n", "replication"])
    cells = doubled_cell_rows(frame)
    decade = np.floor(np.log10(cells["n"].astype(float)) + 1e-9).astype(int)
    share = [dict(fitted=f, cell=int(j), decade=f"1e{d}", median=float(g.median()))
             for (f, j, d), g in cells.groupby(["fitted", "cell", decade])["lighter_share"]]
    payload = dict(command="python benchmarks/check_doubled_cells.py " + shlex.join(
        sys.argv[1:] if argv is None else argv), machine=machine_info(), load=load_average(),
        stores=[str(s) for s in stores], cells=int(len(cells)),
        ranges=[list(r) for r in RANGES], slopes=slopes(cells), lighter_share_median=share)
    write_outputs(OUT, payload, render)


if __name__ == "__main__":
    main()
