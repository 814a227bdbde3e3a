"""Explanation-quality benchmark: the paper's Table 2 (and Figure 7) on the built-in scenes or a user's dataset.

Built-in benchmark (default)::

    python bench/quality.py                      # 3 seeds, EfficientNet-Lite0 `_head_act`, 4,000 reference + 1,000 target scenes per seed, GloVe-6B-50d
    python bench/quality.py --seeds 0 --quick    # one small seed, for a smoke test

Per seed: reference = builtin:scenes?split=train&concepts=seen (the 70% seen categories), target =
builtin:scenes?split=test (all categories, masks of seen and held-out objects). The explainer is trained
on the reference; every filter is explained on the target with each input method and scored against
the target's IoU ground truth (IoU > 0.04, accumulated over all images: NetDissect's convention; the
present-only convention is reported beside it, labelled). Baselines: NetDissect (labels from the
reference set) and random words. Novel concepts: held-out categories discovered (in a filter's top-10
words and in its ground truth), for several seen fractions (a plot).

Any dataset::

    python bench/quality.py --run RUN --dataset coco:val.json   # scores an existing run on that dataset

Output: the tables on stdout and ``bench/results/quality-<name>.{md,json}`` with the command and versions.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lavise.defaults import DEFAULT_METHOD, HEADS, SMALL_MASKS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KS = (1, 5, 10, 20)
COLUMNS = ("filters", "P@1", "P@5", "P@10", "P@20", "R@1", "R@5", "R@10", "R@20", "F1@10", "exact_P@1", "exact_R@10",
           "AUPRC", "AUPRC_random")
NOVEL_COLUMNS = ("novel_available", "novel_discovered", "novel_filters", "novel_R@10", "novel_R@20", "R@10", "P@1")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- helpers


def train_subset(cache, concepts, vectors, keep, epochs, lr, seed, heads, x_all=None, small_masks=0):
    """Train a head on the reference pairs whose concept is in ``keep`` (reuses the cached features), with
    ``lavise.train.fit_head`` and the same validation split and small-mask inputs as ``train_explainer``."""
    from lavise.options import TrainOptions
    from lavise.train import TrainedExplainer, fit_head, training_pairs

    options = TrainOptions(epochs=epochs, lr=lr, seed=seed, heads=heads, small_masks=small_masks)
    x_all = cache.masked_pooled() if x_all is None else x_all
    y_all = torch.from_numpy(cache.pairs[:, 1])
    keep_idx = [concepts.index(c) for c in keep]
    remap = torch.full((len(concepts),), -1, dtype=torch.long)
    remap[torch.tensor(keep_idx)] = torch.arange(len(keep_idx))
    y = remap[y_all]
    cv = torch.from_numpy(np.ascontiguousarray(vectors[keep_idx], dtype=np.float32))
    xtr, ytr, xva, yva, g = training_pairs(cache, x_all, y, options.val_fraction, seed, small_masks, select=y >= 0)
    head, history = fit_head(xtr, ytr, xva, yva, cv, options, generator=g)
    best = min(history, key=lambda r: r["val_loss"])
    return TrainedExplainer(head, list(keep), cv, {"layer": cache.meta["layer"]}, [best])


def first(mv, p):
    """``mv`` restricted to each filter's p most activating images (they come first): one network pass serves
    both the default and the paper's word-selection settings."""
    pairs = mv["pairs"]
    if p >= pairs.p:
        return mv
    U = len(pairs.units)
    return dict(mv, V=mv["V"].view(U, pairs.p, -1)[:, :p].reshape(U * p, -1), pairs=pairs.first(p))


def method_vectors(explainer, cache, method, p, units, dataset=None, target=None, batch_pairs=512, rows=None):
    """The explainer's output for every (filter, top image) input: ``explain_cache``'s first stages, run once per
    method so that vocabularies and calibrations reuse them (the same public stages; checked below). ``rows``:
    the cache rows top images may come from (the explain half)."""
    from lavise.explain import ImageRerun, compute_thresholds, head_outputs, top_pairs
    from lavise.options import ExtractOptions

    thr = compute_thresholds(cache)
    pairs = top_pairs(cache, p, units, rows)
    rerun = ImageRerun.of(target, explainer.config["layer"], dataset) if method == "image" else None
    V = head_outputs(explainer, cache, pairs, thr, method, ExtractOptions(show_progress=False), rerun, batch_pairs)
    return {"pairs": pairs, "V": V, "thr": thr}


def words_from_vectors(mv, cache, vocab, s, x, explainer=None, calibration=0.0):
    """``explain_cache``'s last stages: top-s words per input (optionally calibrated), ranked by votes."""
    from lavise.explain import calibration_penalty, rank_words, top_words, vocabulary_tensor

    vt = vocabulary_tensor(vocab)
    s = min(s, len(vt))
    pen = calibration_penalty(vocab, explainer.concepts, calibration) if calibration else None
    idx, sim = top_words(mv["V"], vt, s, pen)
    return rank_words(mv["pairs"], idx, sim, vocab, mv["thr"], cache, x)


def full_lists(fx, d):
    out = [[] for _ in range(d)]
    for f in fx:
        out[f.unit] = f.top_words
    return out


def gamma_from_vectors(mv, explainer, vocab, pool, max_pairs=8000, seed=0):
    """γ for calibrated stacking, chosen without labels: on a sample of the (filter, top image) inputs, the share
    of unseen names among the top-1 predictions over ``pool`` (the candidate concept names) equals their share
    of ``pool``."""
    V = mv["V"]
    rng = np.random.default_rng(seed)
    pick = torch.from_numpy(rng.choice(len(V), size=min(max_pairs, len(V)), replace=False))
    pool = set(pool)
    words = [w for w in vocab.words if w in pool]
    vecs = torch.from_numpy(vocab.vectors[[vocab.index(w) for w in words]])
    seen = torch.tensor([w in set(explainer.concepts) for w in words])
    target_share = float((~seen).float().mean())
    sims = V[pick] @ vecs.T

    def share(g):
        return float((~seen[(sims - g * seen.float()).argmax(1)]).float().mean())

    if share(0.0) >= target_share:
        return 0.0, target_share, share(0.0)
    lo, hi = 0.0, 2.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < target_share else (lo, mid)
    return hi, target_share, share(hi)


RANDOM_DRAWS = 200
RANDOM_MEAN = f"random, mean of {RANDOM_DRAWS} draws"
NAMES_MEAN = f"control: random concept names, mean of {RANDOM_DRAWS} draws"


def random_mean_row(words, d, k, gt, held_out, seed, draws=RANDOM_DRAWS, name=RANDOM_MEAN, **info) -> dict:
    """The random-words baseline's expected scores (NetDissect convention): one draw discovers a held-out
    concept so rarely that a single draw says little; the mean over many draws is the chance level."""
    from lavise.evaluate import random_words, score_row

    rows = [score_row(name, random_words(words, d, k, seed * 100_003 + r), gt, "netdissect", KS, None, held_out, 10)
            for r in range(draws)]
    out = {"name": name, "convention": "netdissect", **info}
    for key, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and key not in info:
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


def aggregate(rows_by_seed: list[list[dict]]) -> list[dict]:
    """Mean and sample SD over seeds of every numeric field, row by row (rows matched by name + convention)."""
    out = []
    for r0 in rows_by_seed[0]:
        key = (r0["name"], r0["convention"])
        same = [next(r for r in rows if (r["name"], r["convention"]) == key) for rows in rows_by_seed]
        agg = {"name": r0["name"], "convention": r0["convention"]}
        for k, v in r0.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = np.array([float(r[k]) for r in same])
                agg[k] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
        out.append(agg)
    return out


def paired(rows_by_seed, a, b, metric, conv="netdissect"):
    """Mean and SD over seeds of metric(a) - metric(b)."""
    diffs = []
    for rows in rows_by_seed:
        ra = next(r for r in rows if r["name"] == a and r["convention"] == conv)
        rb = next(r for r in rows if r["name"] == b and r["convention"] == conv)
        diffs.append(ra[metric] - rb[metric])
    diffs = np.array(diffs)
    return float(diffs.mean()), float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0, diffs.tolist()


# ----------------------------------------------------------------------------- one seed


def settings():
    """Word-selection settings scored side by side: lavise's defaults and the paper code's (row-name suffix, p, s)."""
    from lavise.defaults import PAPER_TOP_IMAGES, PAPER_WORDS_PER_IMAGE, TOP_IMAGES, WORDS_PER_IMAGE

    return [("", TOP_IMAGES, WORDS_PER_IMAGE),
            (f" [paper p={PAPER_TOP_IMAGES} s={PAPER_WORDS_PER_IMAGE}]", PAPER_TOP_IMAGES, PAPER_WORDS_PER_IMAGE)]


def run_seed(args, seed, model, emb):
    from lavise.data import load_dataset
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate import (
        constant_words,
        grounded_scores,
        lemma,
        netdissect_lists,
        random_words,
        ranked_by_iou,
        score_row,
        shuffled_lists,
        split_rows,
    )
    from lavise.explain import compute_thresholds, explain_cache
    from lavise.features import extract_features
    from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
    from lavise.train import train_explainer

    t0 = time.time()
    scn = f"&cache={args.work}"  # own cache: other processes may clear the default one
    ref = load_dataset(f"builtin:scenes?size={args.reference_size}&seed={seed}&split=train&concepts={args.concepts}{scn}")
    tgt = load_dataset(f"builtin:scenes?size={args.target_size}&seed={seed}&split=test{scn}")
    held_out = list(tgt.meta["held_out"])
    base = args.work / (f"seed{seed}-b{args.reference_size}" + ("" if args.concepts == "seen" else f"-{args.concepts}")
                        + ("" if args.embeddings == "glove-6b-50d" else f"-{args.embeddings.replace(':', '_').replace('/', '_')}"))
    run_dir = base.with_name(base.name + ("" if args.heads == 1 else f"-h{args.heads}")  # heads share one cache
                             + (f"-sm{args.small_masks}" if args.small_masks else ""))
    quiet = ExtractOptions(show_progress=False)
    trained = train_explainer(model, ref, emb, out=run_dir, cache_dir=base / "cache", extract=quiet,
                              options=TrainOptions(epochs=args.epochs, lr=args.lr, seed=seed, heads=args.heads,
                                                   small_masks=args.small_masks))
    best = trained.config["train"]["best_epoch"]
    log(f"[seed {seed}] trained on {len(trained.concepts)} seen concepts, best epoch {best}, "
        f"val top-1 {trained.history[best - 1].get('val_top1', float('nan')):.3f} ({time.time() - t0:.0f} s)")
    tcache = extract_features(model, model.default_layer, tgt, args.work / f"cache-target-{args.target_size}",
                              list(tgt.concepts), quiet)
    rcache = extract_features(model, model.default_layer, ref, base / "cache", list(trained.concepts), quiet)
    # held-out scoring: explanations from one half of the target scenes, ground truth from the other
    ex_rows, sc_rows = split_rows(len(tcache), seed) if args.split == "halves" else (None, None)
    thr = compute_thresholds(tcache)  # label-free, from every target scene
    gt = compute_ground_truth(tcache, thr, rows=sc_rows)
    gt_a = compute_ground_truth(tcache, thr, rows=ex_rows) if ex_rows is not None else None
    rgt = compute_ground_truth(rcache)
    log(f"[seed {seed}] ground truth: {gt.summary()} ({time.time() - t0:.0f} s)")
    d = tcache.shape[0]
    names = list(dict.fromkeys(list(trained.concepts) + list(tgt.concepts)))
    vocabs = {"nouns": emb.vocabulary("nouns", concepts=names, size=10000),
              "common": emb.vocabulary("common", concepts=names, size=20000),
              "names": emb.vocabulary("concepts", concepts=names)}
    truth_nd, truth_pr = gt.labels("netdissect"), gt.labels("present")
    # only filters with ground truth (either convention) can score; the others are not explained
    scored = [u for u in range(d) if truth_nd[u] or truth_pr[u]]
    rng = np.random.default_rng(seed)
    cand = [u for u in range(d) if truth_nd[u]]
    img_units = sorted(rng.choice(cand, size=min(args.image_units, len(cand)), replace=False).tolist())
    res = {"seed": seed, "layer": model.default_layer, "gt": {c: gt.summary(c) for c in ("netdissect", "present")},
           "val_top1": trained.history[best - 1].get("val_top1"), "tables": {}, "subset": {}, "novel": [],
           "gamma": {}, "explained_filters": len(scored)}
    # the most recall an explainer that never names a held-out concept can reach
    seen = set(trained.concepts)
    res["seen_only_recall_ceiling"] = float(np.mean([len(set(truth_nd[u]) & seen) / len(truth_nd[u]) for u in cand]))
    res["seen_only_precision_ceiling"] = float(np.mean([bool(set(truth_nd[u]) & seen) for u in cand]))
    K = max(KS)
    P = max(p for _, p, _ in settings())
    mvs = {}
    for m in args.methods:
        mvs[m] = method_vectors(trained, tcache, m, P, scored, rows=ex_rows)
        log(f"[seed {seed}] {m} inputs for {len(scored)} filters ({time.time() - t0:.0f} s)")
    if seed == args.seeds[0]:  # the shared-vector shortcut equals explain_cache
        for _, p, s in settings():
            chk = explain_cache(trained, tcache, vocabs["names"], ExplainOptions(method=args.methods[0], p=p, s=s, x=K),
                                scored[:20], quiet, rows=ex_rows)
            mv = method_vectors(trained, tcache, args.methods[0], p, scored[:20], rows=ex_rows)  # bit-identical
            assert [f.words for f in chk] == [f.words for f in words_from_vectors(mv, tcache, vocabs["names"], s, K)]
    for vname, vocab in vocabs.items():
        lists = {m + tag: full_lists(words_from_vectors(first(mvs[m], p), tcache, vocab, s, K), d)
                 for tag, p, s in settings() for m in args.methods}
        res["gamma"][vname] = {}
        _, p, s = settings()[0]
        for m in ("attention", "masked-attention", "activation"):
            if m in mvs:
                gamma, share_t, share_g = gamma_from_vectors(mvs[m], trained, vocab, names, seed=seed)
                res["gamma"][vname][m] = {"gamma": gamma, "target_share": share_t, "achieved": share_g}
                lists[f"{m} +calibrated"] = full_lists(words_from_vectors(first(mvs[m], p), tcache, vocab, s, K, trained,
                                                                          gamma), d)
        lists["netdissect"] = netdissect_lists(rgt)
        lists["random"] = random_words(vocab.words, d, K, seed)
        lists["control: constant"] = constant_words(dict(zip(rgt.concepts, rgt.images_with.tolist())), d, K)
        shuffle = DEFAULT_METHOD if DEFAULT_METHOD in args.methods else args.methods[0]
        lists["control: shuffled"] = shuffled_lists(lists[shuffle], scored, seed)
        if gt_a is not None:
            lists["ceiling: ground truth of the explain half"] = gt_a.labels("netdissect")
            lists["ceiling: NetDissect on the explain half"] = ranked_by_iou(gt_a, K)
        rows = [score_row(n, lst, gt, conv, KS, None, held_out, 10) for conv in ("netdissect", "present")
                for n, lst in lists.items()]
        for r in rows:
            if r["convention"] == "netdissect":
                r.update(grounded_scores(lists[r["name"]], tcache, lemma, rows=sc_rows, seed=seed))
        if vname == "nouns":
            rows.append(random_mean_row(vocab.words, d, K, gt, held_out, seed))
            rows.append(random_mean_row(list(tgt.concepts), d, K, gt, held_out, seed, name=NAMES_MEAN))
        res["tables"][vname] = rows
        log(f"[seed {seed}] vocabulary {vname} ({len(vocab.words)} words), gamma {res['gamma'][vname]} ({time.time() - t0:.0f} s)")
        if vname == "nouns" and "image" in args.subset_methods and args.image_units:
            mvi = method_vectors(trained, tcache, "image", P, img_units, tgt, model, rows=ex_rows)
            sub = {n: lists[n] for n in lists if not n.endswith("calibrated") and n not in ("netdissect", "random")
                   and not n.startswith(("control", "ceiling"))}
            for tag, p, s in settings():
                sub["image" + tag] = full_lists(words_from_vectors(first(mvi, p), tcache, vocab, s, K), d)
            sub["netdissect"], sub["random"] = lists["netdissect"], lists["random"]
            res["subset"][vname] = [score_row(n, lst, gt, "netdissect", KS, img_units, held_out, 10) for n, lst in sub.items()]
            log(f"[seed {seed}] image masking on {len(img_units)} filters ({time.time() - t0:.0f} s)")
    # novel concepts vs seen fraction (Figure 7): train on a fraction of the seen categories
    cvecs = trained.concept_vectors.numpy()
    vocab = vocabs["nouns"]
    n_all = len(trained.concepts) + len(held_out)
    _, p, s = settings()[0]
    for frac in args.fractions:
        k = max(2, int(round(frac * len(trained.concepts))))
        keep = sorted(np.random.default_rng(seed).permutation(trained.concepts)[:k].tolist())
        ex = trained if frac >= 1 else train_subset(rcache, list(trained.concepts), cvecs, keep, args.epochs, args.lr, seed,
                                                                 args.heads, small_masks=args.small_masks)
        for m in args.novel_methods:
            mv = mvs[m] if frac >= 1 else method_vectors(ex, tcache, m, P, scored, rows=ex_rows)
            gamma = gamma_from_vectors(mv, ex, vocab, names, seed=seed)[0]
            for g in (0.0, gamma):
                lst = full_lists(words_from_vectors(first(mv, p), tcache, vocab, s, K, ex, g), d)
                row = score_row(m + (" +calibrated" if g else ""), lst, gt, "netdissect", KS, None, held_out, 10)
                row.update({"seen_fraction": len(ex.concepts) / n_all, "seen_concepts": len(ex.concepts), "gamma": g})
                res["novel"].append(row)
        row = score_row("random", random_words(vocab.words, d, K, seed), gt, "netdissect", KS, None, held_out, 10)
        row.update({"seen_fraction": len(keep) / n_all, "seen_concepts": len(keep), "gamma": 0.0})
        res["novel"].append(row)
        res["novel"].append(random_mean_row(vocab.words, d, K, gt, held_out, seed, seen_fraction=len(keep) / n_all,
                                            seen_concepts=len(keep), gamma=0.0))
        res["novel"].append(random_mean_row(list(tgt.concepts), d, K, gt, held_out, seed, name=NAMES_MEAN,
                                            seen_fraction=len(keep) / n_all, seen_concepts=len(keep), gamma=0.0))
        log(f"[seed {seed}] novel concepts with {len(keep)} seen categories ({time.time() - t0:.0f} s)")
    res["seconds"] = time.time() - t0
    return res


# ----------------------------------------------------------------------------- report


def versions():
    from lavise.run import versions as v

    return v()


def head_words(heads: int) -> str:
    if heads == 1:
        return "explainer head: one member, as in the paper"
    return f"explainer head: {heads} members" + (" (lavise's default)" if heads == HEADS else "")


def render(all_res, args, cmd):
    from lavise.evaluate import format_table

    lines = ["# Explanation quality: built-in benchmark", "",
             f"Command: `{cmd}`", "",
             f"Model efficientnet-lite0, layer `{all_res[0]['layer']}` (1280 filters, 7x7), embeddings {args.embeddings}; "
             f"reference {args.reference_size} train scenes ({'seen categories only' if args.concepts == 'seen' else 'all categories'}), target {args.target_size} test scenes "
             f"(all categories); seeds {args.seeds}; {head_words(args.heads)}"
             f"{f', trained also on {args.small_masks} small-mask inputs per pair' if args.small_masks else ''}; epochs {args.epochs}, lr {args.lr}. Rows without a suffix use lavise's "
             f"word-selection defaults (p={settings()[0][1]} top images, s={settings()[0][2]} word per image); rows marked "
             f"`{settings()[1][0].strip()}` use the paper code's. "
             f"Figures are mean ± sample SD over seeds. "
             + ("Held-out scoring: each seed's target scenes are split in two seeded halves; explanations come from "
                "one half and are scored against the ground truth of the other (T_u from all target scenes). "
                if args.split == "halves" else "Explanations and ground truth come from the same target scenes. ")
             + "Words match concepts by lemmas (exact_ columns: exact match); AUPRC: how well each filter's maximum "
               "activation separates score-half images with the concept its top word names from images without it "
               "(AUPRC_random: the same for random concepts).", ""]
    gt = all_res[0]["gt"]
    for conv in ("netdissect", "present"):
        fw = [r["gt"][conv]["filters_with_ground_truth"] for r in all_res]
        cp = [r["gt"][conv]["concepts_per_filter"] for r in all_res]
        lines.append(f"- Ground truth, {conv} convention (IoU > 0.04): {np.mean(fw):.0f} of {gt[conv]['filters']} filters "
                     f"have ground truth, {np.mean(cp):.2f} concepts each.")
    lines.append(f"- Head validation top-1 among seen concepts: {np.mean([r['val_top1'] for r in all_res]):.3f}.")
    lines.append(f"- Share of each filter's ground-truth concepts that are seen categories (the recall ceiling of an "
                 f"explainer that never names a held-out concept; netdissect convention): "
                 f"{np.mean([r['seen_only_recall_ceiling'] for r in all_res]):.3f}; share of filters with a seen "
                 f"concept in their ground truth (the P@1 ceiling of the same explainer): "
                 f"{np.mean([r.get('seen_only_precision_ceiling', np.nan) for r in all_res]):.3f}. "
                 f"bench/ceilings.py splits each method's score along these lines.")
    lines.append("")
    for vname, desc in (("nouns", "default vocabulary 'nouns': 10,000 frequent singular GloVe nouns + all 376 category names"),
                        ("common", "vocabulary 'common': 20,000 frequent GloVe words + all 376 category names"),
                        ("names", "vocabulary: the 376 category names only")):
        for conv in ("netdissect", "present"):
            rows = aggregate([[r for r in res["tables"][vname] if r["convention"] == conv] for res in all_res])
            lines += [f"## {desc}; ground truth: {conv} convention", "", "```",
                      format_table(rows, COLUMNS), "```", ""]
            if conv == "netdissect":
                head = ("Novel (held-out) concepts, top-10 words:" if args.concepts == "seen" else
                        "Concepts of the usual held-out split, top-10 words (trained in this mode, so not a discovery "
                        "measure; the seen-only run gives that):")
                lines += [head, "", "```", format_table(rows, NOVEL_COLUMNS), "```", ""]
        pairs = [(a + tag, b + tag) for tag, _, _ in settings()
                 for a, b in (("attention", "activation"), ("activation", "original"), ("attention", "original"),
                              ("masked-attention", "attention"), ("masked-attention", "activation"))]
        pairs += [(m, m + settings()[1][0]) for m in ("attention", "masked-attention", "activation", "original")]
        for a, b in pairs:
            for metric in ("R@10", "P@1"):
                if not all(any(r["name"] == n for r in all_res[0]["tables"][vname]) for n in (a, b)):
                    continue
                mu, sd, vals = paired([res["tables"][vname] for res in all_res], a, b, metric)
                lines.append(f"- {vname}: {a} − {b}, {metric}: {mu:+.3f} ± {sd:.3f} (per seed {', '.join(f'{v:+.3f}' for v in vals)})")
        lines.append("")
    if all_res[0]["subset"]:
        rows = aggregate([res["subset"]["nouns"] for res in all_res])
        n = args.image_units
        lines += [f"## All four input methods on the same {n} random filters with ground truth (image masking is slow: "
                  f"{n}x{max(p for _, p, _ in settings())} network reruns per seed); default vocabulary, netdissect convention", "", "```",
                  format_table(rows, COLUMNS), "```", ""]
    if not all_res[0]["novel"]:
        lines.append(f"Versions: {json.dumps(versions())}; {platform.processor() or platform.machine()}; "
                     f"wall time {sum(r['seconds'] for r in all_res):.0f} s.")
        return "\n".join(lines)
    lines += ["## Novel-concept discovery vs seen fraction (default vocabulary nouns, netdissect convention)", "", "```"]
    fr = sorted({r["seen_concepts"] for r in all_res[0]["novel"]})
    nrows = []
    for k in fr:
        for name in [n for m in args.novel_methods for n in (m, m + " +calibrated")] + ["random", RANDOM_MEAN,
                                                                                          NAMES_MEAN]:
            per = [[r for r in res["novel"] if r["seen_concepts"] == k and r["name"] == name] for res in all_res]
            if not all(per):
                continue
            agg = aggregate([[dict(p[0], name=f"{name} [{k} seen]")] for p in per])[0]
            nrows.append(agg)
    lines += [format_table(nrows, ("seen_fraction", "gamma") + NOVEL_COLUMNS), "```", ""]
    g = {f"{v} {m}": np.mean([r["gamma"][v][m]["gamma"] for r in all_res]) for v in all_res[0]["gamma"]
         for m in all_res[0]["gamma"][v]}
    lines.append(f"Calibration γ (label-free; mean over seeds): {', '.join(f'{k} {v:.3f}' for k, v in g.items())}.")
    lines.append("")
    lines.append(f"Versions: {json.dumps(versions())}; {platform.processor() or platform.machine()}; "
                 f"wall time {sum(r['seconds'] for r in all_res):.0f} s.")
    return "\n".join(lines)


def plot(all_res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names = sorted({r["name"] for r in all_res[0]["novel"]}, key=lambda n: (n.startswith("random"), n))
    for name in names:
        style = ("x:" if name == "random" else "+:") if name.startswith("random") else (
            ("o" if "activation" in name else "s") + ("--" if "calibrated" in name else "-"))
        xs = sorted({r["seen_fraction"] for r in all_res[0]["novel"]})
        for ax, key in zip(axes, ("novel_discovered", "novel_R@10")):
            # the i-th seen fraction of every seed (fractions are the same per seed up to rounding)
            vals = np.array([[r[key] for r in sorted((r for r in res["novel"] if r["name"] == name),
                                                        key=lambda r: r["seen_fraction"])] for res in all_res])
            ax.errorbar(np.array(xs) * 100, vals.mean(0), yerr=vals.std(0, ddof=1) if len(vals) > 1 else None,
                        fmt=style, label=name, capsize=3)
            ax.set_xlabel("seen categories (% of all)")
            ax.set_ylabel({"novel_discovered": "held-out concepts discovered (top-10)",
                           "novel_R@10": "recall@10 on held-out concepts"}[key])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--reference-size", type=int, default=4000)
    ap.add_argument("--target-size", type=int, default=1000)
    ap.add_argument("--embeddings", default="glove-6b-50d")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heads", type=int, default=HEADS, help=f"members of the explainer head (default {HEADS}; 1: the paper's)")
    ap.add_argument("--small-masks", type=int, default=SMALL_MASKS,
                    help=f"small-mask training inputs per pair (lavise train --small-masks; default {SMALL_MASKS})")
    ap.add_argument("--image-units", type=int, default=16)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 1.0],
                    help="fractions of the seen categories to train on (Figure 7)")
    ap.add_argument("--methods", nargs="+", default=["attention", "masked-attention", "activation", "original"])
    ap.add_argument("--novel-methods", nargs="+", default=["attention", "masked-attention", "activation"])
    ap.add_argument("--subset-methods", nargs="*", default=["image"])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--concepts", choices=["seen", "all"], default="seen",
                    help="reference categories: seen (default; held-out ones test discovery) or all (no held-out "
                         "categories: what the method reaches when every ground-truth concept was trained)")
    ap.add_argument("--name", default=None, help="results name (default builtin, or builtin-all with --concepts all)")
    ap.add_argument("--split", choices=["halves", "none"], default="halves",
                    help="halves (default): explanations from one seeded half of the target scenes, ground truth from "
                         "the other; none: the same scenes on both sides (the paper's protocol)")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--run", help="user mode: an existing run folder to evaluate")
    ap.add_argument("--dataset", help="user mode: the dataset spec to evaluate on")
    args = ap.parse_args(argv)
    args.name = args.name or ("builtin" if args.concepts == "seen" else f"builtin-{args.concepts}")
    cmd = "python bench/quality.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.run or args.dataset:
        return user_mode(args, cmd)
    if args.quick:
        args.reference_size, args.target_size, args.image_units, args.epochs = 150, 60, 4, 3
        args.fractions = [0.5, 1.0]
        args.work = args.work.with_name(args.work.name + "-quick")
    if args.concepts == "all":
        args.fractions = []  # nothing is held out: no discovery to measure
    from lavise.embeddings import load_embeddings
    from lavise.models import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model("efficientnet-lite0")
    emb = load_embeddings(args.embeddings)
    all_res = []
    for seed in args.seeds:
        all_res.append(run_seed(args, seed, model, emb))
        (RESULTS / f"quality-{args.name}.partial.json").write_text(json.dumps(all_res, default=str))
    text = render(all_res, args, cmd)
    print(text)
    (RESULTS / f"quality-{args.name}.md").write_text(text + "\n")
    (RESULTS / f"quality-{args.name}.json").write_text(json.dumps(
        {"command": cmd, "versions": versions(), "args": {k: str(v) for k, v in vars(args).items()}, "seeds": all_res},
        indent=1, default=str))
    if all_res[0]["novel"]:
        plot(all_res, RESULTS / f"novel-concepts-{args.name}.png")
    (RESULTS / f"quality-{args.name}.partial.json").unlink(missing_ok=True)
    return 0


def user_mode(args, cmd):
    """Score an existing run on a named dataset: all methods, NetDissect and random words."""
    from lavise.data import load_dataset
    from lavise.evaluate import evaluate_run
    from lavise.options import EvalOptions

    if not (args.run and args.dataset):
        raise SystemExit("user mode needs both --run RUN and --dataset SPEC")
    ds = load_dataset(args.dataset)
    options = EvalOptions(methods=tuple(args.methods + list(args.subset_methods)), image_units=args.image_units)
    ev = evaluate_run(args.run, ds, options)
    text = "\n\n".join([f"# Explanation quality on {args.dataset}", f"Command: `{cmd}`",
                        *[f"## {conv} convention\n\n```\n{ev.table(conv, COLUMNS)}\n```" for conv in ev.ground_truth],
                        f"Versions: {json.dumps(versions())}"])
    print(text)
    name = args.name if args.name != "builtin" else "user"
    (RESULTS / f"quality-{name}.md").write_text(text + "\n")
    (RESULTS / f"quality-{name}.json").write_text(json.dumps({"command": cmd, **ev.to_dict()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
