"""``evaluate_explanations`` (``Run.evaluate``): a run's explanations, other methods, baselines, controls and
ceilings scored against a dataset's IoU ground truth, in one table.

By default the evaluated images are split in two seeded halves: every explanation is drawn from the *explain*
half and scored against the ground truth of the *score* half, so an explainer cannot share the noise of the
images it was drawn from. Thresholds T_u are label-free and come from all the evaluated images.

Rows, each tagged with its ``kind``:
    method    the input methods (or the run's saved explanations, recomputed on the explain half when they
              were drawn from the evaluated images)
    baseline  NetDissect (labels from the run's reference set), random words from the vocabulary
    control   ``constant`` (the reference set's most frequent concepts for every filter), ``names`` (random
              concept names of the evaluated dataset), ``shuffled`` (the first method's lists permuted across
              filters), ``random-init`` (the whole pipeline on a randomly initialised copy of the model, scored
              against that copy's own ground truth)
    ceiling   ``ground truth of the explain half`` (how well the two halves' ground truths agree: the noise
              ceiling) and ``NetDissect on the explain half`` (concepts ranked by their IoU on the explain half:
              a supervised ceiling); only with halves
Each row carries P/R/F1@k under the headline match (lemmas), the exact-match twins, novel-concept discovery
where the dataset has concepts the explainer never saw, and the description-grounded AUPRC of each filter's
top word (``grounded.grounded_scores``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..defaults import DEFAULT_METHOD
from ..dissect import GroundTruth, compute_ground_truth
from ..errors import LaviseError
from ..options import EvalOptions, ExplainOptions, ExtractOptions, TrainOptions
from ..run import Run, versions
from ..stats import Thresholds
from .baselines import constant_words, names_random_words, netdissect_lists, random_words, shuffled_lists
from .grounded import grounded_scores
from .metrics import match_key, score_row
from .results import Evaluation


def split_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``n`` cache rows into an explain half and a score half (each ascending; the explain
    half gets the extra row of an odd ``n``)."""
    perm = np.random.default_rng(seed).permutation(n)
    half = (n + 1) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


@dataclass
class _Setting:
    """What every row of one evaluation is scored with."""

    gt: GroundTruth
    explain_rows: np.ndarray | None
    thresholds: Thresholds
    score_rows: np.ndarray | None = None


def ranked_by_iou(gt: GroundTruth, k: int) -> list[list[str]]:
    """Per filter, the concepts with positive IoU ranked by it, at most ``k``: NetDissect's labels without
    its threshold (the supervised ceiling's lists)."""
    iou = gt.iou("netdissect")
    order = np.argsort(-iou, axis=1, kind="stable")[:, :k]
    return [[gt.concepts[c] for c in row if iou[u, c] > 0] for u, row in enumerate(order)]


def evaluate_explanations(run: Run, dataset, options: EvalOptions = EvalOptions(),
                          extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                          reference=None, save: bool = True) -> Evaluation:
    """Score a run's explanations, other methods, baselines, controls and ceilings against IoU ground truth
    (``Run.evaluate``).

    Args:
        run: the opened run.
        dataset: evaluated dataset with concept masks (``ConceptDataset``).
        options: what is scored and how (see ``EvalOptions``: methods — empty scores the run's saved
            ``explanations.json`` if present, else computes the default method —, baselines, controls, split,
            match, conventions, IoU threshold, cut-offs, synonyms, seed) and ``options.explain``: how the
            methods put filters into words (words are computed to ``max(ks)``; ``x`` is the novel-concept
            list length).
        extract: how the backbone runs (``amp`` also runs the explainer head under autocast).
        units: filters to evaluate (default all).
        reference: reference dataset for NetDissect and the constant control (default: the run's reference).
        save: write ``RUN/evaluation.json``.

    Returns:
        ``Evaluation``.
    """
    from ..explain import check_units, compute_thresholds
    from ..io import write_json

    o = options
    explainer, cfg = run.explainer, run.settings
    check_units(units, explainer.head.in_dim, cfg["layer"])
    if not dataset.concepts:
        raise LaviseError(f"{dataset.spec} has no concept masks; evaluation needs an annotated dataset "
                          "(coco:, broden:, vg:, manifest: or builtin:scenes)")
    ks = sorted(set(int(k) for k in o.ks))
    K = max(max(ks), o.explain.x)
    cache = run.cache(dataset, list(dataset.concepts), extract)
    if o.split == "halves" and len(cache) < 2:
        raise LaviseError(f"{dataset.spec} has {len(cache)} readable image(s); held-out scoring needs at least 2 "
                          "(or use --split none)")
    thr = compute_thresholds(cache)
    ex_rows, sc_rows = split_rows(len(cache), o.seed) if o.split == "halves" else (None, None)
    gt = compute_ground_truth(cache, thr, o.iou_threshold, show_progress=extract.show_progress, rows=sc_rows)
    key = match_key(o.match)
    seen = {key(c) for c in explainer.concepts}
    novel = sorted({c for c in dataset.concepts if key(c) not in seen})
    st = _Setting(gt, ex_rows, thr, sc_rows)
    d = cache.shape[0]
    eval_units = list(range(d)) if units is None else list(units)
    vocab = run.vocabulary(o.explain, list(dataset.concepts) if o.dataset_concepts_in_vocabulary else [])
    lists: dict[str, tuple[list[list[str]], dict]] = {}

    for name, preds, info in _methods(run, dataset, cache, vocab, st, o, extract, eval_units, K):
        lists[name] = (preds, {"kind": "method", **info})
        if info.get("units"):
            continue
        eval_units = [u for u in eval_units if u in set(info.get("explained", eval_units))]
    first = next(iter(lists.values()))[0]
    ref, rgt = None, None
    if {"netdissect", "netdissect-lite"} & set(o.baselines) or {"constant", "random-init"} & set(o.controls):
        from ..data import load_dataset

        ref = reference if reference is not None else load_dataset(cfg["reference"])
    if "netdissect" in o.baselines or "constant" in o.controls:
        rcache = run.cache(ref, list(explainer.concepts), extract)
        rgt = compute_ground_truth(rcache, iou_threshold=o.iou_threshold, show_progress=extract.show_progress)
    if "netdissect" in o.baselines:
        lists["netdissect"] = (netdissect_lists(rgt), {"kind": "baseline", "source": f"NetDissect on {ref.spec}"})
    if "netdissect-lite" in o.baselines:
        lists["netdissect-lite"] = (_netdissect_lite_lists(run, ref, o, extract),
                                    {"kind": "baseline", "source": f"NetDissect-Lite's definitions on {ref.spec}"})
    if "random" in o.baselines:
        lists["random"] = (random_words(vocab.words, d, K, o.seed),
                           {"kind": "baseline", "source": f"uniform over the {len(vocab.words)}-word vocabulary"})
    if "constant" in o.controls:
        counts = dict(zip(rgt.concepts, np.asarray(rgt.images_with).tolist()))
        lists["constant"] = (constant_words(counts, d, K),
                             {"kind": "control", "source": f"the {K} most frequent concepts of {ref.spec}"})
    if "names" in o.controls:
        lists["names"] = (names_random_words(list(dataset.concepts), d, K, o.seed),
                          {"kind": "control", "source": f"uniform over the {len(dataset.concepts)} concept names"})
    if "shuffled" in o.controls:
        lists["shuffled"] = (shuffled_lists(first, eval_units, o.seed),
                             {"kind": "control", "source": f"{next(iter(lists))} permuted across filters"})
    if sc_rows is not None:
        gt_a = compute_ground_truth(cache, thr, o.iou_threshold, show_progress=extract.show_progress, rows=ex_rows)
        lists["ceiling: ground truth of the explain half"] = (
            gt_a.labels("netdissect"), {"kind": "ceiling", "source": "IoU > threshold on the explain half"})
        lists["ceiling: NetDissect on the explain half"] = (
            ranked_by_iou(gt_a, K), {"kind": "ceiling", "source": "concepts ranked by IoU on the explain half"})

    rows = []
    syn = (run.embeddings, o.synonym_threshold) if o.synonym_threshold is not None else None
    for conv in o.conventions:
        for name, (preds, info) in lists.items():
            u = info.get("units") or eval_units
            row = score_row(name, preds, gt, conv, ks, u, novel, o.explain.x, syn, o.match,
                            **{k: v for k, v in info.items() if k not in _PRIVATE})
            if conv == o.conventions[0]:
                row.update(grounded_scores(preds, cache, key, rows=sc_rows, seed=o.seed))
            rows.append(row)
    if "random-init" in o.controls:
        rows += _random_init_rows(run, dataset, ref, o, extract, eval_units, ks)
    confidence = {}
    for name, (_, info) in lists.items():
        if info.get("filters"):
            confidence[name] = confidence_report(info["filters"], gt.labels("netdissect"), key)
            row = next(r for r in rows if r["name"] == name and r["convention"] == o.conventions[0])
            row.update({k: confidence[name][k] for k in CONFIDENCE_COLUMNS})
    stability, stable_pf = _stability(run, dataset, cache, vocab, st, o, extract, lists, key) if o.stability else ({}, {})
    truth = {c: gt.labels(c) for c in o.conventions}
    iou = gt.iou("netdissect")
    per_filter = []
    for u in eval_units:
        item = {"unit": u, "ground_truth": [{"concept": c, "iou": round(float(iou[u, gt.concepts.index(c)]), 6)}
                                            for c in truth.get("netdissect", [[]] * d)[u]]}
        if "present" in truth:
            item["ground_truth_present"] = truth["present"][u]
        item["words"] = {name: preds[u][:max(ks)] for name, (preds, _) in lists.items()}
        if stable_pf:
            item["stability"] = {probe: pf.get(u) for probe, pf in stable_pf.items()}
        per_filter.append(item)
    eo = o.explain
    settings = {"run": str(run.path), "dataset": dataset.spec, "dataset_fingerprint": cache.meta["dataset_fingerprint"],
                "model": cfg["model"], "layer": cfg["layer"], "embeddings": cfg["embeddings"], "p": eo.p, "s": eo.s,
                "x": eo.x, "ks": ks, "vocabulary": eo.vocabulary, "vocabulary_size": len(vocab.words),
                "dataset_concepts_in_vocabulary": o.dataset_concepts_in_vocabulary, "iou_threshold": o.iou_threshold,
                "synonym_threshold": o.synonym_threshold, "calibration": eo.calibration, "hubness": eo.hubness,
                "votes": eo.votes, "smooth": eo.smooth, "smooth_sigma": eo.smooth_sigma,
                "seed": o.seed, "match": o.match, "split": o.split, "controls": list(o.controls),
                "stability": list(o.stability), "noise_sigma": o.noise_sigma, "noise_draws": o.noise_draws,
                "explain_images": len(cache) if ex_rows is None else len(ex_rows),
                "score_images": len(cache) if sc_rows is None else len(sc_rows),
                "novel_concepts": novel, "images": len(cache), "versions": versions()}
    if sc_rows is not None:
        settings["explain_image_ids"] = [cache.image_ids[int(r)] for r in ex_rows]
        settings["score_image_ids"] = [cache.image_ids[int(r)] for r in sc_rows]
    result = Evaluation(settings, {c: gt.summary(c) for c in o.conventions}, rows, per_filter, confidence, stability)
    if save and run.saved:
        write_json(run.path / "evaluation.json", result.to_dict())
        run.record("evaluation", ["evaluation.json"])
    return result


def _methods(run: Run, dataset, cache, vocab, st: _Setting, o: EvalOptions, extract: ExtractOptions,
             eval_units: list[int], K: int):
    """(name, per-filter lists, info) of each scored method: those asked for, else the run's saved
    explanations (recomputed on the explain half if they were drawn from the evaluated images), else the
    default method."""
    from ..explain import Explanations, ImageRerun, explain_cache

    d = cache.shape[0]
    todo = [(m, o.explain.replace(method=m, x=K), m) for m in o.methods]
    if not todo and run.saved and run.has("explanations", verify=True):
        ex = Explanations.load(run.path)
        from ..data.perturb import smoothed

        drawn = smoothed(dataset, int(ex.settings.get("smooth", 0)), float(ex.settings.get("smooth_sigma", 1.0)))
        same = ex.settings.get("dataset_fingerprint") == drawn.fingerprint()
        if st.explain_rows is None or not same:
            preds = [[] for _ in range(d)]
            for f in ex.filters:
                preds[f.unit] = f.top_words
            yield f"run ({ex.method})", preds, {"source": "explanations.json", "method": ex.method,
                                                "words": max((len(f.words) for f in ex.filters), default=0),
                                                "explained": [f.unit for f in ex.filters]}
            return
        saved = ExplainOptions.from_dict({**ex.settings, "method": ex.method, "vocabulary_size":
                                          o.explain.vocabulary_size})
        todo = [(ex.method, saved.replace(x=K), f"run ({ex.method}), explain half")]
    if not todo:
        todo = [(DEFAULT_METHOD, o.explain.replace(method=DEFAULT_METHOD, x=K), DEFAULT_METHOD)]
    truth_any = st.gt.labels("netdissect")
    for m, eo, name in todo:
        mu = eval_units
        if m == "image" and o.image_units is not None:
            cand = [u for u in eval_units if truth_any[u]]
            rng = np.random.default_rng(o.seed)
            mu = sorted(rng.choice(cand, size=min(o.image_units, len(cand)), replace=False).tolist())
        rerun = ImageRerun.of(run.target, run.layer, dataset) if m == "image" else None
        ecache, ethr = _explained(run, dataset, cache, eo, st.thresholds, extract)
        fx = explain_cache(run.explainer, ecache, vocab, eo, mu, extract, rerun, ethr, st.explain_rows)
        preds = [[] for _ in range(d)]
        for f in fx:
            preds[f.unit] = f.top_words
        info = {"method": m, "units_scored": len(mu) if len(mu) != len(eval_units) else None, "fx": fx, "options": eo}
        if any(f.confidence is not None for f in fx):
            info["filters"] = [f for f in fx if f.confidence is not None]
        if st.explain_rows is not None:
            info["source"] = "explain half"
        if m == "image" and len(mu) != len(eval_units):
            info["units"] = mu
        yield name, preds, info


_PRIVATE = ("units", "explained", "filters", "fx", "options")  # method info that is not a table column


def _copy_cache(run: Run, copy, cache, extract: ExtractOptions):
    """The cache of a perturbed or smoothed copy of the evaluated images, checked to hold the same images."""
    ccache = run.cache(copy, None, extract)
    if list(ccache.image_ids) != list(cache.image_ids):
        raise LaviseError(f"the copy {copy.spec} read other images than the clean one; rerun with --strict to find "
                          "the unreadable image")
    return ccache


def _explained(run: Run, dataset, cache, eo: ExplainOptions, thresholds, extract: ExtractOptions):
    """The cache and thresholds words come from: the evaluated images', or with ``eo.smooth`` their smoothed copy's
    (its own thresholds, as ``lavise explain --smooth`` computes them; the ground truth stays the clean images')."""
    if not eo.smooth:
        return cache, thresholds
    from ..data.perturb import smoothed
    from ..explain import compute_thresholds

    scache = _copy_cache(run, smoothed(dataset, eo.smooth, eo.smooth_sigma), cache, extract)
    return scache, compute_thresholds(scache)


def _stability(run: Run, dataset, cache, vocab, st: _Setting, o: EvalOptions, extract: ExtractOptions,
               lists: dict, key) -> tuple[dict, dict]:
    """The first method's stability under each probe of ``o.stability`` (``evaluate.stability``): its summary,
    and per probe each filter's figures."""
    from ..explain import compute_thresholds, explain_cache
    from .stability import per_filter, summarise

    name, (preds, info) = next(iter(lists.items()))
    fx, eo = info.get("fx"), info.get("options")
    if fx is None or eo.method == "image":
        why = "saved explanations of other images" if fx is None else "image masking reruns the clean images"
        return {"method": name, "skipped": f"no stability probe of {why}"}, {}
    units, d = [f.unit for f in fx], cache.shape[0]

    def as_lists(filters) -> list[list[str]]:
        out = [[] for _ in range(d)]
        for f in filters:
            out[f.unit] = f.top_words
        return out

    draws: dict[str, list] = {}
    if "halves" in o.stability and st.score_rows is not None:
        ecache, ethr = _explained(run, dataset, cache, eo, st.thresholds, extract)
        draws["halves"] = [as_lists(explain_cache(run.explainer, ecache, vocab, eo, units, extract, None,
                                                  ethr, st.score_rows))]
    if "noise" in o.stability:
        from ..data.perturb import NoisyImages, smoothed

        draws["noise"] = []
        for k in range(o.noise_draws):
            # a smoothed run's rerun on noisy images smooths them the same way
            noisy = smoothed(NoisyImages(dataset, o.noise_sigma, o.seed + k), eo.smooth, eo.smooth_sigma)
            ncache = _copy_cache(run, noisy, cache, extract)
            # thresholds from the noisy images themselves, as a rerun on them would compute them
            draws["noise"].append(as_lists(explain_cache(run.explainer, ncache, vocab, eo, units, extract, None,
                                                         compute_thresholds(ncache), st.explain_rows)))
    vote = {f.unit: f.stability for f in fx if f.stability is not None}
    inter = {f.unit: f.interpretable for f in fx} if any(f.interpretable is not None for f in fx) else None
    pf = {probe: per_filter(preds, ds, units, key) for probe, ds in draws.items()}
    summary = {"method": name, "probes": {probe: summarise(p, vote, inter) for probe, p in pf.items()}}
    if "noise" in draws:
        summary["noise_sigma"], summary["noise_draws"] = o.noise_sigma, o.noise_draws
    return summary, pf


CONFIDENCE_COLUMNS = ("ECE", "AUROC_confidence", "interpretable", "P@1_interpretable", "median_confidence")


def confidence_report(filters, truth: list[list[str]], match) -> dict:
    """How well calibrated the filters' confidences are on the score half: the top word's confidence against
    whether it is in the filter's ground truth (every explained filter; one without ground truth is never right),
    and each word's against the same for that word.

    Returns:
        ``ECE`` (10 equal-width bins) and ``AUROC_confidence`` of the top word, the reliability diagram's bins,
        precision by confidence quartile, ``interpretable`` filters and their P@1, the median filter confidence,
        and the word-level ``ECE_words``.
    """
    from ..explain.confidence import auroc, expected_calibration_error, outcomes, quartile_precision, reliability

    conf = np.array([f.confidence for f in filters], dtype=np.float64)
    right = np.array([bool(f.words) and match(f.words[0]["word"]) in {match(c) for c in truth[f.unit]}
                      for f in filters], dtype=np.float64)
    inter = np.array([bool(f.interpretable) for f in filters])
    has = np.array([bool(truth[f.unit]) for f in filters], dtype=bool)
    _, y = outcomes(filters, truth, match)
    wconf = np.array([w["confidence"] for f in filters for w in f.words], dtype=np.float64)
    return {"filters": len(filters), "ECE": expected_calibration_error(conf, right),
            "AUROC_confidence": auroc(conf, right), "interpretable": int(inter.sum()),
            "P@1_interpretable": float(right[inter].mean()) if inter.any() else float("nan"),
            "median_confidence": float(np.median(conf)) if len(conf) else float("nan"),
            "ECE_words": expected_calibration_error(wconf, y), "reliability": reliability(conf, right),
            "quartiles": quartile_precision(conf, right),
            # the same among filters with ground truth, where P@1 is measured
            "quartiles_with_truth": quartile_precision(conf[has], right[has]),
            "AUROC_with_truth": auroc(conf[has], right[has])}


def _netdissect_lite_lists(run: Run, reference, o: EvalOptions, extract: ExtractOptions) -> list[list[str]]:
    """NetDissect-Lite's labels on the reference set (``lavise dissect --convention netdissect-lite``): a Broden
    reference is re-read as NetDissect-Lite reads it; other datasets keep their own reading."""
    from ..dissect import dissect
    from ..netdissect_lite import load_lite_dataset

    ref = load_lite_dataset(reference.spec) if reference.spec.startswith("broden:") else reference
    _, gt = dissect(run.target, run.layer, ref, run.cache_dir, o.iou_threshold, "netdissect-lite", extract)
    return gt.labels("netdissect-lite")


RANDOM_INIT_SEED = 12345


def random_init_copy(target, layer: str, seed: int = 0):
    """A model with every parameter re-initialised (seeded), as a new ``TargetModel``.

    Args:
        target: the trained ``TargetModel`` (left unchanged).
        layer: the layer the copy's default is set to.
        seed: offset of the initialisation seed.

    Returns:
        The re-initialised copy; ``LaviseError`` if its weights equal the original's.
    """
    import copy

    from ..models import wrap_model

    module = copy.deepcopy(target.module)
    # offset from the user's seed: models built under torch.manual_seed(seed) would otherwise be rebuilt as they are
    torch.manual_seed(RANDOM_INIT_SEED + seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    copy_ = wrap_model(module, target.preprocess, layer, f"{target.spec} (random init, seed {seed})")
    if copy_.weights_digest == target.weights_digest:
        raise LaviseError(f"re-initialising {target.spec} gave back the same weights; the random-init control needs "
                          "a model with trained weights (or another --seed)")
    return copy_


def _random_init_rows(run: Run, dataset, reference, o: EvalOptions, extract: ExtractOptions,
                      eval_units: list[int], ks: list[int]) -> list[dict]:
    """The random-init control: explainer trained and filters explained on a randomly initialised copy of the
    model, scored against that copy's own ground truth on the score half."""
    from ..explain import compute_thresholds, explain_cache
    from ..train import train_explainer

    rnd = random_init_copy(run.target, run.layer, o.seed)
    cfg = run.settings
    topts = TrainOptions.from_dict({**cfg.get("train", {}), "heads": cfg.get("head", {}).get("members", 1)})
    trained = train_explainer(rnd, reference, run.embeddings, run.layer, None, topts, extract, run.cache_dir)
    cache = Run.open(trained, target=rnd, cache_dir=run.cache_dir).cache(dataset, list(dataset.concepts), extract)
    thr = compute_thresholds(cache)
    ex_rows, sc_rows = split_rows(len(cache), o.seed) if o.split == "halves" else (None, None)
    gt = compute_ground_truth(cache, thr, o.iou_threshold, show_progress=extract.show_progress, rows=sc_rows)
    vocab = run.vocabulary(o.explain, list(dataset.concepts) if o.dataset_concepts_in_vocabulary else [])
    K = max(max(ks), o.explain.x)
    fx = explain_cache(trained, cache, vocab, o.explain.replace(x=K), eval_units, extract, None, thr, ex_rows)
    preds = [[] for _ in range(cache.shape[0])]
    for f in fx:
        preds[f.unit] = f.top_words
    key = match_key(o.match)
    out = []
    for conv in o.conventions:
        row = score_row("random-init", preds, gt, conv, ks, eval_units, None, o.explain.x, None, o.match,
                        kind="control", source=f"{o.explain.method} on {rnd.spec}, its own ground truth")
        if conv == o.conventions[0]:
            row.update(grounded_scores(preds, cache, key, rows=sc_rows, seed=o.seed))
        out.append(row)
    return out


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
