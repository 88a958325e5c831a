"""Choosing the number of experts: information criteria and the dendrogram criterion.

:func:`select_n_experts` fits a range of ``k`` and chooses by AIC, BIC or ICL (with
identifiable degrees of freedom, :func:`n_identifiable_params`), or fits one
over-specified model and chooses by the Dendrogram Selection Criterion (DSC) of Do,
Nguyen et al. (arXiv 2510.12744; :func:`build_dendrogram`). the user guide's *Inference* and *Choosing k*.
"""

from .criteria import information_criteria, n_identifiable_params, posterior_entropy
from .dendrogram import Dendrogram, DendrogramLevel, build_dendrogram
from .merge import DISSIMILARITIES, Atom, merge_atoms, merge_dissimilarity
from .select import CRITERIA, SelectionResult, select_n_experts

__all__ = [
    "select_n_experts", "SelectionResult", "CRITERIA",
    "n_identifiable_params", "posterior_entropy", "information_criteria",
    "build_dendrogram", "Dendrogram", "DendrogramLevel", "Atom",
    "merge_dissimilarity", "merge_atoms", "DISSIMILARITIES",
]
