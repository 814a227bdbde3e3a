"""How far σ = 0.02 pixel noise moves the layer's maps and the head's outputs, and how far two noisy copies are
from each other: the cause behind the noise probe's flips, measured on the feature caches the quality benchmark
and experiments/smoothing.py extract.

    python experiments/feature_shift.py            # validation seeds 100-102 (run experiments/smoothing.py first)

Per seed: the mean cosine, image by image, of the flattened (1280, 7, 7) maps of 1,000 target scenes between
    clean, noisy           the clean render and the noise probe's copy
    noisy, noisy           two independent noisy copies (the probe's and smoothing's single draw, K = 1)
    smoothed K, clean/noisy  K averaged copies of the clean render against K averaged copies of the noisy copy
and the mean cosine of the head's output for the same (filter, clean top image) pairs, clean against noisy maps.
"""
from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import torch

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path
smoothing = importlib.import_module("smoothing")
ROWS = 1000


def cosine(a, b, rows) -> float:
    x, y = a.read(rows).flatten(1), b.read(rows).flatten(1)
    return float(torch.nn.functional.cosine_similarity(x, y).mean())


def one_seed(seed: int, model, emb) -> dict:
    from lavise.data.perturb import NoisyImages
    from lavise.explain import head_outputs, top_pairs
    from lavise.explain.words import qualifying
    from lavise.features import extract_features
    from lavise.options import ExtractOptions

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    folder, sigma = WORK / f"cache-target-{args.target_size}", quality.NOISE_SIGMA
    rows = np.sort(np.random.default_rng(seed).choice(len(s.tcache), ROWS, replace=False))
    noisy = s.noisy_cache()

    def smoothed(base, k):
        return extract_features(model, s.layer, NoisyImages(base, sigma, smoothing.SMOOTH_SEED, k), folder, None,
                                s.quiet)

    out = {"seed": seed, "maps": {"clean, noisy": cosine(s.tcache, noisy, rows),
                                  "noisy, noisy": cosine(smoothed(s.tgt, 1), noisy, rows)}}
    for k in (1, 2):
        out["maps"][f"smoothed {k}, clean / noisy"] = cosine(smoothed(s.tgt, k),
                                                             smoothed(NoisyImages(s.tgt, sigma, seed), k), rows)
    v = quality.Variant()
    pairs = top_pairs(s.tcache, v.p, s.units, s.ex_rows)
    fires = qualifying(pairs, s.thr).reshape(-1)
    q = ExtractOptions(show_progress=False)
    out["head"] = {}
    for method in (v.method, "original"):
        a = head_outputs(s.head(v), s.tcache, pairs, s.thr, method, q, None, 512)
        b = head_outputs(s.head(v), noisy, pairs, s.thr, method, q, None, 512)
        out["head"][method] = float(torch.nn.functional.cosine_similarity(a, b)[fires].mean())
    s.log(str(out))
    return out


def main() -> None:
    seeds, model, emb = validation_setup(sys.argv[1:])
    per_seed = [one_seed(x, model, emb) for x in seeds]
    lines = ["## How far pixel noise moves the features (validation seeds)", "",
             f"Seeds {seeds}; sigma {quality.NOISE_SIGMA}; mean cosine per image over {ROWS} target scenes "
             "(layer maps) or per (filter, clean top image) pair that reaches T_u (head outputs); every value per "
             "seed, separated by /.", "", "| compared | mean cosine |", "|---|---|"]
    def per(part, key) -> str:
        return " / ".join(f"{r[part][key]:.3f}" for r in per_seed)

    for key in per_seed[0]["maps"]:
        lines.append(f"| layer maps: {key} | {per('maps', key)} |")
    for key in per_seed[0]["head"]:
        lines.append(f"| head outputs ({key}): clean, noisy | {per('head', key)} |")
    table = "\n".join(lines)
    print(table)
    save("feature-shift", table, {"seeds": seeds, "rows": ROWS, "per_seed": per_seed})


if __name__ == "__main__":
    main()
