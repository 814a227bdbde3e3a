"""Which way of turning a filter's top images into words is stable without losing quality? Candidate rules on the
validation seeds, each scored for quality (held-out halves, as bench/quality.py) and stability (the top word
under another half of the images and under pixel noise).

    python experiments/stability_variants.py            # seeds 100-102

Rules, all from the same head outputs of each filter's p = 100 top images (masked-attention; p = 200 where named):
    votes            lavise's default: each image votes for its nearest word, words ranked by votes
    lemma votes      the same, votes of words with one lemma pooled ("cat" and "cats")
    similarity votes each image's nearest word weighted by its cosine
    rank votes, s=3  each image's three nearest words weighted 1, 1/2, 1/3
    centroid         the nearest words to the mean of the filter's outputs (no voting)
    ..., qualifying  only the top images whose maximum reaches the filter's T_u vote (an image below it has an
                     empty mask: masked-attention then feeds the head nothing, and its vote goes to a bias word)
Stability is measured on every filter with words, and on the filters the default calls interpretable (the same
filters for every rule).
"""
from __future__ import annotations

import importlib
import sys
from collections import defaultdict
from types import SimpleNamespace

import torch

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path
X = 20


def weighted_lists(pairs, idx, sim, vocab, weights, key=None) -> list[list[str]]:
    """Per filter, words ranked by the summed weight of their votes (ties: mean similarity, then word, as
    ``rank_words``); ``key`` pools words."""
    U, p = pairs.rows.shape
    idx, sim, w = idx.view(U, p, -1).numpy(), sim.view(U, p, -1).numpy(), weights.view(U, p, -1).numpy()
    out = []
    for i in range(U):
        score, sims, n, best = defaultdict(float), defaultdict(float), defaultdict(int), {}
        for j, m, c in zip(idx[i].ravel(), sim[i].ravel(), w[i].ravel()):
            word = vocab.words[j]
            k = key(word) if key else word
            score[k] += float(c)
            if c > 0:
                sims[k] += float(m)
                n[k] += 1
            best.setdefault(k, {}).setdefault(word, 0.0)
            best[k][word] += float(c)
        ranked = sorted((k for k in score if score[k] > 0),  # a weightless vote is no vote
                        key=lambda k: (-round(score[k], 9), -sims[k] / n[k], k))[:X]
        out.append([max(best[k], key=best[k].get) for k in ranked])
    return out


def rule_lists(rule: str, mv, vocab, cache, head) -> list[list[str]]:
    from lavise.evaluate import lemma
    from lavise.explain import top_words, vocabulary_tensor
    from lavise.explain.words import qualifying

    if rule.endswith(", qualifying"):
        base = rule[: -len(", qualifying")]
        idx, sim = top_words(torch.nn.functional.normalize(mv["V"], dim=1), vocabulary_tensor(vocab), 1)
        fires = qualifying(mv["pairs"], mv["thr"]).float().reshape(-1, 1)  # lavise's own rule
        w = fires * (sim.clamp(min=0) if base == "similarity votes" else torch.ones_like(sim))
        return weighted_lists(mv["pairs"], idx, sim, vocab, w)

    if rule == "votes":  # lavise's own rule, through its own stages
        return [f.top_words for f in quality.words_from_vectors(mv, cache, vocab, 1, X, head)]

    vt = vocabulary_tensor(vocab)
    V = torch.nn.functional.normalize(mv["V"], dim=1)
    pairs = mv["pairs"]
    if rule == "centroid":
        U = len(pairs.units)
        c = torch.nn.functional.normalize(V.view(U, pairs.p, -1).mean(1), dim=1)
        idx, _ = top_words(c, vt, X)
        return [[vocab.words[j] for j in row] for row in idx.tolist()]
    s = 3 if rule == "rank votes, s=3" else 1
    idx, sim = top_words(V, vt, s)
    if rule == "lemma votes":
        w = torch.ones_like(sim)
    elif rule == "similarity votes":
        w = sim.clone()
    else:
        w = (1.0 / torch.arange(1, s + 1, dtype=torch.float32)).expand_as(sim).contiguous()
    return weighted_lists(pairs, idx, sim, vocab, w, lemma if rule == "lemma votes" else None)


def by_unit(lists, mv, d) -> list[list[str]]:
    """Lists in filter order, dead filters (no words in lavise) left empty."""
    out = [[] for _ in range(d)]
    for u, lst in zip(mv["pairs"].units.tolist(), lists):
        out[u] = [] if mv["thr"].dead[u] else lst
    return out


RULES = ("votes", "lemma votes", "similarity votes", "rank votes, s=3", "centroid", "votes, qualifying",
         "similarity votes, qualifying", "votes, p=200", "similarity votes, p=200", "votes, qualifying, p=200")
P_MAX = 200


def one_seed(seed: int, model, emb) -> list[dict]:
    from lavise.evaluate import lemma
    from lavise.evaluate.stability import per_filter, summarise

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    vocab = s.vocabulary(v.vocabulary)
    fx = s.explanations(v, P_MAX)  # the same head outputs as the rules below
    inter = {f.unit: bool(f.interpretable) for f in fx}
    units = [f.unit for f in fx if f.words]
    mvs = {probe: s.vectors(v, P_MAX, probe) for probe in ("", "halves", "noise")}
    caches = {"": s.tcache, "halves": s.tcache, "noise": s.noisy_cache()}
    head = s.head(v)
    rows = []
    for rule in RULES:
        p = P_MAX if rule.endswith("p=200") else v.p
        name = rule.split(", p=")[0]
        lists = {probe: by_unit(rule_lists(name, quality.first(mv, p), vocab, caches[probe], head), mv, s.d)
                 for probe, mv in mvs.items()}
        row = s.score(rule, lists[""])
        for probe in ("halves", "noise"):
            r = summarise(per_filter(lists[""], [lists[probe]], units, lemma), None, inter)
            row[f"kept_{probe}"], row[f"kept_{probe}_interpretable"] = r["top1_unchanged"], \
                r["top1_unchanged_interpretable"]
        row["seed"] = seed
        rows.append(row)
        s.log(f"{rule}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f} F1@10 {row['F1@10']:.3f} kept noise "
              f"{row['kept_noise']:.3f} ({row['kept_noise_interpretable']:.3f}) halves {row['kept_halves']:.3f}")
    return rows


COLS = ("P@1", "R@10", "F1@10", "kept_noise", "kept_noise_interpretable", "kept_halves", "kept_halves_interpretable")


def main() -> None:
    seeds, model, emb = validation_setup(sys.argv[1:])
    rows = [r for x in seeds for r in one_seed(x, model, emb)]
    lines = ["## Word rules: quality and stability (validation seeds)", "",
             f"Seeds {seeds}; masked-attention, p = 100 unless named; noise sigma {quality.NOISE_SIGMA}; every value per seed, "
             "separated by /. kept: share of filters whose top word is unchanged (all filters with words; the "
             "default's interpretable filters).", "",
             "| rule | " + " | ".join(COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for rule in RULES:
        sel = [r for r in rows if r["name"] == rule]
        lines.append(f"| {rule} | " + " | ".join(" / ".join(f"{r[c]:.3f}" for r in sel) for c in COLS) + " |")
    table = "\n".join(lines)
    print(table)
    save("stability-variants", table, {"seeds": seeds, "rows": rows})


if __name__ == "__main__":
    main()
