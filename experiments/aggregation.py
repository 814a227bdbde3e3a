"""Word rules that pool a filter's head outputs before the look-up, against voting: quality and stability.

The stability probes showed that σ = 0.02 pixel noise moves the head's output for the very same (filter, image)
pair to a cosine of about 0.6 with the clean one, so each image's nearest word is nearly a coin toss; votes over
100 images inherit that. Rules that pool over images first average the noise away; pooled naively they fall on
hub words (``centroid``), so the pooled scores are contrasted with every filter's.

    python experiments/aggregation.py            # validation seeds 100-102

Rules (masked-attention, p = 100, only images reaching T_u count, as lavise's voting):
    votes             lavise's default: each image votes for its nearest word
    similarity votes  votes weighted by their cosine
    soft τ            each image spreads one vote over all words, softmax(cosine / τ)
    centroid          the nearest words to the mean of the filter's (unit-length) outputs
    centroid z        the centroid's cosine with each word, standardised per word over all filters
    soft τ z          soft votes minus each word's mean soft vote over all filters, over its spread
"""
from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import torch

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path
X = 20
TAUS = (0.02, 0.05, 0.1)


def pooled(V, fires, W, tau):
    """(U, |W|) per filter: summed soft votes (tau) or, tau None, the mean unit output's cosines; and counts."""
    U, p, _ = V.shape
    out = torch.zeros(U, W.shape[0])
    cnt = torch.zeros(U, W.shape[0]) if tau == 0 else None
    for a in range(0, U, 32):
        v, f = V[a:a + 32], fires[a:a + 32].float()
        if tau is None:
            c = (v * f[..., None]).sum(1) / f.sum(1, keepdim=True).clamp(min=1)
            out[a:a + 32] = c @ W.T
            continue
        S = v @ W.T  # (u, p, |W|)
        if tau == 0:  # votes: one per firing image, ties by summed cosine
            best = S.argmax(2)
            out[a:a + 32].scatter_add_(1, best, f)
            sims = torch.zeros_like(out[a:a + 32]).scatter_add_(1, best, S.gather(2, best[..., None])[..., 0] * f)
            cnt[a:a + 32] = sims
        else:
            out[a:a + 32] = (torch.softmax(S / tau, 2) * f[..., None]).sum(1)
    return out, cnt


def zscore(S, live):
    mu, sd = S[live].mean(0), S[live].std(0).clamp(min=1e-6)
    return (S - mu) / sd


def ranked(score, live, vocab, tie=None, positive=False):
    s = score.double()  # float64: a 1e-6 tie-breaker vanishes in float32 next to counts of up to 100
    if tie is not None:
        s = s + 1e-6 * tie.double() / (tie.abs().max().double() + 1e-12)
    top = s.topk(X, 1).indices
    out = []
    for i in range(len(s)):
        if not live[i]:
            out.append([])
            continue
        ws = [vocab.words[j] for j in top[i].tolist() if not positive or score[i, j] > 0]
        out.append(ws)
    return out


def rules(mv, vocab):
    from lavise.explain import vocabulary_tensor
    from lavise.explain.words import qualifying

    pairs = mv["pairs"]
    U, p = pairs.rows.shape
    W = torch.nn.functional.normalize(vocabulary_tensor(vocab).float(), dim=1)
    V = torch.nn.functional.normalize(mv["V"].float().cpu(), dim=1).view(U, p, -1)
    fires = qualifying(pairs, mv["thr"])
    live = fires.any(1) & ~torch.as_tensor(mv["thr"].dead)[pairs.units]
    out = {}
    votes, sims = pooled(V, fires, W, 0)
    out["votes"] = ranked(votes, live, vocab, sims, positive=True)
    out["similarity votes"] = ranked(sims, live, vocab, votes, positive=True)
    cen, _ = pooled(V, fires, W, None)
    out["centroid"] = ranked(cen, live, vocab)
    out["centroid z"] = ranked(zscore(cen, live), live, vocab)
    for tau in TAUS:
        soft, _ = pooled(V, fires, W, tau)
        out[f"soft {tau:g}"] = ranked(soft, live, vocab)
        out[f"soft {tau:g} z"] = ranked(zscore(soft, live), live, vocab)
    return out


def one_seed(seed: int, model, emb) -> dict:
    from lavise.evaluate import lemma

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    vocab = s.vocabulary(v.vocabulary)
    lists = {probe: rules(s.vectors(v, v.p, probe), vocab) for probe in ("", "noise", "halves")}
    rows = []
    for name, base in lists[""].items():
        row = s.score(name, base, grounded=False)
        live = [u for u in range(s.d) if base[u]]
        for probe in ("noise", "halves"):
            other = lists[probe][name]
            row[f"kept_{probe}"] = float(np.mean([bool(other[u]) and lemma(other[u][0]) == lemma(base[u][0])
                                                  for u in live]))
        rows.append({k: row[k] for k in ("name", *quality.HEADLINE, "kept_noise", "kept_halves")})
        s.log(str(rows[-1]))
    return {"seed": seed, "rows": rows}


def main() -> None:
    seeds, model, emb = validation_setup(sys.argv[1:])
    per_seed = [one_seed(x, model, emb) for x in seeds]
    cols = (*quality.HEADLINE, "kept_noise", "kept_halves")
    lines = ["## Pooling before the look-up (validation seeds)", "",
             f"Seeds {seeds}; masked-attention, p = 100; noise sigma {quality.NOISE_SIGMA}; every value per seed, "
             "separated by /. kept: share of filters with words whose top word is unchanged.", "",
             "| rule | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for j, r in enumerate(per_seed[0]["rows"]):
        cells = [" / ".join(f"{ps['rows'][j][c]:.3f}" for ps in per_seed) for c in cols]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    save("aggregation", table, {"seeds": seeds, "per_seed": per_seed})


if __name__ == "__main__":
    main()
