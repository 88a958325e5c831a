import numpy as np
import pytest

from moestats import (ActivationGate, MoEParams, SoftmaxGate, TemperatureGate, TopKGate)


def random_params(k, d, rng, *, temperature=1.0, top1=False, scale=1.0):
    """Random parameters in the reference convention."""
    gate_coef = scale * rng.normal(size=(k, d))
    gate_coef[-1] = 0
    gate_intercept = 0.5 * rng.normal(size=k)
    gate_intercept[-1] = 0
    if top1:
        gate_intercept[:] = 0
    return MoEParams(gate_coef, gate_intercept, rng.normal(size=(k, d)), rng.normal(size=k),
                     rng.uniform(0.3, 1.5, size=k), temperature)


#: every gate family and variant, with the temperature the parameters carry
GATE_CASES = {
    "softmax": SoftmaxGate(),
    "top1-slope": TopKGate(1),
    "top2-slope": TopKGate(2),
    "top2-logit": TopKGate(2, selection="logit"),
    "temperature-fixed": TemperatureGate(0.7),
    "temperature-learned": TemperatureGate(0.7, learn_temperature=True),
    "tanh-fixed": ActivationGate("tanh", 0.6),
    "tanh-learned": ActivationGate("tanh", 0.6, learn_temperature=True),
    "sigmoid-learned": ActivationGate("sigmoid", 0.8, learn_temperature=True),
    "gelu-learned": ActivationGate("gelu", 1.3, learn_temperature=True),
    "callable-learned": ActivationGate(np.sin, 0.9, learn_temperature=True,
                                       activation_derivative=np.cos),
}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def params_for(gate, k, d, rng, **kw):
    tau = gate.temperature if getattr(gate, "has_temperature", False) else 1.0
    return random_params(k, d, rng, temperature=tau, top1=not gate.fits_intercept, **kw)
