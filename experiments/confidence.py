"""Two questions about the confidence calibrator, measured on the target scenes of the validation seeds:
where to fit it (``rows``: on all reference images, which the head was trained on, or only on the head's
validation images, which it never saw) and on which signals (``features``: the default ones, or with each
filter's vote stability too).

    python experiments/confidence.py rows            # seeds 100-102 (bench/quality.py --role validation's heads)
    python experiments/confidence.py features 100 101 102
    python experiments/confidence.py grounding 100 101 102
    python experiments/confidence.py best 100 101 102
    python experiments/confidence.py default 100 101 102 --target-size 8000

``best``: beside the word's reference IoU, its ratio to the filter's best reference IoU over all concepts (1 for
the concept the filter matches best), and that best IoU itself. ``default --target-size N``: the default
calibrator scored on N target scenes (how much of the top quartile's P@1 is sampling noise).

``grounding``: each word's reference IoU, the IoU on the reference set of the filter with the concept the word
names (0 where it names none), as a signal: fitted with the IoU of the reference explain half (the truth comes
from the other half), applied with the IoU of all reference images.

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


def grounded(filters, iou: np.ndarray, concepts) -> list:
    """``filters`` with each word's ``grounding``: the filter's IoU (``iou``, filters x concepts) with the concept
    the word names (lemma match), 0 where it names none."""
    from lavise.evaluate import lemma

    col = {lemma(c): j for j, c in enumerate(concepts)}
    best = iou.max(1) if iou.size else np.zeros(len(iou))
    return [replace(f, words=[{**w, "grounding": float(iou[f.unit, col[lemma(w["word"])]])
                               if lemma(w["word"]) in col else 0.0, "grounding_best": float(best[f.unit])}
                              for w in f.words]) for f in filters]


def fit_grounded(s, head, emb, features):
    """``fit_on_reference`` with the grounding signal from the reference explain half."""
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate import lemma
    from lavise.evaluate.core import split_rows
    from lavise.explain import compute_thresholds
    from lavise.explain.confidence import Calibrator, outcomes
    from lavise.explain.core import explain_cache
    from lavise.options import ExplainOptions

    o = ExplainOptions()
    vocab = emb.vocabulary(o.vocabulary, concepts=list(head.concepts), size=o.vocabulary_size)
    thr = compute_thresholds(s.rcache)
    ex, sc = split_rows(len(s.rcache), s.seed)
    truth = compute_ground_truth(s.rcache, thr, rows=sc).labels("netdissect")
    gex = compute_ground_truth(s.rcache, thr, rows=ex)
    fx = explain_cache(replace(head, calibrator=None), s.rcache, vocab, o, None, s.quiet, None, thr, ex)
    X, y = outcomes(grounded(fx, gex.iou(), gex.concepts), truth, lemma, features)
    return Calibrator.fit(X, y, {"words": len(y), "right": int(y.sum())}, features)


def one_seed(seed: int, model, emb, question: str = "rows", target_size: int = 4000) -> dict:
    from lavise.evaluate import lemma
    from lavise.evaluate.core import confidence_report
    from lavise.explain.confidence import FEATURES, fit_on_reference
    from lavise.train import validation_pairs

    s = quality.Seed(SimpleNamespace(work=WORK, reference_size=4000, target_size=target_size, lr=quality.LR, reuse_heads=True),
                     seed, model, emb)
    v = quality.Variant()
    head = s.head(v)
    val = validation_pairs(s.rcache, head.config["train"]["val_fraction"], torch.Generator().manual_seed(seed))
    val_rows = np.unique(s.rcache.pairs[val.numpy(), 0])
    out = {}
    variants = {"rows": (("all reference images", None, FEATURES), ("the head's validation images", val_rows, FEATURES)),
                "features": (("the default signals", None, FEATURES),
                             ("with the filter's vote stability", None, FEATURES + ("stability",))),
                "grounding": (("the default signals", None, FEATURES),
                              ("with the word's reference IoU", "grounding", FEATURES + ("grounding",)),
                              ("with reference IoU and vote stability", "grounding",
                               FEATURES + ("grounding", "stability"))),
                "default": (("the default signals", None, FEATURES),),
                "best": (("the default signals (with grounding)", None, FEATURES),
                         ("with the ratio to the filter's best reference IoU", None,
                          FEATURES + ("grounding_ratio",)),
                         ("with the ratio and the best reference IoU", None,
                          FEATURES + ("grounding_ratio", "grounding_best")))}[question]
    for name, rows, features in variants:
        if isinstance(rows, str):  # grounding: the reference IoU of each word
            cal = fit_grounded(s, head, emb, features)
            fx = grounded(s.explanations(v, v.p, replace(head, calibrator=None)), s.rgt.iou(), s.rgt.concepts)
            fx = cal.apply(fx)
        else:
            cal = fit_on_reference(head, s.rcache, emb, "reference", seed, s.quiet, rows=rows, features=features)
            fx = [f for f in s.explanations(v, v.p, replace(head, calibrator=cal)) if f.confidence is not None]
        rep = confidence_report(fx, s.gt.labels("netdissect"), lemma)
        out[name] = {k: rep[k] for k in ("ECE", "AUROC_confidence", "interpretable", "P@1_interpretable",
                                         "median_confidence", "ECE_words")}
        out[name]["quartiles"] = [q["precision"] for q in rep["quartiles"]]
        out[name]["quartiles_with_truth"] = [q["precision"] for q in rep["quartiles_with_truth"]]
        out[name]["AUROC_with_truth"] = rep["AUROC_with_truth"]
        out[name]["fit_words"], out[name]["fit_right"] = cal.fitted_on["words"], cal.fitted_on["right"]
        s.log(f"{name}: {out[name]}")
    return out


def main() -> None:
    args = sys.argv[1:]
    question = args.pop(0) if args and args[0] in ("rows", "features", "grounding", "best", "default") else "rows"
    target_size = 4000
    if "--target-size" in args:
        i = args.index("--target-size")
        target_size = int(args[i + 1])
        del args[i:i + 2]
    seeds, model, emb = validation_setup(args)
    per_seed = [one_seed(x, model, emb, question, target_size) for x in seeds]
    title = {"rows": "Where to fit the confidence calibrator", "features": "Which signals the calibrator uses",
             "grounding": "The word's reference IoU as a signal",
             "best": "The word's reference IoU against the filter's best",
             "default": f"The default calibrator at {target_size} target scenes"}[question]
    lines = [f"## {title} (validation seeds)", "",
             f"Seeds {seeds}; lavise's defaults; {target_size} target scenes; calibration of the top word on the "
             "target's score half.", "",
             "| calibrator | ECE | AUROC | share right by quartile (low→high) | P@1 by quartile, filters with ground truth "
             "| interpretable | P@1 there | median confidence | word ECE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in per_seed[0]:
        r = [p[name] for p in per_seed]

        def cell(k):
            return " / ".join(f"{x[k]:.3f}" for x in r)
        quart = "; ".join(" / ".join(f"{q:.2f}" for q in x["quartiles"]) for x in r)
        qtruth = "; ".join(" / ".join(f"{q:.2f}" for q in x["quartiles_with_truth"]) for x in r)
        lines.append(f"| {name} | {cell('ECE')} | {cell('AUROC_confidence')} | {quart} | {qtruth} | "
                     f"{' / '.join(str(x['interpretable']) for x in r)} | {cell('P@1_interpretable')} | "
                     f"{cell('median_confidence')} | {cell('ECE_words')} |")
    md = "\n".join(lines)
    print(md)
    save(f"confidence-{question}", md, {"seeds": seeds, "question": question, "rows": per_seed})


if __name__ == "__main__":
    main()
