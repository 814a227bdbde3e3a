"""Explanation quality against the number of reference scenes the explainer is trained on.

    python experiments/reference_size.py                          # seed 0, seen split, 2,000 to 16,000 scenes
    python experiments/reference_size.py --seeds 0 1 --sizes 4000 8000 --concepts all
    python experiments/reference_size.py --seeds 0 1 2 --sizes 4000 8000 --concepts all --methods attention activation

Per size, the explainer (lavise's default head) is trained on ``builtin:scenes?split=train`` of that size
(the seen categories, or all with ``--concepts all``) exactly as bench/quality.py trains it, and every filter
is explained on the same 1,000 test scenes and scored like bench/quality.py (masked-attention or the
``--methods`` named, lavise's defaults, NetDissect's convention), without and with ``--hubness``. Heads and caches are kept in
runs/bench (the 4,000-scene ones are quality.py's). Results: experiments/results/reference-size-<concepts>-s<seeds>.md
(with other methods: ...-s<seeds>-<methods>.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, explain_and_score, explain_options, header, mean_sd, quality_seed, quiet, write_lines  # noqa: E402
from lavise.data import load_dataset  # noqa: E402
from lavise.defaults import DEFAULT_METHOD, HEADS, HUBNESS  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.options import TrainOptions  # noqa: E402
from lavise.train import TrainedExplainer, train_explainer  # noqa: E402

COLS = ("val top-1", "P@1", "R@5", "R@10", "R@20", "held-out found")


def trained_run(seed: int, size: int, concepts: str, model, emb) -> Path:
    """The run folder of the head bench/quality.py would train for this seed and reference size (trained
    here unless it is already there)."""
    base = WORK / (f"seed{seed}-b{size}" + ("" if concepts == "seen" else f"-{concepts}"))
    run = base.with_name(base.name + f"-h{HEADS}")
    if not (run / "explainer.safetensors").is_file():
        ref = load_dataset(f"builtin:scenes?size={size}&seed={seed}&split=train&concepts={concepts}&cache={WORK}")
        train_explainer(model, ref, emb, out=run, options=TrainOptions(seed=seed, heads=HEADS), extract=quiet(),
                        cache_dir=base / "cache")
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    ap.add_argument("--concepts", choices=["seen", "all"], default="seen")
    ap.add_argument("--methods", nargs="+", default=[DEFAULT_METHOD], choices=["masked-attention", "attention", "activation", "original"])
    args = ap.parse_args()
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    mode = args.concepts
    rows = {}  # (method, size, hubness) -> per-seed dicts
    for seed in args.seeds:
        target = None  # the seed's target cache, ground truth and vocabulary: loaded once, shared by every size
        for size in args.sizes:
            t0 = time.time()
            run = trained_run(seed, size, args.concepts, model, emb)
            target = target or quality_seed(seed, mode, model, emb, run=run)
            q = dict(target, trained=TrainedExplainer.load(run))
            trained = q["trained"]
            best = trained.config["train"]["best_epoch"]
            for method, hub in ((m, h) for m in args.methods for h in (0.0, HUBNESS)):
                r = explain_and_score(q, method, explain_options(method, hubness=hub))
                r["val top-1"] = trained.history[best - 1].get("val_top1", float("nan"))
                r["held-out found"] = r.get("novel_discovered", float("nan"))
                rows.setdefault((method, size, hub), []).append(r)
                print(f"[seed {seed}] {size} reference scenes, {method}, hubness {hub}: val top-1 {r['val top-1']:.3f} "
                      f"P@1 {r['P@1']:.3f} R@10 {r['R@10']:.3f} held-out found {r['held-out found']} "
                      f"({time.time() - t0:.0f} s)", flush=True)
    title = "every category trained" if mode == "all" else "seen categories only (the default split)"
    lines = header(f"Quality against the number of reference scenes: {title}", "reference_size.py",
                   f", {', '.join(args.methods)}, the explainer trained on N reference scenes", seeds=args.seeds,
                   heads="Heads trained as bench/quality.py trains them")
    cols = COLS if mode == "seen" else COLS[:-1]  # nothing is held out when every category is trained
    default = args.methods == [DEFAULT_METHOD]  # the method column only where methods were named
    lines += ["| " + ("" if default else "method | ") + "reference scenes | hubness | " + " | ".join(cols) + " |",
              "|---" * (len(cols) + 2 + (not default)) + "|"]
    for (method, size, hub), per_seed in rows.items():
        lines.append("| " + ("" if default else f"{method} | ") + f"{size:,} | {hub or 'off'} | "
                     + " | ".join(mean_sd([r[c] for r in per_seed]) for c in cols) + " |")
    write_lines(f"reference-size-{mode}-s{''.join(map(str, args.seeds))}" + ("" if default else "-" + "-".join(args.methods)),
                lines)


if __name__ == "__main__":
    main()
