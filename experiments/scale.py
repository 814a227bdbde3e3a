"""Why the quality targets (R@10 >= 0.85, P@1 >= 0.60) are missed, and what more data does: the default pipeline
and both ceilings with 4,000 or 8,000 reference scenes and 4,000 or 8,000 target scenes, on the validation
seeds (no test draw is used; nothing here changes a default).

    python experiments/scale.py                        # seeds 100-102
    python experiments/scale.py --seeds 100 --sizes 4000 8000

The protocol is bench/quality.py's (held-out halves of the target scenes, IoU > 0.04, lemma matching); its
``Seed`` does the work, so the heads and caches are shared with the validation run.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import sys
from types import SimpleNamespace

import numpy as np

from common import WORK, save

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path

CEILINGS = ("ceiling: ground truth of the explain half", "ceiling: NetDissect on the explain half")


def measure(seed: int, ref: int, tgt: int, model, emb) -> list[dict]:
    from lavise.evaluate import ranked_by_iou

    args = SimpleNamespace(work=WORK, reference_size=ref, target_size=tgt, lr=quality.LR)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    lists = {f"{v.method} (defaults)": s.lists(v, v.p),
             CEILINGS[0]: s.gt_a.labels("netdissect"),
             CEILINGS[1]: ranked_by_iou(s.gt_a, max(quality.KS))}
    rows = []
    for name, lst in lists.items():
        row = s.score(name, lst, grounded=False, reference_scenes=ref, target_scenes=tgt,
                      gt_filters=s.gt.summary("netdissect")["filters_with_ground_truth"])
        rows.append(row)
    s.log(f"reference {ref}, target {tgt}: " + ", ".join(f"{r['name']} P@1 {r['P@1']:.3f} R@10 {r['R@10']:.3f}"
                                                         for r in rows))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=quality.VALIDATION_SEEDS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 8000])
    args = ap.parse_args(argv)
    if any(s < quality.FIRST_VALIDATION_SEED for s in args.seeds):
        raise SystemExit(f"validation seeds only (>= {quality.FIRST_VALIDATION_SEED})")
    from lavise.embeddings import load_embeddings
    from lavise.evaluate import format_table
    from lavise.models import load_model

    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    by_seed = [[r for ref, tgt in itertools.product(args.sizes, args.sizes) for r in measure(seed, ref, tgt, model, emb)]
               for seed in args.seeds]
    for rows in by_seed:
        for r in rows:
            r["name"] = f"{r['name']} [ref {r['reference_scenes']}, target {r['target_scenes']}]"
            r["convention"] = "netdissect"
    agg = quality.aggregate(by_seed)
    cmd = "python experiments/scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = "\n".join([
        "## Quality against reference and target size (validation seeds)", "",
        f"Seeds {args.seeds}; bench/quality.py's protocol and defaults (`{quality.Variant()}`). Mean ± SD, then every "
        "seed.", "", "```", format_table(agg, ("gt_filters", "P@1", "R@10", "F1@10")), "```", "",
        "Every seed (P@1, R@10, F1@10):", "", "```", quality.per_seed_table(agg), "```", ""])
    print(md)
    save("scale", md, {"command": cmd, "seeds": args.seeds, "rows": by_seed,
                       "mean": {r["name"]: {k: r[k] for k in ("P@1", "R@10", "F1@10")} for r in agg}})
    return int(np.isnan([r["P@1"][0] for r in agg]).any())


if __name__ == "__main__":
    sys.exit(main())
