"""The parameter space :math:`\\Theta` over which the likelihood is maximised.

The theory of the convergence rates is about the MLE over a *compact* set
(the user guide's *Solvers and certificates*, after Nguyen, Nguyen & Ho, NeurIPS 2023, arXiv 2305.03288):
variances in :math:`[\\nu_{lo}, \\nu_{hi}]` with :math:`\\nu_{lo} > 0` fixed, and every
gate and expert coordinate bounded. Without such bounds the likelihood has spurious
maxima with tiny-variance components. :class:`ParameterSpace` states the box; every
M-step and the second-order finish honour it, and the certificate is projected on its
active bounds.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .batched_params import ParamLayout

__all__ = ["ParameterSpace", "THEORY_SPACE"]


def _pair(name, value):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"ParameterSpace.{name} must be a pair (low, high), got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class ParameterSpace:
    """A box :math:`\\Theta` of parameters.

    Parameters
    ----------
    var_bounds : (float, float), default=(0, inf)
        Absolute bounds :math:`[\\nu_{lo}, \\nu_{hi}]` of every expert variance; a fit
        also never goes below its ``var_floor``.
    coef_bound : float, default=inf
        Every gate slope and intercept (:math:`\\beta_1, \\beta_0`) and every expert
        coefficient and intercept (:math:`a, b`) lies in ``[-coef_bound, coef_bound]``.
    temperature_bounds : (float, float), default=(0, inf)
        Bounds of a learned temperature.

    Examples
    --------
    >>> THEORY_SPACE.var_bounds, THEORY_SPACE.coef_bound
    ((0.01, 100.0), 100.0)
    >>> ParameterSpace(var_bounds=(0.5, 0.1))
    Traceback (most recent call last):
    ...
    ValueError: ParameterSpace.var_bounds needs 0 <= low < high, got (0.5, 0.1)
    """

    var_bounds: tuple = (0.0, np.inf)
    coef_bound: float = np.inf
    temperature_bounds: tuple = (0.0, np.inf)

    def __post_init__(self):
        for name in ("var_bounds", "temperature_bounds"):
            lo, hi = _pair(name, getattr(self, name))
            if not (0.0 <= lo < hi) or np.isnan(hi):
                raise ValueError(f"ParameterSpace.{name} needs 0 <= low < high, got "
                                 f"{(lo, hi)}")
            object.__setattr__(self, name, (lo, hi))
        B = self.coef_bound
        if not isinstance(B, numbers.Real) or isinstance(B, bool) or not B > 0:
            raise ValueError(f"ParameterSpace.coef_bound must be a number > 0, got {B!r}")
        object.__setattr__(self, "coef_bound", float(B))

    @classmethod
    def from_dict(cls, data: dict) -> "ParameterSpace":
        """From a config table: ``var_bounds``, ``coef_bound``, ``temperature_bounds``."""
        unknown = set(data) - {"var_bounds", "coef_bound", "temperature_bounds"}
        if unknown:
            raise ValueError(f"unknown parameter-space key(s) {sorted(unknown)}; expected "
                             "var_bounds, coef_bound, temperature_bounds")

        def number(v):
            return np.inf if isinstance(v, str) and v.lower() == "inf" else v

        return cls(**{key: [number(v) for v in value] if isinstance(value, (list, tuple))
                      else number(value) for key, value in data.items()})

    def as_dict(self) -> dict:
        """Plain-Python form (``inf`` written as the string ``"inf"``)."""
        def clean(v):
            return "inf" if v == np.inf else v
        return {"var_bounds": [clean(v) for v in self.var_bounds],
                "coef_bound": clean(self.coef_bound),
                "temperature_bounds": [clean(v) for v in self.temperature_bounds]}

    def box(self, layout: ParamLayout, var_floor=0.0):
        """Bounds ``lo, hi`` of the free-parameter vector; ``var_floor`` scalar or (R,).

        Returns arrays of shape (p,), or (R, p) for per-replication floors.
        """
        floor = np.asarray(var_floor, dtype=float)
        shape = floor.shape + (layout.size,)
        lo = np.full(shape, -self.coef_bound)
        hi = np.full(shape, self.coef_bound)
        v_lo = np.maximum(self.var_bounds[0], floor)
        with np.errstate(divide="ignore"):
            lo[..., layout.log_var] = np.log(v_lo)[..., None]
            hi[..., layout.log_var] = np.log(self.var_bounds[1])
            lo[..., layout.log_temperature] = np.log(self.temperature_bounds[0])
            hi[..., layout.log_temperature] = np.log(self.temperature_bounds[1])
        return lo, hi

    def violations(self, params, var_floor=0.0, rtol=1e-9) -> list:
        """Which fields of an :class:`~moestats.params.MoEParams` lie outside the box."""
        out = []
        B = self.coef_bound * (1 + rtol)
        for name in ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept"):
            if np.any(np.abs(getattr(params, name)) > B):
                out.append(name)
        lo = max(self.var_bounds[0], var_floor) * (1 - rtol)
        if np.any(params.expert_var < lo) or np.any(
                params.expert_var > self.var_bounds[1] * (1 + rtol)):
            out.append("expert_var")
        return out


#: the parameter space of the theory sweeps (the user guide's *Solvers and certificates*): variances in
#: [0.01, 100], every gate and expert coordinate in [-100, 100]
THEORY_SPACE = ParameterSpace(var_bounds=(0.01, 100.0), coef_bound=100.0)
