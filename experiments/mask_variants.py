"""Explain-time activation masks of other sizes, scored on the quality benchmark's trained runs.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python experiments/mask_variants.py                                        # seeds 0 1 2, both modes

The activation and masked-attention inputs pool where the filter fires, ``A_u > T_u`` (T_u: the upper
0.5% quantile over the target set, the paper's rule). Those masks are often a cell or two of the 7x7 map,
smaller than the object masks the head was trained on, so this asks whether larger masks match training
better: the mask dilated by one cell (3x3), or widened to every cell above 50% / 70% of the image's own
maximum. Every filter is explained with ``explain_cache`` and lavise's defaults (p=50, s=1, default
vocabulary) and scored like bench/quality.py (NetDissect's convention). Results: experiments/results/mask-variants.md.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODES, explain_and_score, explain_options, header, mean_sd, quality_seed, write_lines  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.explain import compute_thresholds  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.stats import Thresholds  # noqa: E402

METHODS = ("masked-attention", "activation")
VARIANTS = {"A_u > T_u (the paper's mask)": "base", "dilated by one cell": "dilate",
            "or above 50% of the image's max": "rel50", "or above 70% of the image's max": "rel70"}


@dataclass(frozen=True)
class WiderMasks(Thresholds):
    """``Thresholds`` whose ``masks`` of (pairs, h·w) maps are widened as ``kind`` says; passed to ``explain_cache``
    as its ``thresholds``."""

    kind: str = "base"
    hw: tuple[int, int] = (7, 7)

    @classmethod
    def of(cls, base: Thresholds, kind: str, hw: tuple[int, int]) -> "WiderMasks":
        return cls(base.values, base.inclusive, base.dead, kind, tuple(hw))

    def masks(self, acts: torch.Tensor, units: torch.Tensor | None = None) -> torch.Tensor:
        m = super().masks(acts, units=units)
        if self.kind == "base" or acts.dim() != 2:
            return m
        if self.kind == "dilate":
            return F.max_pool2d(m.float().view(-1, 1, *self.hw), 3, 1, 1).view(m.shape) > 0
        frac = float(self.kind[3:]) / 100
        return m | ((acts > frac * acts.amax(1, keepdim=True)) & (acts > 0))


def one_seed(seed: int, mode: str, model, emb) -> dict:
    q = quality_seed(seed, mode, model, emb)
    base = compute_thresholds(q["cache"])
    out = {}
    for m in METHODS:
        for label, kind in VARIANTS.items():
            thr = WiderMasks.of(base, kind, q["cache"].shape[1:])
            row = out[(m, label)] = explain_and_score(q, m, explain_options(m), thresholds=thr)
            print(f"[{mode} seed {seed}] {m}, {label}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f}", flush=True)
    return out


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = header("Explain-time mask size on the built-in benchmark", "mask_variants.py",
                   " and the mask below; the paired difference to the paper's mask per seed")
    for mode, title in MODES:
        per_seed = [one_seed(s, mode, model, emb) for s in seeds]
        cols = ["P@1", "R@5", "R@10", "R@20"]
        lines += [f"## {title}", "", "| method | mask | " + " | ".join(cols) + " | R@10 − paper's mask (per seed) |",
                  "|---" * (len(cols) + 3) + "|"]
        for m in METHODS:
            for label in VARIANTS:
                vals = [[r[(m, label)][c] for r in per_seed] for c in cols]
                diff = [r[(m, label)]["R@10"] - r[(m, next(iter(VARIANTS)))]["R@10"] for r in per_seed]
                lines.append(f"| {m} | {label} | " + " | ".join(mean_sd(v) for v in vals)
                             + " | " + ", ".join(f"{d:+.3f}" for d in diff) + " |")
        lines.append("")
    write_lines("mask-variants", lines)


if __name__ == "__main__":
    main()
