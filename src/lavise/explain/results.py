"""Explanations as results: one ``FilterExplanation`` per filter, gathered in ``Explanations``, which saves
itself into a run folder as JSON + CSV and records them in the manifest."""
from __future__ import annotations

import csv
import io as _io
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from ..io import read_json, write_json, write_text
from ..run import RunFolder
from .confidence import constant_note


@dataclass(frozen=True)
class FilterExplanation:
    """The explanation of one filter."""

    unit: int
    threshold: float
    words: list[dict]  # [{"word", "score", "similarity"[, "confidence", "grounding"]}], best first
    images: list[dict]  # [{"image_id", "max_activation"}], most active first
    saturated: bool = False
    dead: bool = False
    confidence: float | None = None  # calibrated probability that the top word is right (None: no calibrator)
    interpretable: bool | None = None  # confidence >= defaults.INTERPRETABLE
    stability: float | None = None  # share of bootstrap resamples of the top images electing the same top word

    @property
    def top_words(self) -> list[str]:
        return [w["word"] for w in self.words]

    def line(self, words: int = 8) -> str:
        """One line for a summary: the filter, its confidence and stability where known, its first words."""
        notes = [f"{self.confidence:.2f}"] if self.confidence is not None else []
        notes += [f"stable {self.stability:.2f}"] if self.stability is not None else []
        tag = f" [{', '.join(notes)}]" if notes else ""
        return f"unit {self.unit:4d}{tag}: {', '.join(self.top_words[:words])}"


@dataclass(frozen=True)
class Explanations:
    """Explanations of every filter of one layer; ``save`` writes JSON + CSV into a run folder."""

    model: str
    layer: str
    method: str
    dataset: str
    settings: dict
    filters: list[FilterExplanation] = field(default_factory=list)

    def __getitem__(self, unit: int) -> FilterExplanation:
        """The explanation of filter number ``unit`` (not list position: with ``units`` they differ)."""
        found = self._by_unit.get(int(unit))
        if found is None:
            shown = ", ".join(str(u) for u in list(self._by_unit)[:10])
            raise KeyError(f"filter {unit} was not explained; explained filters: {shown}"
                           f"{' …' if len(self._by_unit) > 10 else ''}")
        return found

    def __len__(self) -> int:
        return len(self.filters)

    def __iter__(self):
        return iter(self.filters)

    @cached_property
    def _by_unit(self) -> dict[int, FilterExplanation]:
        return {f.unit: f for f in self.filters}

    def verdict(self) -> str:
        """One line: how many filters are interpretable, or why there is no confidence."""
        note = self.settings.get("confidence") or {}
        if not note.get("available"):
            return f"confidence unavailable: {note.get('why', 'these explanations predate calibrated confidence')}" \
                + self._stability_note("; ")
        n = sum(bool(f.interpretable) for f in self.filters)
        fit = note.get("fitted_on") or {}
        flat = f"; {constant_note(fit)}" if fit.get("constant") else ""
        return (f"{n} of {len(self.filters)} filters interpretable (top word's calibrated confidence >= "
                f"{note.get('interpretable_at')}){flat}" + self._stability_note("; "))

    def _stability_note(self, sep: str) -> str:
        st = sorted(f.stability for f in self.filters if f.stability is not None)
        return f"{sep}median top-word stability {st[len(st) // 2]:.2f} (share of resamples of the top images " \
               "electing it)" if st else ""

    def ranked(self) -> list[FilterExplanation]:
        """Filters with words, most confident first where there is a confidence (else in filter order)."""
        have = [f for f in self.filters if f.words]
        return sorted(have, key=lambda f: -(f.confidence or 0.0)) if any(f.confidence is not None for f in have) else have

    def to_dict(self) -> dict:
        return {"model": self.model, "layer": self.layer, "method": self.method, "dataset": self.dataset,
                "settings": self.settings, "filters": [asdict(f) for f in self.filters]}

    def csv_text(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["layer", "unit", "rank", "word", "score", "similarity", "confidence", "filter_confidence",
                    "interpretable", "filter_stability", "reference_iou"])
        for f in self.filters:
            verdict = ["" if v is None else v for v in (f.confidence, f.interpretable, f.stability)]
            for r, word in enumerate(f.words, 1):
                grounding = word.get("grounding")
                w.writerow([self.layer, f.unit, r, word["word"], word["score"], word["similarity"],
                            word.get("confidence", ""), *verdict, "" if grounding is None else grounding])
        return buf.getvalue()

    def save(self, run: str | Path, name: str = "explanations") -> Path:
        """Write ``RUN/<name>.json`` and ``RUN/<name>.csv`` atomically and record them in the manifest."""
        rf = RunFolder(run)
        write_json(rf / f"{name}.json", self.to_dict())
        write_text(rf / f"{name}.csv", self.csv_text())
        rf.record(name, [f"{name}.json", f"{name}.csv"], method=self.method)
        return rf / f"{name}.json"

    @classmethod
    def load(cls, path: str | Path) -> "Explanations":
        """Read ``explanations.json`` (a file or a run folder)."""
        p = Path(path)
        if p.is_dir():
            RunFolder(p).require("explanations", "lavise explain")
            p = p / "explanations.json"
        d = read_json(p)
        return cls(d["model"], d["layer"], d["method"], d["dataset"], d["settings"],
                   [FilterExplanation(**f) for f in d["filters"]])
