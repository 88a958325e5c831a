"""The README's costs table: which cross-CPU comparison and which wall time a sweep gets
(``benchmarks/readme_results_table.py``)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_results_table as rrt  # noqa: E402


def _comparison(common, total, wall_s, target):
    result = dict(common=common, committed_tasks=total, status_changes=0,
                  certificate_changes=0, max_abs_dll=1e-6, fits_dll_over_tol=0,
                  rerun_higher=0, rerun_lower=0, cost=dict(wall_s=wall_s))
    return {"machine": {"numba_target": target}, "pairs": {"s-full": ["results/x", result]}}


def _figure(tmp_path, wall_s):
    timing = {"fits": 480, "fit_s": 15069.0}
    if wall_s is not None:
        timing["wall_s"] = wall_s
    (tmp_path / "s-full-slopes.json").write_text(json.dumps(
        {"spec": {"setup": "s", "start": "agnostic"}, "timing": timing}))


def test_most_common_comparison_wins_and_complete_rerun_gives_wall_time(tmp_path):
    _figure(tmp_path, None)
    partial, complete = _comparison(120, 480, 600.0, "znver4"), _comparison(480, 480, 6000.0,
                                                                          "znver3")
    row = rrt.costs_rows(tmp_path, [partial, complete])[2]
    assert "| 100.0 min (rerun, znver3) | 480 of 480 |" in row
    # a partial rerun has no wall time of the whole sweep
    row = rrt.costs_rows(tmp_path, [partial])[2]
    assert "| not recorded | 120 of 480 |" in row


def test_committed_wall_time_is_kept_and_rows_sort_by_it(tmp_path):
    _figure(tmp_path, 120.0)
    (tmp_path / "a-full-slopes.json").write_text(json.dumps(
        {"spec": {"setup": "a", "start": "near-truth"}, "timing": {"fits": 1}}))
    rows = rrt.costs_rows(tmp_path, [_comparison(480, 480, 6000.0, "znver3")])
    assert "| 2.0 min | 480 of 480 |" in rows[2]
    assert rows[3].startswith("| a | full |") and "not recorded | not compared" in rows[3]
