"""Explaining from features averaged over noisy copies of each target image: quality and stability.

The stability probe showed that the built-in scenes' features move far more between a clean render and a noisy
copy (cosine of layer maps about 0.81) than between two noisy copies (about 0.97): clean renders have no sensor
noise at all, and σ = 0.02 noise on flat colour shifts the features the same way every draw. Averaging each
target image's features over K noisy copies (``NoisyImages(..., draws=K)``) describes a filter by its response
around the image; the noise probe of a smoothed run smooths the noisy copy the same way (as a user's rerun would).

    python experiments/smoothing.py            # validation seeds 100-102; K = 1 and 2
    python experiments/smoothing.py --draws 1 2 4 100

K in --train-draws (default 1) also gets a head trained on the reference features smoothed the same way.

Scores are against the clean target's ground truth (score half), as bench/quality.py; the head is the seed's
validation head (clean reference features) or, where named, one trained the same way on smoothed reference features.
"""
from __future__ import annotations

import argparse
import importlib
import time
from types import SimpleNamespace

import numpy as np

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path
SMOOTH_SEED = 1 << 20  # apart from the probe's noise seeds (the draw's seed)


def lists_for(s, head, cache, vocab, v, votes, rows):
    mv = quality.method_vectors(head, cache, v.method, v.p, s.units, rows=rows)
    fx = quality.words_from_vectors(mv, cache, vocab, v.s, max(quality.KS), head, votes=votes)
    return quality.full_lists(fx, s.d)


def kept(base, other, lemma) -> float:
    live = [u for u in range(len(base)) if base[u]]
    return float(np.mean([bool(other[u]) and lemma(other[u][0]) == lemma(base[u][0]) for u in live]))


def one_seed(seed: int, model, emb, draws: list[int], train_draws: list[int]) -> dict:
    from lavise.data.perturb import NoisyImages
    from lavise.evaluate import lemma
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer, train_explainer

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    head, vocab = s.head(v), s.vocabulary(v.vocabulary)
    folder = WORK / f"cache-target-{args.target_size}"
    rows, seconds = [], {}
    for k in draws:
        t0 = time.time()
        if k == 0:
            clean, noisy = s.tcache, s.noisy_cache()
        else:
            clean = extract_features(model, s.layer, NoisyImages(s.tgt, quality.NOISE_SIGMA, SMOOTH_SEED, k), folder,
                                     None, s.quiet)
            probe = NoisyImages(NoisyImages(s.tgt, quality.NOISE_SIGMA, seed), quality.NOISE_SIGMA, SMOOTH_SEED, k)
            noisy = extract_features(model, s.layer, probe, folder, None, s.quiet)
        seconds[k] = time.time() - t0
        heads = [("", head)]
        if k and k in train_draws:  # a head trained on the reference features smoothed the same way
            ref = NoisyImages(s.ref, quality.NOISE_SIGMA, SMOOTH_SEED, k)
            out = s.base.with_name(s.base.name + f"-{v.train_tag}-smooth{k}")
            heads.append((", smoothed reference", TrainedExplainer.load(out) if (out / "explainer.safetensors").is_file()
                          else train_explainer(model, ref, emb, out=out, cache_dir=s.base / "cache", extract=s.quiet,
                                               options=v.train_options(seed, args.lr))))
        for tag, h in heads:
            for votes in ("count", "similarity"):
                base = lists_for(s, h, clean, vocab, v, votes, s.ex_rows)
                row = s.score(f"K = {k}{tag}, {votes} votes", base, grounded=False)
                row["kept_noise"] = kept(base, lists_for(s, h, noisy, vocab, v, votes, s.ex_rows), lemma)
                row["kept_halves"] = kept(base, lists_for(s, h, clean, vocab, v, votes, s.sc_rows), lemma)
                rows.append({k_: row[k_] for k_ in ("name", *quality.HEADLINE, "kept_noise", "kept_halves")})
                s.log(str(rows[-1]))
    return {"seed": seed, "rows": rows, "extract_seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-draws", type=int, nargs="*", default=[1], help="K with a head on smoothed reference too")
    ap.add_argument("seeds", type=int, nargs="*")
    a = ap.parse_args()
    seeds, model, emb = validation_setup([str(x) for x in a.seeds])
    per_seed = [one_seed(x, model, emb, a.draws, a.train_draws) for x in seeds]
    cols = (*quality.HEADLINE, "kept_noise", "kept_halves")
    lines = ["## Features averaged over K noisy copies (validation seeds)", "",
             f"Seeds {seeds}; masked-attention, p = 100, s = 1; copies and probe noise sigma {quality.NOISE_SIGMA}; "
             "K = 0: the clean images (lavise's current default). Every value per seed, separated by /. kept: share "
             "of filters with words whose top word is unchanged under the noise probe / on the other half.", "",
             "| rule | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for j, r in enumerate(per_seed[0]["rows"]):
        cells = [" / ".join(f"{ps['rows'][j][c]:.3f}" for ps in per_seed) for c in cols]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Extraction seconds per K (clean and probe copies): " + "; ".join(
        f"seed {ps['seed']}: " + ", ".join(f"K={k} {t:.0f}" for k, t in ps["extract_seconds"].items()) for ps in per_seed)]
    table = "\n".join(lines)
    print(table)
    save("smoothing", table, {"seeds": seeds, "draws": a.draws, "train_draws": a.train_draws, "per_seed": per_seed})


if __name__ == "__main__":
    main()
