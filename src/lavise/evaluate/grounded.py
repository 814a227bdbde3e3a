"""Description-grounded score: does a filter respond to what it is called?

For each filter whose top word names a concept of the evaluated dataset, the filter's per-image maximum
activation ranks the images; the average precision (area under the precision-recall curve, AUPRC) of that
ranking against "the image contains the concept" says how well the filter separates those images from the
rest. No activation threshold and no IoU threshold enter it. Two references sit beside it:

* ``AUPRC_random``: the AP of the same filters against concepts drawn at random from the dataset (a filter
  that fires on everything scores well there too, so a good name must beat it);
* ``AUPRC_prevalence``: the mean prevalence of the named concepts, the AP of a random score.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score

__all__ = ["average_precision", "grounded_scores", "presence"]


def presence(cache, rows: np.ndarray | None = None) -> np.ndarray:
    """Which images contain which concept, from the cache's annotated (row, concept) pairs.

    Args:
        cache: a ``FeatureCache`` of an annotated dataset (``pairs`` and ``concepts`` set).
        rows: cache rows to keep, ascending (default all rows).

    Returns:
        (n, C) bool: entry [i, c] is True when the i-th kept image has concept c.
    """
    n_all, C = len(cache), len(cache.concepts)
    pairs = np.zeros((0, 2), np.int64) if cache.pairs is None else np.asarray(cache.pairs, np.int64).reshape(-1, 2)
    full = np.zeros((n_all, C), bool)
    full[pairs[:, 0], pairs[:, 1]] = True  # a concept with several masks in one image is still one presence
    return full if rows is None else full[np.asarray(rows, np.int64)]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of ``scores`` ranking the positive ``labels`` first (sklearn's step-wise definition).

    Args:
        scores: (n,) scores, higher means more likely positive.
        labels: (n,) bool or 0/1 labels.

    Returns:
        AP in [0, 1]; NaN when there is no positive (sklearn would warn and return 0, which looks like a score).
    """
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nothing left to warn about once the no-positive case is handled
        return float(average_precision_score(labels, np.asarray(scores, np.float64)))


def _ap_columns(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of one score vector against several label columns at once; equals ``average_precision`` per column.

    Sorting once per filter instead of once per (filter, concept) pair is what keeps 2,048 filters x 21 concepts
    x 10,000 images to seconds. Tied scores form one threshold, as in sklearn (ReLU maxima tie at 0 often).

    Args:
        scores: (n,) scores.
        labels: (n, K) bool.

    Returns:
        (K,) AP, NaN for a column without positives.
    """
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last position of each group of equal scores
    tp = np.cumsum(labels[order], axis=0, dtype=np.int64)[ends]  # (G, K) true positives at each threshold
    pos = tp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (ends + 1)[:, None]
        recall = tp / pos
    d_recall = np.diff(recall, axis=0, prepend=0.0)
    ap = (d_recall * precision).sum(0)
    ap[pos == 0] = np.nan
    return ap


def grounded_scores(predictions: Sequence[Sequence[str]], cache, match: Callable[[str], str],
                    rows: np.ndarray | None = None, seed: int = 0, draws: int = 20) -> dict:
    """AUPRC of each filter's maximum activation against the concept its top word names, and its references.

    Concepts are compared by their ``match`` key; dataset concepts sharing a key count as one concept (present
    where any of them is). A concept is usable when it occurs in at least one and not in all of the images: AP
    is undefined without positives and trivially 1 without negatives.

    Random control: the grounded filters in ascending order each get ``draws`` usable concepts (keys sorted) drawn
    as ``np.random.default_rng(seed).integers(K, size=(n, draws))``; their AP is averaged over all draws and filters.

    Args:
        predictions: per filter, ranked words (only the first is used).
        cache: the evaluated dataset's ``FeatureCache`` (``maxima``, ``pairs``, ``concepts``).
        match: word -> match key (e.g. ``metrics.norm`` or a lemmatising variant).
        rows: cache rows to score on, ascending (default all).
        seed: seed of the random-concept draws.
        draws: random concepts per filter.

    Returns:
        ``{"grounded_filters": n, "AUPRC": mean AP of the named concepts, "AUPRC_random": mean AP of the random
        concepts, "AUPRC_prevalence": mean prevalence of the named concepts, "AUPRC_ratio": AUPRC / AUPRC_random}``;
        every value 0 when no filter is grounded (and the ratio 0 when AUPRC_random is 0).
    """
    out = {"grounded_filters": 0, "AUPRC": 0.0, "AUPRC_random": 0.0, "AUPRC_prevalence": 0.0, "AUPRC_ratio": 0.0}
    pres = presence(cache, rows)
    n = pres.shape[0]
    groups: dict[str, list[int]] = {}
    for c, name in enumerate(cache.concepts):
        groups.setdefault(match(name), []).append(c)
    keys = sorted(groups)
    key_pres = np.stack([pres[:, groups[k]].any(1) for k in keys], 1) if keys else np.zeros((n, 0), bool)
    counts = key_pres.sum(0)
    usable = np.flatnonzero((counts > 0) & (counts < n))
    col = {keys[i]: i for i in usable}  # usable key -> column of key_pres

    units, named = [], []
    for u, words in enumerate(predictions):
        if len(words) and (k := match(words[0])) in col:
            units.append(u)
            named.append(col[k])
    if not units:
        return out

    maxima = np.asarray(cache.maxima[np.arange(len(cache)) if rows is None else np.asarray(rows, np.int64)])
    rng = np.random.default_rng(seed)
    drawn = usable[rng.integers(len(usable), size=(len(units), draws))]  # (n_units, draws) columns of key_pres
    ap_named, ap_random = np.empty(len(units)), np.empty((len(units), draws))
    for i, u in enumerate(units):
        ap = _ap_columns(maxima[:, u].astype(np.float64), key_pres[:, np.r_[named[i], drawn[i]]])
        ap_named[i], ap_random[i] = ap[0], ap[1:]
    auprc = float(ap_named.mean())
    auprc_random = float(ap_random.mean()) if draws > 0 else 0.0
    out.update(grounded_filters=len(units), AUPRC=auprc, AUPRC_random=auprc_random,
               AUPRC_prevalence=float((counts[named] / n).mean()),
               AUPRC_ratio=auprc / auprc_random if auprc_random > 0 else 0.0)
    return out
