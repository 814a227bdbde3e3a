"""How good are the explanations? Objective metrics against IoU ground truth (paper §4.4).

Ground truth (``dissect.compute_ground_truth``): for filter u, the annotated
concepts whose IoU with u's thresholded, upsampled activation map exceeds 0.04,
accumulated over all images of the evaluated dataset (NetDissect's convention).
A looser *present-only* convention (sums over the images containing the
concept) is computed beside it and always labelled.

Metrics, per filter with a non-empty ground truth G_u, averaged over those filters;
W_u is the filter's ranked word list:

    P@k  = |W_u[:k] ∩ G_u| / k           (k fixed: a list shorter than k is not rewarded)
    R@k  = |W_u[:k] ∩ G_u| / |G_u|
    F1@k = 2 |W_u[:k] ∩ G_u| / (|W_u[:k]| + |G_u|)   (set F1 of the truncated list: long lists lose
                                                     precision, short lists lose recall; neither games it)

Matching is exact (lower-cased, whitespace-normalised names). The optional
synonym-aware match (a word matches a concept when the cosine similarity of
their embeddings is at least a threshold) is reported in separate ``syn_``
fields, never mixed into the exact ones.

Rows of a comparison (Table 2 of the paper): the explainer's input methods
(``attention``, ``activation``, ``image``, ``original``), the NetDissect
baseline (labels from the run's *reference* set: the concepts with IoU > 0.04
there, best first; on the evaluated set itself it would be its own ground
truth), and random words from the same vocabulary.

Novel concepts: concepts of the evaluated dataset that the explainer was not
trained on. ``discovered`` counts the distinct novel concepts that appear both
in a filter's top-x words and in that filter's ground truth; ``novel_R@k`` is
recall restricted to novel ground-truth concepts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .defaults import DEFAULT_METHOD
from .dissect import Dissection, GroundTruth, compute_ground_truth
from .errors import LaviseError
from .options import KS, EvalOptions, ExtractOptions
from .run import Run, versions

_WS = re.compile(r"[\s_]+")


def norm(word: str) -> str:
    """Canonical form for exact matching: lower case, single spaces ("Traffic_light" -> "traffic light")."""
    return _WS.sub(" ", word.strip().lower())


def score_lists(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], ks: Iterable[int] = KS,
                restrict: set[str] | None = None, units: Iterable[int] | None = None) -> dict:
    """Exact-match precision/recall/F1 at k, averaged over filters with ground truth.

    Args:
        predictions: per filter, ranked words.
        truth: per filter, ground-truth concepts (order irrelevant).
        ks: cut-offs.
        restrict: only ground-truth concepts in this set count (e.g. novel concepts); filters left with
            no ground truth are skipped.
        units: only these filters are scored (default all).

    Returns:
        ``{"filters": n, "P@k": ..., "R@k": ..., "F1@k": ...}`` (means; NaN-free: 0 filters gives 0).
    """
    ks = list(ks)
    units = range(len(truth)) if units is None else units
    P = {k: [] for k in ks}
    R = {k: [] for k in ks}
    F = {k: [] for k in ks}
    for u in units:
        g = {norm(c) for c in truth[u]}
        if restrict is not None:
            g &= {norm(c) for c in restrict}
        if not g:
            continue
        w = [norm(x) for x in predictions[u]]
        for k in ks:
            top = list(dict.fromkeys(w[:k]))
            hits = sum(1 for x in top if x in g)
            P[k].append(hits / k)
            R[k].append(hits / len(g))
            F[k].append(2 * hits / (len(top) + len(g)))
    n = len(R[ks[0]]) if ks else 0
    out: dict = {"filters": n}
    for k in ks:
        out[f"P@{k}"] = float(np.mean(P[k])) if n else 0.0
    for k in ks:
        out[f"R@{k}"] = float(np.mean(R[k])) if n else 0.0
    for k in ks:
        out[f"F1@{k}"] = float(np.mean(F[k])) if n else 0.0
    return out


def synonym_scores(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], embeddings, threshold: float,
                   ks: Iterable[int] = KS, units: Iterable[int] | None = None) -> dict:
    """Synonym-aware P/R/F1@k: a word matches a concept when it is equal or its cosine similarity >= threshold.

    Reported apart from the exact metric (keys prefixed ``syn_``); it stands in for human raters who accept synonyms.
    """
    ks = list(ks)
    units = list(range(len(truth)) if units is None else units)
    phrases = sorted({norm(x) for u in units for x in list(predictions[u])[:max(ks)]} | {norm(c) for u in units for c in truth[u]})
    vec, kept, _ = embeddings.encode(phrases) if phrases else (np.zeros((0, 1)), [], [])
    row = {p: i for i, p in enumerate(kept)}
    P = {k: [] for k in ks}
    R = {k: [] for k in ks}
    F = {k: [] for k in ks}
    for u in units:
        g = list(dict.fromkeys(norm(c) for c in truth[u]))
        if not g:
            continue
        w = list(dict.fromkeys(norm(x) for x in predictions[u]))[:max(ks)]
        match = np.array([[a == b for b in g] for a in w], bool).reshape(len(w), len(g))
        wi = [row.get(a) for a in w]
        gi = [row.get(b) for b in g]
        for i, a in enumerate(wi):
            for j, b in enumerate(gi):
                if a is not None and b is not None and float(vec[a] @ vec[b]) >= threshold:
                    match[i, j] = True
        for k in ks:
            m = match[:k]
            hit_w = int(m.any(1).sum())
            hit_g = int(m.any(0).sum()) if len(m) else 0
            P[k].append(hit_w / k)
            R[k].append(hit_g / len(g))
            p_list = hit_w / len(m) if len(m) else 0.0
            r = hit_g / len(g)
            F[k].append(2 * p_list * r / (p_list + r) if p_list + r else 0.0)
    n = len(R[ks[0]]) if ks else 0
    out: dict = {"syn_threshold": threshold}
    for name, d in (("P", P), ("R", R), ("F1", F)):
        for k in ks:
            out[f"syn_{name}@{k}"] = float(np.mean(d[k])) if n else 0.0
    return out


def novel_scores(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], novel: Iterable[str],
                 x: int = 10, ks: Iterable[int] = KS, units: Iterable[int] | None = None) -> dict:
    """Discovery of concepts the explainer never saw in training.

    Returns:
        ``novel_discovered``: distinct novel concepts in some filter's top-x words and in its ground truth;
        ``novel_discoveries``: such (filter, concept) pairs; ``novel_available``: distinct novel concepts in
        any filter's ground truth; ``novel_filters``: filters whose ground truth has a novel concept;
        ``novel_R@k``: recall restricted to novel ground-truth concepts; ``novel_P@k``: share of the top-k words
        that are correct novel concepts. ``ceiling_R`` and ``ceiling_P@1``: the most R@k (any k) and P@1 an
        explainer that never names a novel concept can reach, over the filters ``score_lists`` scores: the
        mean share of each filter's ground truth that is not novel, and the share of filters with some
        ground-truth concept that is not novel.
    """
    nov = {norm(c) for c in novel}
    units = list(range(len(truth)) if units is None else units)
    found, pairs, avail, seen_share = set(), 0, set(), []
    for u in units:
        full = {norm(c) for c in truth[u]}
        g = full & nov
        avail |= g
        hit = g & {norm(w) for w in list(predictions[u])[:x]}
        found |= hit
        pairs += len(hit)
        if full:
            seen_share.append(1 - len(g) / len(full))
    r = score_lists(predictions, truth, ks, restrict=nov, units=units)
    out = {"novel_concepts": len(nov), "novel_available": len(avail), "novel_discovered": len(found),
           "novel_discoveries": pairs, "novel_filters": r["filters"], "novel_x": x,
           "novel_discovered_names": sorted(found),
           "ceiling_R": float(np.mean(seen_share)) if seen_share else 0.0,
           "ceiling_P@1": float(np.mean([v > 0 for v in seen_share])) if seen_share else 0.0}
    out.update({f"novel_{k}": v for k, v in r.items() if k.startswith(("R@", "P@"))})
    return out


def random_words(vocab_words: Sequence[str], num_filters: int, n: int, seed: int = 0) -> list[list[str]]:
    """The random-words baseline: n distinct words per filter, uniform over the vocabulary."""
    rng = np.random.default_rng(seed)
    n = min(n, len(vocab_words))
    return [[vocab_words[i] for i in rng.choice(len(vocab_words), size=n, replace=False)] for _ in range(num_filters)]


def netdissect_lists(reference_gt: GroundTruth, convention: str = "netdissect") -> list[list[str]]:
    """NetDissect's words per filter: concepts with IoU > threshold on the reference set, best first
    (the first is NetDissect's label; filters below the threshold get none)."""
    return reference_gt.labels(convention)


@dataclass
class Evaluation:
    """A table of rows (methods and baselines) scored against one dataset's ground truth."""

    settings: dict
    ground_truth: dict  # convention -> summary
    rows: list[dict] = field(default_factory=list)
    filters: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "ground_truth": self.ground_truth, "rows": self.rows, "filters": self.filters}

    def table(self, convention: str = "netdissect", columns: Sequence[str] | None = None) -> str:
        return format_table([r for r in self.rows if r["convention"] == convention], columns)


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


def score_row(name: str, predictions, gt: GroundTruth, convention: str, ks=KS, units=None, novel=None, x: int = 10,
              embeddings=None, synonym_threshold: float | None = None, **info) -> dict:
    """All metrics of one method under one ground-truth convention."""
    truth = gt.labels(convention)
    row = {"name": name, "convention": convention, **info}
    row.update(score_lists(predictions, truth, ks, units=units))
    if novel:
        row.update(novel_scores(predictions, truth, novel, x=x, ks=ks, units=units))
    if embeddings is not None and synonym_threshold is not None:
        row.update(synonym_scores(predictions, truth, embeddings, synonym_threshold, ks, units=units))
    return row


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


def dissection_as_explanations(dis: Dissection) -> list[list[str]]:
    """One-word lists (NetDissect's label, or none when not interpretable)."""
    return [[dis.concepts[int(b)]] if ok else [] for b, ok in zip(dis.best, dis.interpretable)]
