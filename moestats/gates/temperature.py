"""Dense-to-sparse (temperature) gate [S]."""

from __future__ import annotations

import warnings

from ._base import Gate, TemperatureIdentifiabilityWarning

__all__ = ["TemperatureGate"]


class TemperatureGate(Gate):
    """Softmax gate with a temperature: :math:`s_j(x) = \\beta_{1j}^\\top x / \\tau + \\beta_{0j}`.

    [convention] :math:`\\beta_0` stays the log mixing weight and :math:`\\tau`
    divides only the slope part (the user guide's *The model and its gates*).

    Parameters
    ----------
    temperature : float, default=1.0
        :math:`\\tau > 0`; the fixed value, or the starting value when learned.
    learn_temperature : bool, default=False
        Estimate :math:`\\tau` (as :math:`\\log\\tau`). Issues a
        :class:`TemperatureIdentifiabilityWarning`: with the identity activation
        :math:`(\\beta_1,\\tau)\\to(c\\beta_1, c\\tau)` leaves the density unchanged,
        so only :math:`\\beta_1/\\tau` is identifiable.
    """

    has_temperature = True
    shift_invariant = True

    def __init__(self, temperature=1.0, learn_temperature=False):
        self.temperature = temperature
        self.learn_temperature = learn_temperature

    def validate(self, n_experts):
        super().validate(n_experts)
        if self.learn_temperature:
            warnings.warn(
                "learning the temperature of a gate whose logits are linear in beta_1 "
                "(identity activation): (beta_1, tau) -> (c*beta_1, c*tau) leaves the "
                "density unchanged, so beta_1 and tau are not separately identifiable; "
                "only beta_1/tau is (read gate_slope_over_temperature_)",
                TemperatureIdentifiabilityWarning, stacklevel=3,
            )
