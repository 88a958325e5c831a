"""The dendrogram of a fitted mixing measure (:mod:`moestats.selection.dendrogram`)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_dendrogram"]


def _as_dendrogram(obj):
    dend = getattr(obj, "dendrogram_", obj)
    if dend is None or not hasattr(dend, "linkage") or not hasattr(dend, "levels"):
        raise ValueError(
            "plot_dendrogram needs a SelectionResult with a dendrogram (softmax-type gate, "
            f"largest k >= 2) or a Dendrogram, got {type(obj).__name__}")
    return dend


def _leaf_order(linkage, K):
    """Leaves left to right, so that no branch crosses another."""
    if K == 1:
        return [0]
    children = {K + r: (int(a), int(b)) for r, (a, b, _, _) in enumerate(linkage)}
    order, stack = [], [K + len(linkage) - 1]
    while stack:
        node = stack.pop()
        if node < K:
            order.append(node)
        else:
            a, b = children[node]
            stack.extend([b, a])
    return order


def plot_dendrogram(result, ax=None, *, selected=None, log=False, leaf_labels=None):
    """Draw the merge tree of a mixing measure, with the merge heights.

    Leaves are the experts of the fitted (over-specified) model, labelled with their
    index and mass :math:`p_j`; a merge of two atoms is drawn at its height
    :math:`h_k` (the dissimilarity of the pair merged from level ``k``, labelled
    :math:`h_k`).
    Heights need not increase along the tree (merged masses grow): such an
    inversion is drawn as it is. A dashed line cuts the tree at the level chosen by
    the DSC (where a horizontal cut is possible) and the legend names it.

    Parameters
    ----------
    result : SelectionResult or Dendrogram
        A result of :func:`moestats.selection.select_n_experts` (its ``dendrogram_``) or
        a :class:`~moestats.selection.Dendrogram`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new Figure is made otherwise (object API, no pyplot).
    selected : int, optional
        The level to mark; default: the result's ``best_n_experts`` for a DSC result,
        else the dendrogram's DIC minimiser.
    log : bool, default=False
        Logarithmic height axis (leaves drawn at a tenth of the smallest positive
        height); useful when heights span orders of magnitude.
    leaf_labels : sequence of str, optional
        One label per leaf (default ``"j\\np=…"``).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from moestats import get_setup
    >>> from moestats.selection import select_n_experts
    >>> X, y = get_setup("softmax-exact").truth.sample(500, np.random.default_rng(0))
    >>> res = select_n_experts(X, y, [3], criterion="dsc", n_init=3, random_state=0)
    >>> ax = plot_dendrogram(res)
    >>> ax.get_ylabel()
    'merge height $h_k$'
    """
    dend = _as_dendrogram(result)
    K = dend.n_leaves
    Z = np.asarray(dend.linkage, dtype=float).reshape(-1, 4)
    if ax is None:
        ax = Figure(figsize=(6.0, 4.0), layout="constrained").add_subplot()
    if leaf_labels is not None and len(leaf_labels) != K:
        raise ValueError(f"leaf_labels needs {K} labels, got {len(leaf_labels)}")
    heights = Z[:, 2] if len(Z) else np.zeros(0)
    positive = heights[heights > 0]
    base = 0.0
    if log:
        base = float(positive.min()) / 10.0 if positive.size else 1e-12
    order = _leaf_order(Z, K)
    xpos = {leaf: float(i) for i, leaf in enumerate(order)}
    ypos = {leaf: base for leaf in range(K)}
    for r, (a, b, h, _) in enumerate(Z):
        a, b = int(a), int(b)
        h = max(float(h), base) if log else float(h)
        node = K + r
        xa, xb = xpos[a], xpos[b]
        ax.plot([xa, xa, xb, xb], [ypos[a], h, h, ypos[b]], color="C0", lw=1.5)
        xpos[node], ypos[node] = (xa + xb) / 2.0, h
        k = K - r  # this merge takes level k (k atoms) to k - 1
        ax.annotate(f"$h_{{{k}}}$", (xpos[node], h), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8, color="0.3")
    if leaf_labels is None:
        leaf_labels = [f"{j}\np={dend.leaf_masses[j]:.2g}" for j in order]
    else:
        leaf_labels = [str(leaf_labels[j]) for j in order]
    ax.set_xticks(range(K), leaf_labels, fontsize=8)
    ax.set_xlim(-0.5, K - 0.5)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(base * 0.7, 3.0 * float(heights.max()) if positive.size else 1.0)
    else:
        top = float(heights.max()) if heights.size else 1.0
        ax.set_ylim(min(0.0, float(heights.min()) if heights.size else 0.0) - 0.02 * top,
                    1.12 * top if top > 0 else 1.0)
    ax.set_xlabel("expert of the fitted model (mass $p_j$)")
    ax.set_ylabel("merge height $h_k$")
    ax.set_title(f"dendrogram of the mixing measure (K = {K}, n = {dend.n_samples})")
    if selected is None:
        selected = None
        if getattr(result, "dendrogram_", None) is dend and result.criterion == "dsc":
            selected = int(result.best_n_experts)
        elif K >= 2:
            selected = dend.best_n_experts()
    if selected is not None and 2 <= selected <= K:
        done = heights[: K - selected]          # merges performed to reach `selected`
        low = float(done.max()) if done.size else base
        high = float(heights[K - selected])
        label = f"DSC: k = {selected}"
        if high > low:
            cut = np.sqrt(max(low, high * 1e-3) * high) if log else (low + high) / 2.0
            ax.axhline(cut, color="C3", ls="--", lw=1, label=label)
        else:
            ax.plot([], [], color="C3", ls="--", lw=1, label=label + " (no horizontal cut)")
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    return ax
