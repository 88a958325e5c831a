"""Other parametrisations of the same density within a gate family.

The losses compare a fitted mixing measure with the truth up to the gauge of the family
(:mod:`moestats.losses.gauge`: relabelling and the common gate shift). One more
symmetry is not a shift: with two experts and an activation gate whose activation is
odd about 0 (:math:`\\sigma(z) - \\sigma(0)` odd: tanh and the sigmoid), the reference
expert can change places with the other one. The reference's logit is
:math:`\\sigma(0)/\\tau`, so the weight of expert 1 is
:math:`\\operatorname{sigmoid}(r)` with
:math:`r = (\\sigma(\\beta_1^\\top x) - \\sigma(0))/\\tau + \\beta_0`, and

.. math::

    -r = \\frac{\\sigma(-\\beta_1^\\top x) - \\sigma(0)}{\\tau} - \\beta_0 ,

so the experts swapped with :math:`\\beta_1 \\to -\\beta_1` and
:math:`\\beta_0 \\to -\\beta_0` is the same model. A loss must give it the value of the
original: :func:`equivalent_parametrisations` lists such parametrisations, and the sweeps
take the losses at the one closest to the truth. (The gelu is not odd about 0, and with
three or more experts the swapped logits are differences of two activations, outside
the family.)
"""

from __future__ import annotations

from ..gates import ActivationGate
from ..params import MoEParams

__all__ = ["equivalent_parametrisations"]

#: activations with sigma(z) - sigma(0) odd
_ODD_ABOUT_ZERO = ("tanh", "sigmoid")


def equivalent_parametrisations(gate, params: MoEParams) -> list:
    """Every parametrisation of ``params``' density in ``gate``'s family that is not a
    gauge move (module docstring); the first is ``params`` itself.

    Parameters
    ----------
    gate : Gate
    params : MoEParams

    Returns
    -------
    list of MoEParams

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import ActivationGate, MoEParams
    >>> from moestats.likelihood import log_likelihood
    >>> gate = ActivationGate("sigmoid", 0.5)
    >>> p = MoEParams([[3.0], [0.0]], [0.5, 0.0], [[-2.0], [2.0]], [1.0, -1.0], [0.1, 0.2],
    ...               temperature=0.5)
    >>> same = equivalent_parametrisations(gate, p)
    >>> len(same), same[1].gate_coef.ravel().tolist(), same[1].gate_intercept.tolist()
    (2, [-3.0, 0.0], [-0.5, 0.0])
    >>> X = np.linspace(-1, 1, 50)[:, None]; y = np.sin(3 * X[:, 0])
    >>> bool(np.isclose(log_likelihood(gate, p, X, y), log_likelihood(gate, same[1], X, y)))
    True
    """
    out = [params]
    activation = getattr(gate, "activation", None)
    if not (isinstance(gate, ActivationGate) and params.n_experts == 2
            and isinstance(activation, str) and activation in _ODD_ABOUT_ZERO):
        return out
    swap = [1, 0]
    out.append(params.replace(
        gate_coef=[-params.gate_coef[0], params.gate_coef[1]],
        gate_intercept=[-params.gate_intercept[0], 0.0],
        expert_coef=params.expert_coef[swap], expert_intercept=params.expert_intercept[swap],
        expert_var=params.expert_var[swap]))
    return out
