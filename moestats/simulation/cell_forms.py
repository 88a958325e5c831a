"""The per-cell errors of stored fits in the theory's weighted form (computed at report time).

A store keeps, per fit and true atom :math:`j`, the largest error over the cell's fitted
atoms, :math:`e_j = \\max_{i \\in A_j} \\|\\Delta_{ij}\\|` (``cell{j}_<block>``). The
over-specified theory ([D]) bounds the weighted terms of :math:`D_2` instead,
:math:`\\sum_{i \\in A_j} e^{\\beta_{0i}} \\|\\Delta_{ij}\\|^{p}`; an atom whose share of its
cell's weight shrinks with :math:`n` can keep a large error that the theory does not bound.
:func:`weighted_cell_frame` recomputes, from every stored fit's parameters, the weighted
form :math:`e^w_j = (\\sum_{i \\in A_j} \\omega_i \\|\\Delta_{ij}\\|^p)^{1/p}`
(:func:`moestats.losses.cell_parameter_errors` with ``weighted=True``), in the same gauge
and at the same parametrisation as the stored losses, so that old stores get it too.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from ..estimator import GaussianMoE
from ..params import MoEParams
from .task import _cell_columns, _losses

__all__ = ["weighted_cell_frame"]

#: the columns that identify a fit and say whether it counts
_KEEP = ("fitted", "n", "replication", "status", "certified", "certificate", "loss_gauge")


def _fitted_gate(config):
    est = GaussianMoE(config.n_experts, gate=config.gate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est._check_hyperparameters()


def weighted_cell_frame(df: pd.DataFrame, setup, fitted=None) -> pd.DataFrame:
    """Per-cell errors of the stored fits in the theory's weighted form.

    Parameters
    ----------
    df : pandas.DataFrame
        Results of one setup (:meth:`~moestats.simulation.ResultStore.to_frame`) with
        the fits' ``params`` (JSON).
    setup : Setup
        The setup of the sweep (its truth and fitted configurations).
    fitted : list of str, optional
        Configurations to compute (default: every one in ``df``).

    Returns
    -------
    pandas.DataFrame
        The identifying columns of ``df`` (``fitted``, ``n``, ``replication``,
        ``status``, ``certified``, ...) and ``cell{j}_size``, ``cell{j}_<block>``,
        ``cell{j}_weight`` in the weighted form (NaN where a row has no parameters);
        same index as the selected rows of ``df``.

    Examples
    --------
    >>> import json
    >>> import pandas as pd
    >>> from moestats.setups import get_setup
    >>> setup = get_setup("softmax-over")
    >>> truth = setup.truth.params.as_dict()
    >>> row = {"fitted": "k3", "n": 100, "replication": 0, "status": "ok",
    ...        "params": json.dumps({**truth,   # the truth with atom 0 split in two
    ...            "gate_coef": [truth["gate_coef"][0]] * 2 + [truth["gate_coef"][1]],
    ...            "gate_intercept": [truth["gate_intercept"][0] - 0.7] * 2
    ...                              + [truth["gate_intercept"][1]],
    ...            "expert_coef": [truth["expert_coef"][0]] * 2 + [truth["expert_coef"][1]],
    ...            "expert_intercept": [truth["expert_intercept"][0]] * 2
    ...                                + [truth["expert_intercept"][1]],
    ...            "expert_var": [truth["expert_var"][0]] * 2 + [truth["expert_var"][1]]})}
    >>> w = weighted_cell_frame(pd.DataFrame([row]), setup)
    >>> w[["cell0_size", "cell1_size"]].values.tolist()
    [[2, 1]]
    >>> float(w["cell0_expert_coef"].iloc[0]) < 1e-12
    True
    """
    configs = {c.name: c for c in setup.fitted}
    names = sorted(set(df["fitted"])) if fitted is None else list(fitted)
    parts = []
    for name in names:
        sub = df[df["fitted"] == name]
        config = configs[name]
        gate = _fitted_gate(config)
        records = []
        for raw in sub["params"] if "params" in sub else [None] * len(sub):
            if not isinstance(raw, str):
                records.append({})
                continue
            params = MoEParams.from_dict(json.loads(raw))
            with np.errstate(all="ignore"):
                _, _, errors = _losses(config, setup.truth, params, gate, None, weighted=True)
            records.append(_cell_columns(errors, "per_cell_weighted"))
        cells = pd.DataFrame(records, index=sub.index)
        for col in [c for c in cells.columns if c.endswith("_size")]:
            cells[col] = cells[col].astype("Int64")
        keep = sub[[c for c in _KEEP if c in sub.columns]]
        parts.append(pd.concat([keep, cells], axis=1))
    return pd.concat(parts) if parts else pd.DataFrame(columns=list(_KEEP))
