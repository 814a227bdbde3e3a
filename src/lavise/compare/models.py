"""Comparison of models (paper §4.6): the concepts their filters express, shared and unique.

The concepts a model's filters express are the distinct top words of its interpretable filters (not dead,
top word voted by at least ``min_score`` of the filter's top images); two models are compared by the shared
and unique concepts, as in the paper's pretrained-versus-scratch count.
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import RunError
from ..explain import Explanations
from ..io import read_json, write_json, write_text
from ..run import RunFolder, versions
from .files import MODEL_FILE, MODEL_FILES, record_result


@dataclass(frozen=True)
class ModelConcepts:
    """The concepts one model's filters express."""

    label: str
    run: str
    model: str
    layer: str
    dataset: str
    filters: int
    interpretable: int
    concepts: dict  # concept -> list of units whose top words include it


@dataclass(frozen=True)
class ModelComparison:
    """Shared and unique concepts of two models; ``save`` writes JSON, CSV and a figure."""

    a: ModelConcepts
    b: ModelConcepts
    shared: list
    only_a: list
    only_b: list
    settings: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict:
        return {"a": len(self.a.concepts), "b": len(self.b.concepts), "shared": len(self.shared),
                "only_a": len(self.only_a), "only_b": len(self.only_b)}

    def to_dict(self) -> dict:
        return {"a": asdict(self.a), "b": asdict(self.b), "counts": self.counts, "shared": self.shared,
                "only_a": self.only_a, "only_b": self.only_b, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelComparison":
        return cls(ModelConcepts(**d["a"]), ModelConcepts(**d["b"]), d["shared"], d["only_a"], d["only_b"],
                   d.get("settings", {}))

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["concept", "where", f"filters_{self.a.label}", f"filters_{self.b.label}"])
        for where, names in (("shared", self.shared), ("only_a", self.only_a), ("only_b", self.only_b)):
            for c in names:
                w.writerow([c, where, len(self.a.concepts.get(c, [])), len(self.b.concepts.get(c, []))])
        return buf.getvalue()

    def save(self, out: str | Path, figure: bool = True) -> Path:
        """Write ``compare_models.json``, ``compare_models.csv`` and ``compare_models.png`` into ``out``."""
        out = Path(out)
        write_json(out / MODEL_FILE, self.to_dict())
        write_text(out / "compare_models.csv", self.csv_text())
        if figure:
            from ..plots import plot_model_comparison, save_figure

            fig, _ = plot_model_comparison(self)
            save_figure(fig, out / "compare_models.png")
        return out / MODEL_FILE

    @classmethod
    def load(cls, path: str | Path) -> "ModelComparison":
        p = Path(path)
        return cls.from_dict(read_json(p / MODEL_FILE if p.is_dir() else p))


def model_concepts(ex: Explanations, label: str, run: str = "", top_words: int = 1,
                   min_score: float = 0.2) -> ModelConcepts:
    """Distinct top words over the interpretable filters of one explained layer.

    Args:
        ex: the layer's explanations.
        label: a short name for the model.
        top_words: words per filter counted as its concepts (1 = the top word, as in the paper's counts).
        min_score: a filter is interpretable when its top word was voted by at least this share of its top images.
    """
    concepts: dict[str, list[int]] = {}
    interpretable = 0
    for f in ex.filters:
        if f.dead or not f.words or f.words[0]["score"] < min_score:
            continue
        interpretable += 1
        for w in f.words[:top_words]:
            concepts.setdefault(w["word"], []).append(f.unit)
    concepts = dict(sorted(concepts.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    return ModelConcepts(label, run, ex.model, ex.layer, ex.dataset, len(ex.filters), interpretable, concepts)


def compare_models(
    run_a: str | Path | Explanations,
    run_b: str | Path | Explanations,
    labels: tuple[str, str] | None = None,
    top_words: int = 1,
    min_score: float = 0.2,
    out: str | Path | None = None,
) -> ModelComparison:
    """Concepts learned by two models (any architectures), shared and unique.

    Args:
        run_a, run_b: run folders with ``explanations.json`` (or ``Explanations``).
        labels: names for the two models (default: the run folders' names).
        top_words, min_score: see ``model_concepts``.
        out: folder to write ``compare_models.json``/``.csv``/``.png`` into (None: do not save).
    """
    exs, runs = [], []
    for r in (run_a, run_b):
        if isinstance(r, Explanations):
            exs.append(r)
            runs.append("")
        else:
            rf = RunFolder(r)
            if not rf.has("explanations", verify=True):
                raise RunError(f"run folder {rf.path} has no explanations; run `lavise explain {rf.path} --images ...` first")
            exs.append(Explanations.load(rf.path))
            runs.append(str(rf.path))
    if labels is None:
        labels = tuple(Path(r).name if r else ex.model for r, ex in zip(runs, exs))  # type: ignore[assignment]
        if labels[0] == labels[1]:
            labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    fa, fb = (e.settings.get("dataset_fingerprint") for e in exs)
    same_images = exs[0].dataset == exs[1].dataset or (fa is not None and fa == fb)
    if not same_images:
        warnings.warn(f"the two models were explained on different images ({exs[0].dataset} and {exs[1].dataset}); "
                      "concepts are only comparable on the same images", stacklevel=2)
    a = model_concepts(exs[0], labels[0], runs[0], top_words, min_score)
    b = model_concepts(exs[1], labels[1], runs[1], top_words, min_score)
    shared = sorted(set(a.concepts) & set(b.concepts))
    only_a = sorted(set(a.concepts) - set(b.concepts))
    only_b = sorted(set(b.concepts) - set(a.concepts))
    res = ModelComparison(a, b, shared, only_a, only_b,
                          {"top_words": top_words, "min_score": min_score, "same_images": bool(same_images),
                           "versions": versions()})
    if out is not None:
        res.save(out)
        if runs[0]:
            record_result(RunFolder(runs[0]), out, "compare-models", MODEL_FILES)
    return res
