"""Training length: the default 30 epochs against training until validation stops improving (``--patience``).

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python experiments/epochs.py [--seeds 0 1 2] [--epochs 200] [--patience 10]

The quality benchmark's heads (30 epochs, the epoch of least validation loss kept) against heads trained on
the same caches, split and seeds for at most ``--epochs`` epochs, stopping once ``--patience`` epochs in a row
bring no new least validation loss. Every filter is explained with ``explain_cache`` and lavise's defaults and
scored like bench/quality.py. Results: experiments/results/epochs.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODES, WORK, explain_and_score, explain_options, header, quality_seed, quiet, variants_section, write_lines  # noqa: E402
from lavise.data import load_dataset  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.features import extract_features  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.options import TrainOptions  # noqa: E402
from lavise.train import train_explainer  # noqa: E402

METHODS = ("masked-attention", "activation", "attention")


def one_seed(seed: int, mode: str, model, emb, epochs: int, patience: int) -> tuple[list[dict], dict]:
    q = quality_seed(seed, mode, model, emb)
    ref = load_dataset(f"builtin:scenes?size=4000&seed={seed}&split=train&concepts={mode}&cache={WORK}")
    cache_dir = WORK / (f"seed{seed}-b4000" + ("-all" if mode == "all" else "")) / "cache"
    extract_features(model, model.default_layer, ref, cache_dir, list(q["trained"].concepts),
                     quiet())  # the reference cache, untimed (as train_explainer keys it)
    t = time.perf_counter()
    long = train_explainer(model, ref, emb, options=TrainOptions(epochs=epochs, patience=patience, seed=seed),
                           extract=quiet(), cache_dir=cache_dir)
    info = {"seconds": time.perf_counter() - t, "epochs_run": long.config["train"]["epochs_run"],
            "best_epoch": long.config["train"]["best_epoch"], "base_best_epoch": q["trained"].config["train"]["best_epoch"],
            "base_epochs": q["trained"].config["train"]["epochs"]}
    print(f"[{mode} seed {seed}] {info}", flush=True)
    rows = []
    for suffix, ex in (("", q["trained"]), (f" +patience {patience}", long)):
        for m in METHODS:
            rows.append(explain_and_score(dict(q, trained=ex), m + suffix, explain_options(m)))
            print(f"[{mode} seed {seed}] {rows[-1]['name']}: P@1 {rows[-1]['P@1']:.3f} R@10 {rows[-1]['R@10']:.3f}",
                  flush=True)
    return rows, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=200, help="most epochs of the longer training (default 200)")
    ap.add_argument("--patience", type=int, default=10, help="its patience (default 10)")
    args = ap.parse_args()
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = header("Training length on the built-in benchmark", "epochs.py",
                   f", heads trained for 30 epochs and until {args.patience} epochs bring no new least validation "
                   f"loss (at most {args.epochs})", seeds=args.seeds,
                   heads="Heads of bench/quality.py and heads trained on the same caches")
    for mode, title in MODES:
        results = [one_seed(s, mode, model, emb, args.epochs, args.patience) for s in args.seeds]
        per_seed = [r for r, _ in results]
        lines += variants_section(title, per_seed, mode)
        lines += ["| seed | epoch kept (30 epochs) | epochs run / epoch kept (patience) | training time (s) |",
                  "|---|---|---|---|"]
        lines += [f"| {s} | {i['base_best_epoch']} of {i['base_epochs']} | {i['epochs_run']} / {i['best_epoch']} | "
                  f"{i['seconds']:.0f} |" for s, (_, i) in zip(args.seeds, results)]
        lines.append("")
    write_lines("epochs" + ("" if args.seeds == [0, 1, 2] else "-s" + "".join(map(str, args.seeds))), lines)


if __name__ == "__main__":
    main()
