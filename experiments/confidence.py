"""Two questions about the confidence calibrator, measured on the target scenes of the validation seeds:
where to fit it (``rows``: on all reference images, which the head was trained on, or only on the head's
validation images, which it never saw) and on which signals (``features``: the default ones, or with each
filter's vote stability too).

    python experiments/confidence.py rows            # seeds 100-102 (bench/quality.py --role validation's heads)
    python experiments/confidence.py features 100 101 102

For each seed and variant: fit ``explain.confidence.fit_on_reference`` on those reference rows, explain every
filter from the explain half of the target scenes with lavise's defaults, and score the calibration of the top
word against the score half's ground truth (``evaluate.core.confidence_report``).
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path


def one_seed(seed: int, model, emb, question: str = "rows") -> dict:
    from lavise.evaluate import lemma
    from lavise.evaluate.core import confidence_report
    from lavise.explain.confidence import FEATURES, fit_on_reference
    from lavise.train import validation_pairs

    s = quality.Seed(SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True),
                     seed, model, emb)
    v = quality.Variant()
    head = s.head(v)
    val = validation_pairs(s.rcache, head.config["train"]["val_fraction"], torch.Generator().manual_seed(seed))
    val_rows = np.unique(s.rcache.pairs[val.numpy(), 0])
    out = {}
    variants = {"rows": (("all reference images", None, FEATURES), ("the head's validation images", val_rows, FEATURES)),
                "features": (("the default signals", None, FEATURES),
                             ("with the filter's vote stability", None, FEATURES + ("stability",)))}[question]
    for name, rows, features in variants:
        cal = fit_on_reference(head, s.rcache, emb, "reference", seed, s.quiet, rows=rows, features=features)
        fx = [f for f in s.explanations(v, v.p, replace(head, calibrator=cal)) if f.confidence is not None]
        rep = confidence_report(fx, s.gt.labels("netdissect"), lemma)
        out[name] = {k: rep[k] for k in ("ECE", "AUROC_confidence", "interpretable", "P@1_interpretable",
                                         "median_confidence", "ECE_words")}
        out[name]["quartiles"] = [q["precision"] for q in rep["quartiles"]]
        out[name]["fit_words"], out[name]["fit_right"] = cal.fitted_on["words"], cal.fitted_on["right"]
        s.log(f"{name}: {out[name]}")
    return out


def main() -> None:
    args = sys.argv[1:]
    question = args.pop(0) if args and args[0] in ("rows", "features") else "rows"
    seeds, model, emb = validation_setup(args)
    per_seed = [one_seed(x, model, emb, question) for x in seeds]
    title = {"rows": "Where to fit the confidence calibrator", "features": "Which signals the calibrator uses"}[question]
    lines = [f"## {title} (validation seeds)", "",
             f"Seeds {seeds}; lavise's defaults; calibration of the top word on the target's score half.", "",
             "| calibrator | ECE | AUROC | share right by quartile (low→high) | interpretable | P@1 there | median confidence | word ECE |",
             "|---|---|---|---|---|---|---|---|"]
    for name in per_seed[0]:
        r = [p[name] for p in per_seed]

        def cell(k):
            return " / ".join(f"{x[k]:.3f}" for x in r)
        quart = "; ".join(" / ".join(f"{q:.2f}" for q in x["quartiles"]) for x in r)
        lines.append(f"| {name} | {cell('ECE')} | {cell('AUROC_confidence')} | {quart} | "
                     f"{' / '.join(str(x['interpretable']) for x in r)} | {cell('P@1_interpretable')} | "
                     f"{cell('median_confidence')} | {cell('ECE_words')} |")
    md = "\n".join(lines)
    print(md)
    save(f"confidence-{question}", md, {"seeds": seeds, "question": question, "rows": per_seed})


if __name__ == "__main__":
    main()
