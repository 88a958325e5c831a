#!/usr/bin/env bash
# Rebuild the committed figures, tables and figures/RESULTS.md from one machine's runs of
# every config, and the benchmark that reads those stores (compare_start_protocols).
#
# The runs: for every config C in simulations/ (custom-truth-example aside)
#     moestats run simulations/C.toml --full --n-jobs 2 --no-report --results FULL/C
#     moestats run simulations/C.toml        --n-jobs 2 --no-report --results QUICK/C
# (each store is FULL/C/<setup>-full.sqlite: an agnostic config's store is named after its
# setup, so the store is renamed after its config here). Usage:
#
#     bash benchmarks/figures_from_reruns.sh FULL QUICK [TREE]
#
# KEEP (environment, space-separated sweep names such as "topk-over-k4-agnostic-full"):
# sweeps whose committed outputs stay as they are (their store need not be given); their
# rows in figures/RESULTS.md come from their committed <name>-slopes.json.
#
# TREE (default results/from-reruns) gets one symlink per store in the layouts that
# `moestats report` (TREE/all/<config>-<form>.sqlite) and compare_start_protocols
# (TREE/<config>-<form>/) read. Then: `moestats report` into figures/ (figures/RESULTS.md
# with its slope and cost tables), the SVGs dropped and the per-fit tables gzipped as
# committed, and benchmarks/results/compare_start_protocols.md rebuilt. The README's
# slope table is `python benchmarks/readme_results_table.py` afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
full=$(realpath "$1") quick=$(realpath "$2") tree=${3:-results/from-reruns}
configs=$(ls simulations/*.toml | xargs -n1 basename | sed 's/\.toml$//' | grep -v '^custom-truth-example$')
rm -rf "$tree" && mkdir -p "$tree/all"
missing=0
for c in $configs; do
  for pair in "full:$full" "quick:$quick"; do
    form=${pair%%:*} dir=${pair#*:}
    case " ${KEEP:-} " in *" $c-$form "*) echo "keeping the committed $c-$form" >&2; continue;; esac
    store=$(ls "$dir/$c"/*-"$form".sqlite 2>/dev/null | head -1 || true)
    if [ -z "$store" ]; then echo "missing: $dir/$c/*-$form.sqlite" >&2; missing=1; continue; fi
    mkdir -p "$tree/$c-$form"
    ln -s "$store" "$tree/all/$c-$form.sqlite"
    ln -s "$store" "$tree/$c-$form/$c-$form.sqlite"
  done
done
[ "$missing" = 0 ] || { echo "figures_from_reruns: stores missing (above); nothing rebuilt" >&2; exit 1; }
for f in figures/*; do
  keep=0
  for k in ${KEEP:-}; do case "$(basename "$f")" in "$k"-*|"$k".*) keep=1;; esac; done
  [ "$keep" = 1 ] || rm -f "$f"
done
moestats report "$tree/all" --out figures/ --markdown figures/RESULTS.md > "$tree/report.log"
rm -f figures/*.svg
gzip -f figures/*-results.csv
if [ -n "${KEEP:-}" ]; then
  echo "figures_from_reruns: KEEP given, so compare_start_protocols.md is not rebuilt (it needs every store)" >&2
else
  python benchmarks/compare_start_protocols.py --results "$tree"
fi
echo "figures_from_reruns: $(ls figures | wc -l) files in figures/ from $(ls "$tree/all" | wc -l) stores"
