"""``evaluate_explanations`` (``Run.evaluate``): a run's explanations, other methods and baselines scored
against a dataset's IoU ground truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..defaults import DEFAULT_METHOD
from ..dissect import compute_ground_truth
from ..errors import LaviseError
from ..options import EvalOptions, ExtractOptions
from ..run import Run, versions
from .baselines import netdissect_lists, random_words
from .metrics import norm, score_row
from .results import Evaluation


def evaluate_explanations(run: Run, dataset, options: EvalOptions = EvalOptions(),
                          extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                          reference=None, save: bool = True) -> Evaluation:
    """Score a run's explanations (and, optionally, other methods and baselines) against IoU ground truth
    (``Run.evaluate``).

    Args:
        run: the opened run.
        dataset: evaluated dataset with concept masks (``ConceptDataset``).
        options: what is scored and how (methods: empty scores the run's saved ``explanations.json`` if present,
            as saved, else computes the default method; baselines; conventions; IoU threshold; cut-offs;
            synonyms; the ``image`` method's filter sample; seed) and ``options.explain``: how the methods put
            filters into words (words are computed to ``max(ks)``; ``x`` is the novel-concept list length).
        extract: how the backbone runs (``amp`` also runs the explainer head under autocast).
        units: filters to evaluate (default all).
        reference: reference dataset for NetDissect (default: the run's config ``reference``).
        save: write ``RUN/evaluation.json``.

    Returns:
        ``Evaluation``.
    """
    from .data import load_dataset
    from .explain import Explanations, ImageRerun, check_units, explain_cache
    from .io import write_json

    o, eo = options, options.explain
    explainer = run.explainer
    cfg = run.settings
    check_units(units, explainer.head.in_dim, cfg["layer"])
    if not dataset.concepts:
        raise LaviseError(f"{dataset.spec} has no concept masks; evaluation needs an annotated dataset "
                          "(coco:, broden:, vg:, manifest: or builtin:scenes)")
    ks = sorted(set(int(k) for k in o.ks))
    x = eo.x
    cache = run.cache(dataset, list(dataset.concepts), extract)
    gt = compute_ground_truth(cache, iou_threshold=o.iou_threshold, show_progress=extract.show_progress)
    vocab = run.vocabulary(eo, list(dataset.concepts) if o.dataset_concepts_in_vocabulary else [])
    seen = {norm(c) for c in explainer.concepts}
    novel = sorted({c for c in dataset.concepts if norm(c) not in seen})
    d = cache.shape[0]
    eval_units = list(range(d)) if units is None else list(units)
    syn_emb = run.embeddings if o.synonym_threshold is not None else None
    lists: dict[str, tuple[list[list[str]], dict]] = {}

    todo = list(o.methods)
    if not todo:
        if run.saved and run.has("explanations", verify=True):
            ex = Explanations.load(run.path)
            preds = [[] for _ in range(d)]
            for f in ex.filters:
                preds[f.unit] = f.top_words
            lists[f"run ({ex.method})"] = (preds, {"source": "explanations.json", "method": ex.method,
                                                   "words": max((len(f.words) for f in ex.filters), default=0)})
            eval_units = [u for u in eval_units if u in {f.unit for f in ex.filters}]
        else:
            todo = [DEFAULT_METHOD]
    truth_any = gt.labels("netdissect")
    for m in todo:
        mu = eval_units
        if m == "image" and o.image_units is not None:
            cand = [u for u in eval_units if truth_any[u]]
            rng = np.random.default_rng(o.seed)
            mu = sorted(rng.choice(cand, size=min(o.image_units, len(cand)), replace=False).tolist())
        rerun = ImageRerun.of(run.target, cfg["layer"], dataset) if m == "image" else None
        fx = explain_cache(explainer, cache, vocab, eo.replace(method=m, x=max(max(ks), x)), mu, extract, rerun)
        preds = [[] for _ in range(d)]
        for f in fx:
            preds[f.unit] = f.top_words
        lists[m] = (preds, {"method": m, "units_scored": len(mu) if len(mu) != len(eval_units) else None})
        if m == "image" and len(mu) != len(eval_units):
            lists[m][1]["units"] = mu
    if "netdissect" in o.baselines:
        ref = reference if reference is not None else load_dataset(cfg["reference"])
        rcache = run.cache(ref, list(explainer.concepts), extract)
        rgt = compute_ground_truth(rcache, iou_threshold=o.iou_threshold, show_progress=extract.show_progress)
        lists["netdissect"] = (netdissect_lists(rgt), {"source": f"NetDissect on {ref.spec}"})
    if "random" in o.baselines:
        lists["random"] = (random_words(vocab.words, d, max(max(ks), x), o.seed),
                           {"source": "uniform over the vocabulary"})

    rows = []
    for conv in o.conventions:
        for name, (preds, info) in lists.items():
            u = info.get("units") or eval_units
            info_row = {k: v for k, v in info.items() if k != "units"}
            rows.append(score_row(name, preds, gt, conv, ks, u, novel, x, syn_emb, o.synonym_threshold, **info_row))
    truth = {c: gt.labels(c) for c in o.conventions}
    iou = gt.iou("netdissect")
    per_filter = []
    for u in eval_units:
        item = {"unit": u, "ground_truth": [{"concept": c, "iou": round(float(iou[u, gt.concepts.index(c)]), 6)}
                                            for c in truth.get("netdissect", [[]] * d)[u]]}
        if "present" in truth:
            item["ground_truth_present"] = truth["present"][u]
        item["words"] = {name: preds[u][:max(ks)] for name, (preds, _) in lists.items()}
        per_filter.append(item)
    settings = {"run": str(run.path), "dataset": dataset.spec, "dataset_fingerprint": cache.meta["dataset_fingerprint"],
                "model": cfg["model"], "layer": cfg["layer"], "embeddings": cfg["embeddings"], "p": eo.p, "s": eo.s,
                "x": x, "ks": ks, "vocabulary": eo.vocabulary, "vocabulary_size": len(vocab.words),
                "dataset_concepts_in_vocabulary": o.dataset_concepts_in_vocabulary, "iou_threshold": o.iou_threshold,
                "synonym_threshold": o.synonym_threshold, "calibration": eo.calibration, "hubness": eo.hubness,
                "seed": o.seed, "novel_concepts": novel, "images": len(cache), "versions": versions()}
    result = Evaluation(settings, {c: gt.summary(c) for c in o.conventions}, rows, per_filter)
    if save and run.saved:
        write_json(run.path / "evaluation.json", result.to_dict())
        run.record("evaluation", ["evaluation.json"])
    return result


def evaluate_run(run: str | Path | Run, dataset, options: EvalOptions = EvalOptions(),
                 extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None, reference=None,
                 target=None, cache_dir: str | Path | None = None, save: bool = True) -> Evaluation:
    """Score a run's explanations against IoU ground truth (see ``evaluate_explanations``).

    Args:
        run: run folder written by ``lavise train`` (or a ``Run``).
        dataset, options, extract, units, reference, save: as in ``evaluate_explanations``.
        target: the model (default: from the run's config; its weights are checked).
        cache_dir: feature caches (default ``RUN/cache``).

    Returns:
        ``Evaluation``.
    """
    return evaluate_explanations(Run.open(run, target=target, cache_dir=cache_dir), dataset, options, extract, units,
                                 reference, save)
