"""Gauge invariance of the losses (papers.md sections 1, 2 and 4; moestats.losses.gauge).

A loss that is not zero at a reparametrisation of the true density is a bug; a loss that
changes when the fitted experts are relabelled or their gate parameters shifted by a common
(t_1, t_0) measures the gauge, not the fit.
"""

import itertools

import numpy as np
import pytest

import moestats
from moestats.gates import SoftmaxGate
from moestats.losses import (GAUGES, align_to_truth, cell_parameter_errors, d1_loss,
                             density_error, loss_gauge, parameter_errors, voronoi_cells,
                             voronoi_loss)
from moestats.params import MoEParams
from moestats.sampling import sample_conditional

FIELDS = ("gate_coef", "gate_intercept", "expert_coef", "expert_intercept", "expert_var")


# --------------------------------------------------------------- helpers
def truth_3():
    """k* = 3, d = 2, reference last; tau = 0.7 for the temperature forms."""
    return MoEParams(
        gate_coef=[[2.0, -1.0], [-1.5, 0.5], [0.0, 0.0]], gate_intercept=[-0.5, 0.3, 0.0],
        expert_coef=[[1.0, 0.5], [-1.0, 2.0], [0.3, -0.7]],
        expert_intercept=[0.5, -1.5, 2.0], expert_var=[0.5, 0.3, 1.0], temperature=0.7)


def truth_top1():
    """A top-1 truth (beta_0 = 0), k* = 3, d = 2."""
    return MoEParams(
        gate_coef=[[2.0, -1.0], [-1.5, 0.5], [0.0, 0.0]], gate_intercept=[0.0, 0.0, 0.0],
        expert_coef=[[1.0, 0.5], [-1.0, 2.0], [0.3, -0.7]],
        expert_intercept=[0.5, -1.5, 2.0], expert_var=[0.5, 0.3, 1.0])


def dnh_truth():
    return moestats.get_setup("softmax-exact").truth.params


def reparametrise(true, rows, fractions, order, t1, t0, c=1.0, tau=None):
    """The true atoms ``rows`` (repeats split the weight by ``fractions``), relabelled by
    ``order``, gate slopes ``c beta_1 + t_1`` and intercepts ``beta_0 + log f + t_0``."""
    rows = np.asarray(rows)
    out = {f: np.asarray(getattr(true, f))[rows] for f in FIELDS}
    out["gate_coef"] = c * out["gate_coef"] + np.asarray(t1)
    out["gate_intercept"] = out["gate_intercept"] + np.log(fractions) + t0
    out = {f: v[np.asarray(order)] for f, v in out.items()}
    out["temperature"] = true.temperature if tau is None else tau
    return out


def relabel_shift(fit, order, t1, t0, c=1.0):
    """A fitted model (mapping) relabelled and shifted (and its slopes scaled by c)."""
    out = {f: np.asarray(fit[f] if isinstance(fit, dict) else getattr(fit, f))[order]
           for f in FIELDS}
    out["gate_coef"] = c * out["gate_coef"] + np.asarray(t1)
    out["gate_intercept"] = out["gate_intercept"] + t0
    out["temperature"] = fit["temperature"] if isinstance(fit, dict) else fit.temperature
    return out


def random_fit(true, k, rng, scale=0.3):
    """A random non-true fitted model near ``true`` (k > k*: extra atoms are noisy copies;
    k < k*: a random subset of the true atoms)."""
    k_true = true.n_experts
    if k < k_true:
        rows = np.sort(rng.permutation(k_true)[:k])
    else:
        rows = np.r_[np.arange(k_true), rng.integers(0, k_true, k - k_true)]
    out = {f: np.array(getattr(true, f))[rows] for f in FIELDS}
    out["gate_coef"] = out["gate_coef"] + rng.normal(0, scale, out["gate_coef"].shape)
    out["gate_intercept"] = out["gate_intercept"] + rng.normal(0, scale, k)
    out["expert_coef"] = out["expert_coef"] + rng.normal(0, scale, out["expert_coef"].shape)
    out["expert_intercept"] = out["expert_intercept"] + rng.normal(0, scale, k)
    out["expert_var"] = out["expert_var"] * np.exp(rng.normal(0, scale, k))
    out["temperature"] = true.temperature * np.exp(rng.normal(0, scale))
    return out


#: every loss form: (kwargs of voronoi_loss)
FORMS = [
    dict(kind="D1"), dict(kind="D2"), dict(kind="auto"),
    dict(kind="D2", top_k=1), dict(kind="D2", top_k=2), dict(kind="D1", top_k=2),
    dict(kind="D2", top_k=1, relative_weights=False),
    dict(kind="D2", learned_temperature=True), dict(kind="D1", learned_temperature=True),
    dict(kind="D2", learned_temperature="ratio"), dict(kind="D1", learned_temperature="ratio"),
]

SPLITS = [  # (rows of true atoms, fractions of their weights)
    ([0, 1, 2], [1.0, 1.0, 1.0]),
    ([0, 0, 1, 2], [0.3, 0.7, 1.0, 1.0]),
    ([0, 1, 2, 2], [1.0, 1.0, 0.4, 0.6]),           # the true reference split
    ([0, 1, 1, 1, 2], [1.0, 0.2, 0.5, 0.3, 1.0]),   # three copies (rbar(3) = 6)
    ([0, 0, 1, 2, 2], [0.5, 0.5, 1.0, 0.1, 0.9]),
]


def all_errors(fit, true, **kw):
    kw = {k: v for k, v in kw.items() if k not in ("kind", "top_k")}
    errs = parameter_errors(fit, true, **kw)
    return {k: v for k, v in errs.items() if isinstance(v, float)}


# ------------------------------------------------- (a) zero at reparametrisations
@pytest.mark.parametrize("rows,fractions", SPLITS)
def test_every_loss_is_zero_at_every_reparametrisation(rows, fractions):
    true = truth_3()
    rng = np.random.default_rng(len(rows) + 10 * int(sum(fractions) * 10))
    k = len(rows)
    orders = list(itertools.permutations(range(k)))
    picks = [orders[0], orders[-1]] + [orders[i] for i in rng.choice(len(orders), 4)]
    for order in picks:
        t1 = rng.normal(0, 300, 2)
        t0 = rng.normal(0, 300)
        fit = reparametrise(true, rows, fractions, order, t1, t0)
        for form in FORMS:
            value = voronoi_loss(fit, true, **form)
            assert abs(value) < 1e-12, (order, form, value)
            for name, err in all_errors(fit, true, **form).items():
                assert abs(err) < 1e-12, (order, form, name, err)
        # the gauges without t_1 see the shift (raw slopes hundreds off)
        assert voronoi_loss(fit, true, gauge="mass") > 1.0
        cells = cell_parameter_errors(fit, true)
        assert sorted(np.concatenate(voronoi_cells(fit, true)).tolist()) == list(range(k))
        for name, values in cells.items():
            if name not in ("size", "gauge"):
                assert np.nanmax(np.abs(values)) < 1e-12, (name, values)
        # cell sizes are the multiplicities of the true atoms
        assert cells["size"].tolist() == np.bincount(rows, minlength=3).tolist()


def test_zero_at_reparametrisations_of_the_dnh_truth_with_huge_shifts():
    true = dnh_truth()
    for t1, t0 in ((-25.0, 8.0), (1e3, -7e2), (-3e3, 1e3)):
        for rows, fr in (([0, 1], [1, 1]), ([1, 0], [1, 1]), ([0, 1, 1], [1, 0.25, 0.75]),
                         ([1, 0, 0, 1], [0.5, 0.1, 0.9, 0.5])):
            for order in itertools.permutations(range(len(rows))):
                fit = reparametrise(true, rows, fr, order, [t1], t0)
                assert abs(voronoi_loss(fit, true)) < 1e-12 * max(1.0, abs(t1) / 100)
                assert abs(d1_loss(fit, true)) < 1e-12 * max(1.0, abs(t1) / 100)


def test_top1_unit_norm_zero_at_scaled_shifted_relabelled_split_truth():
    true = truth_top1()
    rng = np.random.default_rng(5)
    for rows, _ in SPLITS:
        k = len(rows)
        for _ in range(4):
            order = rng.permutation(k)
            c = float(np.exp(rng.normal(0, 2)))
            # top-1 ignores beta_0: any intercepts are a reparametrisation
            fit = reparametrise(true, rows, np.exp(rng.normal(0, 1, k)), order,
                                rng.normal(0, 100, 2), 0.0, c=c)
            for kind in ("D1", "D2"):
                for K in (1, None):
                    v = voronoi_loss(fit, true, kind, top_k=K, relative_weights=True,
                                     gauge="slope+unit-norm")
                    assert abs(v) < 1e-12, (rows, c, kind, K, v)
            errs = parameter_errors(fit, true, relative_weights=True, gauge="slope+unit-norm")
            for name in ("gate_coef", "expert_coef", "expert_intercept", "expert_var",
                         "weight"):
                assert abs(errs[name]) < 1e-12, (name, errs[name])
            if abs(np.log(c)) > 0.1:  # the raw slopes see the scale
                assert voronoi_loss(fit, true, "D2", top_k=1, gauge="slope") > 1e-3


# ------------------------------------------------------------ (b) invariance
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_losses_invariant_to_relabelling_and_common_shifts(k):
    true = truth_3() if k >= 3 else MoEParams(
        [[2.0, -1.0], [0.0, 0.0]], [-0.5, 0.0], [[1.0, 0.5], [0.3, -0.7]], [0.5, 2.0],
        [0.5, 1.0], temperature=0.7)
    rng = np.random.default_rng(100 + k)
    forms = [f for f in FORMS if f.get("top_k", 0) <= true.n_experts]
    for _ in range(4):
        fit = random_fit(true, k, rng)
        base = {i: voronoi_loss(fit, true, rbar=lambda m: 8, **f) for i, f in enumerate(forms)}
        base_err = [all_errors(fit, true, **f) for f in forms]
        assert all(v > 1e-6 for v in base.values())
        for _ in range(4):
            moved = relabel_shift(fit, rng.permutation(k), rng.normal(0, 200, 2),
                                  rng.normal(0, 200))
            for i, f in enumerate(forms):
                assert voronoi_loss(moved, true, rbar=lambda m: 8, **f) == pytest.approx(
                    base[i], rel=1e-9), f
                got = all_errors(moved, true, **f)
                for name, value in base_err[i].items():
                    assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (f, name)


def test_unit_norm_invariant_to_scale_and_shift_of_the_slopes():
    true = truth_top1()
    rng = np.random.default_rng(7)
    for k in (3, 4, 5):
        for _ in range(4):
            fit = random_fit(true, k, rng)
            fit["gate_intercept"] = np.zeros(k)  # a top-1 fit
            forms = [dict(kind="D1", top_k=1), dict(kind="D2", top_k=1), dict(kind="D2")]
            kw = dict(gauge="slope+unit-norm", relative_weights=True, rbar=lambda m: 8)
            base = [voronoi_loss(fit, true, **f, **kw) for f in forms]
            base_err = parameter_errors(fit, true, relative_weights=True,
                                        gauge="slope+unit-norm")
            for _ in range(3):
                moved = relabel_shift(fit, rng.permutation(k), rng.normal(0, 50, 2), 0.0,
                                      c=float(np.exp(rng.normal(0, 2))))
                for f, b in zip(forms, base):
                    assert voronoi_loss(moved, true, **f, **kw) == pytest.approx(b, rel=1e-9)
                got = parameter_errors(moved, true, relative_weights=True,
                                       gauge="slope+unit-norm")
                for name in ("gate_coef", "expert_coef", "expert_var", "weight"):
                    assert got[name] == pytest.approx(base_err[name], rel=1e-9, abs=1e-12)


def test_without_the_slope_freedom_only_t0_and_labels_are_free():
    """Activation gates: slope_gauge=False is the mass gauge (invariant to t_0 and labels)."""
    true, rng = truth_3(), np.random.default_rng(8)
    fit = random_fit(true, 4, rng)
    for f in (dict(kind="D2"), dict(kind="D2", learned_temperature=True)):
        base = voronoi_loss(fit, true, slope_gauge=False, **f)
        assert base == voronoi_loss(fit, true, gauge="mass", **f)
        moved = relabel_shift(fit, rng.permutation(4), [0.0, 0.0], 50.0)
        assert voronoi_loss(moved, true, slope_gauge=False, **f) == pytest.approx(base, rel=1e-9)
        # a slope shift is not a symmetry there, and the loss sees it
        shifted = relabel_shift(fit, np.arange(4), [1.0, -2.0], 0.0)
        assert voronoi_loss(shifted, true, slope_gauge=False, **f) > base + 0.1


def test_permuting_the_true_atoms_permutes_the_cells_only():
    true, rng = truth_3(), np.random.default_rng(9)
    fit = random_fit(true, 4, rng)
    order = [2, 0, 1]
    true_perm = {f: np.asarray(getattr(true, f))[order] for f in FIELDS}
    true_perm["temperature"] = true.temperature
    for f in FORMS:
        assert voronoi_loss(fit, true_perm, **f) == pytest.approx(voronoi_loss(fit, true, **f),
                                                                  rel=1e-12)
    a, b = cell_parameter_errors(fit, true), cell_parameter_errors(fit, true_perm)
    for name in ("size", "gate_coef", "weight"):
        np.testing.assert_allclose(b[name], a[name][order], rtol=1e-12)


# --------------------------------------------------- (c) the measured counterexample
def switch_reference(p):
    """The same density with the labels switched (k = 2) in the reference convention."""
    return MoEParams.with_reference_gate(p.gate_coef[::-1], p.gate_intercept[::-1],
                                         p.expert_coef[::-1], p.expert_intercept[::-1],
                                         p.expert_var[::-1], p.temperature)


def check_switched(fit, true, X):
    switched = switch_reference(fit)
    gate = SoftmaxGate()
    assert density_error(switched, fit, gate, gate, X) < 1e-7  # same density
    small = d1_loss(fit, true)
    assert small < 0.5
    assert d1_loss(switched, true) == pytest.approx(small, rel=1e-9)
    assert parameter_errors(switched, true)["gate_coef"] == pytest.approx(
        parameter_errors(fit, true)["gate_coef"], rel=1e-9)
    # the old gauges: e^{8} weights and raw slopes 25 off
    assert d1_loss(switched, true, gauge="reference") > 1e4
    assert d1_loss(switched, true, gauge="mass") > 20
    assert d1_loss(fit, true, gauge="reference") == pytest.approx(small, rel=0.05)


def test_switched_labels_counterexample_by_hand():
    true = dnh_truth()
    fit = true.replace(gate_coef=[[25.6], [0.0]], gate_intercept=[-8.2, 0.0],
                       expert_coef=[[-19.98], [20.1]], expert_intercept=[15.01, -5.02],
                       expert_var=[0.085, 0.17])
    X = np.linspace(0, 1, 200)[:, None]
    check_switched(fit, true, X)


def test_switched_labels_counterexample_fitted():
    setup = moestats.get_setup("softmax-exact").truth
    rng = np.random.default_rng(0)
    X = setup.x_law.sample(2000, rng)
    y, _ = sample_conditional(setup.gate, setup.params, X, rng)
    fit = moestats.GaussianMoE(2, random_state=0).fit(X, y).params_
    check_switched(fit, setup.params, X[:300])


# --------------------------------------------------------------- the alignment
def test_alignment_recovers_the_shift_and_is_a_fixed_point():
    true = truth_3()
    fit = reparametrise(true, [2, 0, 1, 1], [1.0, 1.0, 0.5, 0.5], [3, 1, 0, 2],
                        [40.0, -70.0], 12.0)
    al = align_to_truth(fit, true)
    np.testing.assert_allclose(al.slope_shift, [-40.0, 70.0], atol=1e-12)
    assert al.log_mass_shift == pytest.approx(-12.0, abs=1e-12)
    assert al.fixed_point and al.reference == 2 and al.gauge == "slope"
    rng = np.random.default_rng(11)
    for k in (3, 4, 5):
        fit = random_fit(true, k, rng, scale=0.5)
        al = align_to_truth(fit, true)
        assert al.fixed_point
        # the fitted atoms of the reference's cell carry the reference's slope
        cell = al.cells[al.reference]
        w = np.exp(fit["gate_intercept"][cell])
        mean = (w / w.sum()) @ (fit["gate_coef"][cell] + al.slope_shift)
        np.testing.assert_allclose(mean, true.gate_coef[al.reference], atol=1e-12)
        # and the cells are the Voronoi cells of the shifted fit
        shifted = dict(fit, gate_coef=fit["gate_coef"] + al.slope_shift)
        raw = voronoi_cells(shifted, true, gauge="reference")
        assert [c.tolist() for c in raw] == [c.tolist() for c in al.cells]


def test_unit_norm_alignment_normalises_the_relative_slopes():
    true = truth_top1()
    al = align_to_truth(reparametrise(true, [0, 1, 2], [1, 1, 1], [0, 1, 2], [3.0, 4.0], 0.0,
                                      c=5.0), true, gauge="slope+unit-norm")
    u = true.gate_coef / np.sqrt(np.sum(true.gate_coef ** 2))  # reference slope is 0
    np.testing.assert_allclose(al.true_blocks["gate_coef"], u, atol=1e-15)
    np.testing.assert_allclose(al.fit_blocks["gate_coef"], u, atol=1e-12)
    assert al.slope_scale == pytest.approx(5.0 * np.sqrt(np.sum(true.gate_coef ** 2)))
    with pytest.raises(ValueError, match="not all equal"):
        align_to_truth(true, true.replace(gate_coef=np.zeros((3, 2))), gauge="slope+unit-norm")


def test_empty_reference_cell_is_penalised_not_fatal():
    true = dnh_truth()
    # one fitted atom equal to the non-reference expert: the reference cell stays empty
    fit = {"gate_coef": [[3.0]], "gate_intercept": [0.0], "expert_coef": [[-20.0]],
           "expert_intercept": [15.0], "expert_var": [0.09]}
    cells = voronoi_cells(fit, true)
    assert cells[1].size == 0 and cells[0].tolist() == [0]
    # no reference atom: t_1 aligns the matched atom (slope 3 -> 25); the atom carries
    # the true total mass e^{-8} + 1, so D1 = |e^{-8} + 1 - e^{-8}| + |0 - 1| (empty cell)
    assert d1_loss(fit, true) == pytest.approx(2.0, rel=1e-12)
    assert parameter_errors(fit, true)["gate_coef"] == pytest.approx(0.0, abs=1e-12)
    assert align_to_truth(fit, true).slope_shift == pytest.approx([22.0])


# ------------------------------------------------------------- per-cell errors
@pytest.mark.parametrize("gauge", ["slope", "mass", "reference", "intercept"])
@pytest.mark.parametrize("mode", [False, True, "ratio"])
def test_parameter_errors_are_the_max_over_cells(gauge, mode):
    true, rng = truth_3(), np.random.default_rng(12)
    for k in (2, 3, 4):
        fit = random_fit(true, k, rng)
        cells = cell_parameter_errors(fit, true, learned_temperature=mode, gauge=gauge)
        errs = parameter_errors(fit, true, learned_temperature=mode, gauge=gauge)
        assert cells["gauge"] == gauge
        assert cells["size"].sum() == k and errs["cell_sizes"].tolist() == cells["size"].tolist()
        names = [n for n in cells if n not in ("size", "gauge")]
        assert set(names) == {n for n, v in errs.items() if isinstance(v, float)}
        for name in names:
            assert errs[name] == np.nanmax(cells[name]), name
        empty = cells["size"] == 0
        assert np.all(np.isnan(cells["gate_coef"][empty]))
        if mode is not False:
            assert {"temperature", "gate_slope_over_temperature"} <= set(names)


def test_cell_errors_hand_values_in_the_slope_gauge():
    true = dnh_truth()
    # labels switched, slopes shifted by -25 and the reference cell's slope off by 0.5
    fit = {"gate_coef": [[-24.5], [0.0]], "gate_intercept": [8.0, 0.0],
           "expert_coef": [[20.0], [-20.0]], "expert_intercept": [-5.0, 15.1],
           "expert_var": [0.16, 0.09]}
    errs = cell_parameter_errors(fit, true)
    # t_1 = 24.5 puts the reference's cell {0} on slope 0; atom 1 lands on 24.5 (0.5 off)
    np.testing.assert_allclose(errs["gate_coef"], [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(errs["expert_intercept"], [0.1, 0.0], atol=1e-12)
    assert errs["size"].tolist() == [1, 1]
    np.testing.assert_allclose(errs["weight"], [0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------- gauge names
def test_loss_gauge_names():
    assert loss_gauge() == "slope" and GAUGES[0] == "slope"
    assert loss_gauge("slope", slope_gauge=False) == "mass"
    for g in ("reference", "intercept", "mass", "slope+unit-norm"):
        assert loss_gauge(g) == g
    with pytest.raises(ValueError, match="slope_gauge"):
        loss_gauge("slope+unit-norm", slope_gauge=False)
    with pytest.raises(ValueError, match="gauge must be one of"):
        loss_gauge("free")
    with pytest.raises(ValueError, match="reference"):
        d1_loss(dnh_truth(), dnh_truth(), reference=5)


def test_task_losses_name_the_gauge_and_give_cell_columns():
    from moestats.simulation.task import _cell_columns, _gauge_options, _losses

    topk = moestats.get_setup("topk-exact")
    act = moestats.get_setup("activation")
    soft = moestats.get_setup("softmax-exact")
    assert _gauge_options(topk.truth.gate, topk.fitted[0].gate) == ("slope+unit-norm", True)
    assert _gauge_options(act.truth.gate, act.fitted[0].gate) == ("slope", False)
    assert _gauge_options(soft.truth.gate, soft.fitted[0].gate) == ("slope", True)
    for setup, name in ((topk, "slope+unit-norm"), (act, "mass"), (soft, "slope")):
        config = setup.fitted[0]
        truth = setup.truth
        fitted = truth.params.replace(expert_intercept=truth.params.expert_intercept + 0.1)
        gate = config.gate
        main, losses, errors = _losses(config, truth, fitted, gate, None)
        assert errors["loss_gauge"] == name
        cols = _cell_columns(errors)
        assert cols["cell0_size"] == 1 and cols["cell1_size"] == 1
        assert cols["cell0_expert_intercept"] == pytest.approx(0.1)
        assert max(cols["cell0_weight"], cols["cell1_weight"]) == pytest.approx(
            errors["weight"])


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_reflected_two_expert_activation_fit_scores_zero(activation):
    """Swapping the reference of a two-expert tanh/sigmoid gate (beta_1 -> -beta_1,
    beta_0 -> -beta_0 [- 1/tau]) is the same density: the sweeps' losses are zero there."""
    from moestats import ActivationGate, get_setup
    from moestats.likelihood import log_likelihood
    from moestats.losses import equivalent_parametrisations, voronoi_loss
    from moestats.simulation.spec import spec_from_setup
    from moestats.simulation.task import _losses

    setup = get_setup("activation" if activation == "tanh" else "activation-sigmoid")
    truth = setup.truth
    gate = ActivationGate(activation, truth.params.temperature, learn_temperature=True)
    same = equivalent_parametrisations(gate, truth.params)
    assert len(same) == 2
    X, y = truth.sample(2000, np.random.default_rng(0))
    assert log_likelihood(gate, same[1], X, y) == pytest.approx(
        log_likelihood(gate, truth.params, X, y), rel=1e-12)
    assert voronoi_loss(same[1], truth.params, "auto", learned_temperature=True,
                        gauge="mass", slope_gauge=False) > 1.0   # the raw loss sees a swap
    config = spec_from_setup(setup.id).fitted_configs()[0]
    main, losses, _ = _losses(config, truth, same[1], gate, None)
    assert main == pytest.approx(0.0, abs=1e-12) and losses["voronoi"] == pytest.approx(0.0, abs=1e-12)


def test_gelu_and_three_experts_have_no_reflection():
    from moestats import ActivationGate, get_setup
    from moestats.losses import equivalent_parametrisations
    params = get_setup("activation-gelu").truth.params
    assert len(equivalent_parametrisations(ActivationGate("gelu"), params)) == 1
    three = get_setup("softmax-d2-exact").truth.params
    assert len(equivalent_parametrisations(ActivationGate("tanh"), three)) == 1


# ----------------------------------------------- the theory's weighted cell form
def test_weighted_cell_errors_hand_values_and_bounds():
    true = truth_3()
    # true atom 0 split 0.25 / 0.75, the light copy far off in a and nu, the heavy one close
    fit = reparametrise(true, [0, 0, 1, 2], [0.25, 0.75, 1.0, 1.0], [0, 1, 2, 3], 0.0, 0.0)
    fit["expert_coef"] = fit["expert_coef"] + np.array([[0.4, 0.0], [0.0, 0.1], [0, 0], [0, 0]])
    fit["expert_var"] = fit["expert_var"] + np.array([0.3, 0.01, 0.02, 0.0])
    fit["expert_intercept"] = fit["expert_intercept"] + np.array([0.2, -0.1, 0.0, 0.05])
    mx = cell_parameter_errors(fit, true)
    w = cell_parameter_errors(fit, true, weighted=True)
    assert mx["size"].tolist() == w["size"].tolist() == [2, 1, 1]
    # rbar(2) = 4: p = 2 for a and nu, p = 4 for b (and beta_1)
    np.testing.assert_allclose(w["expert_coef"][0], (0.25 * 0.4 ** 2 + 0.75 * 0.1 ** 2) ** .5)
    np.testing.assert_allclose(w["expert_var"][0], (0.25 * 0.3 ** 2 + 0.75 * 0.01 ** 2) ** .5)
    np.testing.assert_allclose(w["expert_intercept"][0],
                               (0.25 * 0.2 ** 4 + 0.75 * 0.1 ** 4) ** .25)
    np.testing.assert_allclose(mx["expert_coef"][0], 0.4)
    for block in ("gate_coef", "expert_coef", "expert_intercept", "expert_var"):
        # singletons: the same error; doubled cells: never above the max form
        np.testing.assert_allclose(w[block][1:], mx[block][1:], rtol=1e-12, atol=1e-15)
        assert w[block][0] <= mx[block][0] + 1e-15
    np.testing.assert_array_equal(w["weight"], mx["weight"])  # weight sums: one form


def test_weighted_cell_errors_zero_at_the_truth_invariant_and_nan_beyond_three_atoms():
    true = truth_3()
    for rows, fractions in SPLITS:
        fit = reparametrise(true, rows, fractions, np.arange(len(rows))[::-1], [3.0, -1.0], 2.0)
        w = cell_parameter_errors(fit, true, weighted=True)
        for block in ("gate_coef", "expert_coef", "expert_intercept", "expert_var"):
            np.testing.assert_allclose(w[block], 0.0, atol=1e-9)
    rng = np.random.default_rng(5)
    fit = random_fit(true, 5, rng)
    base = cell_parameter_errors(fit, true, weighted=True)
    for _ in range(3):
        moved = relabel_shift(fit, rng.permutation(5), rng.normal(0, 50, 2), rng.normal(0, 50))
        got = cell_parameter_errors(moved, true, weighted=True)
        for block in ("gate_coef", "expert_coef", "expert_intercept", "expert_var"):
            np.testing.assert_allclose(got[block], base[block], rtol=1e-9, atol=1e-12)
    four = reparametrise(true, [0, 0, 0, 0, 1, 2], [0.1, 0.2, 0.3, 0.4, 1.0, 1.0],
                         np.arange(6), 0.0, 0.0)
    w = cell_parameter_errors(four, true, weighted=True)
    assert w["size"][0] == 4 and np.isnan(w["expert_coef"][0]) and w["expert_coef"][1] == 0
