"""Model structure (issue 11.3): separate gate and expert covariates, the constant gate
(mixture of linear regressions) and equal expert variances, through EM, MLE, the
certificate, inference, criteria and sampling."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from moestats import GaussianMoE, TopKGate, datasets
from moestats.solvers import ParameterSpace
from moestats.solvers.batched_params import BatchedParams, ParamLayout
from moestats.solvers.derivatives import observed_derivatives


def _two_covariate_data(n=1500, seed=0):
    """Gate on column 0, experts on column 1 (the truth has the structure)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    first = rng.uniform(size=n) < 1 / (1 + np.exp(-6 * X[:, 0]))
    y = np.where(first, 2 * X[:, 1] + 1, -3 * X[:, 1] - 1) + 0.3 * rng.normal(size=n)
    return X, y


STRUCTURES = {
    "features": dict(gate_features=[0], expert_features=[1]),
    "features+shared": dict(gate_features=[0], expert_features=[1], shared_variance=True),
    "constant": dict(gate="constant"),
    "constant+shared": dict(gate="constant", shared_variance=True),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_em_and_mle_reach_the_same_certified_constrained_maximum(name):
    X, y = _two_covariate_data()
    kw = STRUCTURES[name]
    em = GaussianMoE(2, random_state=0, **kw).fit(X, y)
    mle = GaussianMoE(2, random_state=0, solver="mle", **kw).fit(X, y)
    assert em.converged_ and mle.converged_
    # both certified at 1e-3 nats: they agree to that
    assert em.log_likelihood_ == pytest.approx(mle.log_likelihood_, abs=1e-3)
    assert np.all(np.diff(em.log_likelihoods_) >= -1e-9 * np.abs(em.log_likelihoods_[1:]))
    space = em.space_
    assert space.violations(em.params_) == []
    if space.gate_features is not None:
        off = np.setdiff1d(np.arange(2), space.gate_features)
        assert np.all(em.gate_coef_[:, off] == 0)
    if space.expert_features is not None:
        off = np.setdiff1d(np.arange(2), space.expert_features)
        assert np.all(em.expert_coef_[:, off] == 0)
    if space.shared_variance:
        assert em.expert_var_[0] == em.expert_var_[1]
    # a maximum in the free coordinates (theta = J phi): the Newton decrement of the
    # full log-likelihood's derivatives projected on J is below the certificate's 1e-3
    J = space.tie_matrix(ParamLayout(em.gate_, 2, 2))
    _, grad, hess = observed_derivatives(em.gate_, X[None], y[None],
                                         BatchedParams.stack([em.params_]), order=2)
    g, H = grad[0] @ J, J.T @ hess[0] @ J
    assert np.all(np.linalg.eigvalsh(H) < 0)
    assert 0.5 * g @ np.linalg.solve(-H, g) < 1e-3
    # a constraint never raises the likelihood
    free = GaussianMoE(2, random_state=0).fit(X, y)
    assert em.log_likelihood_ <= free.log_likelihood_ + 1e-6


def test_features_by_name_with_a_dataframe_and_the_summary_leaves_them_out():
    X, y = _two_covariate_data()
    frame = pd.DataFrame(X, columns=["gate_x", "expert_x"])
    est = GaussianMoE(2, random_state=0, gate_features=["gate_x"],
                      expert_features=["expert_x"]).fit(frame, y)
    assert est.space_.gate_features == (0,) and est.space_.expert_features == (1,)
    table = est.summary()
    assert not any("gate 1: expert_x" == i or "expert 1: gate_x" == i for i in table.index)
    assert "gate 1: gate_x" in table.index and "expert 2: expert_x" in table.index
    assert np.all(np.isfinite(table["std. error"]))


def test_shared_variance_has_one_standard_error_and_criteria_count_it_once():
    X, y = _two_covariate_data()
    est = GaussianMoE(2, random_state=0, shared_variance=True).fit(X, y)
    se = est.standard_errors_.expert_var_
    assert se[0] == pytest.approx(se[1], rel=1e-12)
    free = GaussianMoE(2, random_state=0).fit(X, y)
    n = X.shape[0]
    # df: 8 + 2 gate... the shared model has one variance fewer
    df_free = (free.bic(X, y) + 2 * free.log_likelihood_) / np.log(n)
    df_shared = (est.bic(X, y) + 2 * est.log_likelihood_) / np.log(n)
    assert df_free - df_shared == pytest.approx(1.0)
    const = GaussianMoE(2, random_state=0, gate="constant").fit(X, y)
    df_const = (const.bic(X, y) + 2 * const.log_likelihood_) / np.log(n)
    assert df_free - df_const == pytest.approx(2.0)   # the two gate slopes of expert 1


def test_structure_agrees_across_backends_and_with_sample_weights():
    X, y = _two_covariate_data(800)
    kw = STRUCTURES["features+shared"]
    a = GaussianMoE(2, random_state=0, backend="numpy", **kw).fit(X, y)
    b = GaussianMoE(2, random_state=0, backend="numba", **kw).fit(X, y)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-10)
    c = np.random.default_rng(1).integers(0, 3, size=X.shape[0])
    rep = GaussianMoE(2, init=a.params_, **kw).fit(np.repeat(X, c, axis=0), np.repeat(y, c))
    wtd = GaussianMoE(2, init=a.params_, **kw).fit(X, y, sample_weight=c)
    assert wtd.log_likelihood_ == pytest.approx(rep.log_likelihood_, rel=1e-9)


def test_sampling_respects_the_structure():
    X, y = _two_covariate_data()
    est = GaussianMoE(2, random_state=0, **STRUCTURES["features"]).fit(X, y)
    draws = est.sample(X, random_state=0)
    refit = GaussianMoE(2, random_state=0, **STRUCTURES["features"]).fit(X, draws)
    assert refit.converged_
    np.testing.assert_allclose(np.sort(refit.expert_coef_[:, 1]),
                               np.sort(est.expert_coef_[:, 1]), atol=0.1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gate_features=["nope"]), "gate_features: unknown column 'nope'"),
    (dict(expert_features=[5]), "expert_features: column 5 is out of range"),
    (dict(gate_features=[0, 0]), "names a column twice"),
    (dict(gate="constant", gate_features=[0]), "gate='constant' has no gate covariates"),
    (dict(gate=TopKGate(2), gate_features=[0]), "not available with the top-K gate"),
    (dict(shared_variance="yes"), "shared_variance must be True or False"),
])
def test_bad_structure_is_named(kwargs, message):
    X, y = _two_covariate_data(300)
    with pytest.raises(ValueError, match=message):
        GaussianMoE(2, **kwargs).fit(X, y)


def test_parameter_space_round_trips_its_structure():
    space = ParameterSpace(gate_features=[1, 0], shared_variance=True)
    assert space.gate_features == (0, 1)
    assert ParameterSpace.from_dict(space.as_dict()) == space
    assert "gate_features" not in ParameterSpace().as_dict()   # stored sweeps unchanged


# mixtools 2.0.0 regmixEM on tonedata, k = 2, best of 20 seeds (epsilon 1e-10):
# log-likelihood 141.1984 (arbvar = TRUE) and 107.2567 (arbvar = FALSE); the R script
# is in test_matches_mixtools_regmixem (run with -m slow where R is installed)
MIXTOOLS_TONEDATA = {False: 141.1984, True: 107.2567}


@pytest.mark.parametrize("shared", [False, True])
def test_constant_gate_on_tonedata_matches_mixtools(shared):
    data = datasets.load_tonedata()
    est = GaussianMoE(2, gate="constant", shared_variance=shared, random_state=0).fit(
        data.data, data.target)
    assert est.converged_
    assert round(est.log_likelihood_, 4) == MIXTOOLS_TONEDATA[shared]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R with mixtools")
def test_matches_mixtools_regmixem(tmp_path):
    data = datasets.load_tonedata()
    path = tmp_path / "tone.csv"
    pd.DataFrame({"x": data.data.iloc[:, 0], "y": data.target}).to_csv(path, index=False)
    script = f"""
suppressPackageStartupMessages(library(mixtools))
d <- read.csv("{path}")
for (arb in c(TRUE, FALSE)) {{
  best <- -Inf
  for (s in 1:20) {{ set.seed(s)
    f <- try(regmixEM(d$y, d$x, k = 2, arbvar = arb, epsilon = 1e-10, maxit = 5000,
                      verb = FALSE), silent = TRUE)
    if (!inherits(f, "try-error") && f$loglik > best) best <- f$loglik }}
  cat(sprintf("LL %.4f\\n", best)) }}
"""
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    values = [float(line.split()[1]) for line in out if line.startswith("LL ")]
    assert values == [MIXTOOLS_TONEDATA[False], MIXTOOLS_TONEDATA[True]]
