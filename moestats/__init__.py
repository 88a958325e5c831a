"""moestats: statistics of Gaussian mixture-of-experts models.

Estimators (:class:`GaussianMoE`), gate families, true-model samplers and the
theory setups of the softmax, top-K, temperature and activation papers.
"""

# The public names are imported on first access (PEP 562), so that ``import moestats``
# itself is instant: the ``moestats`` command (``moestats._entry``) then imports
# scikit-learn, SciPy and the rest inside its handler of Ctrl-C.
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

__version__ = "0.8.0"

#: public name -> the submodule that defines it
_LAZY = {
    "GaussianMoE": "estimator", "NumericalRepairWarning": "estimator",
    "BootstrapResult": "inference", "bootstrap": "inference",
    "SelectionResult": "selection", "select_n_experts": "selection",
    "ActivationGate": "gates", "Gate": "gates", "SoftmaxGate": "gates",
    "TemperatureGate": "gates", "TemperatureIdentifiabilityWarning": "gates",
    "TopKGate": "gates", "make_gate": "gates",
    "MoEParams": "params",
    "GridDesign": "sampling", "TrueModel": "sampling", "UniformDesign": "sampling",
    "near_truth_init": "sampling",
    "SETUPS": "setups", "get_setup": "setups",
}

__all__ = [
    "GaussianMoE", "NumericalRepairWarning", "Gate", "SoftmaxGate", "TopKGate",
    "TemperatureGate", "ActivationGate", "TemperatureIdentifiabilityWarning",
    "make_gate", "MoEParams", "TrueModel", "UniformDesign", "GridDesign",
    "near_truth_init", "SETUPS", "get_setup", "bootstrap", "BootstrapResult",
    "select_n_experts", "SelectionResult",
    "__version__",
]


def __getattr__(name):
    """Import a public name (or a submodule, as ``moestats.gates``) on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysis and IDEs see the eager imports
    from .estimator import GaussianMoE, NumericalRepairWarning
    from .gates import (ActivationGate, Gate, SoftmaxGate, TemperatureGate,
                        TemperatureIdentifiabilityWarning, TopKGate, make_gate)
    from .inference import BootstrapResult, bootstrap
    from .params import MoEParams
    from .sampling import GridDesign, TrueModel, UniformDesign, near_truth_init
    from .selection import SelectionResult, select_n_experts
    from .setups import SETUPS, get_setup
