"""The rerun cost that ``benchmarks/check_reproduction.py`` reads from a store's run
sessions."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import check_reproduction as cr  # noqa: E402


def _session(wall_s, fits, load, cpu="AMD EPYC (Numba target znver3)"):
    return dict(wall_s=wall_s, fits=fits, load=load, cpu=cpu, nproc=2,
                workers="2 local processes", moestats="0.8.0")


def test_sessions_without_a_stored_fit_add_neither_time_nor_load():
    sessions = [_session(7663.6, 34, 0.62), _session(0.0, 0, 3.5),
                _session(6689.6, 48, 0.61), _session(0.0, 0, 0.4)]
    cost = cr.session_cost(sessions)
    assert cost["sessions"] == 2 and cost["empty_sessions"] == 2
    assert cost["wall_s"] == 7663.6 + 6689.6
    assert cost["max_load"] == 0.62
    assert cr._wall(cost) == ("14353 s (2 session(s), 2 more stopped before a fit, "
                              "2 local processes, load 0.6)")


def test_a_store_without_sessions_has_no_wall_time():
    cost = cr.session_cost([])
    assert cost["wall_s"] is None and cr._wall(cost) == "not recorded"
    only_empty = cr.session_cost([_session(0.0, 0, 0.2)])
    assert only_empty["wall_s"] is None and only_empty["empty_sessions"] == 1
    assert cr._wall(only_empty) == "not recorded"
