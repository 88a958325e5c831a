"""The parameters of a Gaussian mixture of experts, as one value object.

A model with ``k`` experts on ``d`` covariates is

.. math::

    p_G(y \\mid x) = \\sum_{j=1}^{k} w_j(x)\\,
        \\mathcal N\\bigl(y \\mid a_j^\\top x + b_j,\\ \\nu_j\\bigr),
    \\qquad w(x) = \\operatorname{softmax}\\bigl(s(x)\\bigr),

where the gate family defines the logits ``s(x)`` from the gate slopes
``beta_1j`` (``gate_coef``), gate intercepts ``beta_0j`` (``gate_intercept``) and,
for the temperature families, a temperature ``tau`` shared by all experts.

Identifiability convention (the user guide's *The model and its gates*): the **last expert is the
reference**, ``beta_1k = 0`` and ``beta_0k = 0``, in true and fitted models alike.
:class:`MoEParams` enforces it at construction.

The same object describes true models (:class:`moestats.sampling.TrueModel`),
fitted models (``GaussianMoE.params_``), losses and plots.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["MoEParams"]


def _as_float_array(name, value, ndim):
    arr = np.array(value, dtype=float, copy=True)
    if arr.ndim != ndim:
        raise ValueError(
            f"MoEParams.{name} must be a {ndim}-d array, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)]
        raise ValueError(
            f"MoEParams.{name} must be finite, got non-finite value(s) {bad.tolist()}"
        )
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class MoEParams:
    """Parameters of a Gaussian mixture of ``k`` linear experts on ``d`` covariates.

    Parameters
    ----------
    gate_coef : array of shape (k, d)
        Gate slopes :math:`\\beta_{1j}`. The last row (reference expert) must be 0.
    gate_intercept : array of shape (k,)
        Gate intercepts :math:`\\beta_{0j}` (log mixing weights of the mixing
        measure :math:`G = \\sum_j e^{\\beta_{0j}} \\delta_{\\theta_j}`). The last
        entry must be 0.
    expert_coef : array of shape (k, d)
        Expert slopes :math:`a_j`.
    expert_intercept : array of shape (k,)
        Expert intercepts :math:`b_j`.
    expert_var : array of shape (k,)
        Expert **variances** :math:`\\nu_j > 0`.
    temperature : float, default=1.0
        Gate temperature :math:`\\tau > 0` (used by the temperature and activation
        gate families; ignored by the softmax and top-K gates).

    Raises
    ------
    ValueError
        If shapes disagree, a value is not finite, a variance or the temperature
        is not positive, or the reference expert's gate parameters are not 0.

    Notes
    -----
    Use :meth:`with_reference_gate` to move gate parameters given in another
    gauge (e.g. a free last row) to the reference convention; this is exact for
    the softmax, top-K and temperature families, whose weights are invariant to
    adding :math:`t_1^\\top x + t_0` to every logit (and, for top-K, whose
    selection is invariant to adding :math:`t_1^\\top x` to every slope score).
    """

    gate_coef: np.ndarray
    gate_intercept: np.ndarray
    expert_coef: np.ndarray
    expert_intercept: np.ndarray
    expert_var: np.ndarray
    temperature: float = 1.0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "gate_coef", _as_float_array("gate_coef", self.gate_coef, 2))
        set_(self, "expert_coef", _as_float_array("expert_coef", self.expert_coef, 2))
        for name in ("gate_intercept", "expert_intercept", "expert_var"):
            set_(self, name, _as_float_array(name, getattr(self, name), 1))
        k, d = self.gate_coef.shape
        if k < 1:
            raise ValueError("MoEParams needs at least one expert, got k = 0")
        shapes = {
            "gate_coef": ((k, d), self.gate_coef.shape),
            "gate_intercept": ((k,), self.gate_intercept.shape),
            "expert_coef": ((k, d), self.expert_coef.shape),
            "expert_intercept": ((k,), self.expert_intercept.shape),
            "expert_var": ((k,), self.expert_var.shape),
        }
        for name, (want, got) in shapes.items():
            if want != got:
                raise ValueError(
                    f"MoEParams.{name} has shape {got}, expected {want} "
                    f"(k = {k} experts from gate_coef, d = {d} features)"
                )
        if np.any(self.expert_var <= 0):
            raise ValueError(
                f"MoEParams.expert_var must be > 0, got {self.expert_var.tolist()}"
            )
        tau = float(self.temperature)
        if not np.isfinite(tau) or tau <= 0:
            raise ValueError(f"MoEParams.temperature must be finite and > 0, got {tau}")
        set_(self, "temperature", tau)
        if (
            np.any(self.gate_coef[-1] != 0) or self.gate_intercept[-1] != 0
        ):
            raise ValueError(
                "the last expert is the reference: gate_coef[-1] and gate_intercept[-1] "
                f"must be 0, got {self.gate_coef[-1].tolist()} and "
                f"{float(self.gate_intercept[-1])}; use MoEParams.with_reference_gate(...) "
                "to move softmax-type gate parameters to that convention"
            )

    # ------------------------------------------------------------------ shape
    @property
    def n_experts(self) -> int:
        """Number of experts ``k``."""
        return self.gate_coef.shape[0]

    @property
    def n_features(self) -> int:
        """Number of covariates ``d``."""
        return self.gate_coef.shape[1]

    # ----------------------------------------------------------- constructors
    @classmethod
    def with_reference_gate(cls, gate_coef, gate_intercept, expert_coef,
                            expert_intercept, expert_var, temperature=1.0):
        """Build parameters after subtracting the last expert's gate parameters.

        :math:`\\beta_{1j} \\leftarrow \\beta_{1j} - \\beta_{1k}`,
        :math:`\\beta_{0j} \\leftarrow \\beta_{0j} - \\beta_{0k}`; the softmax,
        top-K and temperature gates give the same weights before and after.
        (Not valid for the activation family, whose logits are non-linear in
        :math:`\\beta_1`.)
        """
        gate_coef = np.asarray(gate_coef, dtype=float)
        gate_intercept = np.asarray(gate_intercept, dtype=float)
        if gate_coef.ndim != 2 or gate_intercept.ndim != 1:
            raise ValueError(
                f"gate_coef must be 2-d and gate_intercept 1-d, got shapes "
                f"{gate_coef.shape} and {gate_intercept.shape}"
            )
        return cls(gate_coef - gate_coef[-1], gate_intercept - gate_intercept[-1],
                   expert_coef, expert_intercept, expert_var, temperature)

    # ------------------------------------------------------------ operations
    def replace(self, **changes) -> "MoEParams":
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def permute(self, order) -> "MoEParams":
        """Relabel the experts: expert ``i`` of the result is expert ``order[i]``.

        The reference expert must stay last (``order[-1] == k - 1``) so that the
        gate convention still holds; the density is unchanged by any such
        relabelling.
        """
        order = np.asarray(order)
        k = self.n_experts
        if sorted(order.tolist()) != list(range(k)):
            raise ValueError(f"order must be a permutation of 0..{k - 1}, got {order.tolist()}")
        if order[-1] != k - 1:
            raise ValueError(
                f"the reference expert (index {k - 1}) must stay last, got order {order.tolist()}"
            )
        return MoEParams(
            self.gate_coef[order], self.gate_intercept[order], self.expert_coef[order],
            self.expert_intercept[order], self.expert_var[order], self.temperature,
        )

    def to(self, xp):
        """The arrays as a dict in array namespace ``xp`` (e.g. CuPy), float64.

        Returns a plain ``dict`` with keys ``gate_coef``, ``gate_intercept``,
        ``expert_coef``, ``expert_intercept``, ``expert_var`` and ``temperature``.
        """
        out = {name: xp.asarray(np.asarray(getattr(self, name)), dtype=xp.float64)
               for name in ("gate_coef", "gate_intercept", "expert_coef",
                            "expert_intercept", "expert_var")}
        out["temperature"] = self.temperature
        return out

    def as_dict(self) -> dict:
        """Plain-Python (JSON-serialisable) form; inverse of :meth:`from_dict`."""
        return {
            "gate_coef": self.gate_coef.tolist(),
            "gate_intercept": self.gate_intercept.tolist(),
            "expert_coef": self.expert_coef.tolist(),
            "expert_intercept": self.expert_intercept.tolist(),
            "expert_var": self.expert_var.tolist(),
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MoEParams":
        """Rebuild from :meth:`as_dict` output."""
        return cls(**{key: data[key] for key in (
            "gate_coef", "gate_intercept", "expert_coef", "expert_intercept",
            "expert_var", "temperature")})

    def allclose(self, other: "MoEParams", rtol=1e-7, atol=1e-9) -> bool:
        """Whether every field agrees with ``other`` to the given tolerances."""
        if not isinstance(other, MoEParams):
            return False
        fields = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept",
                  "expert_var")
        return all(
            getattr(self, f).shape == getattr(other, f).shape
            and np.allclose(getattr(self, f), getattr(other, f), rtol=rtol, atol=atol)
            for f in fields
        ) and np.isclose(self.temperature, other.temperature, rtol=rtol, atol=atol)

    def __eq__(self, other):
        return self.allclose(other, rtol=0.0, atol=0.0)

    __hash__ = None
