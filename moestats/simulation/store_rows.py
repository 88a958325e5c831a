"""How a result row is stored: the columns and the per-cell errors' JSON column.

Examples
--------
>>> from moestats.simulation.store_rows import COLUMNS
>>> list(COLUMNS)[:3]
['fitted', 'n', 'replication']
"""

from __future__ import annotations

import json
import math
import re


#: result columns, in order, with their SQLite types
COLUMNS = {
    "fitted": "TEXT", "n": "INTEGER", "replication": "INTEGER", "status": "TEXT",
    "error": "TEXT", "loss": "REAL", "losses": "TEXT", "errors": "TEXT",
    "log_likelihood": "REAL", "n_iter": "INTEGER", "converged": "INTEGER",
    "wall_time": "REAL", "params": "TEXT", "init": "TEXT", "assignment": "TEXT",
    "passes": "INTEGER", "certificate": "TEXT", "loss_gauge": "TEXT", "cells": "TEXT",
}

_CELL_KEY = re.compile(r"^cell(\d+)_(.+)$")


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def cells_json(row: dict):
    """The ``cells`` JSON of a result row (None when it has no per-cell errors).

    From the row's flat ``cell{j}_<block>`` keys, else from the ``per_cell`` and
    ``cell_sizes`` of its ``errors`` JSON.

    Examples
    --------
    >>> from moestats.simulation.store import cells_json, parse_cells
    >>> row = {"cell0_size": 1, "cell0_gate_coef": 0.5, "cell0_weight": 0.01,
    ...        "cell1_size": 2, "cell1_gate_coef": float("nan"), "cell1_weight": 0.02}
    >>> text = cells_json(row)
    >>> text
    '{"size": [1, 2], "gate_coef": [0.5, null], "weight": [0.01, 0.02]}'
    >>> back = parse_cells(text)
    >>> back["cell1_size"], back["cell1_gate_coef"], back["cell1_weight"]
    (2, nan, 0.02)
    """
    cells = {}
    for key, value in row.items():
        m = _CELL_KEY.match(str(key))
        if m:
            cells.setdefault(m.group(2), {})[int(m.group(1))] = value
    if cells:
        k = 1 + max(j for block in cells.values() for j in block)
        blocks = ["size"] + [b for b in cells if b != "size"]
        out = {}
        for b in blocks:
            values = [cells.get(b, {}).get(j) for j in range(k)]
            out[b] = ([None if v is None else int(v) for v in values] if b == "size"
                      else [_num(v) for v in values])
        return json.dumps(out)
    errors = row.get("errors")
    if isinstance(errors, str):
        errors = json.loads(errors)
    if isinstance(errors, dict) and "per_cell" in errors and "cell_sizes" in errors:
        out = {"size": [int(v) for v in errors["cell_sizes"]]}
        out.update({b: [_num(v) for v in vals] for b, vals in errors["per_cell"].items()})
        return json.dumps(out)
    return None


def parse_cells(text) -> dict:
    """The flat ``cell{j}_<block>`` values of a ``cells`` JSON ({} for None/NULL);
    sizes as int, errors as float (NaN for ``null``). Inverse of :func:`cells_json`."""
    if not isinstance(text, str):
        return {}
    data = json.loads(text)
    sizes = data.get("size", [])
    k = max([len(sizes)] + [len(v) for v in data.values()])
    out = {}
    for j in range(k):
        for b, values in data.items():
            v = values[j] if j < len(values) else None
            if b == "size":
                out[f"cell{j}_size"] = None if v is None else int(v)
            else:
                out[f"cell{j}_{b}"] = float("nan") if v is None else float(v)
    return out


def _gauge_of(row: dict):
    """The row's ``loss_gauge``, else the one recorded in its ``errors`` JSON."""
    if isinstance(row.get("loss_gauge"), str):
        return row["loss_gauge"]
    errors = row.get("errors")
    if isinstance(errors, str):
        try:
            errors = json.loads(errors)
        except ValueError:
            return None
    return errors.get("loss_gauge") if isinstance(errors, dict) else None


def _certified(text):
    """The certificate's verdict (True/False), or None where none is stored."""
    if not isinstance(text, str):
        return None
    try:
        cert = json.loads(text)
    except ValueError:
        return None
    if not isinstance(cert, dict) or cert.get("certified") is None:
        return None
    return bool(cert["certified"])
