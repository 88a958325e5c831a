"""Choosing k: identifiable df, AIC/BIC/ICL, the dendrogram selection criterion (DSC)."""

import warnings

import numpy as np
import pytest

from moestats import (ActivationGate, GaussianMoE, MoEParams, SoftmaxGate, TemperatureGate,
                      TemperatureIdentifiabilityWarning, TopKGate, get_setup)
from moestats.likelihood import log_likelihood
from moestats.selection import (Atom, build_dendrogram, information_criteria,
                                merge_dissimilarity, n_identifiable_params, select_n_experts)


@pytest.fixture(scope="module")
def exact_data():
    return get_setup("softmax-exact").truth.sample(2000, np.random.default_rng(7))


def _split(params, j, share=0.5):
    """The same density with atom j split into two identical atoms (masses share, 1-share)."""
    rows = list(range(params.n_experts))
    order = rows[:j] + [j] + rows[j:]
    b0 = params.gate_intercept[order].copy()
    b0[j] += np.log(share)
    b0[j + 1] += np.log1p(-share)
    return MoEParams.with_reference_gate(params.gate_coef[order], b0,
                                         params.expert_coef[order],
                                         params.expert_intercept[order],
                                         params.expert_var[order], params.temperature)


# ----------------------------------------------------------------------------- df
@pytest.mark.parametrize("gate, k, d, expected", [
    (SoftmaxGate(), 3, 2, 2 * 2 + 2 + 3 * 4),
    (SoftmaxGate(), 1, 3, 5),
    (TopKGate(2), 3, 2, 2 * 2 + 2 + 3 * 4),
    (TopKGate(1), 3, 2, 2 * 2 - 1 + 3 * 4),             # no intercepts, no slope scale
    (TopKGate(1), 2, 1, 0 + 2 * 3),                     # only the sign of beta_11
    (TemperatureGate(0.5), 3, 2, 2 * 2 + 2 + 3 * 4),     # fixed tau
    (TemperatureGate(1.0, learn_temperature=True), 3, 2, 2 * 2 + 2 + 3 * 4),  # tau not counted
    (ActivationGate("tanh", learn_temperature=True), 3, 2, 2 * 2 + 2 + 1 + 3 * 4),
    (ActivationGate("tanh", learn_temperature=True), 1, 2, 4),   # k = 1: no gate at all
])
def test_df_counts_identifiable_parameters(gate, k, d, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert n_identifiable_params(gate, k, d) == expected


def test_df_equals_free_parameters_of_softmax():
    est = GaussianMoE(3)
    assert n_identifiable_params(SoftmaxGate(), 3, 2) == est.n_free_parameters(2)


# ------------------------------------------------------------- information criteria
def test_information_criteria_definitions(exact_data):
    X, y = exact_data
    truth = get_setup("softmax-exact").truth
    ic = information_criteria(truth.gate, truth.params, X, y)
    ll = log_likelihood(truth.gate, truth.params, X, y)
    n, df = len(y), 8
    assert ic["df"] == df
    assert np.isclose(ic["log_likelihood"], ll)
    assert np.isclose(ic["AIC"], -2 * ll + 2 * df)
    assert np.isclose(ic["BIC"], -2 * ll + df * np.log(n))
    assert ic["entropy"] > 0
    assert np.isclose(ic["ICL"], ic["BIC"] + 2 * ic["entropy"])


def test_bic_selects_true_k_and_icl_ge_bic(exact_data):
    X, y = exact_data
    res = select_n_experts(X, y, range(1, 5), criterion="bic", n_init=5, random_state=0)
    t = res.table
    assert list(t["k"]) == [1, 2, 3, 4]
    assert list(t.columns) == ["k", "log_likelihood", "df", "AIC", "BIC", "ICL", "entropy",
                               "converged"]
    assert res.best_n_experts == 2
    assert res.best_estimator_ is res.estimators_[2]
    assert res.best_estimator_.n_experts == 2
    assert (t["ICL"] >= t["BIC"]).all()
    assert list(t["df"]) == [3, 8, 13, 18]
    assert t["converged"].all()
    # the DSC, read off the k = 4 fit, is there too
    assert res.dendrogram_ is not None and res.dendrogram_.n_leaves == 4
    # ICL and AIC from the same table
    res_icl = select_n_experts(X, y, [1, 2], criterion="icl", n_init=5, random_state=0)
    assert res_icl.best_n_experts == 2


def test_k1_is_a_linear_regression(exact_data):
    X, y = exact_data
    est = GaussianMoE(1, n_init=1, random_state=0).fit(X, y)
    A = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    var = np.mean((y - A @ coef) ** 2)
    ll = -0.5 * len(y) * (np.log(2 * np.pi * var) + 1)
    assert np.isclose(est.log_likelihood_, ll, rtol=1e-8)
    assert np.allclose(est.expert_coef_.ravel(), coef[:-1], rtol=1e-6)


# ------------------------------------------------------------------------ dendrogram
def test_dsc_merges_identical_atoms_first_without_changing_the_likelihood(exact_data):
    X, y = exact_data
    truth = get_setup("softmax-exact").truth
    split = _split(truth.params, 0, share=0.3)
    dend = build_dendrogram(split, X, y, gate=SoftmaxGate())
    assert dend.level(3).height == 0.0
    assert tuple(dend.linkage[0, :2]) == (0, 1)
    assert dend.table()["merged"][0] == ((0,), (1,))
    assert np.isclose(dend.level(2).log_likelihood, dend.level(3).log_likelihood,
                      rtol=0, atol=1e-8)
    assert np.isclose(dend.level(2).log_likelihood, log_likelihood(truth.gate, truth.params,
                                                                   X, y), rtol=0, atol=1e-8)
    assert dend.level(2).params.allclose(truth.params, atol=1e-10)
    assert dend.best_n_experts() == 2


def test_dendrogram_heights_and_dic_follow_their_definitions():
    truth = get_setup("softmax-d2-exact").truth
    X, y = truth.sample(1500, np.random.default_rng(3))
    est = GaussianMoE(5, n_init=3, random_state=0).fit(X, y)
    dend = build_dendrogram(est, X, y)
    n = len(y)
    assert [lv.n_experts for lv in dend.levels] == [5, 4, 3, 2, 1]
    assert np.isclose(dend.levels[0].log_likelihood, est.log_likelihood_)
    nodes = {j: (j,) for j in range(5)}
    for r, lv in enumerate(dend.levels[:-1]):
        # h_k is the smallest dissimilarity among the atoms of level k
        from moestats.selection.dendrogram import _leaf_atoms
        atoms = _leaf_atoms(SoftmaxGate(), lv.params, np.zeros(2))
        atoms = [Atom(a.mass, a.gate_slope, a.expert_coef, a.expert_intercept, a.expert_var,
                      a.leaves, a.node) for a in atoms]
        d = [merge_dissimilarity(a, b) for i, a in enumerate(atoms) for b in atoms[i + 1:]]
        assert np.isclose(lv.height, min(d), rtol=1e-10, atol=0)
        assert lv.height == dend.linkage[r, 2]
        assert np.isclose(lv.dic, -(lv.height + np.log(n) * lv.log_likelihood / n))
        assert np.isclose(lv.log_likelihood, log_likelihood(SoftmaxGate(), lv.params, X, y))
        a, b = map(int, dend.linkage[r, :2])
        nodes[5 + r] = tuple(sorted(nodes[a] + nodes[b]))
        assert dend.linkage[r, 3] == len(nodes[5 + r])
    assert np.isnan(dend.levels[-1].height) and np.isnan(dend.levels[-1].dic)
    assert dend.best_n_experts() == 3
    # level masses always sum to one and leaves are partitioned
    for lv in dend.levels:
        assert sorted(sum(lv.members, ())) == list(range(5))


def test_dendrogram_is_invariant_to_gauge_and_labels():
    truth = get_setup("softmax-d2-exact").truth
    X, y = truth.sample(800, np.random.default_rng(5))
    p = _split(_split(truth.params, 1, 0.4), 0, 0.7)
    p = p.replace(expert_intercept=p.expert_intercept + [0.0, 0.05, 0.0, 0.1, 0.0])
    order = [3, 0, 4, 2, 1]          # relabel and change the reference expert
    q = MoEParams.with_reference_gate(p.gate_coef[order] + [0.3, -2.0],   # and a t_1 shift
                                      p.gate_intercept[order] + 1.7, p.expert_coef[order],
                                      p.expert_intercept[order], p.expert_var[order])
    assert np.isclose(log_likelihood(SoftmaxGate(), p, X, y),
                      log_likelihood(SoftmaxGate(), q, X, y))
    d1 = build_dendrogram(p, X, y, gate=SoftmaxGate())
    d2 = build_dendrogram(q, X, y, gate=SoftmaxGate())
    for a, b in zip(d1.levels, d2.levels):
        assert np.isclose(a.log_likelihood, b.log_likelihood, rtol=1e-10)
        assert (np.isnan(a.height) and np.isnan(b.height)) or np.isclose(a.height, b.height)
    assert sorted(tuple(sorted(m)) for m in d1.levels[2].members) == sorted(
        tuple(sorted(order[i] for i in m)) for m in d2.levels[2].members)


def test_temperature_gate_merges_on_slope_over_temperature():
    truth = get_setup("softmax-exact").truth
    X, y = truth.sample(500, np.random.default_rng(1))
    p = _split(truth.params, 1, 0.5).replace(expert_intercept=[15.0, -5.0, -4.8])
    tau = 0.5
    pt = p.replace(gate_coef=p.gate_coef * tau, temperature=tau)
    d_soft = build_dendrogram(p, X, y, gate=SoftmaxGate())
    d_temp = build_dendrogram(pt, X, y, gate=TemperatureGate(tau))
    assert np.allclose(d_soft.linkage, d_temp.linkage)
    assert np.allclose([lv.log_likelihood for lv in d_soft.levels],
                       [lv.log_likelihood for lv in d_temp.levels])
    assert d_temp.level(2).params.temperature == tau


def test_dissimilarity_forms_and_the_reference_code_defect():
    base = dict(expert_coef=np.array([1.0]), expert_intercept=0.0, expert_var=1.0)
    a = Atom(0.5, np.array([0.0]), leaves=(0,), node=0, **base)
    b = Atom(0.5, np.array([3.0]), leaves=(1,), node=1, **base)      # gate slope only
    # the reference code computes the gate-slope difference and then leaves it out:
    # this pair would be at distance 0 there; here 0.25 * 3 ** 2
    assert merge_dissimilarity(a, b) == pytest.approx(0.25 * 9.0)
    assert merge_dissimilarity(a, b, "spec") == pytest.approx(0.25 * 9.0)
    c = Atom(0.5, np.array([0.0]), np.array([4.0]), 2.0, 5.0, (2,), 2)  # da 3, db 2, dnu 4
    # grouped: (beta_1, b) squared, (a, nu) as a norm; spec: (beta_1, a, b) squared, |nu|
    assert merge_dissimilarity(a, c) == pytest.approx(0.25 * (4.0 + 5.0))
    assert merge_dissimilarity(a, c, "spec") == pytest.approx(0.25 * (9.0 + 4.0 + 4.0))
    assert merge_dissimilarity(a, c, lambda u, v: 7.0) == 7.0


def test_select_dsc_end_to_end():
    X, y = get_setup("softmax-d2-exact").truth.sample(1500, np.random.default_rng(3))
    res = select_n_experts(X, y, range(1, 6), criterion="dsc", n_init=3, random_state=0)
    assert list(res.estimators_) == [5]
    assert res.best_n_experts == 3
    assert list(res.table["k"]) == [5, 4, 3, 2, 1]
    assert {"height", "log_likelihood", "DIC", "df", "merged"} <= set(res.table.columns)
    est = res.best_estimator_
    assert est.n_experts == 3 and est.converged_
    assert est.log_likelihood_ >= res.dendrogram_.level(3).log_likelihood - 1e-6
    # the same K fit as for the information criteria (one seed per k)
    res_bic = select_n_experts(X, y, [5], criterion="bic", n_init=3, random_state=0)
    assert res_bic.estimators_[5].params_ == res.estimators_[5].params_
    no_refit = select_n_experts(X, y, [3, 4, 5], criterion="dsc", n_init=3, random_state=0,
                                refit=False)
    assert no_refit.best_estimator_ is None and no_refit.best_n_experts == 3
    only_k4 = select_n_experts(X, y, [2, 4, 5], criterion="dsc", n_init=3, random_state=0,
                               refit=False)
    assert only_k4.best_n_experts in (2, 4)      # candidates restrict the levels


def test_n_jobs_and_seed_give_identical_results():
    X, y = get_setup("softmax-exact").truth.sample(300, np.random.default_rng(2))
    kw = dict(n_init=2, random_state=11, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r1 = select_n_experts(X, y, range(1, 4), n_jobs=1, **kw)
        r2 = select_n_experts(X, y, range(1, 4), n_jobs=2, **kw)
        r3 = select_n_experts(X, y, [3], n_jobs=1, **kw)
    assert r1.table.equals(r2.table)
    for k in (1, 2, 3):
        assert r1.estimators_[k].params_ == r2.estimators_[k].params_
    assert r3.estimators_[3].params_ == r1.estimators_[3].params_
    assert np.array_equal(r1.dendrogram_.linkage, r2.dendrogram_.linkage)


def test_warnings_are_reissued_once_naming_the_k():
    X, y = get_setup("softmax-exact").truth.sample(300, np.random.default_rng(2))
    with pytest.warns(TemperatureIdentifiabilityWarning, match=r"n_experts = 1, 2: learning"):
        res = select_n_experts(X, y, [1, 2], gate=TemperatureGate(learn_temperature=True),
                               n_init=2, random_state=0)
    assert list(res.table["df"]) == [3, 8]       # tau not counted


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_experts=[]), r"n_experts is empty"),
    (dict(n_experts=range(1, 1)), r"n_experts is empty"),
    (dict(n_experts=[0, 2]), r"got 0"),
    (dict(n_experts=[2.5]), r"got 2.5"),
    (dict(criterion="waic"), r"criterion must be one of .*got 'waic'"),
    (dict(criterion=None), r"got None"),
    (dict(criterion="dsc", gate=TopKGate(2)), r"softmax-type gates.*TopKGate"),
    (dict(criterion="dsc", n_experts=[1]), r"max\(n_experts\) >= 2"),
    (dict(dissimilarity="ward"), r"got 'ward'"),
    (dict(n_components=3), r"unknown GaussianMoE option 'n_components'"),
    (dict(warm_start=True), r"'warm_start' is set by select_n_experts"),
    (dict(random_state="seed"), r"random_state must be .*got 'seed'"),
])
def test_bad_input_names_the_value(kwargs, match):
    X, y = get_setup("softmax-exact").truth.sample(50, np.random.default_rng(0))
    kwargs = {"n_experts": [1, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        select_n_experts(X, y, **kwargs)


def test_build_dendrogram_bad_input():
    truth = get_setup("softmax-exact").truth
    X, y = truth.sample(50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs gate="):
        build_dendrogram(truth.params, X, y)
    with pytest.raises(ValueError, match="softmax-type gates"):
        build_dendrogram(truth.params, X, y, gate=TopKGate(1))
    with pytest.raises(ValueError, match=r"X must have shape \(n, 1\)"):
        build_dendrogram(truth.params, np.c_[X, X], y, gate=SoftmaxGate())
    with pytest.raises(ValueError, match="origin must be"):
        build_dendrogram(truth.params, X, y, gate=SoftmaxGate(), origin=[0.0, 1.0])


def test_origin_mean_reads_masses_at_the_centre():
    truth = get_setup("softmax-exact").truth
    X, y = truth.sample(400, np.random.default_rng(4))
    split = _split(truth.params, 0, 0.5)
    d0 = build_dendrogram(split, X, y, gate=SoftmaxGate())
    dm = build_dendrogram(split, X, y, gate=SoftmaxGate(), origin="mean")
    # expert 0 (slope 25, intercept -8) is rare at x = 0 and common at the mean of x
    assert d0.leaf_masses[0] < 1e-3 < 0.4 < dm.leaf_masses[0]
    assert np.isclose(dm.level(2).log_likelihood, d0.level(2).log_likelihood)
    assert dm.level(2).params.allclose(truth.params, atol=1e-10)


# ------------------------------------------------------------------------------ plot
def test_plot_dendrogram(exact_data):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from moestats.plotting.dendrogram import plot_dendrogram

    truth = get_setup("softmax-d2-exact").truth
    X, y = truth.sample(600, np.random.default_rng(0))
    p = _split(_split(truth.params, 2, 0.5), 0, 0.5)
    p = p.replace(expert_intercept=p.expert_intercept + [0.0, 0.1, 0.0, 0.0, 0.2])
    dend = build_dendrogram(p, X, y, gate=SoftmaxGate())
    ax = plot_dendrogram(dend)
    assert isinstance(ax, Axes)
    assert len(ax.lines) >= dend.n_leaves - 1
    assert "k = 3" in ax.get_legend().get_texts()[0].get_text()
    fig = Figure()
    ax2 = fig.add_subplot()
    assert plot_dendrogram(dend, ax=ax2, log=True, leaf_labels=list("abcde")) is ax2
    assert ax2.get_yscale() == "log"
    with pytest.raises(ValueError, match="needs a SelectionResult with a dendrogram"):
        plot_dendrogram(object())
    with pytest.raises(ValueError, match="leaf_labels needs 5 labels"):
        plot_dendrogram(dend, leaf_labels=["a"])


def test_dendrogram_survives_an_atom_with_underflowing_mass():
    """An unbounded over-specified fit can carry a gate intercept near -900, whose mass
    underflows to 0: the merged levels must still be valid models (regression)."""
    import warnings

    from moestats import get_setup
    X, y = get_setup("softmax-exact").truth.sample(1000, np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = select_n_experts(X, y, n_experts=[4], criterion="aic", n_init=5,
                                  random_state=0, backend="numpy")
    assert result.best_n_experts == 4
    assert np.all(np.isfinite(result.table["log_likelihood"]))
