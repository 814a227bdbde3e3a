"""Speed of ``lavise.explain.hub_scores`` (the ``--hubness`` pass) against the running top-k it replaced.

    python experiments/hub_scores.py [--outputs 64000] [--words 10376]

Random unit vectors in GloVe's 50 dimensions stand in for the explainer outputs (1,280 filters x 50 images
by default) and the default vocabulary. Both ways give the same r_w (checked); the time is best of 3.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from lavise.explain import HUB_NEIGHBOURS, hub_scores  # noqa: E402


def running_topk(outputs: torch.Tensor, vocab: torch.Tensor, k: int = HUB_NEIGHBOURS) -> torch.Tensor:
    """The previous implementation: blocks of 4,096 outputs, a running top-k along dim 0."""
    k = max(1, min(k, len(outputs)))
    best = torch.full((k, vocab.shape[0]), -2.0)
    for i in range(0, len(outputs), 4096):
        best = torch.cat([best, outputs[i:i + 4096] @ vocab.T]).topk(k, dim=0).values
    return best.mean(0)


def best_of(fn, *args, repeats: int = 3) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outputs", type=int, default=64000)
    ap.add_argument("--words", type=int, default=10376)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    outputs = F.normalize(torch.randn(args.outputs, 50, generator=g), dim=1)
    vocab = F.normalize(torch.randn(args.words, 50, generator=g), dim=1)
    t_old, old = best_of(running_topk, outputs, vocab)
    t_new, new = best_of(hub_scores, outputs, vocab)
    diff = float((old - new).abs().max())
    assert diff < 1e-5, diff
    table = ("| measure | values | ratio |\n|---|---|---|\n"
             f"| r_w of {args.words:,} words over {args.outputs:,} outputs: running top-k / hub_scores (s, best of 3) "
             f"| {t_old:.2f} / {t_new:.2f} (max difference {diff:.1e}) | {t_old / t_new:.2f}x faster |")
    print(table)
    print("saved", save("hub-scores", table, {"old_s": t_old, "new_s": t_new, "max_diff": diff,
                                              "outputs": args.outputs, "words": args.words}))


if __name__ == "__main__":
    main()
