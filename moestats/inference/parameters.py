"""The reported parameters of a fit: one named row per estimated quantity.

Inference is computed in the free-parameter vector :math:`\\theta` of
:class:`~moestats.solvers.batched_params.ParamLayout` (gate slopes and intercepts
of the non-reference experts, :math:`\\log\\tau` when learned, expert slopes and
intercepts, :math:`\\log\\nu`) and reported on the natural scale
:math:`\\psi = \\psi(\\theta)`: variances :math:`\\nu_j = e^{\\theta}`, the
temperature :math:`\\tau = e^{\\theta}` and the identifiable slope
:math:`\\beta_{1j}/\\tau` of the temperature gate. Every row :math:`\\psi_r` depends
on at most two coordinates of :math:`\\theta`, and its gradient (the delta method)
is stored with the row,

.. math::

    \\partial\\nu_j/\\partial\\log\\nu_j = \\nu_j,\\quad
    \\partial\\tau/\\partial\\log\\tau = \\tau,\\quad
    \\partial(\\beta_{1jc}/\\tau)/\\partial\\beta_{1jc} = 1/\\tau,\\quad
    \\partial(\\beta_{1jc}/\\tau)/\\partial\\log\\tau = -\\beta_{1jc}/\\tau .

The reference expert's gate parameters (:math:`\\beta_{1k} = 0, \\beta_{0k} = 0`)
are fixed by the convention (the user guide's *The model and its gates*): they get no row, and a
standard error of 0 in :class:`StandardErrors`.

Structurally unidentified rows get a reason instead of a number:

* learned temperature with the identity activation (:class:`~moestats.gates.
  TemperatureGate`): :math:`(\\beta_1, \\tau) \\to (c\\beta_1, c\\tau)` leaves the
  density unchanged, so :math:`\\beta_1` and :math:`\\tau` are reported without
  standard error and the rows :math:`\\beta_{1j}/\\tau` carry it;
* top-1 gates: only the partition :math:`x \\mapsto \\arg\\max_j\\beta_{1j}^\\top x`
  enters the density, so the gate slopes have no Wald standard error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..gates import Gate
from ..solvers.batched_params import ParamLayout

__all__ = ["ParamRow", "parameter_rows", "identity_temperature", "top1_gate",
           "StandardErrors", "REASON_IDENTITY_TAU", "REASON_TOP1", "row_values"]

REASON_IDENTITY_TAU = ("beta_1 and tau not separately identifiable with the identity "
                       "activation (only beta_1/tau is)")
REASON_TOP1 = ("top-1 gate: only the partition argmax_j beta_1j'x enters the density "
               "(gate scale not identifiable)")


def identity_temperature(gate: Gate) -> bool:
    """Whether ``gate`` learns a temperature with the identity activation."""
    return bool(gate.learns_temperature and type(gate)._activate is Gate._activate)


def top1_gate(gate: Gate) -> bool:
    """Whether ``gate`` is a top-1 gate (gate slopes enter only through a partition)."""
    return getattr(gate, "k_active", None) == 1


@dataclass
class ParamRow:
    """One reported parameter.

    Attributes
    ----------
    name : str
        E.g. ``"expert 1: x0"``, ``"gate 1: intercept"``, ``"gate: temperature"``.
    kind : str
        The fitted attribute it belongs to (``"expert_coef"``, ``"expert_intercept"``,
        ``"expert_var"``, ``"gate_coef"``, ``"gate_intercept"``, ``"temperature"``,
        ``"gate_slope_over_temperature"``).
    index : tuple
        Position in that attribute (``()`` for the temperature).
    grad : dict
        ``{coordinate of theta: derivative}`` of the row in the layout of the
        inference (delta method).
    positive : bool
        A positive parameter (variance, temperature): its interval is computed on the
        log scale and it has no z statistic.
    reason : str
        Why the row has no standard error ("" when it has one).
    shown : bool
        Whether :meth:`summary` tables list the row.
    """

    name: str
    kind: str
    index: tuple
    grad: dict = field(default_factory=dict)
    positive: bool = False
    reason: str = ""
    shown: bool = True


def _feature_names(feature_names, d):
    if feature_names is None:
        return [f"x{c}" for c in range(d)]
    return [str(f) for f in feature_names]


def parameter_rows(gate: Gate, params, feature_names=None, layout: ParamLayout | None = None):
    """The reported rows of a fitted model (see the module docstring).

    Parameters
    ----------
    gate : Gate
        The fitted gate.
    params : MoEParams
    feature_names : sequence of str, optional
        Names of the ``d`` features (default ``x0, x1, ...``).
    layout : ParamLayout, optional
        The layout whose coordinates ``grad`` refers to (default the gate's own;
        with the identity activation and a learned temperature, pass the layout of
        the gate with the temperature fixed, where :math:`\\beta_1` stands for
        :math:`\\beta_1` at the fitted :math:`\\tau`).

    Returns
    -------
    list of ParamRow

    Examples
    --------
    >>> from moestats import SoftmaxGate, get_setup
    >>> rows = parameter_rows(SoftmaxGate(), get_setup("softmax-exact").truth.params)
    >>> [r.name for r in rows][:4], len(rows)
    (['expert 1: x0', 'expert 1: intercept', 'expert 1: variance', 'expert 2: x0'], 8)
    """
    k, d = params.n_experts, params.n_features
    L = layout if layout is not None else ParamLayout(gate, k, d)
    names = _feature_names(feature_names, d)
    ident, top1 = identity_temperature(gate), top1_gate(gate)
    tau = float(params.temperature)
    rows = []
    for j in range(k):
        for c in range(d):
            rows.append(ParamRow(f"expert {j + 1}: {names[c]}", "expert_coef", (j, c),
                                 {L.expert_coef.start + j * d + c: 1.0}))
        rows.append(ParamRow(f"expert {j + 1}: intercept", "expert_intercept", (j,),
                             {L.expert_intercept.start + j: 1.0}))
        rows.append(ParamRow(f"expert {j + 1}: variance", "expert_var", (j,),
                             {L.log_var.start + j: float(params.expert_var[j])},
                             positive=True))
    t = L.log_temperature.start if L.learns_temperature else None
    for j in range(k - 1):
        for c in range(d):
            reason = REASON_IDENTITY_TAU if ident else (REASON_TOP1 if top1 else "")
            rows.append(ParamRow(f"gate {j + 1}: {names[c]}", "gate_coef", (j, c),
                                 {L.gate_slope.start + j * d + c: 1.0}, reason=reason))
        if gate.fits_intercept:
            rows.append(ParamRow(f"gate {j + 1}: intercept", "gate_intercept", (j,),
                                 {L.gate_intercept.start + j: 1.0}))
    if gate.learns_temperature:
        grad = {} if t is None else {t: tau}
        rows.append(ParamRow("gate: temperature", "temperature", (), grad, positive=True,
                             reason=REASON_IDENTITY_TAU if ident else ""))
    if gate.has_temperature:
        for j in range(k - 1):
            for c in range(d):
                b = float(params.gate_coef[j, c])
                grad = {L.gate_slope.start + j * d + c: 1.0 / tau}
                if t is not None:
                    grad[t] = -b / tau
                rows.append(ParamRow(f"gate {j + 1}: {names[c]} / temperature",
                                     "gate_slope_over_temperature", (j, c), grad,
                                     shown=ident))
    return rows


def row_values(rows, params) -> np.ndarray:
    """The natural-scale value of every row at ``params``, shape (m,)."""
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        if r.kind == "temperature":
            out[i] = params.temperature
        elif r.kind == "gate_slope_over_temperature":
            out[i] = params.gate_coef[r.index] / params.temperature
        else:
            out[i] = getattr(params, r.kind)[r.index]
    return out


_FIELDS = ("gate_coef_", "gate_intercept_", "temperature_", "gate_slope_over_temperature_",
           "expert_coef_", "expert_intercept_", "expert_var_")


@dataclass
class StandardErrors:
    """Standard errors in the layout of the fitted attributes of
    :class:`~moestats.GaussianMoE`.

    Parameters that are fixed rather than estimated (the reference expert's gate
    row, a temperature that is not learned, the intercepts of a top-1 gate) have
    standard error 0; parameters without a standard error (unidentified, singular
    information, at a bound) are NaN, with the reason in ``notes``.

    Attributes
    ----------
    gate_coef_, gate_intercept_ : ndarrays (k, d), (k,)
    temperature_ : float
    gate_slope_over_temperature_ : ndarray (k, d)
    expert_coef_, expert_intercept_, expert_var_ : ndarrays (k, d), (k,), (k,)
    notes : dict
        ``{row name: reason}`` for every NaN.
    """

    gate_coef_: np.ndarray
    gate_intercept_: np.ndarray
    temperature_: float
    gate_slope_over_temperature_: np.ndarray
    expert_coef_: np.ndarray
    expert_intercept_: np.ndarray
    expert_var_: np.ndarray
    notes: dict = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows, se, k, d, gate):
        """Fill the layout from per-row standard errors ``se`` (m,)."""
        out = {"gate_coef_": np.zeros((k, d)), "gate_intercept_": np.zeros(k),
               "temperature_": np.zeros(()),
               "gate_slope_over_temperature_": np.zeros((k, d)),
               "expert_coef_": np.zeros((k, d)), "expert_intercept_": np.zeros(k),
               "expert_var_": np.zeros(k)}
        notes = {}
        for r, s in zip(rows, se):
            out[r.kind + "_"][r.index] = s
            if np.isnan(s) and r.reason:
                notes[r.name] = r.reason
        if not gate.has_temperature:
            out["gate_slope_over_temperature_"] = out["gate_coef_"].copy()
        return cls(temperature_=float(out.pop("temperature_")), notes=notes, **out)

    def as_dict(self) -> dict:
        """``{attribute name: value}`` of the seven fields."""
        return {f: getattr(self, f) for f in _FIELDS}

    def __getitem__(self, name):
        name = name if name.endswith("_") else name + "_"
        if name not in _FIELDS:
            raise KeyError(f"no standard errors for {name!r}; fields: {list(_FIELDS)}")
        return getattr(self, name)
