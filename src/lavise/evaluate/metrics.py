"""Scoring word lists against ground-truth concept lists: P@k, R@k, F1@k, the synonym-aware match, novel
concepts, and one row of a table (``score_row``)."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from ..dissect import GroundTruth
from ..options import KS

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
