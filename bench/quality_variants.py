"""Focused follow-up to bench/quality.py: faithful vs /relu6 variants and reference-set size (default vocabulary).

    python bench/quality_variants.py --runs 1000:0,1000:1,1000:2,3000:0,3000:1

Each run REF:SEED trains the head (lavise.train) on REF reference scenes of seed SEED at the model's default layer
and scores attention/activation/original (+ calibrated, + the /relu6 variants when the layer is the pre-activation
``_bn1``) on the 400 test scenes of that seed (NetDissect convention, default vocabulary 'nouns').
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import quality as q  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--runs", default="1000:0,1000:1,1000:2,3000:0,3000:1")
ap.add_argument("--out", default=str(q.RESULTS / "quality-variants.json"))
a = ap.parse_args()
from lavise.data import load_dataset
from lavise.dissect import compute_ground_truth
from lavise.embeddings import load_embeddings
from lavise.evaluate import random_words, score_row
from lavise.features import extract_features
from lavise.models import load_model
from lavise.train import train_explainer

W = q.ROOT / "runs" / "bench"
model = load_model("efficientnet-lite0")
emb = load_embeddings("glove-6b-50d")
out = []
for spec in a.runs.split(","):
    B, seed = map(int, spec.split(":"))
    t0 = time.time()
    ref = load_dataset(f"builtin:scenes?size={B}&seed={seed}&split=train&concepts=seen&cache={W}")
    tgt = load_dataset(f"builtin:scenes?size=400&seed={seed}&split=test&cache={W}")
    held = list(tgt.meta["held_out"])
    rd = W / (f"seed{seed}" if B == 1000 else f"seed{seed}-b{B}")
    tr = train_explainer(model, ref, emb, out=rd, epochs=30, lr=1e-3, seed=seed, show_progress=False)
    rc = extract_features(model, model.default_layer, ref, rd / "cache", concepts=list(tr.concepts), show_progress=False)
    tc = extract_features(model, model.default_layer, tgt, W / "cache-target", concepts=list(tgt.concepts), show_progress=False)
    pre = model.default_layer == "_bn1"  # /relu6 variants only make sense on the pre-activation map
    r6 = q.train_subset(rc, list(tr.concepts), tr.concept_vectors.numpy(), list(tr.concepts), 30, 1e-3, seed,
                        x_all=q.masked_pooled_relu6(rc)) if pre else None
    gt = compute_ground_truth(tc)
    truth = gt.labels()
    scored = [u for u in range(len(truth)) if truth[u]]
    names = list(dict.fromkeys(list(tr.concepts) + list(tgt.concepts)))
    vocab = emb.vocabulary("nouns", concepts=names, size=10000)
    best = tr.config["train"]["best_epoch"]
    res = {"reference": B, "seed": seed, "layer": model.default_layer, "val_top1": tr.history[best - 1]["val_top1"],
           "val_top1_relu6": r6.history[0]["val_top1"] if pre else None, "rows": [],
           "ground_truth": gt.summary()}
    d = tc.shape[0]
    for m in ("attention", "activation", "original") + (("attention/relu6", "activation/relu6") if pre else ()):
        ex = r6 if m.endswith("/relu6") else tr
        mv = q.method_vectors(ex, tc, m, 25, scored)
        g = q.gamma_from_vectors(mv, ex, vocab, names, seed=seed)[0]
        for gg in (0.0, g):
            lst = q.full_lists(q.words_from_vectors(mv, tc, vocab, 5, 20, ex, gg), d)
            row = score_row(m + (" +calibrated" if gg else ""), lst, gt, "netdissect", q.KS, None, held, 10)
            row["gamma"] = gg
            res["rows"].append(row)
    res["rows"].append(score_row("random", random_words(vocab.words, d, 20, seed), gt, "netdissect", q.KS, None, held, 10))
    res["seconds"] = time.time() - t0
    out.append(res)
    Path(a.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"[{B}:{seed}] layer {model.default_layer} val {res['val_top1']:.3f} relu6 {res['val_top1_relu6']} "
          f"gt {res['ground_truth']} ({res['seconds']:.0f} s)", flush=True)
    for r in res["rows"]:
        print(f"  {r['name']:28s} P@1 {r['P@1']:.3f} R@10 {r['R@10']:.3f} R@20 {r['R@20']:.3f} F1@10 {r['F1@10']:.3f} "
              f"novel {r.get('novel_discovered')} novelR@10 {r.get('novel_R@10', 0):.3f}", flush=True)
