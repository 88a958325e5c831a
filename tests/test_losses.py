"""Mathematical tests of moestats.losses (papers.md section 4)."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import log_softmax

from moestats.losses import (
    d1_loss,
    d2_loss,
    density_error,
    parameter_errors,
    rbar,
    voronoi_cells,
    voronoi_loss,
)
from moestats.params import MoEParams


# --------------------------------------------------------------- helpers
class SoftmaxTestGate:
    """Softmax gate with logits X beta_1^T / tau + beta_0 (tau only if asked)."""

    def __init__(self, use_temperature=False):
        self.use_temperature = use_temperature

    def log_weights(self, params, X):
        tau = params.temperature if self.use_temperature else 1.0
        return log_softmax(X @ params.gate_coef.T / tau + params.gate_intercept, axis=1)


def as_mapping(p, order=None):
    """The arrays of ``p`` as a dict, atoms in ``order`` (any order)."""
    order = np.arange(p.n_experts) if order is None else np.asarray(order)
    out = {f: np.asarray(getattr(p, f))[order] for f in
           ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")}
    out["temperature"] = p.temperature
    return out


def truth_2():
    """k* = 2, d = 1: atom 0 and the reference atom 1."""
    return MoEParams(
        gate_coef=[[2.0], [0.0]], gate_intercept=[-1.0, 0.0],
        expert_coef=[[1.0], [-1.0]], expert_intercept=[0.5, -0.5],
        expert_var=[0.5, 1.0], temperature=0.5,
    )


def fitted_3():
    """k = 3: atoms 0 and 1 in the cell of true atom 0, atom 2 (reference) in cell 1.

    Deltas against their true atoms (beta_1, a, b, nu):
    atom 0: (0.1, 0.2, -0.15, 0.1), weight 0.2
    atom 1: (-0.2, -0.1, 0.0, -0.05), weight 0.1
    atom 2: (0.0, -0.05, 0.25, 0.3), weight 1
    """
    return MoEParams(
        gate_coef=[[2.1], [1.8], [0.0]], gate_intercept=[math.log(0.2), math.log(0.1), 0.0],
        expert_coef=[[1.2], [0.9], [-1.05]], expert_intercept=[0.35, 0.5, -0.25],
        expert_var=[0.6, 0.45, 1.3], temperature=0.5,
    )


def split_truth(true, j, fractions):
    """Fitted model with true atom j (not the reference) split into copies."""
    k = true.n_experts
    rows, b0 = [], []
    for l in range(k):
        if l == j:
            rows += [l] * len(fractions)
            b0 += [true.gate_intercept[l] + math.log(f) for f in fractions]
        else:
            rows.append(l)
            b0.append(true.gate_intercept[l])
    rows = np.array(rows)
    return MoEParams(true.gate_coef[rows], b0, true.expert_coef[rows],
                     true.expert_intercept[rows], true.expert_var[rows], true.temperature)


# -------------------------------------------------------------- r-bar
def test_rbar_table_and_unknown_sizes():
    assert [rbar(1), rbar(2), rbar(3)] == [1, 4, 6]
    for m in (4, 5):
        with pytest.raises(ValueError, match="rbar"):
            rbar(m)
    with pytest.raises(ValueError):
        rbar(0)


# ------------------------------------------------------------- cells
def test_voronoi_cells_hand_case_and_ties():
    cells = voronoi_cells(fitted_3(), truth_2())
    assert [c.tolist() for c in cells] == [[0, 1], [2]]
    # a fitted atom exactly halfway between the two true atoms goes to the lower j
    t = MoEParams([[1.0], [0.0]], [0.3, 0.0], [[0.0], [0.0]], [1.0, -1.0], [1.0, 1.0])
    f = MoEParams([[0.5], [0.0]], [0.0, 0.0], [[0.0], [0.0]], [0.0, -1.0], [1.0, 1.0])
    assert [c.tolist() for c in voronoi_cells(f, t)] == [[0], [1]]


def test_cells_on_slope_over_temperature():
    true = truth_2()
    # (beta_1, tau) -> (3 beta_1, 3 tau): far on beta_1, identical on beta_1 / tau
    fit = true.replace(gate_coef=3 * true.gate_coef, temperature=3 * true.temperature)
    assert [c.tolist() for c in voronoi_cells(fit, true, include_temperature="ratio")] == [[0], [1]]


# --------------------------------------------------------- zero at the truth
def test_losses_vanish_at_the_truth():
    true = truth_2()
    split = split_truth(true, 0, [0.3, 0.7])
    for mode in (False, True, "ratio"):
        assert d1_loss(true, true, learned_temperature=mode) == 0.0
        assert d2_loss(split, true, learned_temperature=mode) == pytest.approx(0.0, abs=1e-15)
        for K in (1, 2):
            assert voronoi_loss(split, true, "D2", top_k=K, learned_temperature=mode) \
                == pytest.approx(0.0, abs=1e-15)
    # three-atom split uses rbar(3)
    split3 = split_truth(true, 0, [0.2, 0.3, 0.5])
    assert d2_loss(split3, true) == pytest.approx(0.0, abs=1e-15)
    errs = parameter_errors(split, true, learned_temperature=True)
    for key in ("gate_coef", "expert_coef", "expert_intercept", "expert_var",
                "temperature", "gate_slope_over_temperature", "weight"):
        assert errs[key] == pytest.approx(0.0, abs=1e-15)


def test_density_error_vanishes_at_the_truth():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(200, 1))
    true = truth_2()
    gate = SoftmaxTestGate()
    assert density_error(true, true, gate, gate, X) == 0.0
    split = split_truth(true, 0, [0.4, 0.6])
    assert density_error(split, true, gate, gate, X) < 1e-7


def test_ratio_form_is_blind_to_the_scale_invariance():
    """(beta_1, tau) -> (c beta_1, c tau) leaves the density and the beta_1/tau loss."""
    true = truth_2()
    fit = true.replace(gate_coef=2 * true.gate_coef, temperature=2 * true.temperature)
    assert d1_loss(fit, true, learned_temperature="ratio") == 0.0
    # (beta_1, tau) form: e^{b0}(|dbeta_1| + |dtau|) for atom 0, e^0 |dtau| for the reference
    want = math.exp(-1.0) * (2.0 + 0.5) + 1.0 * 0.5
    assert d1_loss(fit, true, learned_temperature=True) == pytest.approx(want, rel=1e-12)
    errs = parameter_errors(fit, true, learned_temperature="ratio")
    assert errs["gate_slope_over_temperature"] == 0.0
    assert errs["temperature"] == pytest.approx(0.5)
    assert errs["gate_coef"] == pytest.approx(2.0)
    X = np.linspace(-1, 1, 50)[:, None]
    gate = SoftmaxTestGate(use_temperature=True)
    assert density_error(fit, true, gate, gate, X) < 1e-7


# ---------------------------------------------------------- hand values
def test_d2_and_d1_hand_values():
    """k* = 2, k = 3, a two-atom cell (rbar = 4), deltas as in fitted_3."""
    w_true0 = math.exp(-1.0)
    atom0 = 0.2 * (0.1**4 + 0.15**4 + 0.2**2 + 0.1**2)  # beta_1^4, b^4, a^2, nu^2
    atom1 = 0.1 * (0.2**4 + 0.0**4 + 0.1**2 + 0.05**2)
    atom2 = 1.0 * (0.0 + 0.05 + 0.25 + 0.3)  # singleton cell: exponent 1
    weights = abs(0.2 + 0.1 - w_true0) + abs(1.0 - 1.0)
    want_d2 = atom0 + atom1 + atom2 + weights
    assert want_d2 == pytest.approx(0.67941069, abs=1e-8)  # the numbers written out
    ref = dict(gauge="reference")  # the formula as written: raw weights e^{beta_0}
    assert d2_loss(fitted_3(), truth_2(), **ref) == pytest.approx(want_d2, rel=1e-12)
    assert voronoi_loss(fitted_3(), truth_2(), **ref) == pytest.approx(want_d2, rel=1e-12)
    want_d1 = (0.2 * (0.1 + 0.2 + 0.15 + 0.1) + 0.1 * (0.2 + 0.1 + 0.0 + 0.05)
               + atom2 + weights)
    assert d1_loss(fitted_3(), truth_2(), **ref) == pytest.approx(want_d1, rel=1e-12)
    # default "slope" gauge: the reference cell {2} already has the true slope 0, so
    # t_1 = 0, and the weights are rescaled to the true total mass (e^{-1} + 1) / 1.3
    s = (w_true0 + 1.0) / 1.3
    want_slope = (s * (atom0 + atom1) + s * (0.05 + 0.25 + 0.3)
                  + abs(s * 0.3 - w_true0) + abs(s - 1.0))
    assert d2_loss(fitted_3(), truth_2()) == pytest.approx(want_slope, rel=1e-12)
    assert voronoi_loss(fitted_3(), truth_2()) == pytest.approx(want_slope, rel=1e-12)


def test_learned_temperature_adds_tau_with_beta1_exponent():
    true = truth_2()
    fit = fitted_3().replace(temperature=0.6)  # |dtau| = 0.1
    base = d2_loss(fit.replace(temperature=0.5), true, gauge="reference")
    extra = 0.2 * 0.1**4 + 0.1 * 0.1**4 + 1.0 * 0.1  # rbar(2) = 4 in cell 0, 1 in cell 1
    assert d2_loss(fit, true, learned_temperature=True, gauge="reference") == pytest.approx(
        base + extra, rel=1e-12)
    # default gauge: the same with the mass-rescaled weights
    s = (math.exp(-1.0) + 1.0) / 1.3
    assert d2_loss(fit, true, learned_temperature=True) == pytest.approx(
        d2_loss(fit.replace(temperature=0.5), true) + s * extra, rel=1e-12)


def test_parameter_errors_hand_values():
    errs = parameter_errors(fitted_3(), truth_2())
    assert errs["gate_coef"] == pytest.approx(0.2)
    assert errs["expert_coef"] == pytest.approx(0.2)
    assert errs["expert_intercept"] == pytest.approx(0.25)
    assert errs["expert_var"] == pytest.approx(0.3)
    s = (math.exp(-1.0) + 1.0) / 1.3  # default gauge: weights with the true total mass
    assert errs["weight"] == pytest.approx(max(abs(0.3 * s - math.exp(-1.0)), abs(s - 1.0)))
    assert parameter_errors(fitted_3(), truth_2(), gauge="reference")["weight"] == \
        pytest.approx(abs(0.3 - math.exp(-1.0)))
    assert errs["cell_sizes"].tolist() == [2, 1]
    np.testing.assert_allclose(errs["per_cell"]["gate_coef"], [0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(errs["per_cell"]["expert_var"], [0.1, 0.3], atol=1e-12)
    assert "temperature" not in errs


def test_empty_cell_contributes_true_weight():
    true = truth_2()
    # one fitted atom equal to the true reference: cell 0 is empty
    fit = MoEParams([[0.0]], [0.0], [[-1.0]], [-0.5], [1.0])
    cells = voronoi_cells(fit, true)
    assert cells[0].size == 0 and cells[1].tolist() == [0]
    for loss in (d1_loss(fit, true, gauge="reference"), d2_loss(fit, true, gauge="reference")):
        assert loss == pytest.approx(math.exp(-1.0), rel=1e-12)
    # default gauge: the single atom carries the true total mass 1 + e^{-1}, so its
    # cell is off by e^{-1} as well
    for loss in (d1_loss(fit, true), d2_loss(fit, true)):
        assert loss == pytest.approx(2 * math.exp(-1.0), rel=1e-12)
    errs = parameter_errors(fit, true, gauge="reference")
    assert errs["weight"] == pytest.approx(math.exp(-1.0))
    assert np.isnan(errs["per_cell"]["gate_coef"][0]) and errs["gate_coef"] == 0.0
    # relative weights: an empty cell contributes 1
    assert d1_loss(fit, true, relative_weights=True) == pytest.approx(1.0)


def test_cells_of_four_atoms_need_rbar():
    true = truth_2()
    fit = split_truth(true, 0, [0.1, 0.2, 0.3, 0.4])
    fit = fit.replace(expert_intercept=fit.expert_intercept + np.r_[0.1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="rbar"):
        d2_loss(fit, true)
    want = 0.1 * math.exp(-1.0) * 0.1**8  # |db|^{rbar} with rbar = 8
    assert d2_loss(fit, true, rbar={4: 8}) == pytest.approx(want, rel=1e-12)
    assert d2_loss(fit, true, rbar=lambda m: 8) == pytest.approx(want, rel=1e-12)
    assert d1_loss(fit, true) == pytest.approx(0.1 * math.exp(-1.0) * 0.1, rel=1e-12)


# ------------------------------------------------------------- top-K
def test_top_k_is_max_over_subsets():
    true3 = MoEParams([[2.0], [-1.0], [0.0]], [-1.0, 0.5, 0.0], [[1.0], [3.0], [-1.0]],
                      [0.5, 2.0, -0.5], [0.5, 0.3, 1.0])
    rng = np.random.default_rng(1)
    fit = split_truth(true3, 1, [0.5, 0.5])
    fit = fit.replace(gate_coef=fit.gate_coef + np.r_[rng.normal(0, 0.1, (3, 1)), [[0.0]]],
                      expert_coef=fit.expert_coef + rng.normal(0, 0.1, (4, 1)),
                      expert_var=fit.expert_var * np.exp(rng.normal(0, 0.1, 4)),
                      gate_intercept=fit.gate_intercept + np.r_[rng.normal(0, 0.1, 3), 0])
    assert [c.size for c in voronoi_cells(fit, true3)] == [1, 2, 1]
    full = d2_loss(fit, true3)
    for K in (1, 2, 3):
        top = d2_loss(fit, true3, top_k=K, relative_weights=False)
        assert top <= full + 1e-15
    assert d2_loss(fit, true3, top_k=3, relative_weights=False) == pytest.approx(full)
    # brute force over subsets from per-cell totals on the hand case
    fit3, t2 = fitted_3(), truth_2()
    w0 = math.exp(-1.0)
    T = [0.2 * (0.1**4 + 0.15**4 + 0.2**2 + 0.1**2) + 0.1 * (0.2**4 + 0.1**2 + 0.05**2)
         + abs(0.3 - w0), 0.6]
    for K in (1, 2):
        brute = max(sum(T[j] for j in S) for S in itertools.combinations(range(2), K))
        assert d2_loss(fit3, t2, top_k=K, relative_weights=False,
                       gauge="reference") == pytest.approx(brute)


def test_top1_relative_weights():
    # a true top-1 model: beta_0 = 0 everywhere
    true = MoEParams([[2.0], [0.0]], [0.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5], [0.5, 1.0])
    fit = MoEParams([[2.1], [1.8], [0.0]], [math.log(3.0), 0.0, 0.0], [[1.0], [1.0], [-1.0]],
                    [0.5, 0.5, -0.5], [0.5, 0.5, 1.0])
    # cell 0 = {0, 1} with relative weights 3/4 and 1/4; only beta_1 differs
    want = 0.75 * 0.1**4 + 0.25 * 0.2**4
    assert d2_loss(fit, true, top_k=1) == pytest.approx(want, rel=1e-12)  # default relative
    assert d2_loss(fit, true, top_k=1, relative_weights=True) == pytest.approx(want)
    assert d2_loss(fit, true, relative_weights=True) == pytest.approx(want)  # K = k*: sum
    # absolute weights would add |3 + 1 - 1| to the weight term
    assert d2_loss(fit, true, top_k=1, relative_weights=False,
                   gauge="reference") == pytest.approx(3 * 0.1**4 + 1 * 0.2**4 + 3.0)
    errs = parameter_errors(fit, true, relative_weights=True)
    assert errs["weight"] == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------- permutation invariance
@pytest.mark.parametrize("kwargs", [
    dict(kind="D1"), dict(kind="D2"), dict(kind="D2", top_k=1),
    dict(kind="D2", learned_temperature=True), dict(kind="D1", learned_temperature="ratio"),
    dict(kind="D2", gauge="intercept"),
])
def test_invariant_to_permuting_fitted_atoms(kwargs):
    true, fit = truth_2(), fitted_3().replace(temperature=0.7)
    base = voronoi_loss(fit, true, **kwargs)
    # MoEParams.permute (reference kept last)
    assert voronoi_loss(fit.permute([1, 0, 2]), true, **kwargs) == pytest.approx(base, rel=1e-14)
    # raw arrays: every order, the reference anywhere
    for order in itertools.permutations(range(3)):
        assert voronoi_loss(as_mapping(fit, order), true, **kwargs) == pytest.approx(
            base, rel=1e-14)
    # permuting the true atoms as well permutes the cells, not the loss
    assert voronoi_loss(as_mapping(fit, [2, 0, 1]), as_mapping(true, [1, 0]),
                        **kwargs) == pytest.approx(base, rel=1e-14)


def test_parameter_errors_invariant_to_permutation():
    true, fit = truth_2(), fitted_3()
    base = parameter_errors(fit, true)
    for order in itertools.permutations(range(3)):
        errs = parameter_errors(as_mapping(fit, order), true)
        for key in ("gate_coef", "expert_coef", "expert_intercept", "expert_var", "weight"):
            assert errs[key] == pytest.approx(base[key], rel=1e-14)
        assert errs["cell_sizes"].tolist() == base["cell_sizes"].tolist()


# --------------------------------------------------------------- monotone
@pytest.mark.parametrize("kind,split", [("D1", False), ("D2", True)])
def test_monotone_in_perturbation_size(kind, split):
    true = MoEParams([[2.0, -1.0], [0.0, 0.0]], [-1.0, 0.0], [[1.0, 0.5], [-1.0, 0.0]],
                     [0.5, -0.5], [0.5, 1.0])
    base = split_truth(true, 0, [0.5, 0.5]) if split else true
    k, d = base.n_experts, base.n_features
    rng = np.random.default_rng(2)
    dir_ = {f: rng.normal(size=getattr(base, f).shape) for f in
            ("gate_coef", "expert_coef", "expert_intercept")}
    dir_["gate_coef"][-1] = 0.0
    d_b0 = np.abs(rng.normal(size=k)); d_b0[-1] = 0.0  # weights grow away from the truth
    d_lognu = rng.normal(size=k)
    losses = []
    for t in np.linspace(0.0, 0.3, 16):
        p = base.replace(
            gate_coef=base.gate_coef + t * dir_["gate_coef"],
            gate_intercept=base.gate_intercept + t * d_b0,
            expert_coef=base.expert_coef + t * dir_["expert_coef"],
            expert_intercept=base.expert_intercept + t * dir_["expert_intercept"],
            expert_var=base.expert_var * np.exp(t * d_lognu))
        losses.append(voronoi_loss(p, true, kind))
    assert losses[0] == pytest.approx(0.0, abs=1e-15)
    assert np.all(np.diff(losses) > 0)


def test_density_error_monotone_along_a_path():
    true = truth_2()
    X = np.random.default_rng(3).uniform(-1, 1, size=(100, 1))
    gate = SoftmaxTestGate()
    errs = [density_error(true.replace(expert_intercept=true.expert_intercept + [t, 0.0]),
                          true, gate, gate, X) for t in np.linspace(0, 1, 6)]
    assert errs[0] == 0.0 and np.all(np.diff(errs) > 0)


# ------------------------------------------------------------------ gauge
def test_split_reference_atom_and_intercept_gauge():
    """Splitting the true reference atom: same density, reference-gauge weight term > 0."""
    true = truth_2()
    c, b0 = 0.5, -1.0
    fit = MoEParams(
        gate_coef=[[2.0], [0.0], [0.0]],
        gate_intercept=[b0 + math.log(1 + c), math.log(c), 0.0],
        expert_coef=[[1.0], [-1.0], [-1.0]], expert_intercept=[0.5, -0.5, -0.5],
        expert_var=[0.5, 1.0, 1.0])
    gate = SoftmaxTestGate()
    X = np.linspace(-1, 1, 40)[:, None]
    assert density_error(fit, true, gate, gate, X) < 1e-7
    want = math.exp(b0) * c + c  # |e^{b0}(1+c) - e^{b0}| + |c + 1 - 1|
    assert d2_loss(fit, true, gauge="reference") == pytest.approx(want, rel=1e-12)
    assert d2_loss(fit, true) == pytest.approx(0.0, abs=1e-14)  # default "slope" gauge
    assert d2_loss(fit, true, gauge="intercept") == pytest.approx(0.0, abs=1e-14)
    assert parameter_errors(fit, true, gauge="intercept")["weight"] == pytest.approx(0.0, abs=1e-14)
    # the infimum over the scale is never above the reference gauge
    assert d2_loss(fitted_3(), true, gauge="intercept") <= d2_loss(fitted_3(), true,
                                                                   gauge="reference")


# -------------------------------------------------------------- Hellinger
def _h2_gauss(m1, s1, m2, s2):
    """Closed form, written with expm1 to avoid cancellation."""
    v = s1**2 + s2**2
    return -np.expm1(0.5 * np.log(2 * s1 * s2 / v) - (m1 - m2) ** 2 / (4 * v))


@pytest.mark.parametrize("case", [
    # (a1, b1, var1, a2, b2, var2)
    (1.0, 0.0, 1.0, 1.5, 0.3, 4.0),
    (0.0, 0.0, 1e-4, 2.0, 0.0, 25.0),       # very different widths
    (2.0, 1.0, 0.3, 2.0, 1.0 + 1e-6, 0.3),  # h ~ 1e-6: no cancellation
    (0.0, 0.0, 1.0, 0.0, 30.0, 1.0),        # disjoint: h ~ 1
])
def test_hellinger_two_gaussians_closed_form(case):
    a1, b1, v1, a2, b2, v2 = case
    p = MoEParams([[0.0]], [0.0], [[a1]], [b1], [v1])
    q = MoEParams([[0.0]], [0.0], [[a2]], [b2], [v2])
    X = np.linspace(-1, 1, 7)[:, None]
    got = density_error(p, q, SoftmaxTestGate(), SoftmaxTestGate(), X, per_point=True)
    want = np.sqrt(_h2_gauss(a1 * X[:, 0] + b1, math.sqrt(v1), a2 * X[:, 0] + b2, math.sqrt(v2)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    assert density_error(p, q, SoftmaxTestGate(), SoftmaxTestGate(), X) == pytest.approx(
        want.mean(), rel=1e-9)


def test_hellinger_mixture_against_adaptive_quadrature():
    true = truth_2()
    fit = fitted_3().replace(expert_var=[0.01, 0.45, 1.3])  # one narrow expert
    gate = SoftmaxTestGate()
    X = np.array([[-0.7], [0.1], [0.9]])
    got = density_error(fit, true, gate, gate, X, per_point=True)
    for x, h in zip(X, got):
        def dens(p, y):
            w = np.exp(gate.log_weights(p, x[None, :])[0])
            mu = p.expert_coef @ x + p.expert_intercept
            return np.sum(w * np.exp(-0.5 * (y - mu) ** 2 / p.expert_var)
                          / np.sqrt(2 * np.pi * p.expert_var))
        mus = np.concatenate([fit.expert_coef @ x + fit.expert_intercept,
                              true.expert_coef @ x + true.expert_intercept])
        h2, _ = integrate.quad(lambda y: 0.5 * (np.sqrt(dens(fit, y)) - np.sqrt(dens(true, y))) ** 2,
                               -30, 30, points=sorted(mus), limit=500, epsabs=1e-14, epsrel=1e-12)
        assert h == pytest.approx(math.sqrt(h2), rel=1e-8)


# ------------------------------------------------------------ validation
def test_input_validation():
    true = truth_2()
    fit2d = MoEParams(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 1\)"):
        d1_loss(fit2d, true)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 1\)"):
        voronoi_cells(fit2d, true)
    with pytest.raises(ValueError, match="top_k"):
        d2_loss(fitted_3(), true, top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        d2_loss(fitted_3(), true, top_k=0)
    with pytest.raises(ValueError, match="kind"):
        voronoi_loss(fitted_3(), true, "D3")
    with pytest.raises(ValueError, match="learned_temperature"):
        d1_loss(fitted_3(), true, learned_temperature="yes")
    with pytest.raises(ValueError, match="gauge"):
        d1_loss(fitted_3(), true, gauge="free")
    with pytest.raises(ValueError, match="rbar"):
        d2_loss(fitted_3(), true, rbar={2: -1})
    with pytest.raises(TypeError):
        d1_loss([1, 2, 3], true)
    bad = as_mapping(fitted_3())
    bad["expert_var"] = bad["expert_var"][:2]
    with pytest.raises(ValueError, match="expert_var"):
        d1_loss(bad, true)
    gate = SoftmaxTestGate()
    with pytest.raises(ValueError, match="X must have shape"):
        density_error(true, true, gate, gate, np.zeros((5, 2)))


class Top1TestGate:
    """Top-1 gate: weight 1 on the expert with the largest beta_1^T x, -inf elsewhere."""

    def log_weights(self, params, X):
        z = X @ params.gate_coef.T
        out = np.full(z.shape, -np.inf)
        out[np.arange(len(X)), np.argmax(z, axis=1)] = 0.0
        return out


def test_hellinger_with_switched_off_experts():
    """-inf log weights: each density is the selected Gaussian, so h has a closed form."""
    true = MoEParams([[1.0], [0.0]], [0.0, 0.0], [[1.0], [-1.0]], [0.5, -0.5], [0.5, 1.0])
    fit = MoEParams([[1.0], [0.0]], [0.0, 0.0], [[1.1], [-1.0]], [0.5, -0.2], [0.4, 1.0])
    X = np.array([[-0.8], [-0.1], [0.3], [0.9]])  # x < 0: expert 1 selected, x > 0: expert 0
    gate = Top1TestGate()
    got = density_error(fit, true, gate, gate, X, per_point=True)
    sel = (X[:, 0] > 0).astype(int) ^ 1  # index of the selected expert (0 if x > 0)
    mf = fit.expert_coef[sel, 0] * X[:, 0] + fit.expert_intercept[sel]
    mt = true.expert_coef[sel, 0] * X[:, 0] + true.expert_intercept[sel]
    want = np.sqrt(_h2_gauss(mf, np.sqrt(fit.expert_var[sel]), mt, np.sqrt(true.expert_var[sel])))
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_mass_gauge_zero_for_a_split_reference_cell_and_stable_for_huge_intercepts():
    """Two atoms on the true reference expert with the true density: the mass gauge gives 0."""
    from moestats.losses import voronoi_loss, parameter_errors
    truth = MoEParams([[25.0], [0.0]], [-8.0, 0.0], [[-20.0], [20.0]], [15.0, -5.0], [0.09, 0.16])
    c = 0.7
    # fitted (e^{b01}(1 + c), c, 1): the same gate weights as the truth for every x
    split = MoEParams([[25.0], [0.0], [0.0]], [-8.0 + np.log1p(c), np.log(c), 0.0],
                      [[-20.0], [20.0], [20.0]], [15.0, -5.0, -5.0], [0.09, 0.16, 0.16])
    assert voronoi_loss(split, truth, "D2", gauge="reference") > 0.5
    assert voronoi_loss(split, truth, "D2", gauge="mass") == pytest.approx(0.0, abs=1e-12)
    assert parameter_errors(split, truth, gauge="mass")["weight"] == pytest.approx(0.0, abs=1e-12)
    # translation invariance: a common intercept shift changes nothing
    shifted = {**split.as_dict(), "gate_intercept": (split.gate_intercept + 3.0).tolist()}
    assert voronoi_loss(shifted, truth, "D2", gauge="mass") == pytest.approx(0.0, abs=1e-12)
    # a runaway intercept (e^1162 overflows) still gives a finite loss
    wild = split.replace(gate_intercept=[1162.0, -5.0, 0.0])
    value = voronoi_loss(wild, truth, "D2", gauge="mass")
    assert np.isfinite(value) and value > 0
