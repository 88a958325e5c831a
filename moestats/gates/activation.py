"""Activation dense-to-sparse gate [S]."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, ndtr

from ..input_checks import (check_activation, check_activation_derivative,
                            check_activation_output)
from ._base import Gate

__all__ = ["ActivationGate", "ACTIVATIONS"]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _tanh(z, second=False):
    t = np.tanh(z)
    d1 = 1.0 - t * t
    return (t, d1, -2.0 * t * d1) if second else (t, d1)


def _sigmoid(z, second=False):
    e = expit(z)
    d1 = e * (1.0 - e)
    return (e, d1, d1 * (1.0 - 2.0 * e)) if second else (e, d1)


def _gelu(z, second=False):
    cdf = ndtr(z)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    h, d1 = z * cdf, cdf + z * pdf
    return (h, d1, pdf * (2.0 - z * z)) if second else (h, d1)


#: built-in activations: name -> function ``f(z, second=False)`` returning
#: ``(sigma(z), sigma'(z))``, or ``(sigma, sigma', sigma'')`` with ``second=True``
ACTIVATIONS = {"tanh": _tanh, "sigmoid": _sigmoid, "gelu": _gelu}

#: relative step of the central difference that gives sigma'' of a user activation
_FD_STEP = 1e-5


class ActivationGate(Gate):
    """Gate :math:`s_j(x) = \\sigma(\\beta_{1j}^\\top x)/\\tau + \\beta_{0j}`.

    The reference expert's logit is the constant :math:`\\sigma(0)/\\tau`, so the
    convention :math:`\\beta_{1k} = 0, \\beta_{0k} = 0` still identifies the model.
    A non-linear :math:`\\sigma` breaks the scale invariance of the temperature
    gate; [S] proves polynomial rates when :math:`\\sigma` and its derivatives
    satisfy linear-independence conditions (tanh, sigmoid and gelu do; the
    identity and low-degree polynomials do not).

    Parameters
    ----------
    activation : {"tanh", "sigmoid", "gelu"} or callable, default="tanh"
        :math:`\\sigma`, applied element-wise. A callable must come with
        ``activation_derivative``; :meth:`validate` (run by every ``fit``) checks
        that both return finite arrays of their input's shape and that the
        derivative agrees with central finite differences of the activation
        (:func:`moestats.gates.check_activation_derivative`). A value that is not
        finite at some input during a fit raises a ``ValueError`` naming the
        activation and the input.
    temperature : float, default=1.0
        :math:`\\tau > 0`: fixed, or the starting value when learned.
    learn_temperature : bool, default=False
        Estimate :math:`\\tau` (as :math:`\\log\\tau`).
    activation_derivative : callable, optional
        :math:`\\sigma'` for a callable ``activation``.
    """

    has_temperature = True

    def __init__(self, activation="tanh", temperature=1.0, learn_temperature=False,
                 activation_derivative=None):
        self.activation = activation
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.activation_derivative = activation_derivative

    def validate(self, n_experts):
        super().validate(n_experts)
        act = self.activation
        if callable(act):
            if not callable(self.activation_derivative):
                raise ValueError(
                    "ActivationGate: a callable activation needs activation_derivative "
                    f"(a callable), got {self.activation_derivative!r}"
                )
            check_activation(act, self.activation_derivative)
            check_activation_derivative(act, self.activation_derivative)
        elif act not in ACTIVATIONS:
            raise ValueError(
                f"ActivationGate: unknown activation {act!r}; choose one of "
                f"{sorted(ACTIVATIONS)} or pass a callable with activation_derivative"
            )

    def _activate(self, z):
        act = self.activation
        if callable(act):
            deriv = self.activation_derivative
            h = np.asarray(act(z), dtype=float)
            d1 = np.asarray(deriv(z), dtype=float)
            # a NaN at some inputs would surface as non-finite gate parameters
            check_activation_output(act, "activation", z, h)
            check_activation_output(deriv, "activation_derivative", z, d1)
            return h, d1
        if act not in ACTIVATIONS:
            self.validate(1)
        return ACTIVATIONS[act](z)

    def _activate2(self, z):
        """:math:`\\sigma, \\sigma', \\sigma''`; for a user callable, :math:`\\sigma''`
        is the central difference of ``activation_derivative`` (relative step 1e-5)."""
        act = self.activation
        if callable(act):
            h, d1 = self._activate(z)
            step = _FD_STEP * (1.0 + np.abs(z))
            deriv = self.activation_derivative
            d2 = (np.asarray(deriv(z + step), dtype=float)
                  - np.asarray(deriv(z - step), dtype=float)) / (2.0 * step)
            check_activation_output(deriv, "activation_derivative", z, d2)
            return h, d1, d2
        if act not in ACTIVATIONS:
            self.validate(1)
        return ACTIVATIONS[act](z, second=True)
