"""Baselines and controls: word lists that an explanation must beat.

Each returns, per filter, a ranked word list (a list of length d, like an explainer's output). Baselines:
NetDissect's labels and random words from the explainer's vocabulary. Controls: a constant list (the most
frequent concepts, the same for every filter), random words from the evaluated dataset's concept names
only (a stricter chance level than a 10,000-noun vocabulary), and the explanations themselves shuffled
across filters (what is left when the link between a filter and its words is cut).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from ..dissect import Dissection, GroundTruth


def random_words(vocab_words: Sequence[str], num_filters: int, n: int, seed: int = 0) -> list[list[str]]:
    """The random-words baseline: n distinct words per filter, uniform over the vocabulary."""
    rng = np.random.default_rng(seed)
    n = min(n, len(vocab_words))
    return [[vocab_words[i] for i in rng.choice(len(vocab_words), size=n, replace=False)] for _ in range(num_filters)]


def constant_words(counts: Mapping[str, int], num_filters: int, n: int) -> list[list[str]]:
    """The constant-list control: the same words for every filter, the n most frequent concepts.

    Args:
        counts: concept -> how many images of the reference annotations contain it.
        num_filters: d, the length of the result.
        n: words per filter (fewer when there are fewer concepts).

    Returns:
        d copies of the concepts sorted by count, most frequent first, ties by name, cut to n.
    """
    top = sorted(counts, key=lambda c: (-counts[c], c))[:max(n, 0)]
    return [list(top) for _ in range(num_filters)]


def names_random_words(names: Sequence[str], num_filters: int, n: int, seed: int = 0) -> list[list[str]]:
    """The concept-names chance control: n distinct words per filter, uniform over the evaluated dataset's
    concept names (every word is a possible ground-truth concept, so chance is far higher than from a
    large vocabulary).

    Args:
        names: the dataset's concept names (duplicates count once).
        num_filters: d, the length of the result.
        n: words per filter (at most the number of distinct names).
        seed: seed of the draw.

    Returns:
        Per filter, n distinct names in random order.
    """
    return random_words(list(dict.fromkeys(names)), num_filters, n, seed)


def shuffled_lists(predictions: Sequence[Sequence[str]], units: Iterable[int], seed: int = 0) -> list[list[str]]:
    """The shuffled-explanations control: the lists of the filters in ``units`` permuted among them.

    The permutation is a seeded random derangement (uniform over derangements) when there are two filters
    or more, so no filter keeps its own list (two filters whose lists are equal still get equal lists);
    a single filter keeps its own.

    Args:
        predictions: per filter, ranked words (length d).
        units: the filters whose lists are shuffled (repeats count once).
        seed: seed of the permutation.

    Returns:
        A list of length d: filter ``units[i]`` gets the list of ``units[perm[i]]``; filters outside ``units``
        get empty lists.
    """
    units = list(dict.fromkeys(int(u) for u in units))
    out: list[list[str]] = [[] for _ in range(len(predictions))]
    rng = np.random.default_rng(seed)
    perm = np.arange(len(units))
    if len(units) > 1:
        while True:  # rejection: a uniform permutation is a derangement with probability ~1/e
            perm = rng.permutation(len(units))
            if not (perm == np.arange(len(units))).any():
                break
    for u, src in zip(units, perm):
        out[u] = list(predictions[units[int(src)]])
    return out


def netdissect_lists(reference_gt: GroundTruth, convention: str = "netdissect") -> list[list[str]]:
    """NetDissect's words per filter: concepts with IoU > threshold on the reference set, best first
    (the first is NetDissect's label; filters below the threshold get none)."""
    return reference_gt.labels(convention)


def dissection_as_explanations(dis: Dissection) -> list[list[str]]:
    """One-word lists (NetDissect's label, or none when not interpretable)."""
    return [[dis.concepts[int(b)]] if ok else [] for b, ok in zip(dis.best, dis.interpretable)]
