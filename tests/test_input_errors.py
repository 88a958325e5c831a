"""Bad estimator input gets a clear error naming the parameter and the value (issue 12, item 7)."""

import math
import signal
import subprocess
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import moestats
from moestats import (ActivationGate, GaussianMoE, TemperatureGate, TopKGate,
                      get_setup)
from moestats.gates import check_activation_derivative
from moestats.input_checks import check_data_scale


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


@pytest.mark.parametrize("gate, match", [
    (ActivationGate("tanh", 1e-300), "too small"),
    (ActivationGate("tanh", True), "temperature must be"),
    (ActivationGate("tanh", 1.0, learn_temperature="no"), "learn_temperature must be True"),
])
def test_activation_gate_hyperparameters_are_checked(data, gate, match):
    with pytest.raises(ValueError, match=match):
        GaussianMoE(2, gate=gate).fit(*data)


# ---------------------------------------------------------------- data beyond float range
@pytest.fixture(scope="module")
def two_lines():
    X, y = get_setup("softmax-exact").truth.sample(400, np.random.default_rng(0))
    return X, y, GaussianMoE(2, random_state=0).fit(X, y)


def _assert_rescaled(fit, base, x_factor=1.0, y_factor=1.0):
    """``fit`` (on X * x_factor, y * y_factor) is ``base`` (on X, y) rescaled."""
    assert fit.converged_
    close = dict(rtol=1e-6, atol=0)
    np.testing.assert_allclose(fit.expert_coef_ * x_factor / y_factor, base.expert_coef_,
                               **close)
    np.testing.assert_allclose(fit.expert_intercept_ / y_factor, base.expert_intercept_,
                               **close)
    np.testing.assert_allclose(fit.expert_var_ / y_factor ** 2, base.expert_var_, **close)
    np.testing.assert_allclose(fit.gate_coef_ * x_factor, base.gate_coef_, **close)
    np.testing.assert_allclose(fit.gate_intercept_, base.gate_intercept_, rtol=1e-6,
                               atol=1e-8)
    assert fit.log_likelihood_ + len(fit._train_data[1]) * np.log(y_factor) == pytest.approx(
        base.log_likelihood_, rel=1e-9)


@pytest.mark.parametrize("factor", [1e200, 1e300, 1e-200, 1e-300])
def test_x_far_from_unit_scale_fits_and_scales_back(two_lines, factor):
    X, y, base = two_lines
    fit = GaussianMoE(2, random_state=0).fit(X * factor, y)
    _assert_rescaled(fit, base, x_factor=factor)


def test_x_column_with_zero_mad_scaled_by_1e200_fits(two_lines):
    X, y, _ = two_lines
    X0 = np.where(np.arange(len(y))[:, None] < 0.7 * len(y), 0.0, X)  # MAD of X0 is 0
    base = GaussianMoE(2, random_state=0).fit(X0, y)
    _assert_rescaled(GaussianMoE(2, random_state=0).fit(X0 * 1e200, y), base,
                     x_factor=1e200)


def test_y_scaled_by_1e150_fits_and_scales_back(two_lines):
    X, y, base = two_lines
    _assert_rescaled(GaussianMoE(2, random_state=0).fit(X, y * 1e150), base, y_factor=1e150)


@pytest.mark.parametrize("x_factor", [1.0, 1e200])
def test_y_whose_squares_overflow_is_refused_by_name(two_lines, x_factor):
    # before: "every start failed: ... gate_coef must be finite [nan]" / an OverflowError
    X, y, _ = two_lines
    with pytest.raises(ValueError, match=r"y has values up to \d\.\d+e\+20[01] in magnitude: "
                                         r"the likelihood squares them .* overflows float64"
                                         r".*rescale y"):
        GaussianMoE(2, random_state=0).fit(X * x_factor, y * 1e200)


def test_y_whose_squares_underflow_is_refused_by_name(two_lines):
    X, y, _ = two_lines  # before: ZeroDivisionError: float division by zero
    with pytest.raises(ValueError, match=r"y has scale \d\.\d+e-200: its square .* "
                                         r"underflows float64.*rescale y"):
        GaussianMoE(2, random_state=0).fit(X, y * 1e-200)


# scikit-learn's finite check sums X (inf - inf): its RuntimeWarning, not moestats'
@pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")
def test_x_spanning_more_than_float_range_is_refused_by_name(two_lines):
    X, y, _ = two_lines
    X = np.where(X > 0.5, 1.5e308, -1.5e308)
    with pytest.raises(ValueError, match=r"X\[:, 0\] spans \[-1.5e\+308, 1.5e\+308\]: the "
                                         r"difference overflows float64; rescale X"):
        GaussianMoE(2, random_state=0).fit(X, y)


def test_data_scale_check_passes_ordinary_data():
    X = np.random.default_rng(1).normal(size=(50, 3))
    assert check_data_scale(X * 1e300, X[:, 0] * 1e150) is None
    assert check_data_scale(X * 1e-300, X[:, 0] * 1e-150) is None
    assert check_data_scale(X, np.zeros(50)) is None  # a constant y is not "tiny"


# ---------------------------------------------------------------- user activations
def _tanh_prime(z):
    return 1.0 - np.tanh(z) ** 2


@pytest.mark.parametrize("act, deriv, match", [
    (lambda z: 0.5, lambda z: 0.0, r"activation <lambda> returned a scalar 0.5 for an input "
                                   r"of shape \(7,\)"),
    (lambda z: np.full_like(z, np.nan), _tanh_prime,
     r"activation <lambda> returned nan at z = -2.863"),
    (np.tanh, lambda z: _tanh_prime(z) if z.ndim == 1 else _tanh_prime(z)[..., :1],
     r"activation_derivative <lambda> returned "
                                             r"shape \(2, 4, 1\) for an input of shape "
                                             r"\(2, 4, 3\)"),
    (math.tanh, _tanh_prime, r"activation tanh raised TypeError: .* it must work "
                             r"element-wise on NumPy arrays"),
    (lambda z: ["a"] * len(z), _tanh_prime, r"activation <lambda> returned \['a'"),
])
def test_user_activation_is_checked_on_test_arrays(data, act, deriv, match):
    # before: "found only 0 of 10 starts ... cannot reshape array of size 2" or an
    # UnboundLocalError from the EM engine
    gate = ActivationGate(act, activation_derivative=deriv)
    with pytest.raises(ValueError, match=match):
        gate.validate(2)
    with pytest.raises(ValueError, match=match):
        GaussianMoE(2, gate=gate, random_state=0).fit(*data)


@pytest.mark.parametrize("solver", ["em", "mle"])
def test_nan_of_the_activation_during_the_fit_names_the_activation(solver):
    # finite on the test points, NaN for |z| >= 4, which the fit reaches: before, the fit
    # ended silently uncertified (or in "gate_coef must be finite")
    def clipped_tanh(z):
        return np.where(np.abs(z) < 4, np.tanh(z), np.nan)

    X, y = get_setup("activation").truth.sample(600, np.random.default_rng(0))
    gate = ActivationGate(clipped_tanh, activation_derivative=_tanh_prime)
    with pytest.raises(ValueError, match=r"activation .*clipped_tanh returned nan at "
                                         r"z = -?\d.*not finite\); it must be finite"):
        GaussianMoE(2, gate=gate, solver=solver, random_state=0).fit(X, y)


def test_wrong_activation_derivative_is_caught_by_a_gradient_check(data):
    gate = ActivationGate(np.tanh, activation_derivative=np.cos)
    match = (r"activation_derivative cos disagrees with the central finite differences of "
             r"activation tanh: relative error 1.3\d at z = -1.863 \(derivative -0.288")
    with pytest.raises(ValueError, match=match):
        gate.validate(2)
    with pytest.raises(ValueError, match=match):
        GaussianMoE(2, gate=gate).fit(*data)
    with pytest.raises(ValueError, match=match):
        check_activation_derivative(np.tanh, np.cos)


def test_gradient_check_accepts_right_derivatives_and_kinks():
    assert check_activation_derivative(np.tanh, _tanh_prime) < 1e-8
    assert check_activation_derivative(np.sin, np.cos, points=np.linspace(-50, 50, 101)) < 1e-6
    # ReLU: the default points avoid its kink at 0
    relu, step = (lambda z: np.maximum(z, 0.0)), (lambda z: (z > 0).astype(float))
    assert check_activation_derivative(relu, step) < 1e-8
    # a derivative off by 1 % is caught at the default tolerance, not at a loose one
    with pytest.raises(ValueError, match="relative error 0.0099"):
        check_activation_derivative(np.tanh, lambda z: 1.01 * _tanh_prime(z))
    assert check_activation_derivative(np.tanh, lambda z: 1.01 * _tanh_prime(z),
                                       rtol=0.02) == pytest.approx(0.0099, abs=1e-4)


def test_user_activation_with_right_derivative_fits():
    X, y = get_setup("activation").truth.sample(600, np.random.default_rng(0))
    est = GaussianMoE(2, gate=ActivationGate(np.tanh, activation_derivative=_tanh_prime),
                      random_state=0).fit(X, y)
    ref = GaussianMoE(2, gate=ActivationGate("tanh"), random_state=0).fit(X, y)
    assert est.converged_
    assert est.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-6)


# ---------------------------------------------------------------- init replaced by the gate
def test_init_temperature_replaced_by_a_fixed_one_warns(two_lines):
    X, y, base = two_lines
    init = base.params_.replace(temperature=0.3)
    with pytest.warns(UserWarning, match=r"init's temperature 0.3 replaced by the gate's "
                                         r"fixed temperature 1.0 \(learn_temperature=False\)"):
        est = GaussianMoE(2, gate=TemperatureGate(1.0), init=init).fit(X, y)
    assert est.temperature_ == 1.0
    with pytest.warns(UserWarning, match=r"temperature 0.3 replaced by the gate's fixed "
                                         r"temperature 1.0 \(SoftmaxGate has no temperature"):
        GaussianMoE(2, init=init).fit(X, y)


def test_init_gate_intercepts_of_top1_set_to_zero_warns(two_lines):
    X, y, base = two_lines
    assert base.params_.gate_intercept[0] != 0
    with pytest.warns(UserWarning, match=r"init's gate_intercept \[-?\d.*, 0.0\] set to 0: "
                                         r"the top-1 gate .* has no intercepts"):
        est = GaussianMoE(2, gate=TopKGate(1), init=base.params_).fit(X, y)
    np.testing.assert_array_equal(est.gate_intercept_, 0.0)


def test_init_the_gate_accepts_as_is_does_not_warn(two_lines):
    X, y, base = two_lines
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(replaced|set to 0)")
        GaussianMoE(2, init=base.params_).fit(X, y)
        GaussianMoE(2, gate=TemperatureGate(0.3, learn_temperature=False),
                    init=base.params_.replace(temperature=0.3)).fit(X, y)


def test_init_with_other_dimensions_still_raises(two_lines):
    X, y, base = two_lines
    with pytest.raises(ValueError, match="init parameters have 2 experts and 1 features, "
                                         "but the estimator has n_experts = 3"):
        GaussianMoE(3, init=base.params_).fit(X, y)


# ---------------------------------------------------------------- warm start
def test_warm_start_after_changing_n_experts_refits_with_a_warning(two_lines):
    # before: ValueError "init parameters have 2 experts ..." (the user passed no init)
    X, y, _ = two_lines
    est = GaussianMoE(2, warm_start=True, random_state=0).fit(X, y)
    est.set_params(n_experts=3)
    with pytest.warns(UserWarning, match=r"warm_start ignored: the previous fit had 2 "
                                         r"experts, n_experts is now 3; fitting from scratch"):
        est.fit(X, y)
    assert est.params_.n_experts == 3 and est.expert_coef_.shape == (3, 1)
    with warnings.catch_warnings():  # the new fit is now the warm start
        warnings.filterwarnings("error", message="warm_start ignored")
        est.fit(X, y)
    assert est.n_iter_ <= 5


def test_warm_start_with_a_changed_gate_names_the_previous_fit(two_lines):
    X, y, _ = two_lines
    est = GaussianMoE(2, gate=TemperatureGate(2.0), warm_start=True, random_state=0)
    est.fit(X, y).set_params(gate=TemperatureGate(1.0))
    with pytest.warns(UserWarning, match=r"the previous fit's params_ \(warm_start\)'s "
                                         r"temperature 2.0 replaced"):
        est.fit(X, y)


def test_warm_start_with_other_features_raises_sklearns_error(two_lines):
    X, y, _ = two_lines
    est = GaussianMoE(2, warm_start=True, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"X has 3 features, but GaussianMoE is expecting "
                                         r"1 features as input"):
        est.fit(np.hstack([X, X ** 2, X ** 3]), y)


# ---------------------------------------------------------------- Ctrl-C while importing
def test_import_moestats_is_light():
    code = ("import sys, moestats, moestats._entry; print(sorted(m for m in "
            "('sklearn', 'scipy', 'numba', 'dask', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_lazy_package_keeps_its_public_api():
    names = set(moestats.__all__)
    assert names <= set(dir(moestats))
    for name in names:
        assert getattr(moestats, name) is not None
    from moestats.estimator import GaussianMoE as defined
    assert moestats.GaussianMoE is defined is GaussianMoE
    assert moestats.gates.SoftmaxGate is moestats.SoftmaxGate  # a submodule, on access
    namespace = {}
    exec("from moestats import *", namespace)
    assert names <= set(namespace)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        moestats.no_such_name  # noqa: B018


def _console_script():
    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]["moestats"]


def test_console_script_imports_the_command_inside_its_handler():
    assert _console_script() == "moestats._entry:main"


@pytest.mark.slow
def test_ctrl_c_while_the_command_imports_exits_130_without_traceback():
    # the script pip writes for the entry point, with a line saying its import is done;
    # before (moestats.simulation.cli:main): a traceback through the imports, exit -2
    module, func = _console_script().split(":")
    code = (f"import re\nimport sys\nfrom {module} import {func}\n"
            "sys.stderr.write('imported\\n'); sys.stderr.flush()\n"
            f"sys.exit({func}())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "setups"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "imported\n"
    time.sleep(0.05)  # inside main's imports (scikit-learn, SciPy, ...: about a second)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert err.strip() == "moestats: interrupted; no store was changed"
    assert proc.returncode == 130 and out == ""
