"""Tests of the line search on a top-K gate's selection (experts held fixed)."""

import numpy as np
import pytest

from moestats import MoEParams
from moestats.backends.numpy_kernels import row_logsumexp
from moestats.gates import SoftmaxGate, TopKGate, top_k_mask
from moestats.solvers.selection_search import (_lex, _top1_step, selection_line_search,
                                               topk_log_likelihood)


def gaussian_log_density(X, y, expert_coef, expert_intercept, expert_var):
    mean = X @ expert_coef.T + expert_intercept
    return -0.5 * (np.log(2 * np.pi * expert_var) + (y[:, None] - mean) ** 2 / expert_var)


def sample_top1(rng, n, gate_coef, gate_intercept=None, selection="slope"):
    """Data from a top-1 truth with well separated experts; (X, log_expert) at the truth."""
    k, d = gate_coef.shape
    X = rng.uniform(-1, 1, size=(n, d))
    scores = X @ gate_coef.T
    if selection == "logit":
        scores = scores + gate_intercept
    chosen = np.argmax(top_k_mask(scores, 1), axis=1)
    expert_coef = rng.normal(size=(k, d))
    expert_intercept = 3.0 * np.arange(k) - 3.0
    expert_var = np.full(k, 0.5)
    mean = np.sum(X * expert_coef[chosen], axis=1) + expert_intercept[chosen]
    y = mean + np.sqrt(expert_var[chosen]) * rng.normal(size=n)
    return X, gaussian_log_density(X, y, expert_coef, expert_intercept, expert_var)


def rotate(coef, angle):
    c, s = np.cos(angle), np.sin(angle)
    return coef @ np.array([[c, -s], [s, c]]).T


TRUTHS = {
    (1, 2): np.array([[2.0], [0.0]]),
    (1, 3): np.array([[2.0], [-1.5], [0.0]]),
    (2, 2): np.array([[1.5, 1.0], [0.0, 0.0]]),
    (2, 3): np.array([[2.0, 0.5], [-0.5, 2.0], [0.0, 0.0]]),
}


def misplaced_start(truth):
    k, d = truth.shape
    if d == 2:
        start = rotate(truth, 0.6)
    elif k == 2:
        start = -truth
    else:
        start = truth[[1, 0, 2]]
    start[-1] = 0
    return start


@pytest.mark.parametrize("d,k", sorted(TRUTHS))
def test_top1_reaches_the_true_partition(d, k):
    rng = np.random.default_rng(d * 10 + k)
    truth = TRUTHS[(d, k)]
    X, log_expert = sample_top1(rng, 1500, truth)
    gate, zero = TopKGate(1), np.zeros(k)
    start = misplaced_start(truth)
    L_truth = topk_log_likelihood(gate, X, log_expert, truth, zero)
    L_start = topk_log_likelihood(gate, X, log_expert, start, zero)
    coef, intercept, gain, n_passes = selection_line_search(gate, X, log_expert, start, zero)
    L_end = topk_log_likelihood(gate, X, log_expert, coef, intercept)
    assert L_start < L_truth - 10  # the start misroutes samples
    assert L_end > L_start
    assert L_end >= L_truth - 1e-9
    assert gain == pytest.approx(L_end - L_start, rel=1e-10, abs=1e-8)
    assert np.all(coef[-1] == 0) and np.all(intercept == 0) and np.all(np.isfinite(coef))
    assert n_passes >= 1


def brute_force_line_max(gate, X, log_expert, coef, intercept, j, e):
    """max over t of L(coef + t e on row j): L at the midpoints of all pairwise crossings."""
    f = X @ e
    z = X @ coef.T
    crossings = [(z[:, l] - z[:, j])[f != 0] / f[f != 0] for l in range(len(coef)) if l != j]
    u = np.unique(np.concatenate(crossings))
    ts = np.concatenate([[u[0] - 1.0], 0.5 * (u[:-1] + u[1:]), [u[-1] + 1.0], [0.0]])
    values = []
    for t in ts:
        c = coef.copy()
        c[j] += t * e
        values.append(topk_log_likelihood(gate, X, log_expert, c, intercept))
    return max(values)


@pytest.mark.parametrize("seed", range(4))
def test_top1_line_is_exact(seed):
    rng = np.random.default_rng(100 + seed)
    truth = TRUTHS[(2, 3)]
    X, log_expert = sample_top1(rng, 200, truth)
    X[:20] = np.round(X[:20], 1)  # some repeated breakpoints
    gate, zero = TopKGate(1), np.zeros(3)
    coef = truth + rng.normal(scale=1.0, size=truth.shape)
    coef[-1] = 0
    sel = X @ coef.T
    key0 = topk_log_likelihood(gate, X, log_expert, coef, zero)
    lex0 = _lex(log_expert[np.arange(200), np.argmax(top_k_mask(sel, 1), axis=1)]).sum(axis=0)
    for j in range(2):
        for a in range(2):
            e = np.eye(2)[a]
            t, _ = _top1_step(sel, log_expert, j, X @ e, lex0, 0.0)
            c = coef.copy()
            if t is not None:
                c[j] += t * e
            found = topk_log_likelihood(gate, X, log_expert, c, zero)
            best = brute_force_line_max(gate, X, log_expert, coef, zero, j, e)
            assert found == pytest.approx(best, abs=1e-9)
            assert found >= key0 - 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_one_line_public_api_equals_brute_force(seed):
    # d = 1, k = 2, slope selection: the only line is beta_10
    rng = np.random.default_rng(200 + seed)
    X, log_expert = sample_top1(rng, 200, np.array([[1.5], [0.0]]))
    gate, zero, start = TopKGate(1), np.zeros(2), np.array([[rng.normal()], [0.0]])
    best = brute_force_line_max(gate, X, log_expert, start, zero, 0, np.ones(1))
    c, b, gain, _ = selection_line_search(gate, X, log_expert, start, zero, max_sweeps=1,
                                          min_gain=0.0)
    assert topk_log_likelihood(gate, X, log_expert, c, b) == pytest.approx(best, abs=1e-9)


def test_logit_first_line_reaches_the_brute_force_maximum():
    rng = np.random.default_rng(7)
    X, log_expert = sample_top1(rng, 200, np.array([[1.0], [0.0]]), np.array([0.4, 0.0]),
                                selection="logit")
    gate = TopKGate(1, selection="logit")
    coef, intercept = np.array([[1.0], [0.0]]), np.array([-0.5, 0.0])
    # the slope line is searched first, then the intercept line: at least the slope line's best
    best = brute_force_line_max(gate, X, log_expert, coef, intercept, 0, np.ones(1))
    c, b, gain, _ = selection_line_search(gate, X, log_expert, coef, intercept, max_sweeps=1,
                                          min_gain=0.0)
    assert topk_log_likelihood(gate, X, log_expert, c, b) >= best - 1e-9


def test_logit_selection_moves_the_intercepts():
    rng = np.random.default_rng(3)
    truth_coef, truth_intercept = np.array([[3.0], [0.0]]), np.array([-0.9, 0.0])  # x > 0.3
    X, log_expert = sample_top1(rng, 800, truth_coef, truth_intercept, selection="logit")
    gate = TopKGate(1, selection="logit")
    start_intercept = np.array([0.9, 0.0])  # boundary at x = -0.3
    L_truth = topk_log_likelihood(gate, X, log_expert, truth_coef, truth_intercept)
    L_start = topk_log_likelihood(gate, X, log_expert, truth_coef, start_intercept)
    coef, intercept, gain, _ = selection_line_search(gate, X, log_expert, truth_coef,
                                                     start_intercept)
    L_end = topk_log_likelihood(gate, X, log_expert, coef, intercept)
    assert L_end > L_start and L_end >= L_truth - 1e-9
    assert intercept[-1] == 0 and intercept[0] != start_intercept[0]
    boundary = -intercept[0] / coef[0, 0]
    assert abs(boundary - 0.3) < 0.05


KERNELS = ["numpy", "numba"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("selection", ["slope", "logit"])
def test_top2_of_3_never_decreases(selection, kernel):
    rng = np.random.default_rng(11)
    gate = TopKGate(2, selection=selection)
    for _ in range(3):
        n, d, k = 300, 2, 3
        X = rng.uniform(-1, 1, size=(n, d))
        log_expert = rng.normal(scale=2.0, size=(n, k))
        coef = rng.normal(size=(k, d))
        coef[-1] = 0
        intercept = np.append(rng.normal(size=k - 1), 0.0)
        previous = topk_log_likelihood(gate, X, log_expert, coef, intercept)
        for sweeps in (1, 2, 4):
            c, b, gain, n_passes = selection_line_search(
                gate, X, log_expert, coef, intercept, max_sweeps=sweeps, kernel=kernel)
            L = topk_log_likelihood(gate, X, log_expert, c, b)
            assert L >= previous - 1e-9
            assert gain >= 0
            assert L - topk_log_likelihood(gate, X, log_expert, coef, intercept) == \
                pytest.approx(gain, abs=1e-8)
            assert np.all(c[-1] == 0) and b[-1] == 0 and np.all(np.isfinite(c))
            previous = L
        if selection == "slope":
            assert np.all(b == intercept)


@pytest.mark.parametrize("kernel", KERNELS)
def test_top2_improves_a_misplaced_selection(kernel):
    rng = np.random.default_rng(5)
    gate = TopKGate(2)
    X = rng.uniform(-1, 1, size=(500, 2))
    truth = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [0.0, 0.0]])
    mask = top_k_mask(X @ truth.T, 2)
    log_expert = np.where(mask, 0.0, -8.0) + 0.1 * rng.normal(size=mask.shape)
    start = rotate(truth, 1.0)
    start[-1] = 0
    zero = np.zeros(4)
    L_start = topk_log_likelihood(gate, X, log_expert, start, zero)
    c, b, gain, _ = selection_line_search(gate, X, log_expert, start, zero, kernel=kernel)
    assert gain > 10 and topk_log_likelihood(gate, X, log_expert, c, b) > L_start + 10


@pytest.mark.parametrize("kernel", KERNELS)
def test_ties_duplicates_and_zero_features(kernel):
    rng = np.random.default_rng(2)
    X = np.repeat(np.round(rng.uniform(-1, 1, size=(40, 2)), 1), 5, axis=0)
    X[:, 1] = 0.0  # a feature that never moves anything
    X[:10] = 0.0  # all scores tie: the lower index wins
    X[10:15, 0] = 1e-310  # breakpoints that overflow
    log_expert = rng.normal(scale=3.0, size=(200, 3))
    for gate in (TopKGate(1), TopKGate(2), TopKGate(1, selection="logit")):
        coef = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 0.0]])  # rows 0 and 1 tie everywhere
        intercept = np.zeros(3)
        L0 = topk_log_likelihood(gate, X, log_expert, coef, intercept)
        c, b, gain, _ = selection_line_search(gate, X, log_expert, coef, intercept,
                                              kernel=kernel)
        L = topk_log_likelihood(gate, X, log_expert, c, b)
        assert np.all(np.isfinite(c)) and np.all(np.isfinite(b))
        assert L >= L0 and L - L0 == pytest.approx(gain, abs=1e-8)
        assert np.all(c[:, 1] == 0)  # the zero feature's coordinate never moves


def test_infinite_and_nan_log_densities():
    rng = np.random.default_rng(4)
    truth = TRUTHS[(2, 3)]
    X, log_expert = sample_top1(rng, 300, truth)
    gate, zero = TopKGate(1), np.zeros(3)
    start = misplaced_start(truth)
    routed = np.argmax(top_k_mask(X @ start.T, 1), axis=1)
    truth_routed = np.argmax(top_k_mask(X @ truth.T, 1), axis=1)
    wrong = np.flatnonzero(routed != truth_routed)[:5]
    log_expert[wrong, routed[wrong]] = -np.inf  # the start gives these samples density 0
    log_expert[0] = -np.inf  # a sample impossible under every expert
    log_expert[1, 2] = np.nan
    assert topk_log_likelihood(gate, X, log_expert, start, zero) == -np.inf
    L_truth = topk_log_likelihood(gate, X[1:], log_expert[1:], truth, zero)
    for directions in (None, 8):
        c, b, gain, _ = selection_line_search(gate, X, log_expert, start, zero,
                                              directions=directions, rng=0)
        assert gain == np.inf  # from density 0 (L = -inf) to positive for samples 1, 2, ...
        assert np.all(np.isfinite(c)) and np.all(np.isfinite(b))
        # apart from sample 0, every sample has a positive density at the end
        end = topk_log_likelihood(gate, X[1:], log_expert[1:], c, b)
        assert np.isfinite(end)
    # removing the -inf first can trap the coordinate moves in a local maximum; random
    # directions (rotations of the boundaries) get out of it here
    assert end >= L_truth - 1e-9
    # with sample 0 only (density 0 everywhere) nothing moves and nothing is NaN
    c0, b0, g0, _ = selection_line_search(gate, X[:1], log_expert[:1], start, zero)
    assert g0 == 0.0 and np.all(c0 == start)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("selection", ["slope", "logit"])
def test_top2_with_infinite_log_densities(selection, kernel):
    rng = np.random.default_rng(8)
    gate = TopKGate(2, selection=selection)
    X = rng.uniform(-1, 1, size=(200, 2))
    log_expert = rng.normal(scale=2.0, size=(200, 3))
    log_expert[rng.uniform(size=log_expert.shape) < 0.2] = -np.inf
    log_expert[:3] = -np.inf
    log_expert[3, 0] = np.nan
    coef = np.array([[1.0, -0.5], [-0.3, 0.8], [0.0, 0.0]])
    intercept = np.array([0.2, -0.1, 0.0])

    def n_zero_density(c, b):
        return sum(topk_log_likelihood(gate, X[i:i + 1], log_expert[i:i + 1], c, b) == -np.inf
                   for i in range(200))

    c, b, gain, _ = selection_line_search(gate, X, log_expert, coef, intercept, kernel=kernel)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(b))
    # L = -inf before and after, but fewer samples have density 0: an infinite gain
    assert gain == np.inf
    assert 3 <= n_zero_density(c, b) < n_zero_density(coef, intercept)


def test_random_directions_are_reproducible_and_monotone():
    rng = np.random.default_rng(9)
    truth = TRUTHS[(2, 3)]
    X, log_expert = sample_top1(rng, 600, truth)
    gate, zero = TopKGate(1), np.zeros(3)
    start = misplaced_start(truth)
    L_start = topk_log_likelihood(gate, X, log_expert, start, zero)
    a = selection_line_search(gate, X, log_expert, start, zero, directions=4, rng=1)
    b = selection_line_search(gate, X, log_expert, start, zero, directions=4, rng=1)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    fixed = rng.normal(size=(3, 2, 2))
    c = selection_line_search(gate, X, log_expert, start, zero, directions=fixed)
    for coef, intercept, gain, _ in (a, c):
        assert topk_log_likelihood(gate, X, log_expert, coef, intercept) >= L_start + gain - 1e-8


def test_topk_log_likelihood_matches_the_gate():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 2))
    log_expert = rng.normal(size=(50, 3))
    for gate in (TopKGate(1), TopKGate(2), TopKGate(2, selection="logit")):
        coef = rng.normal(size=(3, 2))
        coef[-1] = 0
        intercept = np.array([0.3, -0.2, 0.0])
        params = MoEParams(coef, intercept, np.zeros((3, 2)), np.zeros(3), np.ones(3))
        expected = row_logsumexp(gate.log_weights(params, X) + log_expert).sum()
        assert topk_log_likelihood(gate, X, log_expert, coef, intercept) == \
            pytest.approx(expected, rel=1e-12)


def test_all_experts_active_is_a_no_op():
    X, log_expert = np.ones((4, 1)), np.zeros((4, 2))
    coef, intercept, gain, n_passes = selection_line_search(
        TopKGate(2), X, log_expert, [[1.0], [0.0]], [0.0, 0.0])
    assert gain == 0.0 and n_passes == 0 and coef.tolist() == [[1.0], [0.0]]


@pytest.mark.parametrize("kwargs,match", [
    (dict(gate=SoftmaxGate()), "TopKGate"),
    (dict(gate=TopKGate(4)), "k_active"),
    (dict(X=np.zeros((5,))), "X"),
    (dict(log_expert=np.zeros((5, 2))), "log_expert"),
    (dict(gate_coef=np.zeros((3, 3))), "gate_coef"),
    (dict(gate_intercept=np.zeros(2)), "gate_intercept"),
    (dict(gate_coef=np.array([[np.nan, 0.0], [0, 0], [0, 0]])), "gate_coef"),
    (dict(directions=np.zeros((2, 3, 2))), "directions"),
    (dict(max_sweeps=-1), "max_sweeps"),
    (dict(min_gain=-1.0), "min_gain"),
    (dict(kernel="cuda"), "kernel"),
])
def test_bad_inputs(kwargs, match):
    args = dict(gate=TopKGate(1), X=np.zeros((5, 2)), log_expert=np.zeros((5, 3)),
                gate_coef=np.zeros((3, 2)), gate_intercept=np.zeros(3))
    options = {key: kwargs.pop(key) for key in ("directions", "max_sweeps", "min_gain", "kernel")
               if key in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        selection_line_search(args.pop("gate"), *args.values(), **options)


def line_inputs(rng, n):
    """Random inputs of the K >= 2 candidate evaluation, with infinities, a NaN and exact ties."""
    f, c, m = rng.normal(size=(3, n))
    f[:5] = 0.0  # samples that never move
    m[5:10] = c[5:10]  # ties at t = 0, decided by the index
    lower = rng.uniform(size=n) < 0.5
    num_top, den_top, s_ej, s, value_out = rng.normal(size=(5, n))
    s_ej[10:15] = -np.inf  # j has density 0 there
    num_top[12:14] = -np.inf  # and so do the top K - 1 others: v = -inf when j is in
    value_out[15:20] = -np.inf
    value_out[20] = np.inf
    s_ej[21] = np.inf
    den_top[22] = s[22]  # logaddexp of equal arguments
    s[23] = np.nan  # a NaN score: a NaN density, counted in no key part
    return f, c, m, lower, num_top, den_top, s_ej, s, value_out


def test_compiled_candidate_gains_match_the_numpy_reference():
    from moestats.backends.numba_selection import topk_line_gains
    from moestats.backends.numpy_kernels import topk_line_gains as _numpy_line_gains
    rng = np.random.default_rng(21)
    for n in (1, 37, 5000):
        args = line_inputs(rng, max(n, 24))
        ts = np.concatenate([[0.0], rng.normal(scale=3.0, size=40), [1e300, -1e300]])
        with np.errstate(over="ignore", invalid="ignore"):  # as selection_search calls it
            ref = _numpy_line_gains(ts, *args)
        got = topk_line_gains(ts, *args)
        assert np.array_equal(got[:, :2], ref[:, :2])  # the counts of infinite densities
        scale = np.sum(np.abs(np.where(np.isfinite(args[-1]), args[-1], 0.0))) + 1.0
        np.testing.assert_allclose(got[:, 2], ref[:, 2], rtol=0, atol=1e-13 * scale)
        assert np.all(got[0] == 0.0)  # t = 0 gains nothing


def test_compiled_candidate_gains_do_not_depend_on_threads():
    import numba
    from moestats.backends.numba_selection import topk_line_gains
    rng = np.random.default_rng(22)
    args = line_inputs(rng, 3000)
    ts = rng.normal(size=33)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = topk_line_gains(ts, *args)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = topk_line_gains(ts, *args)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, many)


@pytest.mark.parametrize("selection", ["slope", "logit"])
def test_both_kernels_take_the_same_steps(selection):
    rng = np.random.default_rng(23)
    gate = TopKGate(2, selection=selection)
    for _ in range(4):
        X = rng.uniform(-1, 1, size=(400, 2))
        log_expert = rng.normal(scale=2.0, size=(400, 4))
        coef = np.vstack([rng.normal(size=(3, 2)), np.zeros((1, 2))])
        intercept = np.append(rng.normal(size=3), 0.0)
        ref = selection_line_search(gate, X, log_expert, coef, intercept, kernel="numpy")
        got = selection_line_search(gate, X, log_expert, coef, intercept, kernel="numba")
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)
        assert got[2] == pytest.approx(ref[2], abs=1e-9) and got[3] == ref[3]
