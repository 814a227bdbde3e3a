"""A run folder: settings, outputs and a manifest of which parts are complete.

Layout::

    RUN/config.json            every setting and library version
    RUN/explainer.safetensors  the trained head
    RUN/train_log.csv          training curves
    RUN/explanations.json|csv  per-filter words
    RUN/cache/<key>/           feature caches
    RUN/manifest.json          part -> files with sha256; a part absent here is not valid

Parts are written atomically (``io``) and recorded in the manifest only
after all their files are in place, so an interrupted step is redone, never read.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import EmbeddingError, RunError
from .io import read_json, sha256_file, write_json
from .options import CompareOptions, EvalOptions, ExplainOptions, ExtractOptions

if TYPE_CHECKING:  # the heavy parts load on first use, so opening a run is cheap
    from .compare import GroupComparison
    from .data.base import ConceptDataset
    from .embeddings import Embeddings, Vocabulary
    from .evaluate import Evaluation
    from .explain import Explanations
    from .features import FeatureCache
    from .models import TargetModel
    from .train import TrainedExplainer


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results."""
    import numpy
    import torch
    import torchvision

    return {"lavise": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__, "platform": platform.platform()}


class RunFolder:
    """Read and write one run folder.

    Args:
        path: the folder (created on first write).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def manifest(self) -> dict:
        p = self.path / "manifest.json"
        return read_json(p) if p.is_file() else {"parts": {}}

    def record(self, part: str, files: list[str], **info) -> None:
        """Mark ``part`` complete, with the checksums of its files (relative names)."""
        m = self.manifest()
        m["parts"][part] = {"files": {f: sha256_file(self.path / f) for f in files}, **info}
        write_json(self.path / "manifest.json", m)

    def has(self, part: str, verify: bool = False) -> bool:
        entry = self.manifest()["parts"].get(part)
        if not entry:
            return False
        for f, digest in entry["files"].items():
            p = self.path / f
            if not p.is_file() or (verify and sha256_file(p) != digest):
                return False
        return True

    def require(self, part: str, step: str) -> None:
        """Raise a clear error unless ``part`` is complete and its files are intact."""
        if not self.path.is_dir():
            raise RunError(f"run folder {self.path} does not exist; create it with `{step}`")
        if part == "explainer" and (self.path / "layers.json").is_file():
            raise RunError(f"{self.path} is a run of several layers: open one of them ({self.path / 'layers'}/<layer>) "
                           "or the whole with lavise.LayeredRun")
        if not self.has(part, verify=True):
            raise RunError(f"run folder {self.path} has no complete {part}; run `{step}` first")

    def config(self) -> dict:
        self.require("explainer", "lavise train")
        return read_json(self.path / "config.json")


class Run(RunFolder):
    """A trained run, opened once: its config, explainer, embeddings, model and feature caches.

    Every later stage works on a ``Run``: ``explain``, ``evaluate``, ``compare`` and ``report`` are its
    verbs (the module-level functions of the same names are thin wrappers). The model is loaded on first
    use and its weights are checked against the digest the explainer was trained with.

    Args:
        path: the run folder written by ``train_explainer`` (None: an explainer held in memory only).
        explainer: the ``TrainedExplainer`` (default: read from ``path``).
        target: the model (default: loaded from the config on first use).
        cache_dir: where feature caches live (default ``RUN/cache``).
    """

    def __init__(self, path: str | Path | None, explainer: "TrainedExplainer | None" = None,
                 target: "TargetModel | None" = None, cache_dir: str | Path | None = None):
        if path is None and (explainer is None or cache_dir is None):
            raise RunError("a run held in memory needs its explainer and a cache_dir for feature caches")
        super().__init__(path if path is not None else cache_dir)  # type: ignore[arg-type]
        self.saved = path is not None
        self._explainer, self._target, self._embeddings = explainer, target, None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        if explainer is None:
            self.config()  # a clear error now for a folder that is not a trained run
        if target is not None:  # a model passed in must be the one trained on, even where a cache would serve
            self.check_target(target)

    @classmethod
    def open(cls, run: "str | Path | TrainedExplainer | Run", target: "TargetModel | None" = None,
             cache_dir: str | Path | None = None, out: str | Path | None = None) -> "Run":
        """A ``Run`` from a folder, a ``TrainedExplainer`` (then ``out`` or ``cache_dir`` says where caches go)
        or a ``Run`` (returned as it is unless ``target`` or ``cache_dir`` are given)."""
        if isinstance(run, Run):
            if target is None and cache_dir is None:
                return run
            return cls(run.path if run.saved else None, run.explainer, target or run._target,
                       cache_dir or run._cache_dir)
        if isinstance(run, (str, Path)):
            return cls(run, target=target, cache_dir=cache_dir)
        folder = cache_dir if cache_dir is not None else (Path(out) / "cache" if out is not None else None)
        return cls(None, run, target, folder)

    # ------------------------------------------------------------------ what the run holds

    @property
    def explainer(self) -> "TrainedExplainer":
        if self._explainer is None:
            from .train import TrainedExplainer

            self._explainer = TrainedExplainer.load(self.path)
        return self._explainer

    @property
    def settings(self) -> dict:
        """The run's config (``config.json`` as saved, or the in-memory explainer's)."""
        return self.explainer.config

    @property
    def layer(self) -> str:
        return self.settings["layer"]

    @property
    def cache_dir(self) -> Path:
        """``RUN/cache``; for one layer of a run of several (``RUN/layers/<layer>``), the shared ``RUN/cache``."""
        if self._cache_dir is not None:
            return self._cache_dir
        top = self.path.parent.parent
        if self.path.parent.name == "layers" and (top / "layers.json").is_file():
            return top / "cache"
        return self.path / "cache"

    @property
    def target(self) -> "TargetModel":
        """The model, loaded from the config on first use, with the trained-on weights (digest checked)."""
        if self._target is None:
            from .models import load_model

            cfg = self.settings
            self._target = load_model(cfg["model"], cfg.get("weights"))
        self.check_target(self._target)
        return self._target

    def check_target(self, target: "TargetModel") -> None:
        """A one-line ``RunError`` unless ``target`` has the weights the explainer was trained on."""
        digest = self.settings.get("model_digest")
        if digest is not None and target.weights_digest != digest:
            raise RunError(f"the weights of {self.settings['model']} differ from those the explainer was trained "
                           "on; pass the same --weights")

    @property
    def embeddings(self) -> "Embeddings":
        if self._embeddings is None:
            from .embeddings import load_embeddings

            emb = load_embeddings(self.settings["embeddings"])
            if emb.dim != self.explainer.head.emb_dim:
                raise EmbeddingError(f"{self.settings['embeddings']} is {emb.dim}-d but the explainer outputs "
                                     f"{self.explainer.head.emb_dim}-d")
            self._embeddings = emb
        return self._embeddings

    def vocabulary(self, options: ExplainOptions = ExplainOptions(), extra_concepts: list[str] = ()) -> "Vocabulary":
        """The candidate words of ``options`` (the training concepts and ``extra_concepts`` always among them)."""
        names = list(self.explainer.concepts) + list(extra_concepts)
        return self.embeddings.vocabulary(options.vocabulary, concepts=names, size=options.vocabulary_size)

    # ------------------------------------------------------------------ feature caches

    def cache_key(self, dataset: "ConceptDataset", concepts: list[str] | None = None, amp: bool = False) -> str:
        """The key of this run's cache of ``dataset`` (the same function extraction uses; no model needed)."""
        from .features import cache_key

        cfg = self.settings
        if "model_digest" in cfg and "preprocess" in cfg:
            return cache_key(cfg["model_digest"], cfg["preprocess"], self.layer, dataset, concepts, amp)
        t = self.target
        return cache_key(t.weights_digest, t.preprocess.to_dict(), self.layer, dataset, concepts, amp)

    def find_cache(self, dataset: "ConceptDataset", concepts: list[str] | None = None,
                   amp: bool = False) -> "FeatureCache | None":
        """The cache of ``dataset`` if an earlier step made it, else None (nothing is extracted)."""
        from .features import FeatureCache

        folder = self.cache_dir / self.cache_key(dataset, concepts, amp)
        return FeatureCache.open(folder) if (folder / "meta.json").is_file() else None

    def cache(self, dataset: "ConceptDataset", concepts: list[str] | None = None,
              extract: ExtractOptions = ExtractOptions()) -> "FeatureCache":
        """The cache of ``dataset`` at the run's layer: found, or extracted (resumable) with the run's model."""
        found = self.find_cache(dataset, concepts, extract.amp)
        if found is not None:
            return found
        from .features import extract_features

        return extract_features(self.target, self.layer, dataset, self.cache_dir, concepts, extract)

    # ------------------------------------------------------------------ the verbs

    def explain(self, images: "ConceptDataset", options: ExplainOptions = ExplainOptions(),
                extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                out: str | Path | None = None) -> "Explanations":
        """Explain every filter (or ``units``) on ``images``; saved into ``out`` (default: the run folder)."""
        from .explain import explain_run

        return explain_run(self, images, options, extract, units, out)

    def evaluate(self, dataset: "ConceptDataset", options: EvalOptions = EvalOptions(),
                 extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                 reference: "ConceptDataset | None" = None, save: bool = True) -> "Evaluation":
        """Score explanations against ``dataset``'s IoU ground truth (``RUN/evaluation.json`` when ``save``)."""
        from .evaluate import evaluate_explanations

        return evaluate_explanations(self, dataset, options, extract, units, reference, save)

    def compare(self, images: "ConceptDataset", groups=None, only: list[str] | None = None,
                one_vs_rest: str | None = None, options: CompareOptions = CompareOptions(),
                extract: ExtractOptions = ExtractOptions(), out: str | Path | None = None) -> "GroupComparison":
        """Which filters fire on more images of one group than another (see ``compare.compare_groups``)."""
        from .compare import compare_run

        return compare_run(self, images, groups, only, one_vs_rest, options, extract, out)

    def report(self, out: str | Path | None = None, **options) -> Path:
        """Write the HTML report (see ``report.build_report`` for ``options``)."""
        from .report import build_report

        return build_report(self, out=out, **options)
