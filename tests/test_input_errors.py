"""Bad estimator input gets a clear error naming the parameter and the value (issue 12, item 7)."""

import numpy as np
import pytest

from moestats import ActivationGate, GaussianMoE, TemperatureGate


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 1))
    return X, 2 * X[:, 0] + 0.1 * rng.normal(size=200)


def test_string_target_names_its_dtype(data):
    X, y = data
    with pytest.raises(ValueError, match="y must be numeric.*<U"):
        GaussianMoE(2).fit(X, y.astype(str))


@pytest.mark.parametrize("tol", [np.inf, -1.0, 1.5, True])
def test_tol_must_be_a_relative_change(data, tol):
    with pytest.raises(ValueError, match="tol must be"):
        GaussianMoE(2, tol=tol).fit(*data)


@pytest.mark.parametrize("floor", [np.inf, 0.0, -1.0])
def test_var_floor_must_be_finite_positive(data, floor):
    with pytest.raises(ValueError, match="var_floor must be"):
        GaussianMoE(2, var_floor=floor).fit(*data)


@pytest.mark.parametrize("gate, match", [
    (TemperatureGate(True), "temperature must be"),
    (TemperatureGate(1e-300), "too small"),
    (TemperatureGate(1.0, learn_temperature="no"), "learn_temperature must be True or False"),
    (ActivationGate("tanh", 1.0, learn_temperature=1), "learn_temperature must be True or False"),
])
def test_gate_hyperparameters_are_checked(data, gate, match):
    with pytest.raises(ValueError, match=match):
        GaussianMoE(2, gate=gate).fit(*data)
