"""Starting points for the solvers.

Each start is built the same way: a (soft or hard) partition of the sample, then
one M-step on it (:func:`init_from_responsibilities`). The partitions:

- :func:`kmeans_init`: k-means (k-means++ seeding, one run) on the standardised
  pairs :math:`(x, y)` under a random feature weighting, fitted on a bootstrap
  resample; so that different ``rng`` states give different partitions.
- :func:`random_partition_init`: every sample to a uniformly random expert
  (flexmix's default start).
- :func:`lines_init`: k-lines, the regression analogue of k-means: a line through
  ``d + 1`` random points per expert, each sample to its nearest line, refits.
- :func:`random_init`: random (Dirichlet) responsibilities.

Several different starts and the short-run selection among them ("emEM") are
in :mod:`moestats.solvers.starts`. The theory simulations' "near the truth"
start lives in :func:`moestats.sampling.near_truth_init`.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from ..experts import expert_m_step
from ..gates import SoftmaxGate
from ..params import MoEParams
from .gate_steps import fit_gate_to_responsibilities

__all__ = ["kmeans_init", "kmeans_labels", "random_init", "random_partition_init",
           "lines_init", "init_from_responsibilities"]

#: label smoothing of hard cluster labels, so that the gate fit stays finite
LABEL_SMOOTHING = 0.2
#: k-lines refits after the random lines (:func:`lines_init`)
LINES_ITER = 2


def init_from_responsibilities(gate, X, y, resp, var_floor, temperature=1.0):
    """Parameters from one M-step on given responsibilities.

    The experts get weighted least squares; the gate starts at 0 (all experts equal)
    and takes one gate step. A top-K gate starts instead from a softmax gate fitted
    to the same responsibilities, since at zero slopes its selection is all ties.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    resp : ndarray (n, k)
        Responsibilities (rows summing to 1).
    var_floor : float
        Lower bound on the expert variances.
    temperature : float, default=1.0
        Temperature the parameters carry.

    Returns
    -------
    MoEParams

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> X = np.linspace(0, 1, 8)[:, None]; y = np.r_[X[:4, 0], -X[4:, 0]]
    >>> resp = np.repeat([[0.9, 0.1], [0.1, 0.9]], 4, axis=0)
    >>> init_from_responsibilities(SoftmaxGate(), X, y, resp, 1e-8).n_experts
    2
    """
    n, d = X.shape
    k = resp.shape[1]
    var0 = np.full(k, max(float(np.var(y)), var_floor))
    coef, intercept, var, _ = expert_m_step(
        X, y, resp, np.zeros((k, d)), np.full(k, float(np.mean(y))), var0, var_floor)
    params = MoEParams(np.zeros((k, d)), np.zeros(k), coef, intercept, var, temperature)
    if gate.ecm_gate_step:
        params = fit_gate_to_responsibilities(SoftmaxGate(), params, X, y, resp)
        if not gate.fits_intercept:
            params = params.replace(gate_intercept=np.zeros(k))
    return fit_gate_to_responsibilities(gate, params, X, y, resp)


def _smoothed_one_hot(labels, k):
    resp = np.full((labels.size, k), LABEL_SMOOTHING / k)
    resp[np.arange(labels.size), labels] += 1.0 - LABEL_SMOOTHING
    return resp


def _from_labels(gate, X, y, labels, k, var_floor, temperature):
    return init_from_responsibilities(gate, X, y, _smoothed_one_hot(labels, k),
                                      var_floor, temperature)


def kmeans_labels(X, y, n_experts, rng):
    """The partition of :func:`kmeans_init`.

    k-means with k-means++ seeding and a single run (``n_init=1``, seeded from
    ``rng``) on the standardised columns of :math:`(x, y)`, each multiplied by
    :math:`\\sqrt{w_c}` with random weights :math:`w \\sim (d+1)\\,
    \\mathrm{Dirichlet}(1, \\dots, 1)`, the centres fitted on a bootstrap resample
    and every sample then labelled by its nearest centre.

    Why both: on data where k-means has one dominant partition (e.g. split along
    :math:`x`, whatever the seeding), a new seed alone gives the same start every
    time. The random weighting changes the metric, hence the partition itself
    (from splits along :math:`x` to splits along :math:`y`, the useful ones for
    crossing regression lines); the bootstrap moves the centres a little more.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(size=(50, 1)); y = X[:, 0]
    >>> kmeans_labels(X, y, 2, np.random.default_rng(1)).shape
    (50,)
    """
    Z = np.column_stack([X, y])
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (Z - Z.mean(axis=0)) / scale
    Z = Z * np.sqrt(Z.shape[1] * rng.dirichlet(np.ones(Z.shape[1])))
    rows = rng.integers(Z.shape[0], size=Z.shape[0])
    if np.unique(Z[rows], axis=0).shape[0] < n_experts:    # too few distinct points
        rows = np.arange(Z.shape[0])
    seed = int(rng.integers(np.iinfo(np.int32).max))
    km = KMeans(n_clusters=n_experts, init="k-means++", n_init=1, random_state=seed)
    return km.fit(Z[rows]).predict(Z)


def kmeans_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """k-means start: :func:`kmeans_labels`, then :func:`init_from_responsibilities`.

    Parameters
    ----------
    gate : Gate
    X : ndarray (n, d)
    y : ndarray (n,)
    n_experts : int
    rng : numpy.random.Generator
        Draws the feature weights, the bootstrap resample and the k-means seed:
        different states give different starts.
    var_floor : float
    temperature : float, default=1.0

    Returns
    -------
    MoEParams
        One M-step on the hard labels, smoothed (``LABEL_SMOOTHING``).

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(100, 1)); y = np.where(rng.random(100) < .5, 1, -1) * X[:, 0]
    >>> a = kmeans_init(SoftmaxGate(), X, y, 2, np.random.default_rng(1), 1e-8)
    >>> b = kmeans_init(SoftmaxGate(), X, y, 2, np.random.default_rng(2), 1e-8)
    >>> a.allclose(b)
    False
    """
    labels = kmeans_labels(X, y, n_experts, rng)
    return _from_labels(gate, X, y, labels, n_experts, var_floor, temperature)


def random_partition_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """Random-partition start (flexmix's default): each sample to a uniformly
    random expert, then :func:`init_from_responsibilities` on the smoothed labels.

    Parameters are those of :func:`kmeans_init`; ``rng`` draws the labels.

    Returns
    -------
    MoEParams

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> X = np.random.default_rng(0).normal(size=(60, 2)); y = X.sum(axis=1)
    >>> p = random_partition_init(SoftmaxGate(), X, y, 3, np.random.default_rng(1), 1e-8)
    >>> p.expert_coef.shape
    (3, 2)
    """
    labels = rng.integers(n_experts, size=X.shape[0])
    return _from_labels(gate, X, y, labels, n_experts, var_floor, temperature)


def _line_fit(Xt, y):
    return np.linalg.lstsq(Xt, y, rcond=None)[0]


def lines_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """k-lines start: a regression hyperplane through ``d + 1`` random samples per
    expert, each sample to the line of smallest absolute residual, then
    ``LINES_ITER`` rounds of least-squares refits and reassignment; finally
    :func:`init_from_responsibilities` on the smoothed labels.

    An expert left with fewer than ``d + 1`` samples keeps its previous line.
    Parameters are those of :func:`kmeans_init`; ``rng`` draws the samples.

    Returns
    -------
    MoEParams

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(200, 1)); y = np.where(rng.random(200) < .5, 2, -2) * X[:, 0]
    >>> p = lines_init(SoftmaxGate(), X, y, 2, np.random.default_rng(3), 1e-8)
    >>> bool(np.allclose(np.sort(p.expert_coef[:, 0]), [-2, 2], atol=0.5))
    True
    """
    n, d = X.shape
    Xt = np.column_stack([X, np.ones(n)])
    theta = np.stack([_line_fit(Xt[rows], y[rows]) for rows in
                      (rng.choice(n, size=min(d + 1, n), replace=False)
                       for _ in range(n_experts))])
    for it in range(LINES_ITER + 1):
        labels = np.argmin(np.abs(y[:, None] - Xt @ theta.T), axis=1)
        if it == LINES_ITER:
            break
        for j in range(n_experts):
            if np.count_nonzero(labels == j) >= d + 1:
                theta[j] = _line_fit(Xt[labels == j], y[labels == j])
    return _from_labels(gate, X, y, labels, n_experts, var_floor, temperature)


def random_init(gate, X, y, n_experts, rng, var_floor, temperature=1.0):
    """Random responsibilities :math:`r_{i\\cdot} \\sim \\mathrm{Dirichlet}(1,\\dots,1)`,
    then :func:`init_from_responsibilities`.

    Parameters are those of :func:`kmeans_init`.

    Returns
    -------
    MoEParams

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import SoftmaxGate
    >>> X = np.random.default_rng(0).normal(size=(40, 1)); y = X[:, 0]
    >>> random_init(SoftmaxGate(), X, y, 2, np.random.default_rng(0), 1e-8).n_experts
    2
    """
    resp = rng.dirichlet(np.ones(n_experts), size=X.shape[0])
    return init_from_responsibilities(gate, X, y, resp, var_floor, temperature)
