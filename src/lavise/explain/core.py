"""Explaining filters: the stages put together.

For filter u: its top-p images on the target set (``inputs.top_pairs``), one explainer input per (u, image)
built by the chosen method (``inputs.filter_inputs``), the head's output for each (``head_outputs``), the
top-s words of each output by cosine similarity (``embeddings.search.top_words``) and the words ranked by
how many of the p images voted for them (``words.rank_words``). ``explain_cache`` runs the stages on a
feature cache; ``explain_run`` (``Run.explain``) extracts the target cache first and saves the result.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.base import ConceptDataset
from ..data.perturb import smoothed
from ..defaults import INTERPRETABLE
from ..embeddings import Vocabulary
from ..embeddings.search import top_words
from ..errors import EmbeddingError, LaviseError, RunError
from ..features import FeatureCache
from ..options import ExplainOptions, ExtractOptions
from ..run import Run, versions
from ..runtime import barrier, check_device, is_main_process
from ..stats import Thresholds
from ..train import TrainedExplainer
from .inputs import ImageRerun, TopPairs, default_batch_pairs, filter_inputs, top_pairs
from .results import Explanations, FilterExplanation
from .words import calibration_penalty, hub_scores, rank_words, vocabulary_tensor


def check_units(units: list[int] | None, d: int, layer: str = "the layer") -> None:
    """A one-line ``LaviseError`` unless every filter index in ``units`` is one of the layer's ``d`` filters."""
    if units is None:
        return
    bad = [u for u in units if not 0 <= int(u) < d]
    if bad or not len(units):
        what = f"filter {bad[0]} is out of range" if bad else "no filters were given"
        raise LaviseError(f"--units: {what}: {layer} has {d} filters, numbered 0 to {d - 1}")


def compute_thresholds(cache: FeatureCache) -> Thresholds:
    """T_u (upper 0.5% quantile of each filter's activations on the cached set)."""
    return Thresholds.from_stats(cache.stats)


@torch.no_grad()
def head_outputs(explainer: TrainedExplainer, cache: FeatureCache, pairs: TopPairs, thresholds: Thresholds,
                 method: str, extract: ExtractOptions = ExtractOptions(), rerun: ImageRerun | None = None,
                 batch_pairs: int | None = None,
                 sink: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor | None:
    """The explainer's output for every (filter, image) pair of ``pairs``.

    Args:
        explainer: the trained head (run folded: BatchNorm folded in, members' first layers as one product).
        cache: the target feature cache.
        pairs: the pairs (filter-major order).
        thresholds: T_u, for the masked methods.
        method: one of ``METHODS``; ``image`` needs ``rerun``.
        extract: ``device`` and ``amp`` (autocast of the head) and ``show_progress`` are used.
        rerun: the network and images, for the ``image`` method.
        batch_pairs: pairs per chunk (default ``default_batch_pairs``; at most 32 for ``image``).
        sink: called as ``sink(positions, outputs)`` chunk by chunk, in place of returning them.

    Returns:
        (U·p, D) float32 outputs on the device in pair order, or None when ``sink`` took them.
    """
    device = check_device(extract.device)
    if method == "image" and rerun is None:
        raise LaviseError("method 'image' reruns the network: pass the target dataset and model")
    if batch_pairs is None:
        batch_pairs = default_batch_pairs(cache.shape, device)
    if method == "image":
        batch_pairs = min(batch_pairs, 32)
    head = explainer.head.eval().to(device).folded()
    pair_u, pair_r = pairs.pair_units, pairs.pair_rows
    out = None
    if sink is None:
        out = torch.empty(len(pair_u), head.emb_dim, device=device)

        def sink(sel: torch.Tensor, v: torch.Tensor) -> None:
            out[sel.to(device)] = v
    order = torch.argsort(pair_r, stable=True)  # read each image's features once per chunk
    bar = tqdm(range(0, len(order), batch_pairs), desc=f"explain ({method})", unit="batch",
               disable=not extract.show_progress, leave=False)
    for start in bar:
        sel = order[start:start + batch_pairs]
        u, r = pair_u[sel], pair_r[sel]
        if method == "image":
            inp = rerun.inputs(u, r, cache, thresholds, device)  # type: ignore[union-attr]
        else:
            uniq, inv = torch.unique(r, return_inverse=True)
            feats = cache.read(uniq.numpy()).to(device)  # pooling runs where the head does
            inp = filter_inputs(method, feats, u.to(device), thresholds, image=inv.to(device))
        with torch.autocast(device_type=device.split(":")[0], enabled=extract.amp):
            v = head(inp.to(device)).float()
        sink(sel, v)
    return out


@torch.no_grad()
def explain_cache(
    explainer: TrainedExplainer,
    cache: FeatureCache,
    vocab: Vocabulary,
    options: ExplainOptions = ExplainOptions(),
    units: list[int] | None = None,
    extract: ExtractOptions = ExtractOptions(),
    rerun: ImageRerun | None = None,
    thresholds: Thresholds | None = None,
    rows: np.ndarray | None = None,
) -> list[FilterExplanation]:
    """Explain filters from an already extracted target cache.

    Args:
        explainer: the trained head.
        cache: the target feature cache.
        vocab: candidate words (vectors of the explainer's embedding dimension).
        options: method, p, s, x, and the optional penalties: ``calibration`` (γ subtracted from the similarity
            of every training concept before the top-s words are taken: calibrated stacking, Chao et al. 2016)
            and ``hubness`` (λ·r_w subtracted from every word, r_w its mean cosine to its ``HUB_NEIGHBOURS``
            nearest outputs among the pairs of every filter of the layer: CSLS, Conneau et al. 2018; λ = 0.5
            is CSLS proper; the ``image`` method takes r_w from the explained pairs only). Reported
            similarities stay the raw cosines.
        units: filters to explain (default all).
        extract: ``device``, ``amp`` (the head under autocast; near-tied words may swap) and ``show_progress``.
        rerun: the network and target images, for the ``image`` method.
        thresholds: T_u (default ``compute_thresholds(cache)``).
        rows: the cache rows a filter's top images may come from (default all; evaluation on held-out images
            explains from one half and scores on the other).

    Returns:
        One ``FilterExplanation`` per explained filter.
    """
    check_device(extract.device)
    device = extract.device
    d = cache.shape[0]
    if explainer.head.in_dim != d:
        raise RunError(f"explainer expects {explainer.head.in_dim} filters but the layer has {d}")
    check_units(units, d, explainer.config.get("layer", "the layer"))
    if vocab.vectors.shape[1] != explainer.head.emb_dim:
        raise EmbeddingError(f"vocabulary vectors are {vocab.vectors.shape[1]}-d but the explainer was trained with "
                             f"{explainer.head.emb_dim}-d embeddings; use the embeddings named in the run's config.json")
    thr = compute_thresholds(cache) if thresholds is None else thresholds
    every = top_pairs(cache, options.p, rows=rows)
    pairs = every if units is None else every.select(units)
    vocab_t = vocabulary_tensor(vocab, device)
    s = min(options.s, vocab_t.shape[0])
    penalty = calibration_penalty(vocab, explainer.concepts, options.calibration, device)
    n = len(pairs.pair_units)
    top_idx, top_sim = torch.empty(n, s, dtype=torch.long), torch.empty(n, s)
    common = dict(explainer=explainer, cache=cache, thresholds=thr, method=options.method, extract=extract,
                  rerun=rerun)
    if not options.hubness:  # words chunk by chunk, as the outputs come
        def words(sel: torch.Tensor, v: torch.Tensor) -> None:
            top_idx[sel], top_sim[sel] = top_words(v, vocab_t, s, penalty)
        head_outputs(pairs=pairs, sink=words, **common)
    else:
        # every output is needed before any word is chosen (pairs x D floats: small). r_w comes from the pairs
        # of every filter, so that a filter's words do not depend on which others were asked for; the image
        # method reruns the network per pair, so there it comes from the explained pairs only.
        from_all = options.method != "image" and units is not None and not torch.equal(pairs.units, torch.arange(d))
        out = head_outputs(pairs=every if from_all else pairs, **common)
        hub = options.hubness * hub_scores(out, vocab_t)
        penalty = hub if penalty is None else penalty + hub
        if from_all:  # the explained filters' pairs among all of them
            out = out.view(d, pairs.p, -1)[pairs.units.to(device)].reshape(n, -1)
        step = default_batch_pairs(cache.shape, device)
        for start in range(0, n, step):
            sl = slice(start, start + step)
            top_idx[sl], top_sim[sl] = top_words(out[sl], vocab_t, s, penalty)
    filters = rank_words(pairs, top_idx, top_sim, vocab, thr, cache, options.x, options.votes)
    cal = explainer.calibrator
    return cal.apply(filters) if cal is not None and cal.matches(options) else filters


def confidence_note(explainer: TrainedExplainer, options: ExplainOptions) -> dict:
    """Whether explanations with ``options`` carry a calibrated confidence, and why not where they do not."""
    cal = explainer.calibrator
    if cal is None:
        return {"available": False, "why": "this run has no calibrator (trained before lavise calibrated explanations, "
                                           "or its reference set gave no word); retrain it with "
                                           "`lavise train` to get one"}
    if not cal.matches(options):
        fit = cal.fitted_on
        return {"available": False, "why": f"the calibrator was fitted for --method {fit.get('method')} -p {fit.get('p')} "
                                           f"-s {fit.get('s')}; explain with those to get a confidence"}
    return {"available": True, "interpretable_at": INTERPRETABLE, "fitted_on": cal.fitted_on}


def explain_run(run: Run, images: ConceptDataset, options: ExplainOptions = ExplainOptions(),
                extract: ExtractOptions = ExtractOptions(), units: list[int] | None = None,
                out: str | Path | None = None) -> Explanations:
    """Explain every filter (or ``units``) of the run's layer on an unlabeled image set (``Run.explain``).

    Args:
        run: the opened run.
        images: the target dataset D (labels, if any, are ignored).
        options: how filters are put into words.
        extract: how the backbone runs (``amp`` also runs the head under autocast).
        units: filters to explain (default all).
        out: folder to save ``explanations.json``/``.csv`` into (default: the run folder, if it is saved).

    Returns:
        ``Explanations``.
    """
    explainer, cfg = run.explainer, run.settings
    check_units(units, explainer.head.in_dim, cfg["layer"])  # before any extraction
    vocab = run.vocabulary(options)
    cache = run.cache(smoothed(images, options.smooth, options.smooth_sigma), None, extract)
    rerun = ImageRerun.of(run.target, cfg["layer"], images) if options.method == "image" else None
    filters = explain_cache(explainer, cache, vocab, options, units, extract, rerun)
    settings = {"p": options.p, "s": options.s, "x": options.x, "vocabulary": options.vocabulary,
                "vocabulary_size": len(vocab.words), "amp": extract.amp, "hubness": options.hubness,
                "calibration": options.calibration, "votes": options.votes, "smooth": options.smooth,
                "smooth_sigma": options.smooth_sigma, "embeddings": cfg["embeddings"],
                "quantile": cache.stats.q,
                "images": len(cache), "skipped_images": len(cache.meta.get("skipped", [])),
                "dataset_fingerprint": cache.meta["dataset_fingerprint"], "versions": versions(),
                "confidence": confidence_note(explainer, options)}
    result = Explanations(cfg["model"], cfg["layer"], options.method, images.spec, settings, filters)
    dest = out if out is not None else (run.path if run.saved else None)
    if dest is not None and is_main_process():
        result.save(dest)
    barrier()
    return result


def explain_filters(run: str | Path | TrainedExplainer | Run, images: ConceptDataset,
                    options: ExplainOptions = ExplainOptions(), extract: ExtractOptions = ExtractOptions(),
                    units: list[int] | None = None, target=None, cache_dir: str | Path | None = None,
                    out: str | Path | None = None) -> Explanations:
    """Explain every filter (or ``units``) of a run's layer on an unlabeled image set.

    Args:
        run: a run folder written by ``train_explainer``, a ``TrainedExplainer`` or a ``Run``.
        images: the target dataset D (labels, if any, are ignored).
        options: how filters are put into words (method, p, s, x, vocabulary, penalties).
        extract: how the backbone runs.
        units: filters to explain (default all).
        target: the model (default: loaded from the run's config; its weights are checked).
        cache_dir: feature cache folder (default ``OUT/cache`` or ``RUN/cache``).
        out: folder to save ``explanations.json``/``.csv`` into (default: the run folder).

    Returns:
        ``Explanations``.
    """
    if cache_dir is None and out is not None:
        cache_dir = Path(out) / "cache"
    if not isinstance(run, (str, Path, Run)) and cache_dir is None:
        raise RunError("give out=RUN or cache_dir for the target feature cache")
    return Run.open(run, target=target, cache_dir=cache_dir).explain(images, options, extract, units, out)
