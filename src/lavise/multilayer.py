"""Several layers of one model in one run: one forward pass per batch for all of them, one sub-run per layer.

Layout::

    RUN/layers.json            the model and its layers, shallow to deep, each with its folder
    RUN/layers/<layer>/        a one-layer run: config, explainer, explanations, evaluation, report (what
                               ``lavise train --layer LAYER`` writes, byte for byte)
    RUN/cache/<key>/           every layer's feature caches (keyed by layer), each dataset extracted in one pass
    RUN/explanations.json|csv  every layer's explanations (the CSV has a ``layer`` column)
    RUN/evaluation.json|md     one row per layer: the shape of the paper's Table 3
    RUN/report.html            the layers' reports, one click apart
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import ModelError, RunError
from .io import read_json, write_json, write_text
from .options import EvalOptions, ExplainOptions, ExtractOptions, TrainOptions
from .run import Run, RunFolder

if TYPE_CHECKING:
    from .data.base import ConceptDataset
    from .embeddings import Embeddings
    from .evaluate import Evaluation
    from .explain import Explanations
    from .features import FeatureCache
    from .models import TargetModel
    from .train import TrainedExplainer

FORMAT = "lavise-layers-1"
STAGES = "stages"  # the --layer shorthand for a model's stage outputs (``models.stage_layers``)


def resolve_layers(target: TargetModel, layers: str | Sequence[str] | None) -> list[str]:
    """Layer names from ``"a,b,c"``, ``"stages"`` or a list (None: the model's default layer), each checked.

    Raises:
        ModelError: an unknown layer (with the closest names) or a repeated one.
    """
    from .models import stage_layers

    if layers is None:
        return [target.default_layer]
    names = [x.strip() for x in layers.split(",")] if isinstance(layers, str) else list(layers)
    out: list[str] = []
    for name in names:
        out.extend(stage_layers(target.module, target.preprocess.crop) if name == STAGES else [name])
    if not out or any(not n for n in out):
        raise ModelError(f"--layer {layers!r} names no layer; give names separated by commas, or '{STAGES}'")
    repeated = sorted({n for n in out if out.count(n) > 1})
    if repeated:
        raise ModelError(f"--layer names {repeated[0]!r} twice; name each layer once")
    for name in out:
        target.layer(name)  # a clear error for a mistyped name, before any work
    return out


def several(layers: str | None) -> bool:
    """Whether a ``--layer`` value asks for several layers (a comma, or ``stages``), however many it turns out."""
    return layers is not None and ("," in layers or layers.strip() == STAGES)


def folder_name(layer: str) -> str:
    """The sub-run folder of ``layer`` (its name, with anything but letters, digits, ``.``, ``_``, ``-`` as ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer) or "_"


def is_layered(path: str | Path) -> bool:
    """Whether ``path`` is a run of several layers (it has ``layers.json``)."""
    return (Path(path) / "layers.json").is_file()


def train_layers(target: TargetModel, reference: ConceptDataset, embeddings: Embeddings | str, layers: Sequence[str],
                 out: str | Path, options: TrainOptions = TrainOptions(),
                 extract: ExtractOptions = ExtractOptions()) -> dict[str, TrainedExplainer]:
    """Train one explainer per layer into a run of several layers, extracting the reference set in one pass.

    Args:
        target, reference, embeddings, options, extract: as ``train_explainer``.
        layers: the layers (``resolve_layers``).
        out: the run folder (``RUN/layers/<layer>/`` for each layer, ``RUN/cache`` shared).

    Returns:
        ``{layer: TrainedExplainer}``.
    """
    from .embeddings import load_embeddings
    from .features import extract_layers
    from .train import train_explainer

    emb = load_embeddings(embeddings) if isinstance(embeddings, str) else embeddings
    layers = resolve_layers(target, list(layers))
    folders = {layer: folder_name(layer) for layer in layers}
    if len(set(folders.values())) < len(folders):
        raise ModelError(f"layers {sorted(layers)} share a folder name; name them apart")
    rf = LayeredRun.create(out, target.spec, layers, folders)
    _, concepts, _ = emb.encode(list(reference.concepts))  # train_explainer's cache: the concepts with vectors
    if len(concepts) >= 2:  # (fewer: train_explainer explains why)
        extract_layers(target, layers, reference, rf.cache_dir, concepts, extract)
    return {layer: train_explainer(target, reference, emb, layer, rf.path / "layers" / folders[layer], options,
                                   extract, cache_dir=rf.cache_dir) for layer in layers}


class LayeredRun(RunFolder):
    """A run of several layers: each layer's one-layer ``Run`` and verbs that go over all of them, extracting
    each dataset in one pass for every layer first.

    Args:
        path: the folder written by ``train_layers``.
    """

    def __init__(self, path: str | Path):
        super().__init__(path)
        if not self.path.is_dir():
            raise RunError(f"run folder {self.path} does not exist; create it with `lavise train --layer a,b,...`")
        if not self.has("layers", verify=True):
            raise RunError(f"{self.path} is not a run of several layers (no complete layers.json); "
                           "train one with `lavise train --layer a,b,...`")
        info = read_json(self.path / "layers.json")
        if info.get("format") != FORMAT:
            raise RunError(f"{self.path / 'layers.json'} has format {info.get('format')!r}, not {FORMAT}")
        self.info = info
        self._runs: dict[str, Run] = {}
        self._target: TargetModel | None = None

    @classmethod
    def create(cls, path: str | Path, model: str, layers: list[str], folders: dict[str, str]) -> "LayeredRun":
        """Write ``layers.json`` (or check that an earlier one names the same model and layers)."""
        rf = RunFolder(path)
        info = {"format": FORMAT, "model": model, "layers": [{"layer": lay, "folder": f"layers/{folders[lay]}"}
                                                             for lay in layers]}
        if rf.has("layers", verify=True):
            old = read_json(rf / "layers.json")
            if old != info:
                raise RunError(f"{rf.path} already holds a run of {old.get('model')} layers "
                               f"{[x['layer'] for x in old.get('layers', [])]}; use another --out")
        else:
            rf.path.mkdir(parents=True, exist_ok=True)
            write_json(rf / "layers.json", info)
            rf.record("layers", ["layers.json"])
        return cls(rf.path)

    @property
    def layers(self) -> list[str]:
        return [x["layer"] for x in self.info["layers"]]

    def select(self, layers: str | Sequence[str] | None) -> list[str]:
        """The run's layers named in ``layers`` (``"a,b"`` or a list; None: all), in the run's order."""
        if layers is None:
            return self.layers
        names = [x.strip() for x in layers.split(",")] if isinstance(layers, str) else list(layers)
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise RunError(f"this run has no layer {unknown[0]!r}; its layers are {', '.join(self.layers)}")
        return [layer for layer in self.layers if layer in names]

    def run(self, layer: str) -> Run:
        """The one-layer run of ``layer`` (its caches in the shared ``RUN/cache``)."""
        if layer not in self._runs:
            self.select([layer])  # a clear error for a layer the run does not have
            folder = next(x["folder"] for x in self.info["layers"] if x["layer"] == layer)
            run = Run.open(self.path / folder, cache_dir=self.cache_dir)
            if self._target is not None:
                run = Run.open(run, target=self._target)
            self._runs[layer] = run
            self._target = run.target  # one model for every layer, loaded once (digest checked per layer)
        return self._runs[layer]

    def prefetch(self, dataset: ConceptDataset, concepts: list[str] | None = None,
                 extract: ExtractOptions = ExtractOptions(), layers: Sequence[str] | None = None) -> dict[str, FeatureCache]:
        """Every layer's cache of ``dataset``, the missing ones extracted together in one pass."""
        from .features import extract_layers

        layers = self.select(layers)
        target = self.run(layers[0]).target
        for layer in layers[1:]:
            self.run(layer).check_target(target)
        return extract_layers(target, layers, dataset, self.cache_dir, concepts, extract)

    def explain(self, images: ConceptDataset, options: ExplainOptions = ExplainOptions(),
                extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                layers: Sequence[str] | None = None) -> dict[str, Explanations]:
        """``Run.explain`` for each layer (the images extracted once for all), and ``RUN/explanations.json|csv``
        with every layer's."""
        from .data.perturb import smoothed

        layers = self.select(layers)
        self.prefetch(smoothed(images, options.smooth, options.smooth_sigma), None, extract, layers)
        out = {layer: self.run(layer).explain(images, options, extract, units) for layer in layers}
        write_json(self / "explanations.json", {"format": FORMAT, "model": self.info["model"],
                                                "layers": [ex.to_dict() for ex in out.values()]})
        csvs = [ex.csv_text().splitlines(keepends=True) for ex in out.values()]
        write_text(self / "explanations.csv", "".join(csvs[0][:1] + [line for c in csvs for line in c[1:]]))
        self.record("explanations", ["explanations.json", "explanations.csv"])
        return out

    def evaluate(self, dataset: ConceptDataset, options: EvalOptions = EvalOptions(),
                 extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                 reference: ConceptDataset | None = None, layers: Sequence[str] | None = None) -> dict[str, Evaluation]:
        """``Run.evaluate`` for each layer (the dataset extracted once for all), and ``RUN/evaluation.json|md``:
        one row per layer."""
        from .data import load_dataset
        from .features import extract_layers

        layers = self.select(layers)
        self.prefetch(dataset, list(dataset.concepts), extract, layers)
        if "random-init" in options.controls:  # the re-initialised copy is the same for every layer: one pass too
            from .evaluate.core import random_init_copy

            first = self.run(layers[0])
            rnd = random_init_copy(first.target, layers[0], options.seed)
            ref = reference if reference is not None else load_dataset(first.settings["reference"])
            _, concepts, _ = first.embeddings.encode(list(ref.concepts))  # as train_explainer's cache
            extract_layers(rnd, layers, ref, self.cache_dir, concepts, extract)
            extract_layers(rnd, layers, dataset, self.cache_dir, list(dataset.concepts), extract)
        out = {layer: self.run(layer).evaluate(dataset, options, extract, units, reference) for layer in layers}
        rows = [layer_row(layer, ev) for layer, ev in out.items()]
        write_json(self / "evaluation.json", {"format": FORMAT, "model": self.info["model"], "dataset": dataset.spec,
                                              "rows": rows})
        write_text(self / "evaluation.md", layer_table(rows) + "\n")
        self.record("evaluation", ["evaluation.json", "evaluation.md"])
        return out

    def report(self, layers: Sequence[str] | None = None, **options) -> Path:
        """Each layer's report (``Run.report``) and ``RUN/report.html``, which links them."""
        from jinja2 import Environment

        layers = self.select(layers)
        pages = []
        for layer in layers:
            page = self.run(layer).report(**options)
            ex_path = self.run(layer).path / "explanations.json"
            n = interpretable = None
            if ex_path.is_file():
                d = read_json(ex_path)
                n = len(d["filters"])
                interpretable = sum(bool(f.get("interpretable")) for f in d["filters"])
            pages.append({"layer": layer, "href": page.relative_to(self.path).as_posix(), "filters": n,
                          "interpretable": interpretable})
        ev = read_json(self / "evaluation.json") if (self / "evaluation.json").is_file() else None
        html = Environment(autoescape=True).from_string(_INDEX).render(
            model=self.info["model"], pages=pages, table=ev["rows"] if ev else None, columns=LAYER_COLUMNS)
        write_text(self / "report.html", html)
        return self / "report.html"


LAYER_COLUMNS = ("filters", "filters_with_ground_truth", "P@1", "R@10", "F1@10", "NetDissect P@1", "NetDissect R@10",
                 "interpretable")


def layer_row(layer: str, ev: Evaluation) -> dict:
    """One layer's line of the Table 3 analogue: the first method's scores beside the NetDissect baseline's."""
    rows = [r for r in ev.rows if r.get("convention", "netdissect") == "netdissect"]
    main = next((r for r in rows if r.get("kind") == "method"), rows[0] if rows else {})
    nd = next((r for r in rows if r.get("kind") == "baseline" and "netdissect" in str(r.get("name", "")).lower()), {})
    gt = ev.ground_truth.get("netdissect", {})
    inter = next(iter(ev.confidence.values()), {}).get("interpretable") if ev.confidence else None
    return {"layer": layer, "method": main.get("method"), "filters": gt.get("filters"),
            "filters_with_ground_truth": gt.get("filters_with_ground_truth"), "P@1": main.get("P@1"),
            "R@10": main.get("R@10"), "F1@10": main.get("F1@10"), "NetDissect P@1": nd.get("P@1"),
            "NetDissect R@10": nd.get("R@10"), "interpretable": inter}


def layer_table(rows: list[dict]) -> str:
    """The rows of ``layer_row`` as a markdown table, one line per layer."""
    def cell(v):
        return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| layer | " + " | ".join(LAYER_COLUMNS) + " |", "|---" * (len(LAYER_COLUMNS) + 1) + "|"]
    lines += ["| " + " | ".join([r["layer"]] + [cell(r.get(c)) for c in LAYER_COLUMNS]) + " |" for r in rows]
    return "\n".join(lines)


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lavise: {{ model }}, {{ pages|length }} layers</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
nav a{margin-right:1em}</style></head>
<body><h1>{{ model }}: {{ pages|length }} layers</h1>
<nav>{% for p in pages %}<a href="{{ p.href }}">{{ p.layer }}</a>{% endfor %}</nav>
<table><tr><th>layer</th><th>filters</th><th>interpretable</th><th>report</th></tr>
{% for p in pages %}<tr><td>{{ p.layer }}</td><td>{{ p.filters if p.filters is not none else "not explained" }}</td>
<td>{{ p.interpretable if p.interpretable is not none else "" }}</td><td><a href="{{ p.href }}">open</a></td></tr>
{% endfor %}</table>
{% if table %}<h2>Evaluation, one row per layer</h2>
<table><tr><th>layer</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in table %}<tr><td>{{ r.layer }}</td>{% for c in columns %}<td>{{ "%.3f"|format(r[c]) if r[c] is float else (r[c] if r[c] is not none else "") }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
</body></html>
"""
