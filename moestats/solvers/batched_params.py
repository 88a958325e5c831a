"""Parameters of R replications at once, and their free-parameter vector.

:class:`BatchedParams` holds the fields of :class:`~moestats.params.MoEParams` with a
leading replication axis. :class:`ParamLayout` maps them to the vector of free
parameters that the second-order solvers and the certificate work on,

.. math::

    \\theta = \\bigl(\\beta_{1,1..k-1},\\ \\beta_{0,1..k-1},\\ \\log\\tau,\\
              a_{1..k},\\ b_{1..k},\\ \\log\\nu_{1..k}\\bigr),

where the intercepts are left out when they do not enter the density (top-1),
:math:`\\log\\tau` when the temperature is not learned, and the reference expert's
gate parameters are fixed at 0. Variances and the temperature enter through their
logarithms, so :math:`\\theta` is unconstrained but for the box of the parameter
space (:class:`moestats.solvers.ParameterSpace`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..params import MoEParams

__all__ = ["BatchedParams", "ParamLayout", "as_batched"]

_FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var",
           "temperature")


@dataclass
class BatchedParams:
    """Parameters of R models with a leading replication axis (mutable arrays).

    Attributes: ``gate_coef`` (R, k, d), ``gate_intercept`` (R, k), ``expert_coef``
    (R, k, d), ``expert_intercept`` (R, k), ``expert_var`` (R, k), ``temperature`` (R,).

    Examples
    --------
    >>> from moestats import get_setup
    >>> P = BatchedParams.stack([get_setup("softmax-exact").truth.params] * 3)
    >>> len(P), P.gate_coef.shape
    (3, (3, 2, 1))
    """

    gate_coef: np.ndarray
    gate_intercept: np.ndarray
    expert_coef: np.ndarray
    expert_intercept: np.ndarray
    expert_var: np.ndarray
    temperature: np.ndarray

    @classmethod
    def stack(cls, params) -> "BatchedParams":
        """From a sequence of :class:`MoEParams` of one shape."""
        params = list(params)
        if not params:
            raise ValueError("need at least one replication")
        shape = (params[0].n_experts, params[0].n_features)
        for r, p in enumerate(params):
            if not isinstance(p, MoEParams):
                raise TypeError(f"init[{r}] is {type(p).__name__}, expected MoEParams")
            if (p.n_experts, p.n_features) != shape:
                raise ValueError(
                    f"init[{r}] has {p.n_experts} experts on {p.n_features} features, "
                    f"init[0] has {shape[0]} on {shape[1]}")
        return cls(*(np.array([getattr(p, f) for p in params], dtype=float)
                     for f in _FIELDS))

    def __len__(self) -> int:
        return self.gate_coef.shape[0]

    def get(self, r) -> MoEParams:
        """Replication ``r`` as a (validated) :class:`MoEParams`."""
        return MoEParams(self.gate_coef[r], self.gate_intercept[r], self.expert_coef[r],
                         self.expert_intercept[r], self.expert_var[r],
                         float(self.temperature[r]))

    def set(self, r, params: MoEParams) -> None:
        """Overwrite replication ``r``."""
        for f in _FIELDS:
            getattr(self, f)[r] = getattr(params, f)

    def unstack(self) -> list:
        """The R replications as :class:`MoEParams`."""
        return [self.get(r) for r in range(len(self))]

    def copy(self) -> "BatchedParams":
        """A deep copy."""
        return BatchedParams(*(getattr(self, f).copy() for f in _FIELDS))

    def take(self, rows) -> "BatchedParams":
        """The replications ``rows`` (a copy)."""
        return BatchedParams(*(getattr(self, f)[rows] for f in _FIELDS))

    def put(self, rows, other: "BatchedParams") -> None:
        """Overwrite the replications ``rows`` with ``other``'s."""
        for f in _FIELDS:
            getattr(self, f)[rows] = getattr(other, f)


def as_batched(init, R) -> BatchedParams:
    """``init`` (MoEParams, a sequence of them, or BatchedParams) as R replications (a copy)."""
    if isinstance(init, BatchedParams):
        if len(init) != R:
            raise ValueError(f"init has {len(init)} replications, X has {R}")
        return init.copy()
    if isinstance(init, MoEParams):
        return BatchedParams.stack([init] * R)
    init = list(init)
    if len(init) != R:
        raise ValueError(f"init has {len(init)} replications, X has {R}")
    return BatchedParams.stack(init)


class ParamLayout:
    """Where each free parameter sits in :math:`\\theta` (see the module docstring).

    Parameters
    ----------
    gate : Gate
    n_experts, n_features : int

    Attributes
    ----------
    size : int
        Length ``p`` of :math:`\\theta`.
    gate_slope, gate_intercept, log_temperature, expert_coef, expert_intercept, log_var : slice
        Positions of each block (an empty slice for a block that is not free).

    Examples
    --------
    >>> from moestats import SoftmaxGate
    >>> ParamLayout(SoftmaxGate(), 3, 1).size      # 2 slopes, 2 intercepts, 3 x (a, b, log nu)
    13
    """

    def __init__(self, gate, n_experts, n_features):
        k, d = n_experts, n_features
        self.k, self.d = k, d
        self.fits_intercept = bool(gate.fits_intercept)
        self.learns_temperature = bool(gate.learns_temperature)
        sizes = [("gate_slope", (k - 1) * d),
                 ("gate_intercept", (k - 1) * self.fits_intercept),
                 ("log_temperature", int(self.learns_temperature)),
                 ("expert_coef", k * d), ("expert_intercept", k), ("log_var", k)]
        pos = 0
        for name, size in sizes:
            setattr(self, name, slice(pos, pos + size))
            pos += size
        self.size = pos
        self.n_gate = self.log_temperature.stop

    def pack(self, P: BatchedParams) -> np.ndarray:
        """:math:`\\theta` of every replication, shape (R, p)."""
        R = len(P)
        theta = np.empty((R, self.size))
        theta[:, self.gate_slope] = P.gate_coef[:, :-1].reshape(R, -1)
        if self.fits_intercept:
            theta[:, self.gate_intercept] = P.gate_intercept[:, :-1]
        if self.learns_temperature:
            theta[:, self.log_temperature.start] = np.log(P.temperature)
        theta[:, self.expert_coef] = P.expert_coef.reshape(R, -1)
        theta[:, self.expert_intercept] = P.expert_intercept
        theta[:, self.log_var] = np.log(P.expert_var)
        return theta

    def unpack(self, theta, template: BatchedParams) -> BatchedParams:
        """Parameters from :math:`\\theta` (R, p); what is not free comes from ``template``."""
        theta = np.asarray(theta, dtype=float)
        R, k, d = theta.shape[0], self.k, self.d
        out = template.copy()
        out.gate_coef[:, :-1] = theta[:, self.gate_slope].reshape(R, k - 1, d)
        out.gate_coef[:, -1] = 0.0
        if self.fits_intercept:
            out.gate_intercept[:, :-1] = theta[:, self.gate_intercept]
        out.gate_intercept[:, -1] = 0.0
        if self.learns_temperature:
            out.temperature = np.exp(theta[:, self.log_temperature.start])
        out.expert_coef = theta[:, self.expert_coef].reshape(R, k, d).copy()
        out.expert_intercept = theta[:, self.expert_intercept].copy()
        out.expert_var = np.exp(theta[:, self.log_var])
        return out

    def names(self) -> list:
        """A readable name for every entry of :math:`\\theta`."""
        k, d = self.k, self.d
        names = [f"gate_coef[{j},{c}]" for j in range(k - 1) for c in range(d)]
        if self.fits_intercept:
            names += [f"gate_intercept[{j}]" for j in range(k - 1)]
        if self.learns_temperature:
            names.append("log_temperature")
        names += [f"expert_coef[{j},{c}]" for j in range(k) for c in range(d)]
        names += [f"expert_intercept[{j}]" for j in range(k)]
        names += [f"log_expert_var[{j}]" for j in range(k)]
        return names
