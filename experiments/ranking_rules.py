"""Word-ranking rules compared on the quality benchmark's caches (seen split, one seed).

    python bench/quality.py --seeds 1          # once: trains the head and extracts the caches
    python experiments/ranking_rules.py 1

Each rule turns the top-s words of each of a filter's top-p images into one ranking: lavise's default
counts votes (ties: mean similarity); the others weigh votes by similarity, by image rank or by word rank.
Scored like bench/quality.py: masked-attention inputs, default vocabulary, NetDissect's convention.
Results: experiments/results/ranking-rules-seed<N>.md.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quiet  # noqa: E402  # importing common puts bench/ on sys.path, for quality
from lavise.data import load_dataset  # noqa: E402
from lavise.dissect import compute_ground_truth  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.evaluate import score_row  # noqa: E402
from lavise.explain import vocabulary_tensor  # noqa: E402
from lavise.features import extract_features  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.train import TrainedExplainer  # noqa: E402
from quality import method_vectors  # noqa: E402

WORK = Path(__file__).resolve().parents[1] / "runs" / "bench"
RULES = {  # name: (p, s, weight of one vote given image rank r, word rank k, similarity)
    "votes, p=50, s=1 (lavise default)": (50, 1, lambda r, k, sim: 1 + 1e-6 * sim),
    "summed similarity, p=50, s=1": (50, 1, lambda r, k, sim: sim),
    "votes, p=100, s=1": (100, 1, lambda r, k, sim: 1 + 1e-6 * sim),
    "votes, p=30, s=1": (30, 1, lambda r, k, sim: 1 + 1e-6 * sim),
    "votes weighted 1/(1+r/25), p=100, s=1": (100, 1, lambda r, k, sim: 1 / (1 + r / 25)),
    "votes weighted 1/(1+r/10), p=50, s=1": (50, 1, lambda r, k, sim: 1 / (1 + r / 10)),
    "p=50, s=2, second word half a vote": (50, 2, lambda r, k, sim: 1 if k == 0 else 0.5),
    "p=50, s=3, word k worth 1/(k+1)": (50, 3, lambda r, k, sim: 1 / (k + 1)),
}


def main() -> None:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    tgt = load_dataset(f"builtin:scenes?size=1000&seed={seed}&split=test&cache={WORK}")
    trained = TrainedExplainer.load(WORK / f"seed{seed}-b4000")
    tcache = extract_features(model, model.default_layer, tgt, WORK / "cache-target-1000", list(tgt.concepts), quiet())
    gt = compute_ground_truth(tcache)
    truth = gt.labels("netdissect")
    names = list(dict.fromkeys(list(trained.concepts) + list(tgt.concepts)))
    vocab = emb.vocabulary("nouns", concepts=names, size=10000)
    scored = [u for u in range(tcache.shape[0]) if truth[u]]
    mv = method_vectors(trained, tcache, "masked-attention", max(p for p, _, _ in RULES.values()), scored)
    vt = vocabulary_tensor(vocab)
    sims, idx = [], []
    for i in range(0, len(mv["V"]), 2048):  # the top 5 words of every (filter, image) input
        a, b = (mv["V"][i:i + 2048] @ vt.T).topk(5, dim=1)
        sims.append(a)
        idx.append(b)
    pe = mv["pairs"].p
    sims = torch.cat(sims).view(len(scored), pe, 5)
    idx = torch.cat(idx).view(len(scored), pe, 5)
    lines = [f"# Word-ranking rules, seed {seed}", "", f"Command: `python experiments/ranking_rules.py {seed}`", "",
             "| rule | P@1 | R@5 | R@10 | held-out concepts found |", "|---|---|---|---|---|"]
    for name, (p, s, weight) in RULES.items():
        lists = [[] for _ in range(tcache.shape[0])]
        for j, u in enumerate(scored):
            score = defaultdict(float)
            for r in range(p):
                for k in range(s):
                    score[int(idx[j, r, k])] += weight(r, k, float(sims[j, r, k]))
            lists[u] = [vocab.words[w] for w in sorted(score, key=lambda w: -score[w])[:20]]
        row = score_row(name, lists, gt, "netdissect", (1, 5, 10), None, list(tgt.meta["held_out"]), 10)
        lines.append(f"| {name} | {row['P@1']:.3f} | {row['R@5']:.3f} | {row['R@10']:.3f} | {row['novel_discovered']} |")
        print(lines[-1], flush=True)
    out = Path(__file__).resolve().parent / "results" / f"ranking-rules-seed{seed}.md"
    out.write_text("\n".join(lines) + "\n")
    print("saved", out)


if __name__ == "__main__":
    main()
