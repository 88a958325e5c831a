"""A pandas DataFrame of parameter estimates that prints like a statsmodels summary."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = ["SummaryFrame", "check_alpha"]

_WIDTH = 86


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1), or a ``ValueError`` naming it."""
    if (not isinstance(alpha, numbers.Real) or isinstance(alpha, bool)
            or not 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _fmt(v, width=10):
    if isinstance(v, str):
        return f"{v:>{width}}"
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return f"{'nan':>{width}}"
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:>{width}.3e}"
    return f"{v:>{width}.4f}"


def _cell(column, v):
    if column in ("z", "p-value"):
        if v is None or np.isnan(v):
            return " " * 10
        return f"{v:>10.3f}" if column == "z" else f"{v:>10.4f}"
    return _fmt(v)


class SummaryFrame(pd.DataFrame):
    """A DataFrame of estimates (one row per parameter) with a statsmodels-like text form.

    ``str()`` / ``repr()`` print a header (model, data, fit), the table and the notes
    (the reasons in the ``note`` column, numbered); the frame itself is an ordinary
    DataFrame (index: parameter names), so it can be sliced, filtered and exported.

    Examples
    --------
    >>> f = SummaryFrame({"estimate": [1.0], "std. error": [0.5], "note": [""]},
    ...                  index=["expert 1: x0"])
    >>> f.title = "example"
    >>> print(f)                                           # doctest: +NORMALIZE_WHITESPACE
                                           example
    ======================================================================================
                                     estimate std. error
    --------------------------------------------------------------------------------------
    expert 1: x0                       1.0000     0.5000
    ======================================================================================
    """

    _metadata = ["title", "header", "alpha"]

    @property
    def _constructor(self):
        return SummaryFrame

    def _text_columns(self):
        alpha = getattr(self, "alpha", None)
        labels = {"p-value": "P>|z|"}
        if alpha is not None:
            labels["ci lower"] = f"[{alpha / 2:g}"
            labels["ci upper"] = f"{1 - alpha / 2:g}]"
        return [(c, labels.get(c, c)) for c in self.columns if c != "note"]

    def as_text(self) -> str:
        """The summary as text (what ``print`` shows)."""
        title = getattr(self, "title", None) or "Parameter estimates"
        header = getattr(self, "header", None) or []
        cols = self._text_columns()
        name_w = max([len(str(i)) for i in self.index] + [12]) + 2
        width = max(_WIDTH, name_w + 11 * len(cols))
        lines = [f"{title:^{width}}", "=" * width]
        if header:
            pairs = list(header)
            half = (len(pairs) + 1) // 2
            left, right = pairs[:half], pairs[half:]
            for i in range(half):
                a = f"{left[i][0] + ':':<20}{str(left[i][1]):>20}"
                b = (f"{right[i][0] + ':':<24}{str(right[i][1]):>20}"
                     if i < len(right) else "")
                lines.append(f"{a}  {b}".rstrip())
            lines.append("=" * width)
        lines.append(" " * name_w + "".join(f"{lab:>11}" for _, lab in cols))
        lines.append("-" * width)
        notes, marks = [], {}
        has_note = "note" in self.columns
        for name, row in self.iterrows():
            text = f"{str(name):<{name_w}}" + "".join(" " + _cell(c, row[c]) for c, _ in cols)
            if has_note and row["note"]:
                if row["note"] not in marks:
                    notes.append(row["note"])
                    marks[row["note"]] = len(notes)
                text += f"  [{marks[row['note']]}]"
            lines.append(text)
        lines.append("=" * width)
        if notes:
            lines.append("Notes:")
            lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
        return "\n".join(lines)

    def __repr__(self):
        return self.as_text()

    def __str__(self):
        return self.as_text()
