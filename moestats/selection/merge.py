"""Atoms of a mixing measure, their merge dissimilarity and their merge.

See :mod:`moestats.selection.dendrogram` for the dendrogram these build and for why the
dissimilarity groups the parameter blocks as it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Atom", "DISSIMILARITIES", "merge_dissimilarity", "merge_atoms"]

#: the named dissimilarities (see :func:`merge_dissimilarity`)
DISSIMILARITIES = ("grouped", "spec")


@dataclass(frozen=True)
class Atom:
    """One atom of a mixing measure: a mass and the parameters of one expert.

    Attributes
    ----------
    mass : float
        :math:`p > 0` (normalised: the masses of a measure sum to 1).
    gate_slope : ndarray of shape (d,)
        :math:`\\beta_1/\\tau` (the reference gauge is irrelevant: only differences enter).
    expert_coef : ndarray of shape (d,)
    expert_intercept : float
    expert_var : float
    leaves : tuple of int
        Experts of the fitted model merged into this atom.
    node : int
        Node id in the linkage matrix (leaves ``0..K-1``, merges ``K, K+1, ...``).
    """

    mass: float
    gate_slope: np.ndarray
    expert_coef: np.ndarray
    expert_intercept: float
    expert_var: float
    leaves: tuple
    node: int


def merge_dissimilarity(a: Atom, b: Atom, dissimilarity="grouped") -> float:
    """Dissimilarity of two atoms, :math:`\\frac{p_a p_b}{p_a + p_b}\\,D(\\theta_a, \\theta_b)`.

    .. math::

        D_{\\text{grouped}} = \\lVert\\Delta\\beta_1\\rVert^2 + \\Delta b^2
            + \\sqrt{\\lVert\\Delta a\\rVert^2 + \\Delta\\nu^2}, \\qquad
        D_{\\text{spec}} = \\lVert\\Delta\\beta_1\\rVert^2 + \\lVert\\Delta a\\rVert^2
            + \\Delta b^2 + \\lvert\\Delta\\nu\\rvert .

    Parameters
    ----------
    a, b : Atom
    dissimilarity : {"grouped", "spec"} or callable
        A callable ``f(a, b) -> float`` replaces the whole formula.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> a = Atom(0.5, np.array([1.0]), np.array([0.0]), 0.0, 1.0, (0,), 0)
    >>> b = Atom(0.5, np.array([1.0]), np.array([0.0]), 2.0, 1.0, (1,), 1)
    >>> merge_dissimilarity(a, b)          # 0.25 * (2 ** 2)
    1.0
    """
    if callable(dissimilarity):
        return float(dissimilarity(a, b))
    weight = a.mass * b.mass / (a.mass + b.mass)
    slope = float(np.sum((a.gate_slope - b.gate_slope) ** 2))
    coef = float(np.sum((a.expert_coef - b.expert_coef) ** 2))
    inter = (a.expert_intercept - b.expert_intercept) ** 2
    dvar = a.expert_var - b.expert_var
    if dissimilarity == "grouped":
        core = slope + inter + np.sqrt(coef + dvar * dvar)
    elif dissimilarity == "spec":
        core = slope + coef + inter + abs(dvar)
    else:
        raise ValueError(f"dissimilarity must be one of {DISSIMILARITIES} or a callable, "
                         f"got {dissimilarity!r}")
    return float(weight * core)


def merge_atoms(a: Atom, b: Atom, node: int) -> Atom:
    """Merge two atoms: masses add, every other parameter is the mass-weighted mean.

    .. math::

        p = p_a + p_b, \\qquad \\theta = (p_a\\theta_a + p_b\\theta_b) / p .
    """
    p = a.mass + b.mass
    wa, wb = a.mass / p, b.mass / p
    return Atom(p, wa * a.gate_slope + wb * b.gate_slope,
                wa * a.expert_coef + wb * b.expert_coef,
                wa * a.expert_intercept + wb * b.expert_intercept,
                wa * a.expert_var + wb * b.expert_var,
                tuple(sorted(a.leaves + b.leaves)), node)
