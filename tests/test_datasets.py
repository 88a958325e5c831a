"""The shipped real data sets: files, loaders, and fits against R's flexmix and mixtools.

Reference log-likelihoods (nats) were produced with R 4.2.2, flexmix 2.3-18 and mixtools
2.0.0 from Debian (r-cran-flexmix, r-cran-mixtools) on the same CSV files, for the model
moestats fits with its softmax gate (one covariate feeding gate and experts):

    set.seed(1)
    stepFlexmix(y ~ x, data = d, k = k, nrep = 10, model = FLXMRglm(family = "gaussian"),
                concomitant = FLXPmultinom(~ x),
                control = list(minprior = 0, tolerance = 1e-10, iter.max = 5000))

(``benchmarks/bench_real_data.py``, "flexmix_tight"; ``minprior = 0`` keeps every
component, so the model class is exactly moestats'). For the tone data, mixtools'
``hmeEM(y, x, k = 2, epsilon = 1e-8, maxit = 2000)`` reached 142.84801 from 9 of 10
random starts (``set.seed(1)``).
"""

import hashlib
import warnings
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from moestats import GaussianMoE, MoEParams, SoftmaxGate
from moestats.datasets import DATASETS, load_faithful, load_mcycle, load_tonedata
from moestats.likelihood import log_likelihood

LOADERS = {"tonedata": load_tonedata, "faithful": load_faithful, "mcycle": load_mcycle}

#: (rows, feature, target, MD5 of the CSV file)
FILES = {
    "tonedata": (150, "stretchratio", "tuned", "b4aecf799c6a0abbcfca34a27e862fe6"),
    "faithful": (272, "eruptions", "waiting", "9cff3101135876578de6d7a3b73a9aaa"),
    "mcycle": (133, "times", "accel", "fd1fafbf86f056a016796f05cd039a3d"),
}

#: flexmix's log-likelihood (stepFlexmix, nrep = 10, tight control; module docstring)
FLEXMIX_LOGLIK = {
    ("tonedata", 2): 142.83823121204898,
    ("faithful", 2): -851.3190664362851,
    ("mcycle", 2): -614.5657782290705,
    ("mcycle", 3): -580.526217476336,
}
#: mixtools hmeEM on the tone data (9 of 10 random starts; module docstring)
HMEEM_TONEDATA = 142.84801381738134


def test_dataset_names():
    assert DATASETS == ("tonedata", "faithful", "mcycle")


@pytest.mark.parametrize("name", sorted(FILES))
def test_csv_files_ship_unchanged(name):
    data = resources.files("moestats.datasets").joinpath("data", f"{name}.csv").read_bytes()
    assert hashlib.md5(data).hexdigest() == FILES[name][3]


@pytest.mark.parametrize("name", sorted(FILES))
def test_loaders_return_frames_and_a_bunch(name):
    rows, feature, target, _ = FILES[name]
    X, y = LOADERS[name](return_X_y=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    assert X.shape == (rows, 1) and list(X.columns) == [feature] and y.name == target
    assert np.isfinite(X.to_numpy()).all() and np.isfinite(y.to_numpy()).all()
    bunch = LOADERS[name]()
    assert bunch.data.equals(X) and bunch.target.equals(y)
    assert list(bunch.frame.columns) == [feature, target]
    assert bunch.feature_names == [feature] and bunch.target_name == target
    assert bunch.name == name
    assert "GPL" in bunch.licence and bunch.source
    assert "Source: " in bunch.DESCR and "Licence: " in bunch.DESCR
    # a fresh copy each call: changing one does not change the next
    bunch.data.iloc[0, 0] = -1e9
    assert LOADERS[name]().data.iloc[0, 0] != -1e9


def test_known_values():
    tone = load_tonedata().frame
    assert tone.iloc[0].tolist() == [1.35, 1.461]
    faithful = load_faithful().frame
    assert faithful.iloc[0].tolist() == [3.6, 79.0]
    assert faithful["waiting"].sum() == 19284
    mcycle = load_mcycle().frame
    assert mcycle["times"].is_monotonic_increasing and mcycle["accel"].min() == -134.0


@pytest.mark.parametrize("name, k", sorted(FLEXMIX_LOGLIK))
def test_fit_is_certified_and_at_least_flexmix(name, k):
    X, y = LOADERS[name](return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no ConvergenceWarning, no other warning
        est = GaussianMoE(k, random_state=0, backend="numpy").fit(X, y)
    assert est.converged_ and est.certificate_.certified
    assert est.log_likelihood_ >= FLEXMIX_LOGLIK[name, k] - 1e-6
    # the same model: the maxima are close, not a different likelihood
    assert est.log_likelihood_ - FLEXMIX_LOGLIK[name, k] < 0.05
    # the reported log-likelihood is the likelihood of the reported parameters
    assert est.log_likelihood_ == pytest.approx(
        log_likelihood(est.gate_, est.params_, X.to_numpy(), y.to_numpy()), abs=1e-8)


def test_tonedata_agrees_with_mixtools_hmeem():
    X, y = load_tonedata(return_X_y=True)
    est = GaussianMoE(2, random_state=0, backend="numpy").fit(X, y)
    assert abs(est.log_likelihood_ - HMEEM_TONEDATA) < 5e-4        # printed: 142.848
    # the classic two lines: tuned ~ 2 (slope ~ 0) and tuned ~ stretchratio (slope ~ 1)
    slopes = sorted(est.expert_coef_.ravel().round(1).tolist())
    assert slopes == [0.0, 1.0]


def test_tonedata_has_a_higher_maximum_with_a_tiny_variance_expert():
    """mixtools' hmeEM found it from 1 of 10 starts; moestats certifies it from there."""
    X, y = load_tonedata(return_X_y=True)
    start = MoEParams(gate_coef=[[0.2559], [0.0]], gate_intercept=[-0.0319, 0.0],
                      expert_coef=[[0.2176], [0.9989]], expert_intercept=[1.5609, 0.0032],
                      expert_var=[0.2172 ** 2, 0.00454 ** 2])
    est = GaussianMoE(2, init=start, backend="numpy").fit(X, y)
    assert est.converged_
    assert est.log_likelihood_ == pytest.approx(145.6503149, abs=1e-3)
    assert est.expert_var_.min() < 1e-4
    x = X.to_numpy()[:, 0]
    assert np.sum(np.abs(y.to_numpy() - x) < 0.01) == 58
    assert log_likelihood(SoftmaxGate(), start, X.to_numpy(), y.to_numpy()) > 145.6


def test_package_data_is_declared():
    from pathlib import Path
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    text = pyproject.read_text()
    assert '"moestats.datasets" = ["data/*.csv", "data/README.md"]' in text
