"""Model structure of an estimator: which covariates feed the gate and the experts,
and equal expert variances.

The model of :class:`moestats.GaussianMoE` with structure is

.. math::

    p(y \\mid x) = \\sum_{j=1}^k w_j(x_G)\\,
        \\mathcal N\\bigl(y \\mid a_j^\\top x_E + b_j,\\ \\nu_j\\bigr),

with :math:`x_G` the gate covariates (``gate_features``), :math:`x_E` the expert
covariates (``expert_features``), and optionally :math:`\\nu_1 = \\dots = \\nu_k`
(``shared_variance``). ``gate="constant"`` is the softmax gate with no gate covariate
(:math:`w_j` constant: the mixture of linear regressions of flexmix and mixtools).
Internally the slopes on the other columns are held at 0 and the variances tied:
linear constraints of the parameter space
(:class:`moestats.solvers.ParameterSpace`), honoured by every EM step, the
second-order finish, the certificate and the Wald inference.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

__all__ = ["resolve_features", "structured_space", "n_pinned", "n_free"]


def resolve_features(features, n_features, feature_names=None, name="gate_features"):
    """Column indices (sorted tuple) of ``features``: indices or feature names.

    Parameters
    ----------
    features : sequence of int or str, or None
        Columns of ``X`` by position, or by name when ``X`` was a DataFrame. None: all.
    n_features : int
    feature_names : ndarray of str, optional
        ``feature_names_in_`` of the estimator.
    name : str
        The parameter's name, for error messages.

    Returns
    -------
    tuple of int, or None

    Raises
    ------
    ValueError
        Naming an unknown column name, an index out of range or a repeated column.

    Examples
    --------
    >>> resolve_features(["b"], 2, np.array(["a", "b"]))
    (1,)
    >>> resolve_features([2], 2)
    Traceback (most recent call last):
    ...
    ValueError: gate_features: column 2 is out of range for X with 2 feature(s)
    """
    if features is None:
        return None
    if isinstance(features, (str, numbers.Integral)):
        features = [features]
    out = []
    for f in features:
        if isinstance(f, str):
            if feature_names is None or f not in list(feature_names):
                known = "X has no column names" if feature_names is None else (
                    f"its columns are {list(feature_names)}")
                raise ValueError(f"{name}: unknown column {f!r} ({known})")
            out.append(int(list(feature_names).index(f)))
        elif isinstance(f, numbers.Integral) and not isinstance(f, bool):
            if not 0 <= f < n_features:
                raise ValueError(f"{name}: column {f} is out of range for X with "
                                 f"{n_features} feature(s)")
            out.append(int(f))
        else:
            raise ValueError(f"{name} must hold column indices or names, got {f!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} names a column twice: {list(features)}")
    return tuple(sorted(out))


def structured_space(space, gate, gate_name, *, gate_features=None, expert_features=None,
                     shared_variance=False, n_features, feature_names=None):
    """The estimator's parameter space with its structure.

    Parameters
    ----------
    space : ParameterSpace
        The bounds (``GaussianMoE(space=...)``).
    gate : Gate
        The validated gate.
    gate_name : Gate or str
        The estimator's ``gate`` parameter (``"constant"``: no gate covariate).
    gate_features, expert_features, shared_variance
        As :class:`moestats.GaussianMoE`.
    n_features : int
    feature_names : ndarray of str, optional

    Returns
    -------
    ParameterSpace

    Examples
    --------
    >>> from moestats import SoftmaxGate
    >>> from moestats.solvers import ParameterSpace
    >>> sp = structured_space(ParameterSpace(), SoftmaxGate(), "constant", n_features=2)
    >>> sp.gate_features, sp.expert_features
    ((), None)
    """
    from .gates import TopKGate
    if not isinstance(shared_variance, (bool, np.bool_)):
        raise ValueError(f"shared_variance must be True or False, got {shared_variance!r}")
    g = resolve_features(gate_features, n_features, feature_names, "gate_features")
    e = resolve_features(expert_features, n_features, feature_names, "expert_features")
    if isinstance(gate_name, str) and gate_name == "constant":
        if g:
            raise ValueError(f"gate='constant' has no gate covariates, but gate_features = "
                             f"{list(gate_features)}")
        g = ()
    if g is not None and isinstance(gate, TopKGate):
        raise ValueError("gate_features is not available with the top-K gate (its "
                         "selection-boundary searches move every slope)")
    changes = {}
    if g is not None:
        changes["gate_features"] = g
    if e is not None:
        changes["expert_features"] = e
    if shared_variance:
        changes["shared_variance"] = True
    space = dataclasses.replace(space, **changes) if changes else space
    space.check_features(n_features)
    return space


def n_pinned(space, n_experts, n_features):
    """Free parameters removed by the structure of ``space`` (pinned slopes, tied
    variances).

    Examples
    --------
    >>> from moestats.solvers import ParameterSpace
    >>> n_pinned(ParameterSpace(gate_features=(), shared_variance=True), 3, 2)
    6
    """
    if space is None:
        return 0
    k, d = n_experts, n_features
    out = 0
    if space.gate_features is not None:
        out += (k - 1) * (d - len(space.gate_features))
    if space.expert_features is not None:
        out += k * (d - len(space.expert_features))
    if space.shared_variance:
        out += k - 1
    return out


def n_free(gate, n_experts, n_features, space=None):
    """Free parameters of a model: the gate's (reference fixed), ``k (d + 2)`` expert
    ones, less what the structure of ``space`` pins or ties (:func:`n_pinned`).

    Examples
    --------
    >>> from moestats import SoftmaxGate
    >>> from moestats.solvers import ParameterSpace
    >>> n_free(SoftmaxGate(), 2, 1), n_free(SoftmaxGate(), 2, 1, ParameterSpace(gate_features=()))
    (8, 7)
    """
    k, d = n_experts, n_features
    return gate.n_free_params(k, d) + k * (d + 2) - n_pinned(space, k, d)
