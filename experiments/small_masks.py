"""Small-mask training inputs (``lavise train --small-masks K``) scored on the quality benchmark's caches.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python experiments/small_masks.py                                          # seeds 0 1 2, both modes, K = 2
    python experiments/small_masks.py --seeds 0 --control                      # and the longer-training control

Filters are explained through activation masks of a cell or two, while the head trains on whole object
masks. With ``--small-masks K`` each training pair also appears K times pooled over 1-3 random cells of
its object. Rows: the benchmark's head (whole masks), a head trained with K small-mask copies per pair, and
with ``--control`` one trained on K plain copies of each pair (the same number of steps per epoch, whole
masks only), which separates the effect of the small masks from that of the longer epochs. Every filter is
explained with ``explain_cache`` and lavise's defaults and scored like bench/quality.py. Results:
experiments/results/small-masks.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODES, WORK, explain_and_score, explain_options, header, quality_seed, quiet, variants_section, write_lines  # noqa: E402
from lavise.data import load_dataset  # noqa: E402
from lavise.defaults import HEADS  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.options import TrainOptions  # noqa: E402
from lavise.train import TrainedExplainer, fit_head, train_explainer, training_pairs  # noqa: E402

METHODS = ("masked-attention", "activation", "attention")


def plain_copies(cache, emb, seed: int, copies: int) -> TrainedExplainer:
    """The control: ``train_explainer``'s split and settings, each training pair repeated ``copies`` more times."""
    options = TrainOptions(seed=seed, heads=HEADS)
    vectors, concepts, _ = emb.encode(list(cache.concepts))
    xtr, ytr, xva, yva, g = training_pairs(cache, cache.masked_pooled(), torch.from_numpy(cache.pairs[:, 1]),
                                           options.val_fraction, seed)
    cv = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    head, history = fit_head(xtr.repeat(copies + 1, 1), ytr.repeat(copies + 1), xva, yva, cv, options, generator=g)
    return TrainedExplainer(head, concepts, cv, {"layer": cache.meta["layer"]}, history)


def one_seed(seed: int, mode: str, model, emb, k: int, control: bool) -> list[dict]:
    q = quality_seed(seed, mode, model, emb)
    ref = load_dataset(f"builtin:scenes?size=4000&seed={seed}&split=train&concepts={mode}&cache={WORK}")
    cache_dir = WORK / (f"seed{seed}-b4000" + ("-all" if mode == "all" else "")) / "cache"
    t = time.time()
    heads = {"": q["trained"],
             f" +small masks {k}": train_explainer(model, ref, emb, options=TrainOptions(seed=seed, small_masks=k),
                                                  extract=quiet(), cache_dir=cache_dir)}
    if control:
        from lavise.features import extract_features

        rc = extract_features(model, model.default_layer, ref, cache_dir, list(q["trained"].concepts), quiet())
        heads[f" +{k} plain copies (control)"] = plain_copies(rc, emb, seed, k)
    rows = []
    for suffix, ex in heads.items():
        for m in METHODS:
            row = explain_and_score(dict(q, trained=ex), m + suffix, explain_options(m))
            rows.append(row)
            print(f"[{mode} seed {seed}] {row['name']}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f} "
                  f"({time.time() - t:.0f} s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("-k", type=int, default=2, help="small-mask copies per pair (default 2)")
    ap.add_argument("--control", action="store_true", help="also train on k plain copies of each pair")
    args = ap.parse_args()
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = header("Small-mask training inputs on the built-in benchmark", "small_masks.py",
                   f", heads trained without and with {args.k} small-mask copies of each training pair",
                   seeds=args.seeds, heads="Heads of bench/quality.py and heads trained on the same caches")
    for mode, title in MODES:
        per_seed = [one_seed(s, mode, model, emb, args.k, args.control) for s in args.seeds]
        lines += variants_section(title, per_seed, mode)
    write_lines("small-masks" + ("" if args.seeds == [0, 1, 2] else "-s" + "".join(map(str, args.seeds))), lines)


if __name__ == "__main__":
    main()
