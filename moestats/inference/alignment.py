"""Relabel a fit to a reference model's labels and gauge (label switching).

A mixture of experts is unchanged by relabelling its experts, and its gate by a
common shift :math:`(t_1, t_0)` of every :math:`(\\beta_{1j}, \\beta_{0j})` when the
logits are linear in :math:`\\beta_1` (softmax, top-K, temperature gates). Under the
reference convention (the last expert has :math:`\\beta_{1k} = 0, \\beta_{0k} = 0`,
the user guide's *The model and its gates*), relabelling by an order :math:`o` (expert :math:`i` of the
result is expert :math:`o_i`) therefore maps

.. math::

    \\beta'_{i} = \\beta_{o_i} - \\beta_{o_k}, \\qquad
    (a'_i, b'_i, \\nu'_i) = (a_{o_i}, b_{o_i}, \\nu_{o_i}).

For an activation gate :math:`\\sigma(\\beta_1^\\top x)/\\tau + \\beta_0` the shift is
not a symmetry; the reference can still change when :math:`k = 2` and
:math:`\\sigma - \\sigma(0)` is odd (tanh, sigmoid): then
:math:`\\beta'_1 = -\\beta_1`. Other reference changes have no exact counterpart in
the family and are not considered.

:func:`align_to_reference` chooses the order that brings a fit closest to a
reference model (e.g. a bootstrap replicate to the original fit, or a fit to the
truth in a simulation): for every admissible choice :math:`c` of the fit's expert
that plays the reference, the other labels are matched by the Hungarian algorithm on
the squared distance of all parameters (gate after the regauging, :math:`a, b`,
:math:`\\log\\nu`), each coordinate divided by its spread over the reference's
experts; the choice of smallest total cost wins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..gates import Gate
from ..params import MoEParams

__all__ = ["relabel", "align_to_reference", "reference_changes_allowed"]


def _linear(gate) -> bool:
    return type(gate)._activate is Gate._activate


def _odd_activation(gate) -> bool:
    z = np.linspace(-6.0, 6.0, 49)
    h = gate._activate(z)[0]
    h0 = gate._activate(np.zeros(1))[0][0]
    return bool(np.max(np.abs(h + h[::-1] - 2.0 * h0)) <= 1e-10 * (1.0 + np.max(np.abs(h))))


def reference_changes_allowed(gate, n_experts) -> bool:
    """Whether any expert can become the reference by an exact relabelling."""
    return _linear(gate) or (n_experts == 2 and _odd_activation(gate))


def relabel(params: MoEParams, gate, order) -> MoEParams:
    """The same model with expert ``i`` being expert ``order[i]`` of ``params``.

    The gate is re-expressed in the reference convention (module docstring).

    Raises
    ------
    ValueError
        ``order`` is not a permutation, or it moves the reference of a gate for
        which that is not an exact relabelling.

    Examples
    --------
    >>> from moestats import SoftmaxGate, get_setup
    >>> p = get_setup("softmax-exact").truth.params
    >>> q = relabel(p, SoftmaxGate(), [1, 0])
    >>> q.gate_coef.ravel().tolist(), q.gate_intercept.tolist(), q.expert_var.tolist()
    ([-25.0, 0.0], [8.0, 0.0], [0.16, 0.09])
    """
    order = np.asarray(order, dtype=int)
    k = params.n_experts
    if order.shape != (k,) or sorted(order.tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}, got {order.tolist()}")
    c = int(order[-1])
    if c == k - 1:
        return params.permute(order)
    if _linear(gate):
        coef = params.gate_coef[order] - params.gate_coef[c]
        intercept = params.gate_intercept[order] - params.gate_intercept[c]
    elif k == 2 and _odd_activation(gate):
        # the old reference becomes expert 1, with the mirrored gate of the old expert 1
        coef = np.vstack([-params.gate_coef[0], np.zeros_like(params.gate_coef[0])])
        intercept = np.array([-params.gate_intercept[0], 0.0])
    else:
        raise ValueError(
            f"{type(gate).__name__}: expert {c} cannot become the reference by an exact "
            "relabelling (the gate is not invariant to a common shift)")
    return MoEParams(coef, intercept, params.expert_coef[order],
                     params.expert_intercept[order], params.expert_var[order],
                     params.temperature)


def _features(p: MoEParams):
    return np.column_stack([p.gate_coef, p.gate_intercept, p.expert_coef,
                            p.expert_intercept, np.log(p.expert_var)])


def align_to_reference(params: MoEParams, reference: MoEParams, gate):
    """Relabel ``params`` to the labels and gauge of ``reference`` (same ``k``).

    Parameters
    ----------
    params : MoEParams
        The fit to relabel.
    reference : MoEParams
        The model whose labels are kept (the original fit, or the truth).
    gate : Gate
        The gate of both.

    Returns
    -------
    aligned : MoEParams
    order : ndarray of int (k,)
        ``aligned = relabel(params, gate, order)``.

    Examples
    --------
    >>> from moestats import SoftmaxGate, get_setup
    >>> truth = get_setup("softmax-exact").truth.params
    >>> switched = relabel(truth, SoftmaxGate(), [1, 0])
    >>> aligned, order = align_to_reference(switched, truth, SoftmaxGate())
    >>> order.tolist(), bool(aligned.allclose(truth))
    ([1, 0], True)
    """
    k = params.n_experts
    if reference.n_experts != k or reference.n_features != params.n_features:
        raise ValueError(
            f"params has {k} experts on {params.n_features} features, the reference "
            f"{reference.n_experts} on {reference.n_features}")
    ref = _features(reference)
    spread = ref.std(axis=0)
    scale = np.where(spread > 0, spread, np.maximum(np.abs(ref).max(axis=0), 1.0))
    choices = range(k) if reference_changes_allowed(gate, k) else [k - 1]
    best = None
    for c in choices:
        base = np.array([j for j in range(k) if j != c] + [c])
        cand = _features(relabel(params, gate, base))          # reference last
        cost = (((ref[:, None, :] - cand[None, :, :]) / scale) ** 2).sum(axis=2)
        rows, cols = linear_sum_assignment(cost[:-1, :-1])
        total = float(cost[rows, cols].sum() + cost[-1, -1])
        order = np.empty(k, dtype=int)
        order[rows] = base[cols]
        order[-1] = c
        if best is None or total < best[0] - 1e-12:
            best = (total, order)
    order = best[1]
    return relabel(params, gate, order), order
