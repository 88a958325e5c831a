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
    gate_features, expert_features : sequence of int or None, default=None
        The columns of ``X`` the gate slopes :math:`\\beta_{1j}` and the expert slopes
        :math:`a_j` may use (None: all). The other slopes are held at 0, so the model
        is :math:`w_j(x_G)` and :math:`a_j^\\top x_E + b_j`; an empty gate set gives the
        constant-weight mixture of regressions.
    shared_variance : bool, default=False
        Equal expert variances :math:`\\nu_1 = \\dots = \\nu_k`.

    The structural parts (``gate_features``, ``expert_features``,
    ``shared_variance``) are linear constraints on the free-parameter vector:
    :math:`\\theta = J\\varphi` (:meth:`tie_matrix`), the pinned slopes also being
    boxes ``[0, 0]`` (:meth:`box`), which the EM steps honour.

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
    gate_features: tuple | None = None
    expert_features: tuple | None = None
    shared_variance: bool = False

    def __post_init__(self):
        for name in ("gate_features", "expert_features"):
            cols = getattr(self, name)
            if cols is None:
                continue
            cols = tuple(np.atleast_1d(np.asarray(cols)).tolist())
            if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 0
                       for c in cols):
                raise ValueError(f"ParameterSpace.{name} must be column indices >= 0, "
                                 f"got {getattr(self, name)!r}")
            if len(set(cols)) != len(cols):
                raise ValueError(f"ParameterSpace.{name} has repeated columns: {cols}")
            object.__setattr__(self, name, tuple(sorted(int(c) for c in cols)))
        if not isinstance(self.shared_variance, (bool, np.bool_)):
            raise ValueError(f"ParameterSpace.shared_variance must be True or False, got "
                             f"{self.shared_variance!r}")
        object.__setattr__(self, "shared_variance", bool(self.shared_variance))
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
        keys = {"var_bounds", "coef_bound", "temperature_bounds", "gate_features",
                "expert_features", "shared_variance"}
        unknown = set(data) - keys
        if unknown:
            raise ValueError(f"unknown parameter-space key(s) {sorted(unknown)}; expected "
                             f"{', '.join(sorted(keys))}")

        def number(v):
            return np.inf if isinstance(v, str) and v.lower() == "inf" else v

        return cls(**{key: [number(v) for v in value] if isinstance(value, (list, tuple))
                      else number(value) for key, value in data.items()})

    def as_dict(self) -> dict:
        """Plain-Python form (``inf`` written as the string ``"inf"``)."""
        def clean(v):
            return "inf" if v == np.inf else v
        out = {"var_bounds": [clean(v) for v in self.var_bounds],
               "coef_bound": clean(self.coef_bound),
               "temperature_bounds": [clean(v) for v in self.temperature_bounds]}
        # the structure only when it is not the default (the stored sweeps' identity)
        for name in ("gate_features", "expert_features"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        if self.shared_variance:
            out["shared_variance"] = True
        return out

    @property
    def structured(self) -> bool:
        """Whether the space constrains the model's structure (features, variances)."""
        return (self.gate_features is not None or self.expert_features is not None
                or self.shared_variance)

    def check_features(self, n_features: int) -> None:
        """Raise a ``ValueError`` naming a column index that ``X`` does not have."""
        for name in ("gate_features", "expert_features"):
            cols = getattr(self, name)
            if cols is not None and cols and max(cols) >= n_features:
                raise ValueError(f"{name} = {list(cols)} names column {max(cols)}, but X has "
                                 f"{n_features} feature(s)")

    def pinned(self, layout: ParamLayout) -> np.ndarray:
        """Boolean mask (p,) of the slopes held at 0 by ``gate_features``/``expert_features``."""
        mask = np.zeros(layout.size, dtype=bool)
        d = layout.d
        for cols, block, n_blocks in ((self.gate_features, layout.gate_slope, layout.k - 1),
                                      (self.expert_features, layout.expert_coef, layout.k)):
            if cols is None:
                continue
            off = np.ones(d, dtype=bool)
            off[list(cols)] = False
            mask[block] = np.tile(off, n_blocks)
        return mask

    def tie_matrix(self, layout: ParamLayout) -> np.ndarray | None:
        """:math:`J` (p, q) with :math:`\\theta = J\\varphi`: the free coordinates of the
        structure (no pinned slope; one log-variance for all experts with
        ``shared_variance``). None when the space has no structure.

        Examples
        --------
        >>> from moestats import SoftmaxGate
        >>> L = ParamLayout(SoftmaxGate(), 2, 2)
        >>> ParameterSpace(gate_features=[0], shared_variance=True).tie_matrix(L).shape
        (11, 9)
        """
        if not self.structured:
            return None
        keep = ~self.pinned(layout)
        if self.shared_variance:
            keep[layout.log_var.start + 1: layout.log_var.stop] = False
        cols = np.flatnonzero(keep)
        J = np.zeros((layout.size, cols.size))
        J[cols, np.arange(cols.size)] = 1.0
        if self.shared_variance:
            J[layout.log_var, np.searchsorted(cols, layout.log_var.start)] = 1.0
        return J

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
        pins = self.pinned(layout)
        lo[..., pins] = 0.0
        hi[..., pins] = 0.0
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
                params.expert_var > self.var_bounds[1] * (1 + rtol)) or (
                self.shared_variance and np.ptp(params.expert_var) > rtol * np.max(
                    params.expert_var)):
            out.append("expert_var")
        for name, cols, rows in (("gate_coef", self.gate_features, slice(None)),
                                 ("expert_coef", self.expert_features, slice(None))):
            if cols is not None:
                off = np.ones(params.n_features, dtype=bool)
                off[list(cols)] = False
                if np.any(getattr(params, name)[rows][:, off] != 0) and name not in out:
                    out.append(name)
        return out


#: the parameter space of the theory sweeps (the user guide's *Solvers and certificates*): variances in
#: [0.01, 100], every gate and expert coordinate in [-100, 100]
THEORY_SPACE = ParameterSpace(var_bounds=(0.01, 100.0), coef_bound=100.0)
