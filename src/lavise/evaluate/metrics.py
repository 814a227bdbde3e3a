"""Scoring word lists against ground-truth concept lists: P@k, R@k, F1@k, the synonym-aware match, novel
concepts, and one row of a table (``score_row``).

Words and concepts are compared by a key (``MATCHES``): ``lemma`` (the headline: "Cherries" matches "cherry",
"traffic_lights" matches "traffic light") or ``exact`` (lower case and whitespace only).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..dissect import GroundTruth
from ..options import KS

if TYPE_CHECKING:
    from ..embeddings import Embeddings

_WS = re.compile(r"[\s_]+")


def norm(word: str) -> str:
    """Canonical form for exact matching: lower case, single spaces ("Traffic_light" -> "traffic light")."""
    return _WS.sub(" ", word.strip().lower())


@lru_cache(maxsize=None)
def _noun_lemma(token: str) -> str:
    from lemminflect import getLemma

    found = getLemma(token, upos="NOUN")
    return found[0] if found and found[0] else token


@lru_cache(maxsize=1 << 16)
def lemma(word: str) -> str:
    """Key of the lemmatised match: ``norm``, then each token lemmatised as a noun (lemminflect's lexicon, the
    first lemma; a token it does not know is kept), re-joined with single spaces.

    "Traffic_Lights" -> "traffic light", "cherries" -> "cherry", "geese" -> "goose". A noun-only lemmatiser
    also folds a few distinct words ("glasses" -> "glass", "shorts" -> "short"); the ``exact_`` columns
    are reported beside it for that reason.
    """
    return " ".join(_noun_lemma(t) for t in norm(word).split(" ") if t)


MATCHES: dict[str, Callable[[str], str]] = {"lemma": lemma, "exact": norm}


def match_key(match: str) -> Callable[[str], str]:
    """The key function of a match name (one of ``MATCHES``); ValueError for another name."""
    try:
        return MATCHES[match]
    except (KeyError, TypeError):
        raise ValueError(f"unknown match {match!r}; use one of {', '.join(MATCHES)}") from None


def score_lists(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], ks: Iterable[int] = KS,
                restrict: Iterable[str] | None = None, units: Iterable[int] | None = None,
                match: str = "lemma") -> dict:
    """Precision/recall/F1 at k, averaged over filters with ground truth.

    Args:
        predictions: per filter, ranked words.
        truth: per filter, ground-truth concepts (order irrelevant).
        ks: cut-offs.
        restrict: only ground-truth concepts in this set count (e.g. novel concepts); filters left with
            no ground truth are skipped.
        units: only these filters are scored (default all).
        match: how words and concepts are compared, one of ``MATCHES`` (words equal under the key count
            once in a top-k list).

    Returns:
        ``{"filters": n, "P@k": ..., "R@k": ..., "F1@k": ...}`` (means; NaN-free: 0 filters gives 0).
    """
    key = match_key(match)
    ks = list(ks)
    units = range(len(truth)) if units is None else units
    keep = None if restrict is None else {key(c) for c in restrict}
    P = {k: [] for k in ks}
    R = {k: [] for k in ks}
    F = {k: [] for k in ks}
    for u in units:
        g = {key(c) for c in truth[u]}
        if keep is not None:
            g &= keep
        if not g:
            continue
        w = [key(x) for x in predictions[u]]
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


def synonym_scores(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], embeddings: Embeddings,
                   threshold: float, ks: Iterable[int] = KS, units: Iterable[int] | None = None,
                   match: str = "lemma") -> dict:
    """Synonym-aware P/R/F1@k: a word matches a concept when it is equal under ``match`` (one of ``MATCHES``)
    or its cosine similarity >= threshold (embeddings of the ``norm`` forms).

    Reported apart from the other metrics (keys prefixed ``syn_``); it stands in for human raters who accept synonyms.
    """
    key = match_key(match)
    ks = list(ks)
    units = list(range(len(truth)) if units is None else units)
    words = {u: list(_first_by_key(predictions[u], key).items())[:max(ks)] for u in units}  # (key, norm form)
    phrases = sorted({a for u in units for _, a in words[u]} | {norm(c) for u in units for c in truth[u]})
    vec, kept, _ = embeddings.encode(phrases) if phrases else (np.zeros((0, 1)), [], [])
    row = {p: i for i, p in enumerate(kept)}
    P = {k: [] for k in ks}
    R = {k: [] for k in ks}
    F = {k: [] for k in ks}
    for u in units:
        g = _first_by_key(truth[u], key)
        if not g:
            continue
        w = words[u]
        hit = np.array([[a == b for b in g] for a, _ in w], bool).reshape(len(w), len(g))
        wi = [row.get(a) for _, a in w]
        gi = [row.get(b) for b in g.values()]
        for i, a in enumerate(wi):
            for j, b in enumerate(gi):
                if a is not None and b is not None and float(vec[a] @ vec[b]) >= threshold:
                    hit[i, j] = True
        for k in ks:
            m = hit[:k]
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


def _first_by_key(words: Iterable[str], key: Callable[[str], str]) -> dict[str, str]:
    """key -> the ``norm`` form of the first word with that key, in order."""
    out: dict[str, str] = {}
    for x in words:
        out.setdefault(key(x), norm(x))
    return out


def novel_scores(predictions: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], novel: Iterable[str],
                 x: int = 10, ks: Iterable[int] = KS, units: Iterable[int] | None = None, match: str = "lemma") -> dict:
    """Discovery of concepts the explainer never saw in training.

    Words, ground truth and the novel set are all compared under ``match`` (one of ``MATCHES``): under ``lemma``
    the word "cherries" discovers the novel concept "cherry".

    Returns:
        ``novel_concepts``: distinct novel concepts (distinct keys);
        ``novel_discovered``: distinct novel concepts in some filter's top-x words and in its ground truth
        (``novel_discovered_names``: their ``norm`` names);
        ``novel_discoveries``: such (filter, concept) pairs; ``novel_available``: distinct novel concepts in
        any filter's ground truth; ``novel_filters``: filters whose ground truth has a novel concept;
        ``novel_R@k``: recall restricted to novel ground-truth concepts; ``novel_P@k``: share of the top-k words
        that are correct novel concepts. ``ceiling_R`` and ``ceiling_P@1``: the most R@k (any k) and P@1 an
        explainer that never names a novel concept can reach, over the filters ``score_lists`` scores: the
        mean share of each filter's ground truth that is not novel, and the share of filters with some
        ground-truth concept that is not novel.
    """
    key = match_key(match)
    novel = list(novel)
    nov = {key(c) for c in novel}
    units = list(range(len(truth)) if units is None else units)
    found, pairs, avail, seen_share = set(), 0, set(), []
    for u in units:
        full = {key(c) for c in truth[u]}
        g = full & nov
        avail |= g
        hit = g & {key(w) for w in list(predictions[u])[:x]}
        found |= hit
        pairs += len(hit)
        if full:
            seen_share.append(1 - len(g) / len(full))
    r = score_lists(predictions, truth, ks, restrict=novel, units=units, match=match)
    out = {"novel_concepts": len(nov), "novel_available": len(avail), "novel_discovered": len(found),
           "novel_discoveries": pairs, "novel_filters": r["filters"], "novel_x": x,
           "novel_discovered_names": sorted({norm(c) for c in novel if key(c) in found}),
           "ceiling_R": float(np.mean(seen_share)) if seen_share else 0.0,
           "ceiling_P@1": float(np.mean([v > 0 for v in seen_share])) if seen_share else 0.0}
    out.update({f"novel_{k}": v for k, v in r.items() if k.startswith(("R@", "P@"))})
    return out


def score_row(name: str, predictions: Sequence[Sequence[str]], gt: GroundTruth, convention: str,
              ks: Iterable[int] = KS, units: Iterable[int] | None = None, novel: Iterable[str] | None = None,
              x: int = 10, synonyms: tuple[Embeddings, float] | None = None, match: str = "lemma", **info) -> dict:
    """All metrics of one method under one ground-truth convention.

    Args:
        name: the row's method name.
        predictions: per filter, ranked words.
        gt: the evaluated dataset's ground truth.
        convention: ground-truth convention (``netdissect`` or ``present``).
        ks: cut-offs.
        units: filters scored (default all).
        novel: concepts the explainer never saw in training (``novel_`` and ``ceiling_`` columns).
        x: words per filter searched for novel concepts.
        synonyms: ``(embeddings, cosine threshold)`` of the synonym-aware ``syn_`` columns (None: not computed).
        match: the headline match, one of ``MATCHES``.
        **info: extra columns copied into the row.

    Returns:
        ``name``, ``convention``, ``match``, ``info``, ``filters``, ``P@k``/``R@k``/``F1@k`` under ``match``; when
        ``match`` is not ``exact``, the exact-match ones beside them as ``exact_P@k``/``exact_R@k``/``exact_F1@k``;
        then the novel-concept and synonym columns (under ``match``).
    """
    match_key(match)
    ks = list(ks)
    units = None if units is None else list(units)
    truth = gt.labels(convention)
    row = {"name": name, "convention": convention, "match": match, **info}
    row.update(score_lists(predictions, truth, ks, units=units, match=match))
    if match != "exact":
        strict = score_lists(predictions, truth, ks, units=units, match="exact")
        row.update({f"exact_{k}": v for k, v in strict.items() if k != "filters"})
    if novel:
        row.update(novel_scores(predictions, truth, novel, x=x, ks=ks, units=units, match=match))
    if synonyms is not None:
        embeddings, threshold = synonyms
        row.update(synonym_scores(predictions, truth, embeddings, threshold, ks, units=units, match=match))
    return row
