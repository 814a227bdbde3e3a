"""Stability of explanations: does a filter keep its words when the images change in ways that should not matter?

Probes (``EvalOptions.stability``):
    halves  the same filters explained from the *score* half of the evaluated images instead of the explain
            half: another sample of images of the same kind
    noise   the explain half again, with seeded Gaussian pixel noise (``data.perturb.NoisyImages``; σ on [0, 1]
            pixels, ``noise_draws`` draws), extracted and thresholded anew as a rerun on those images would be
Measures, per filter and in summary: whether the top word is unchanged (lemma match) and the Jaccard overlap of
the top-k lists; among interpretable filters where there is a confidence; and how well each filter's own
``stability`` (bootstrap resamples of its top images, ``explain.words.vote_stability``) predicts the outcome.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

STABILITY_BINS = (0.0, 0.5, 0.8, 1.0001)  # filters grouped by their own vote stability


def top1_unchanged(a: Sequence[str], b: Sequence[str], key: Callable[[str], str]) -> bool | None:
    """Whether two lists start with the same word (by ``key``); None where either is empty."""
    if not a or not b:
        return None
    return key(a[0]) == key(b[0])


def jaccard(a: Sequence[str], b: Sequence[str], k: int, key: Callable[[str], str]) -> float | None:
    """|A ∩ B| / |A ∪ B| of the first ``k`` words of each list (by ``key``); None where either is empty."""
    if not a or not b:
        return None
    x, y = {key(w) for w in a[:k]}, {key(w) for w in b[:k]}
    return len(x & y) / len(x | y)


def per_filter(base: Sequence[Sequence[str]], draws: Sequence[Sequence[Sequence[str]]], units: Sequence[int],
               key: Callable[[str], str], k: int = 10) -> dict[int, dict]:
    """For each filter of ``units``: the share of ``draws`` whose top word is ``base``'s, and the mean top-k
    Jaccard with ``base`` (over the draws where both have words; filters without any are left out).

    Args:
        base: per-filter word lists (indexed by filter number) of the unperturbed explanations.
        draws: one such list of lists per perturbed draw.
        units: the filters compared.
        key: the match of words (lemma or exact).
        k: list length of the Jaccard overlap.
    """
    out = {}
    for u in units:
        same = [top1_unchanged(base[u], d[u], key) for d in draws]
        jac = [jaccard(base[u], d[u], k, key) for d in draws]
        same, jac = [s for s in same if s is not None], [j for j in jac if j is not None]
        if same:
            out[int(u)] = {"top1_unchanged": float(np.mean(same)), f"top{k}_jaccard": float(np.mean(jac))}
    return out


def summarise(pf: dict[int, dict], vote_stability: dict[int, float] | None = None,
              interpretable: dict[int, bool] | None = None, k: int = 10) -> dict:
    """The summary of one probe: filters compared, top-1 unchanged share, mean top-k Jaccard; the same among
    interpretable filters; by the filters' own vote stability, with its AUROC for an unchanged top word.

    Args:
        pf: ``per_filter``'s result.
        vote_stability: each filter's ``FilterExplanation.stability``.
        interpretable: each filter's ``interpretable`` flag (where there is a confidence).
        k: the Jaccard's list length (names the key).
    """
    from ..explain.confidence import auroc

    units = sorted(pf)
    kept = np.array([pf[u]["top1_unchanged"] for u in units], dtype=np.float64)
    jac = np.array([pf[u][f"top{k}_jaccard"] for u in units], dtype=np.float64)
    res = {"filters": len(units), "top1_unchanged": float(kept.mean()) if len(units) else float("nan"),
           f"top{k}_jaccard": float(jac.mean()) if len(units) else float("nan")}
    if interpretable:
        sel = np.array([bool(interpretable.get(u)) for u in units], dtype=bool)
        res["interpretable_filters"] = int(sel.sum())
        res["top1_unchanged_interpretable"] = float(kept[sel].mean()) if sel.any() else float("nan")
    if vote_stability:
        have = [i for i, u in enumerate(units) if vote_stability.get(u) is not None]
        st = np.array([vote_stability[units[i]] for i in have], dtype=np.float64)
        # one draw: kept is 0/1; several: a filter counts as kept where most draws kept it
        res["AUROC_vote_stability"] = auroc(st, kept[have] > 0.5) if have else float("nan")
        res["by_vote_stability"] = []
        for lo, hi in zip(STABILITY_BINS[:-1], STABILITY_BINS[1:]):
            m = (st >= lo) & (st < hi)
            res["by_vote_stability"].append({"low": lo, "high": min(hi, 1.0), "filters": int(m.sum()),
                                             "top1_unchanged": float(kept[have][m].mean()) if m.any() else None})
    return res
