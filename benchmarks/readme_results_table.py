"""Copy the full-form slope rows of ``figures/RESULTS.md`` into the README's results table.

The README's table (the one whose header starts ``| setup | form | start | fitted |``) is
replaced by the header of ``figures/RESULTS.md``'s slope table and its ``full`` rows, in
that file's order; nothing else in the README changes. Run after ``moestats report ...
--markdown figures/RESULTS.md`` (``benchmarks/figures_from_reruns.sh`` says so)::

    python benchmarks/readme_results_table.py [--readme README.md] [--results figures/RESULTS.md]

Exits 1 when the README has no such table or the results file no full rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| setup | form | start | fitted |"


def first_table(lines: list[str], start: int = 0) -> tuple[int, int]:
    """``(first, end)`` line indices of the first table at or after ``start`` whose header
    starts with ``HEADER`` (``end`` is one past its last row); ``(-1, -1)`` if none."""
    for i in range(start, len(lines)):
        if lines[i].startswith(HEADER):
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "figures/RESULTS.md")
    args = ap.parse_args(argv)
    table = full_rows(args.results.read_text())
    if not table:
        print(f"readme_results_table: no full-form rows in {args.results}")
        return 1
    lines = args.readme.read_text().splitlines()
    i, j = first_table(lines)
    if i < 0:
        print(f"readme_results_table: no table starting {HEADER!r} in {args.readme}")
        return 1
    args.readme.write_text("\n".join(lines[:i] + table + lines[j:]) + "\n")
    print(f"readme_results_table: {len(table) - 2} full-form rows written to {args.readme} "
          f"(it had {j - i - 2})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
