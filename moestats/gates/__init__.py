"""Gate families: logits, log weights and the vector-Jacobian product of each.

A gate is named by an instance or by a string for the family's default:
``"softmax"``, ``"topk"`` (top-1), ``"temperature"``, ``"activation"`` (tanh).
:class:`moestats.GaussianMoE` also takes ``gate="constant"``: the softmax gate without
covariates (:mod:`moestats.structure`).
"""

from ._base import Gate, GateGradient, TemperatureIdentifiabilityWarning
# a public helper of ActivationGate (defined with the other input checks)
from ..input_checks import check_activation_derivative
from .activation import ACTIVATIONS, ActivationGate
from .softmax import SoftmaxGate, softmax_q_hessian
from .temperature import TemperatureGate
from .topk import TopKGate, top_k_mask

__all__ = [
    "Gate", "GateGradient", "TemperatureIdentifiabilityWarning", "SoftmaxGate",
    "TopKGate", "TemperatureGate", "ActivationGate", "ACTIVATIONS", "make_gate",
    "softmax_q_hessian", "top_k_mask", "check_activation_derivative",
]

_BY_NAME = {
    "softmax": SoftmaxGate,
    "topk": TopKGate,
    "top-k": TopKGate,
    "temperature": TemperatureGate,
    "activation": ActivationGate,
}


def make_gate(gate) -> Gate:
    """A gate instance from an instance (returned as is) or a family name."""
    if isinstance(gate, Gate):
        return gate
    if isinstance(gate, str) and gate.lower() in _BY_NAME:
        return _BY_NAME[gate.lower()]()
    raise ValueError(
        f"unknown gate {gate!r}: pass a Gate instance or one of {sorted(_BY_NAME)}"
    )
