"""moestats: statistics of Gaussian mixture-of-experts models.

Estimators (:class:`GaussianMoE`), gate families, true-model samplers and the
theory setups of the softmax, top-K, temperature and activation papers.
"""

from .estimator import GaussianMoE, NumericalRepairWarning
from .inference import BootstrapResult, bootstrap
from .selection import SelectionResult, select_n_experts
from .gates import (ActivationGate, Gate, SoftmaxGate, TemperatureGate,
                    TemperatureIdentifiabilityWarning, TopKGate, make_gate)
from .params import MoEParams
from .sampling import GridDesign, TrueModel, UniformDesign, near_truth_init
from .setups import SETUPS, get_setup

__version__ = "0.6.0"

__all__ = [
    "GaussianMoE", "NumericalRepairWarning", "Gate", "SoftmaxGate", "TopKGate",
    "TemperatureGate", "ActivationGate", "TemperatureIdentifiabilityWarning",
    "make_gate", "MoEParams", "TrueModel", "UniformDesign", "GridDesign",
    "near_truth_init", "SETUPS", "get_setup", "bootstrap", "BootstrapResult",
    "select_n_experts", "SelectionResult",
    "__version__",
]
