"""Constant weights (``gate="constant"``, the mixture of linear regressions) on the shipped
real data, against R's mixtools and flexmix.

Reference values (nats) from ``python benchmarks/bench_real_data.py --tables constant``
(``benchmarks/results/bench_real_data.json``, key ``constant``), run with R 4.2.2,
mixtools 2.0.0 and flexmix 2.3-18 from Debian on the same CSV files
(``benchmarks/regmix_fit.R``):

- mixtools: the best of ``regmixEM(y, x, k = 2, arbvar = TRUE / FALSE, epsilon = 1e-8,
  maxit = 2000)`` over ``set.seed(1)`` .. ``set.seed(10)``;
- flexmix: ``set.seed(1); stepFlexmix(y ~ x, k = 2, nrep = 10, model =
  FLXMRglm(family = "gaussian"), control = list(minprior = 0, tolerance = 1e-10,
  iter.max = 5000))``. flexmix's Gaussian M-step sets each variance to n/(n - 2) times the
  weighted mean squared residual, so its fixed point lies a little below the maximum.
"""

import warnings

import numpy as np
import pytest

from moestats import GaussianMoE, MoEParams, SoftmaxGate
from moestats.datasets import load_faithful, load_mcycle
from moestats.likelihood import log_likelihood

#: mixtools regmixEM, faithful, k = 2, free variances: log-likelihood and solution
#: (intercept, slope per expert; standard deviations; weights)
FAITHFUL_REGMIXEM = -864.2996241961522
FAITHFUL_REGMIXEM_SOLUTION = {
    "beta": [[26.818755885492816, 10.677829327387407],
             [34.89212328625024, 10.718150761838588]],
    "sigma": [2.4678827741413416, 5.401176107141953],
    "lambda": [0.16773446020481558, 0.8322655397951845],
}
#: flexmix stepFlexmix (tight control), faithful, k = 2, free variances
FAITHFUL_FLEXMIX = -864.3071779308755
#: mixtools regmixEM, mcycle, k = 2: free variances (arbvar = TRUE) and equal (FALSE)
MCYCLE_REGMIXEM = {False: -656.7865217717358, True: -681.3581139861006}
MCYCLE_REGMIXEM_SOLUTION = {
    "beta": [[-101.72673570821719, 2.5218047406900133],
             [-2.6652579092042865, 0.02304345564309581]],
    "sigma": [44.931293005278064, 1.7078902880863736],
    "lambda": [0.7698024357100772, 0.2301975642899228],
}


def _params(solution):
    """A regmixEM solution (one covariate) as MoEParams with constant weights."""
    beta = np.asarray(solution["beta"])
    lam = np.asarray(solution["lambda"])
    return MoEParams(gate_coef=np.zeros((2, 1)), gate_intercept=np.log(lam / lam[-1]),
                     expert_coef=beta[:, 1:], expert_intercept=beta[:, 0],
                     expert_var=np.asarray(solution["sigma"]) ** 2)


def _fit(loader, **options):
    X, y = loader(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMoE(2, gate="constant", random_state=0, backend="numpy",
                           **options).fit(X, y)


def test_mixtools_solution_is_the_same_likelihood_and_certified():
    X, y = load_faithful(return_X_y=True)
    params = _params(FAITHFUL_REGMIXEM_SOLUTION)
    assert log_likelihood(SoftmaxGate(), params, X.to_numpy(), y.to_numpy()) == (
        pytest.approx(FAITHFUL_REGMIXEM, abs=1e-8))
    est = _fit(load_faithful, init=params)
    assert est.converged_
    assert est.log_likelihood_ == pytest.approx(FAITHFUL_REGMIXEM, abs=1e-6)


def test_constant_gate_on_faithful_reaches_mixtools_and_beats_flexmix():
    est = _fit(load_faithful)
    assert est.converged_
    assert np.all(est.gate_coef_ == 0)
    assert est.log_likelihood_ >= FAITHFUL_REGMIXEM - 1e-3      # certify_tol
    # flexmix's variances are n/(n - 2) times the MLE: 0.0076 nats lower here
    assert est.log_likelihood_ > FAITHFUL_FLEXMIX + 5e-3


def test_mcycle_mixtools_maximum_is_certified_from_there():
    est = _fit(load_mcycle, init=_params(MCYCLE_REGMIXEM_SOLUTION))
    assert est.converged_
    assert est.log_likelihood_ == pytest.approx(MCYCLE_REGMIXEM[False], abs=1e-6)


# regression test: before 0.7.0 the emEM short runs ignored the fit's parameter space
# (a free softmax gate slope here) and ended at the single-regression fit, -697.861
@pytest.mark.parametrize("shared", [False, True], ids=["free", "equal"])
def test_constant_gate_on_mcycle_reaches_mixtools(shared):
    est = _fit(load_mcycle, shared_variance=shared)
    assert est.converged_
    assert est.log_likelihood_ >= MCYCLE_REGMIXEM[shared] - 1e-3
