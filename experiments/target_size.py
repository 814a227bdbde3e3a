"""Would more target scenes reach the evaluation issue's targets (R@10 >= 0.85, P@1 >= 0.60)? The default's scores
and both ceilings as the labelled target set grows, on the validation seeds.

    python experiments/target_size.py            # seeds 100-102; sizes 1000 2000 4000 8000

For each seed: the head of ``bench/quality.py --role validation`` (reloaded, not retrained), an 8,000-scene target
set extracted once, T_u from all 8,000 scenes (label-free); for each size N, the first N scenes are split into
the seeded explain and score halves that ``bench/quality.py`` uses, every filter is explained from the explain
half with lavise's defaults and scored against the score half's ground truth (NetDissect's convention, lemma
matching), beside random concept names and both ceilings computed from the same halves.
"""
from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path
SIZES = (1000, 2000, 4000, 8000)
LARGEST = max(SIZES)


def one_seed(seed: int, model, emb) -> list[dict]:
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate import ranked_by_iou, score_row, split_rows

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=LARGEST, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    head = s.head(v)
    vocab = s.vocabulary(v.vocabulary)
    rows = []
    for n in SIZES:
        ex, sc = split_rows(n, seed)  # indices into the first n scenes
        gt = compute_ground_truth(s.tcache, s.thr, rows=sc)
        gt_a = compute_ground_truth(s.tcache, s.thr, rows=ex)
        mv = quality.method_vectors(head, s.tcache, v.method, v.p, s.units, rows=ex)
        fx = quality.words_from_vectors(mv, s.tcache, vocab, v.s, max(quality.KS), head, 0.0, v.hubness)
        lists = {"lavise defaults": quality.full_lists(fx, s.d),
                 "ceiling: ground truth of the explain half": gt_a.labels("netdissect"),
                 "ceiling: NetDissect on the explain half": ranked_by_iou(gt_a, max(quality.KS))}
        summary = gt.summary("netdissect")
        for name, lst in lists.items():
            r = score_row(name, lst, gt, "netdissect", quality.KS, None, None, 10)
            rows.append({"seed": seed, "scenes": n, "name": name, "filters_with_ground_truth":
                         summary["filters_with_ground_truth"], **{m: r[m] for m in ("P@1", "R@10", "F1@10")}})
        r = quality.random_mean_row(list(s.tgt.concepts), s.d, gt, None, seed, quality.NAMES_MEAN)
        rows.append({"seed": seed, "scenes": n, "name": "control: random concept names",
                     "filters_with_ground_truth": summary["filters_with_ground_truth"],
                     **{m: r[m] for m in ("P@1", "R@10", "F1@10")}})
        s.log(f"{n} scenes: " + "; ".join(f"{r['name']} P@1 {r['P@1']:.3f} R@10 {r['R@10']:.3f}"
                                          for r in rows[-4:]))
    return rows


def main() -> None:
    seeds, model, emb = validation_setup(sys.argv[1:])
    rows = [r for x in seeds for r in one_seed(x, model, emb)]
    names = list(dict.fromkeys(r["name"] for r in rows))
    lines = ["## Target scenes against the targets (validation seeds)", "",
             f"Seeds {seeds}; lavise's defaults (p = 100, s = 1); explain half and score half of the first N scenes "
             "of an 8,000-scene target set. Every seed's value, separated by /.", "",
             "| scenes | method | filters with ground truth | P@1 | R@10 | F1@10 |", "|---|---|---|---|---|---|"]
    for n in SIZES:
        for name in names:
            sel = [r for r in rows if r["scenes"] == n and r["name"] == name]
            cell = [" / ".join(f"{r[m]:.3f}" for r in sel) for m in ("P@1", "R@10", "F1@10")]
            gtf = " / ".join(str(r["filters_with_ground_truth"]) for r in sel)
            lines.append(f"| {n} | {name} | {gtf} | " + " | ".join(cell) + " |")
    table = "\n".join(lines)
    print(table)
    save("target-size", table, {"seeds": seeds, "sizes": list(SIZES), "rows": rows})


if __name__ == "__main__":
    main()
