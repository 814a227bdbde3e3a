"""Explain-time activation masks of other sizes, scored on the quality benchmark's trained runs.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python bench/mask_variants.py                                        # seeds 0 1 2, both modes

The activation and masked-attention inputs pool where the filter fires, ``A_u > T_u`` (T_u: the upper
0.5% quantile over the target set, the paper's rule). Those masks are often a cell or two of the 7x7 map,
smaller than the object masks the head was trained on, so this asks whether larger masks match training
better: the mask dilated by one cell (3x3), or widened to every cell above 50% / 70% of the image's own
maximum. Every filter is explained with ``explain_cache`` and lavise's defaults (p=50, s=1, default
vocabulary) and scored like bench/quality.py (NetDissect's convention). Results: bench/results/mask-variants.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import lavise.explain as explain_mod
from lavise.data import load_dataset
from lavise.defaults import HEADS
from lavise.dissect import compute_ground_truth
from lavise.embeddings import load_embeddings
from lavise.evaluate import score_row
from lavise.features import extract_features
from lavise.models import load_model
from lavise.train import TrainedExplainer

WORK = Path(__file__).resolve().parents[1] / "runs" / "bench"
METHODS = ("masked-attention", "activation")
VARIANTS = {"A_u > T_u (the paper's mask)": "base", "dilated by one cell": "dilate",
            "or above 50% of the image's max": "rel50", "or above 70% of the image's max": "rel70"}


class _WiderMasks:
    """``Thresholds`` whose ``masks`` of (pairs, h·w) maps are widened as ``kind`` says."""

    def __init__(self, base, kind: str, hw: tuple[int, int]):
        self.base, self.kind, self.hw = base, kind, hw

    def __getattr__(self, name):
        return getattr(self.base, name)

    def masks(self, acts: torch.Tensor, units: torch.Tensor | None = None) -> torch.Tensor:
        m = self.base.masks(acts, units=units)
        if self.kind == "base" or acts.dim() != 2:
            return m
        if self.kind == "dilate":
            return F.max_pool2d(m.float().view(-1, 1, *self.hw), 3, 1, 1).view(m.shape) > 0
        frac = float(self.kind[3:]) / 100
        return m | ((acts > frac * acts.amax(1, keepdim=True)) & (acts > 0))


def one_seed(seed: int, mode: str, model, emb) -> dict:
    tgt = load_dataset(f"builtin:scenes?size=1000&seed={seed}&split=test&cache={WORK}")
    trained = TrainedExplainer.load(WORK / f"seed{seed}-b4000{'-all' if mode == 'all' else ''}-h{HEADS}")
    tcache = extract_features(model, model.default_layer, tgt, WORK / "cache-target-1000", concepts=list(tgt.concepts),
                              show_progress=False)
    gt = compute_ground_truth(tcache)
    names = list(dict.fromkeys(list(trained.concepts) + list(tgt.concepts)))
    vocab = emb.vocabulary("nouns", concepts=names, size=10000)
    held_out = list(tgt.meta["held_out"]) if mode == "seen" else None
    base_thresholds = explain_mod.compute_thresholds
    out = {}
    try:
        for m in METHODS:
            for label, kind in VARIANTS.items():
                explain_mod.compute_thresholds = lambda c, kind=kind: _WiderMasks(base_thresholds(c), kind, tcache.shape[1:])
                fx = explain_mod.explain_cache(trained, tcache, vocab, m, x=20, show_progress=False)
                lists = [[] for _ in range(tcache.shape[0])]
                for f in fx:
                    lists[f.unit] = f.top_words
                row = score_row(m, lists, gt, "netdissect", (1, 5, 10, 20), None, held_out, 10)
                out[(m, label)] = row
                print(f"[{mode} seed {seed}] {m}, {label}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f}", flush=True)
    finally:
        explain_mod.compute_thresholds = base_thresholds
    return out


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = ["# Explain-time mask size on the built-in benchmark", "",
             f"Command: `python bench/mask_variants.py{''.join(' ' + str(s) for s in sys.argv[1:])}`", "",
             f"Heads of bench/quality.py ({HEADS} members), seeds {seeds}; every filter explained with lavise's defaults "
             "(p=50, s=1, default vocabulary) and the mask below; NetDissect's convention. Mean ± SD over seeds; "
             "the paired difference to the paper's mask per seed.", ""]
    for mode, title in (("all", "every category trained (`--concepts all`)"), ("seen", "seen categories only (the default split)")):
        per_seed = [one_seed(s, mode, model, emb) for s in seeds]
        cols = ["P@1", "R@5", "R@10", "R@20"]
        lines += [f"## {title}", "", "| method | mask | " + " | ".join(cols) + " | R@10 − paper's mask (per seed) |",
                  "|---" * (len(cols) + 3) + "|"]
        for m in METHODS:
            for label in VARIANTS:
                vals = [np.array([r[(m, label)][c] for r in per_seed], float) for c in cols]
                diff = [r[(m, label)]["R@10"] - r[(m, next(iter(VARIANTS)))]["R@10"] for r in per_seed]
                lines.append(f"| {m} | {label} | " + " | ".join(f"{v.mean():.3f}±{v.std(ddof=1) if len(v) > 1 else 0:.3f}"
                                                               for v in vals)
                             + " | " + ", ".join(f"{d:+.3f}" for d in diff) + " |")
        lines.append("")
    out = Path(__file__).resolve().parent / "results" / "mask-variants.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("saved", out)


if __name__ == "__main__":
    main()
