"""Custom true models in a sweep config: a ``[truth]`` table and ``[[fitted]]`` tables.

A config with a ``[truth]`` table studies a true model of its own instead of a built-in
setup of :data:`moestats.setups.SETUPS`::

    description = "softmax truth of my own, exact- and over-specified fits"
    setup = "my-truth"             # optional: a label (default: the file's stem); not a built-in id
    seed = 7

    [truth]
    gate = "softmax"               # "softmax", "topk", "temperature" or "activation"
    # k_active = 1                 # topk only (default 1)
    # temperature = 0.5            # temperature and activation only (default 1.0)
    # activation = "tanh"          # activation only: "tanh", "sigmoid" or "gelu"
    gate_coef = [[4.0], [0.0]]     # k* x d gate slopes; the last expert is the reference (0)
    gate_intercept = [0.5, 0.0]    # k*; the last is 0
    expert_coef = [[-2.0], [2.0]]  # k* x d expert slopes
    expert_intercept = [1.0, -1.0] # k*
    expert_var = [0.1, 0.2]        # k* variances, > 0
    x_low = -1.0                   # X ~ U[x_low, x_high]^d (default U[0, 1]^d)
    x_high = 1.0

    [[fitted]]                     # one table per fitted configuration
    name = "k2"
    n_experts = 2                  # >= k*
    # gate = "softmax"             # default: the truth's family (and its k_active / activation)
    # k_active, temperature, activation: as in [truth]
    # learn_temperature = true     # temperature and activation fits (default true; a learned
    #                              # temperature starts at 1.0; a fixed one, of the truth's
    #                              # family, is the truth's)
    # loss = "D1"                  # default: D1 (k = k*) or D2 (k > k*), "-topk" for a top-K
    #                              # truth, "-temperature" for a learned temperature; or "density"
    # theory_slope = -0.5          # optional: the slope drawn in the figure
    # note = "..."                 # optional: a remark on the configuration

    [quick]
    sample_sizes = { min = 100, max = 2000, num = 5 }
    replications = 10

The tables are checked field by field (an error names the field, e.g.
``config field 'truth.expert_var': ...`` or ``config field 'fitted[1].n_experts': ...``)
and normalised (:func:`normalize_truth`) into plain JSON data that the
:class:`~moestats.simulation.spec.SweepSpec` carries in its ``truth`` field: the custom
truth travels by value with the spec to worker processes and Dask workers, and is part
of the spec's fingerprint (a store of another truth is refused). :func:`build_setup`
turns that data into a :class:`~moestats.setups.Setup` (cached).

Examples
--------
>>> from moestats.simulation.truth_config import build_setup, normalize_truth
>>> truth = normalize_truth({
...     "gate": "softmax", "gate_coef": [[4.0], [0.0]], "gate_intercept": [0.5, 0.0],
...     "expert_coef": [[-2.0], [2.0]], "expert_intercept": [1.0, -1.0],
...     "expert_var": [0.1, 0.2], "x_low": -1.0, "x_high": 1.0,
...     "fitted": [{"name": "k2", "n_experts": 2}, {"name": "k3", "n_experts": 3}]})
>>> [(f["name"], f["gate"], f["loss"]) for f in truth["fitted"]]
[('k2', 'softmax', 'D1'), ('k3', 'softmax', 'D2')]
>>> setup = build_setup("my-truth", truth)
>>> setup.truth.params.n_experts, setup.truth.x_law.low, [c.name for c in setup.fitted]
(2, -1.0, ['k2', 'k3'])
>>> normalize_truth({**truth, "expert_var": [0.1, -0.2]})
Traceback (most recent call last):
...
moestats.simulation.spec.ConfigError: config field 'truth.expert_var': variances must be > 0, got [0.1, -0.2]
"""

from __future__ import annotations

import json
import math
import re
import warnings

__all__ = ["GATES", "LOSSES", "normalize_truth", "truth_from_config", "check_label",
           "build_setup",
           "setup_of_spec_dict"]

#: gate families of a custom truth or fitted configuration
GATES = ("softmax", "topk", "temperature", "activation")
#: names of the main loss of a fitted configuration (``"density"``: the Hellinger density
#: error; the others are the Voronoi loss, whose form follows from the truth and the fit)
LOSSES = ("D1", "D2", "D1-topk", "D2-topk", "D1-temperature", "D2-temperature", "density")

_ARRAYS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")
_HYPER = ("k_active", "temperature", "activation")
_TRUTH_KEYS = {"gate", *_HYPER, *_ARRAYS, "x_low", "x_high"}
_FITTED_KEYS = {"name", "n_experts", "gate", *_HYPER, "learn_temperature", "loss",
                "theory_slope", "note"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _fail(field, msg):
    from .spec import ConfigError
    raise ConfigError(f"config field {field!r}: {msg}")


def _number(value, field, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(field, f"must be a finite number, got {value!r}")
    if positive and not value > 0:
        _fail(field, f"must be > 0, got {value!r}")
    return float(value)


def _vector(value, field):
    if (not isinstance(value, (list, tuple)) or not value
            or any(isinstance(v, (list, tuple)) for v in value)):
        _fail(field, f"must be a non-empty list of numbers, got {value!r}")
    return [_number(v, field) for v in value]


def _matrix(value, field):
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(row, (list, tuple)) for row in value)):
        _fail(field, f"must be a non-empty list of rows (one list of numbers per expert), "
                     f"got {value!r}")
    rows = [_vector(row, field) for row in value]
    if len({len(row) for row in rows}) != 1:
        _fail(field, f"rows of different lengths: {value!r}")
    return rows


def _gate_hyper(table, field, family, defaults):
    """The hyperparameters of ``family`` from ``table`` (others refused), as plain data."""
    allowed = {"softmax": (), "topk": ("k_active",), "temperature": ("temperature",),
               "activation": ("activation", "temperature")}[family]
    for key in _HYPER:
        if key in table and key not in allowed:
            _fail(f"{field}.{key}", f"only for gate = {_owner(key)}, got gate = {family!r}")
    out = {}
    if family == "topk":
        k = table.get("k_active", defaults.get("k_active", 1))
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            _fail(f"{field}.k_active", f"must be an integer >= 1, got {k!r}")
        out["k_active"] = k
    if family in ("temperature", "activation"):
        out["temperature"] = _number(table.get("temperature", defaults.get("temperature", 1.0)),
                                     f"{field}.temperature", positive=True)
    if family == "activation":
        act = table.get("activation", defaults.get("activation", "tanh"))
        from ..gates.activation import ACTIVATIONS
        if act not in ACTIVATIONS:
            _fail(f"{field}.activation", f"must be one of {sorted(ACTIVATIONS)}, got {act!r}")
        out["activation"] = act
    return out


def _owner(key):
    return {"k_active": '"topk"', "temperature": '"temperature" or "activation"',
            "activation": '"activation"'}[key]


def _family(table, field, default=None):
    family = table.get("gate", default)
    if family is None:
        _fail(field, f"missing; one of {list(GATES)}")
    if family not in GATES:
        _fail(field, f"must be one of {list(GATES)}, got {family!r}")
    return family


def _make_gate(data, learn=False):
    from ..gates import ActivationGate, SoftmaxGate, TemperatureGate, TopKGate
    family = data["gate"]
    if family == "softmax":
        return SoftmaxGate()
    if family == "topk":
        return TopKGate(data["k_active"])
    if family == "temperature":
        return TemperatureGate(data["temperature"], learn_temperature=learn)
    return ActivationGate(data["activation"], data["temperature"], learn_temperature=learn)


def _check_keys(table, field, allowed):
    if not isinstance(table, dict):
        _fail(field, f"must be a table, got {table!r}")
    bad = sorted(set(table) - allowed)
    if bad:
        _fail(f"{field}.{bad[0]}", f"unknown; use {', '.join(sorted(allowed))}")


def _truth_part(table):
    """The checked true model of a ``[truth]`` table (without the fitted list)."""
    _check_keys(table, "truth", _TRUTH_KEYS)
    family = _family(table, "truth.gate")
    out = {"gate": family, **_gate_hyper(table, "truth", family, {})}
    for key in _ARRAYS:
        if key not in table:
            _fail(f"truth.{key}", "missing")
        out[key] = (_matrix if key.endswith("_coef") else _vector)(table[key], f"truth.{key}")
    k, d = len(out["gate_coef"]), len(out["gate_coef"][0])
    if k < 2:
        _fail("truth.gate_coef", f"a mixture needs at least 2 experts (rows), got {k}")
    for key in _ARRAYS:
        shape = (len(out[key]), len(out[key][0])) if key.endswith("_coef") else (len(out[key]),)
        want = (k, d) if key.endswith("_coef") else (k,)
        if shape != want:
            _fail(f"truth.{key}", f"has shape {shape}, expected {want} (k* = {k} experts and "
                                  f"d = {d} covariates from truth.gate_coef)")
    if any(v <= 0 for v in out["expert_var"]):
        _fail("truth.expert_var", f"variances must be > 0, got {out['expert_var']}")
    for key, last in (("gate_coef", out["gate_coef"][-1]),
                      ("gate_intercept", [out["gate_intercept"][-1]])):
        if any(last):
            _fail(f"truth.{key}", "the last expert is the reference: its entry must be 0, "
                                  f"got {last if key == 'gate_coef' else last[0]}")
    out["x_low"] = _number(table.get("x_low", 0.0), "truth.x_low")
    out["x_high"] = _number(table.get("x_high", 1.0), "truth.x_high")
    if not out["x_low"] < out["x_high"]:
        _fail("truth.x_high", f"must be > truth.x_low = {out['x_low']}, got {out['x_high']}")
    gate = _make_gate(out)
    try:
        gate.validate(k)
    except ValueError as exc:
        _fail("truth.k_active" if family == "topk" else "truth.gate", str(exc))
    return out


def _default_loss(truth, fitted, k_true):
    base = "D1" if fitted["n_experts"] == k_true else "D2"
    if truth["gate"] == "topk":
        return base + "-topk"
    if fitted.get("learn_temperature"):
        return base + "-temperature"
    return base


def _fitted_part(table, i, truth):
    field = f"fitted[{i}]"
    _check_keys(table, field, _FITTED_KEYS)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        _fail(f"{field}.name", "must be a name of letters, digits, '.', '_' or '-', "
                               f"got {name!r}")
    k_true = len(truth["gate_coef"])
    k = table.get("n_experts")
    if isinstance(k, bool) or not isinstance(k, int) or k < k_true:
        _fail(f"{field}.n_experts", f"must be an integer >= k* = {k_true} (the truth's "
                                    f"experts), got {k!r}")
    family = _family(table, f"{field}.gate", truth["gate"])
    learn = table.get("learn_temperature", True)
    if family not in ("temperature", "activation") and "learn_temperature" in table:
        _fail(f"{field}.learn_temperature",
              f"only for gate = \"temperature\" or \"activation\", got gate = {family!r}")
    if not isinstance(learn, bool):
        _fail(f"{field}.learn_temperature", f"must be true or false, got {learn!r}")
    # defaults: the truth's hyperparameters for the same family; a learned temperature
    # starts from 1 (as in the built-in setups)
    defaults = dict(truth) if family == truth["gate"] else {}
    if learn:
        defaults.pop("temperature", None)
    out = {"name": name, "n_experts": k, "gate": family,
           **_gate_hyper(table, field, family, defaults)}
    if family in ("temperature", "activation"):
        out["learn_temperature"] = learn
    try:
        with warnings.catch_warnings():  # a learned identity temperature's identifiability
            warnings.simplefilter("ignore")  # warning: the setup's subject, not news here
            _make_gate(out, out.get("learn_temperature", False)).validate(k)
    except ValueError as exc:
        _fail(f"{field}.k_active" if family == "topk" else f"{field}.gate", str(exc))
    loss = table.get("loss", _default_loss(truth, out, k_true))
    if loss not in LOSSES:
        _fail(f"{field}.loss", f"must be one of {list(LOSSES)}, got {loss!r}")
    out["loss"] = loss
    slope = table.get("theory_slope")
    out["theory_slope"] = None if slope is None else _number(slope, f"{field}.theory_slope")
    note = table.get("note", "")
    if not isinstance(note, str):
        _fail(f"{field}.note", f"must be a string, got {note!r}")
    out["note"] = note
    return out


def normalize_truth(data) -> dict:
    """The checked, canonical JSON data of a custom truth.

    Parameters
    ----------
    data : dict
        The ``[truth]`` table's fields plus ``"fitted"``, the list of ``[[fitted]]``
        tables (see the module docstring); already normalised data passes unchanged.

    Returns
    -------
    dict
        ``gate`` and its hyperparameters, the five parameter arrays as nested lists of
        floats, ``x_low``, ``x_high``, and ``fitted``: one dict per fitted
        configuration with every default filled in.

    Raises
    ------
    ConfigError
        Naming the field (``truth.<key>``, ``fitted[i].<key>``) and the value.
    """
    if not isinstance(data, dict):
        _fail("truth", f"must be a table, got {data!r}")
    table = {key: v for key, v in data.items() if key != "fitted"}
    truth = _truth_part(table)
    fitted = data.get("fitted")
    if not isinstance(fitted, (list, tuple)) or not fitted:
        _fail("fitted", "with a [truth] table, give one [[fitted]] table (name, n_experts, "
                        f"gate, loss) per fitted configuration, got {fitted!r}")
    truth["fitted"] = [_fitted_part(t, i, truth) for i, t in enumerate(fitted)]
    names = [f["name"] for f in truth["fitted"]]
    if len(set(names)) != len(names):
        _fail("fitted", f"names must be unique, got {names}")
    return truth


def check_label(label):
    """Check the setup label of a custom truth (a :class:`ConfigError` names ``setup``)."""
    from ..setups import SETUPS
    if label in SETUPS:
        _fail("setup", f"{label!r} is a built-in setup; a config with a [truth] table names "
                       'its own (setup = "another-name")')
    if not isinstance(label, str) or not _NAME.fullmatch(label):
        _fail("setup", "the label of a custom truth must be letters, digits, '.', '_' or '-', "
                       f"got {label!r}")


def truth_from_config(config: dict, name=None):
    """``(label, truth)`` of a parsed config with a ``[truth]`` table: the setup label
    (``setup``, else ``name``, else ``"custom"``; not a built-in id) and the
    :func:`normalize_truth` data of ``[truth]`` and ``[[fitted]]``."""
    if not isinstance(config["truth"], dict):
        _fail("truth", f"must be a table, got {config['truth']!r}")
    tables = config.get("fitted")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        _fail("fitted", "with a [truth] table, give one [[fitted]] table (name, n_experts, "
                        f"gate, loss) per fitted configuration, got {tables!r}")
    truth = normalize_truth({**config["truth"], "fitted": tables})
    label = config.get("setup", name or "custom")
    check_label(label)
    return label, truth


_CACHE: dict = {}


def build_setup(setup_id: str, truth: dict):
    """The :class:`~moestats.setups.Setup` of a normalised custom truth (cached)."""
    key = (setup_id, json.dumps(truth, sort_keys=True))
    if key not in _CACHE:
        _CACHE[key] = _build(setup_id, truth)
    return _CACHE[key]


def _build(setup_id, truth):
    from ..params import MoEParams
    from ..sampling import TrueModel, UniformDesign
    from ..setups import FittedConfig, Setup
    k, d = len(truth["gate_coef"]), len(truth["gate_coef"][0])
    params = MoEParams(*(truth[key] for key in _ARRAYS),
                       temperature=truth.get("temperature", 1.0))
    law = UniformDesign(truth["x_low"], truth["x_high"], d)
    fitted = tuple(
        FittedConfig(f["name"], f["n_experts"], _make_gate(f, f.get("learn_temperature", False)),
                     f["loss"], f["theory_slope"], f["note"])
        for f in truth["fitted"])
    hyper = ", ".join(f"{key} = {truth[key]}" for key in _HYPER if key in truth)
    description = (f"custom truth: {truth['gate']} gate{f' ({hyper})' if hyper else ''}, "
                   f"k* = {k}, d = {d}, X ~ U[{truth['x_low']:g}, {truth['x_high']:g}]"
                   f"{f'^{d}' if d > 1 else ''}")
    return Setup(setup_id, "custom", TrueModel(params, _make_gate(truth), law), fitted,
                 description)


def setup_of_spec_dict(spec: dict):
    """The setup of a stored spec (:meth:`SweepSpec.as_dict`): built-in or custom."""
    from ..setups import get_setup
    if spec.get("truth") is not None:
        return build_setup(spec["setup"], spec["truth"])
    return get_setup(spec["setup"])
