"""Baselines and controls: word lists that an explanation must beat."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dissect import Dissection, GroundTruth


def random_words(vocab_words: Sequence[str], num_filters: int, n: int, seed: int = 0) -> list[list[str]]:
    """The random-words baseline: n distinct words per filter, uniform over the vocabulary."""
    rng = np.random.default_rng(seed)
    n = min(n, len(vocab_words))
    return [[vocab_words[i] for i in rng.choice(len(vocab_words), size=n, replace=False)] for _ in range(num_filters)]


def netdissect_lists(reference_gt: GroundTruth, convention: str = "netdissect") -> list[list[str]]:
    """NetDissect's words per filter: concepts with IoU > threshold on the reference set, best first
    (the first is NetDissect's label; filters below the threshold get none)."""
    return reference_gt.labels(convention)


def dissection_as_explanations(dis: Dissection) -> list[list[str]]:
    """One-word lists (NetDissect's label, or none when not interpretable)."""
    return [[dis.concepts[int(b)]] if ok else [] for b, ok in zip(dis.best, dis.interpretable)]
