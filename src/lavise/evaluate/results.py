"""``Evaluation``: the scored rows of one evaluation, and plain-text tables of them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class Evaluation:
    """A table of rows (methods and baselines) scored against one dataset's ground truth."""

    settings: dict
    ground_truth: dict  # convention -> summary
    rows: list[dict] = field(default_factory=list)
    filters: list[dict] = field(default_factory=list)
    confidence: dict = field(default_factory=dict)  # method -> calibration on the score half (confidence_report)
    stability: dict = field(default_factory=dict)  # the first method under each probe (evaluate.stability)

    def to_dict(self) -> dict:
        """Plain data for JSON; an undefined figure (NaN: an AUROC with one class, a precision of no filter) is
        null."""
        return _defined({"settings": self.settings, "ground_truth": self.ground_truth, "rows": self.rows,
                         "filters": self.filters, "confidence": self.confidence, "stability": self.stability})

    def table(self, convention: str = "netdissect", columns: Sequence[str] | None = None) -> str:
        return format_table([r for r in self.rows if r["convention"] == convention], columns)


def _defined(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _defined(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_defined(v) for v in obj]
    return obj


DEFAULT_COLUMNS = ("filters", "P@1", "P@5", "P@10", "P@20", "R@1", "R@5", "R@10", "R@20", "F1@10")


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, name_key: str = "name") -> str:
    """A plain-text table; a column absent from a row shows '-'; ``(mean, sd)`` tuples show as mean±sd."""
    cols = list(columns or DEFAULT_COLUMNS)
    cols = [c for c in cols if any(c in r for r in rows)]

    def cell(v):
        if isinstance(v, tuple):
            return f"{v[0]:.1f}±{v[1]:.1f}" if abs(v[0]) >= 10 else f"{v[0]:.3f}±{v[1]:.3f}"
        if isinstance(v, float):
            return f"{v:.3f}"
        return "-" if v is None else str(v)

    head = [name_key.replace("name", "method")] + cols
    body = [[str(r.get(name_key, ""))] + [cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)
