"""Posterior memberships and the predictive distribution, against the E-step, closed
forms and Monte Carlo draws from ``sample``."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from moestats import GaussianMoE, TopKGate, get_setup
from moestats.likelihood import e_step
from moestats.inference import mixture_cdf

N_MC = 200_000


@pytest.fixture(scope="module")
def fitted():
    s = get_setup("softmax-exact")
    X, y = s.truth.sample(2000, np.random.default_rng(0))
    return GaussianMoE(2, random_state=0).fit(X, y), X, y


def _draws(est, x, n=N_MC, seed=1):
    Xr = np.repeat(np.atleast_2d(x), n, axis=0)
    return est.sample(Xr, random_state=seed)


def test_responsibilities_match_the_e_step_and_sum_to_one(fitted):
    est, X, y = fitted
    R = est.predict_responsibilities(X, y)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(R, e_step(est.gate_, est.params_, X, y)[0], rtol=1e-12)
    df = pd.DataFrame(X, columns=["x0"])
    est_df = GaussianMoE(2, random_state=0).fit(df, y)
    np.testing.assert_allclose(est_df.predict_responsibilities(df, pd.Series(y)), R,
                               atol=1e-6)
    labels = est.predict_labels(X, y)
    assert labels.shape == (2000,) and set(labels) <= {0, 1}
    np.testing.assert_array_equal(labels, np.argmax(R, axis=1))
    assert not np.allclose(R, est.predict_proba(X))          # posterior, not the prior


def test_mean_and_std_closed_form_and_monte_carlo(fitted):
    est, X, y = fitted
    x = np.array([[0.1], [0.32], [0.9]])
    mean, std = est.predict(x, return_std=True)
    np.testing.assert_allclose(mean, est.predict(x))
    p = est.params_
    w = est.predict_proba(x)
    mu = x @ p.expert_coef.T + p.expert_intercept
    second = np.sum(w * (p.expert_var + mu ** 2), axis=1)
    np.testing.assert_allclose(std, np.sqrt(second - mean ** 2), rtol=1e-9)
    # central fourth moment of the mixture: sampling error of the MC variance
    delta = mu - mean[:, None]
    m4 = np.sum(w * (delta ** 4 + 6 * delta ** 2 * p.expert_var + 3 * p.expert_var ** 2),
                axis=1)
    for i in range(3):
        d = _draws(est, x[i], seed=i)
        assert abs(d.mean() - mean[i]) < 5 * std[i] / np.sqrt(N_MC)
        assert abs(d.var() - std[i] ** 2) < 5 * np.sqrt((m4[i] - std[i] ** 4) / N_MC)


@pytest.mark.parametrize("x0", [0.1, 0.32, 0.35, 0.9])
def test_quantiles_against_monte_carlo(fitted, x0):
    est, X, y = fitted
    q = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    Q = est.predict_quantiles([[x0]], q)[0]
    assert np.all(np.diff(Q) > 0)
    # exact: the CDF at the quantiles is q
    np.testing.assert_allclose(mixture_cdf(est.gate_, est.params_, np.array([[x0]]),
                                           Q[None, :])[0], q, atol=1e-9)
    # Monte Carlo: empirical CDF at the quantile within 5 binomial standard errors
    d = _draws(est, [x0], seed=int(100 * x0))
    emp = np.array([(d <= v).mean() for v in Q])
    assert np.all(np.abs(emp - q) < 5 * np.sqrt(q * (1 - q) / N_MC))


def test_interval_between_regimes_is_not_mean_plus_minus_sd(fitted):
    est, X, y = fitted
    x = [[0.32]]
    lo, hi = est.predict_interval(x, level=0.9)[0]
    mean, std = est.predict(x, return_std=True)
    assert hi - lo < 2 * 1.645 * std[0]
    d = _draws(est, x[0], seed=7)
    assert abs(np.mean((d >= lo) & (d <= hi)) - 0.9) < 5 * np.sqrt(0.09 / N_MC)
    scalar = est.predict_quantiles([[0.32], [0.5]], 0.5)
    assert scalar.shape == (2,)


def test_conditional_density(fitted):
    est, X, y = fitted
    np.testing.assert_allclose(est.conditional_density(X[:50], y[:50]),
                               np.exp(est.score_samples(X[:50], y[:50])), rtol=1e-12)
    grid = np.linspace(-40, 40, 16001)
    dens = est.conditional_density([[0.32], [0.7]], np.tile(grid, (2, 1)))
    assert dens.shape == (2, grid.size)
    np.testing.assert_allclose(dens.sum(axis=1) * (grid[1] - grid[0]), 1.0, atol=1e-6)
    # one expert far from the boundary: a single Gaussian
    p = est.params_
    j = int(np.argmax(est.predict_proba([[0.9]])[0]))
    single = norm.pdf(grid, 0.9 * p.expert_coef[j, 0] + p.expert_intercept[j],
                      np.sqrt(p.expert_var[j]))
    far = est.conditional_density([[0.9]], grid[None])[0]
    assert np.max(np.abs(far - single)) < 1e-6 * single.max()


def test_sparse_gate_quantiles_ignore_unselected_experts():
    s = get_setup("topk-exact")
    X, y = s.truth.sample(1500, np.random.default_rng(2))
    est = GaussianMoE(2, gate=TopKGate(1), random_state=0).fit(X, y)
    x = np.array([[0.5], [-0.5]])
    Q = est.predict_quantiles(x, [0.1, 0.9])
    mean, std = est.predict(x, return_std=True)
    # a top-1 mixture is one Gaussian at every x
    np.testing.assert_allclose(Q, mean[:, None] + std[:, None] * norm.ppf([0.1, 0.9]),
                               atol=1e-8)


def test_bad_input_raises(fitted):
    est, X, y = fitted
    with pytest.raises(ValueError, match="q must be .* between 0 and 1, got 1.5"):
        est.predict_quantiles(X[:3], 1.5)
    with pytest.raises(ValueError, match="q must be"):
        est.predict_quantiles(X[:3], [0.1, 0.0])
    with pytest.raises(ValueError, match="level must be .* got 90"):
        est.predict_interval(X[:3], level=90)
    with pytest.raises(ValueError, match="y must have shape .* got shape \\(2,\\)"):
        est.conditional_density(X[:3], [0.0, 1.0])
    with pytest.raises(ValueError, match="return_std"):
        est.predict(X[:3], return_std="yes")
    with pytest.raises(ValueError):
        est.predict_responsibilities(X[:3], y[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(X[:3])                                  # default unchanged, no warning
