"""Copy the full-form slope rows of ``figures/RESULTS.md`` into the README's results table,
and rebuild the README's costs table from the committed sweeps.

- The README's slope table (header ``| setup | form | start | fitted |``) is replaced by the
  header of ``figures/RESULTS.md``'s slope table and its ``full`` rows, in that file's order.
- With ``--reproduction FILE.json`` (a ``benchmarks/check_reproduction.py`` output; the
  option may be repeated), the README's costs table (header ``| setup | form | start |
  fits |``) is rebuilt: for every full form, its fits, the CPU seconds in them and the wall
  time of its run sessions (from ``figures/<name>-full-slopes.json``), and what the
  comparison of the same sweep on another machine found (fits compared, status and
  certificate changes, the largest |Δℓ|, fits at another maximum), ordered by wall time.
  Where several files compare a sweep, the one with the most fits in common is used. A
  sweep whose committed run recorded no wall time takes that of a complete rerun, named
  by the rerun's Numba target.

Nothing else in the README changes. Run after ``moestats report ... --markdown
figures/RESULTS.md`` (``benchmarks/figures_from_reruns.sh`` says so)::

    python benchmarks/readme_results_table.py [--readme README.md] [--results figures/RESULTS.md]
        [--reproduction benchmarks/results/check_reproduction_zen4.json ...]

Exits 1 when the README has no such table or the results file no full rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| setup | form | start | fitted |"
COSTS_HEADER = "| setup | form | start | fits |"


def first_table(lines: list[str], header: str = HEADER) -> tuple[int, int]:
    """``(first, end)`` line indices of the first table whose header starts with
    ``header`` (``end`` is one past its last row); ``(-1, -1)`` if none."""
    for i in range(len(lines)):
        if lines[i].startswith(header):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            return i, j
    return -1, -1


def full_rows(results_md: str) -> list[str]:
    """The header, separator and ``full`` rows of the slope table of a RESULTS.md."""
    lines = results_md.splitlines()
    i, j = first_table(lines)
    if i < 0:
        return []
    rows = [r for r in lines[i + 2:j] if r.split("|")[2].strip() == "full"]
    return lines[i:i + 2] + rows if rows else []


def _g(x, fmt):
    return "—" if x is None else format(x, fmt)


def best_comparison(name: str, reproductions: list[dict]) -> tuple[dict | None, str]:
    """The comparison of sweep ``name`` with the most fits in common among
    ``reproductions`` (check_reproduction.py outputs), and the Numba target of its rerun."""
    found = [(pair[1], rep.get("machine", {}).get("numba_target", "another CPU"))
             for rep in reproductions if (pair := rep.get("pairs", {}).get(name))]
    if not found:
        return None, ""
    return max(found, key=lambda f: f[0]["common"])


def _wall_cell(timing: dict, r: dict | None, target: str) -> tuple[float, str]:
    """(sort key, cell): the committed run's wall time, else that of a complete rerun."""
    wall = timing.get("wall_s")
    if wall is not None:
        return wall, f"{wall / 60:.1f} min"
    rerun = None if r is None else r.get("cost", {}).get("wall_s")
    if rerun is None or r["common"] < r["committed_tasks"]:
        return float("inf"), "not recorded"
    return rerun, f"{rerun / 60:.1f} min (rerun, {target})"


def costs_rows(figures: Path, reproductions: list[dict]) -> list[str]:
    """The costs table: one row per ``figures/*-full-slopes.json``, by wall time."""
    rows = []
    for path in sorted(figures.glob("*-full-slopes.json")):
        data = json.loads(path.read_text())
        spec, timing = data["spec"], data.get("timing", {})
        r, target = best_comparison(path.name.removesuffix("-slopes.json"), reproductions)
        key, wall = _wall_cell(timing, r, target)
        compared = ("not compared | — | — | —" if r is None else
                    f"{r['common']} of {r['committed_tasks']} | {r['status_changes']} / "
                    f"{r['certificate_changes']} | {_g(r['max_abs_dll'], '.1e')} | "
                    f"{r['fits_dll_over_tol']} ({r['rerun_higher']} / {r['rerun_lower']})")
        rows.append((key, f"| {spec['setup']} | full | {spec['start']} | "
                          f"{timing.get('fits', '—')} | {_g(timing.get('fit_s'), '.0f')} | "
                          f"{wall} | {compared} |"))
    head = [COSTS_HEADER + " time in fits (CPU s) | wall time | fits compared | status / "
            "certificate changes | max abs Δℓ | another maximum (higher / lower) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    return head + [row for _, row in sorted(rows, key=lambda t: t[0])]


def replace_table(lines: list[str], header: str, table: list[str], what: Path) -> list[str]:
    i, j = first_table(lines, header=header)
    if i < 0:
        raise SystemExit(f"readme_results_table: no table starting {header!r} in {what}")
    print(f"readme_results_table: {len(table) - 2} rows written to the table {header!r} "
          f"(it had {j - i - 2})")
    return lines[:i] + table + lines[j:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "figures/RESULTS.md")
    ap.add_argument("--reproduction", type=Path, action="append", default=[],
                    help="a check_reproduction.py JSON (repeatable): also rebuild the costs "
                         "table")
    args = ap.parse_args(argv)
    table = full_rows(args.results.read_text())
    if not table:
        print(f"readme_results_table: no full-form rows in {args.results}")
        return 1
    lines = replace_table(args.readme.read_text().splitlines(), HEADER, table, args.readme)
    if args.reproduction:
        costs = costs_rows(args.results.parent,
                           [json.loads(f.read_text()) for f in args.reproduction])
        lines = replace_table(lines, COSTS_HEADER, costs, args.readme)
    args.readme.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
