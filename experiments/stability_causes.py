"""Why do explanations change under imperceptible noise? Counterfactuals and per-filter factors, on the validation
seeds, with lavise's defaults.

    python experiments/stability_causes.py            # seeds 100-102

For each seed (the head of ``bench/quality.py --role validation``, reloaded): every filter explained from the
explain half of the target scenes, clean and with pixel noise (σ = 0.02, its own thresholds, as a rerun would be),
and two counterfactuals that undo one part of the change each:
    clean thresholds     the noisy features thresholded with the clean T_u
    clean top images     the noisy features of the clean top-p images (the selection undone)
and the share of filters whose top word is unchanged in each; then the flip rate by per-filter factor: the top
word's vote share, its margin in votes to the second word, saturation, the overlap of the clean and noisy top-p
image sets, and the similarity margin between each image's first and second word (near-ties in the look-up).
"""
from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import numpy as np

from common import WORK, save, validation_setup

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path


def words(explainer, cache, pairs, thr, vocab, method, x=10):
    """Filters' ranked words from given top pairs and thresholds, and each pair's top-2 similarity margin."""
    from lavise.explain import head_outputs, rank_words, top_words, vocabulary_tensor
    from lavise.options import ExtractOptions

    V = head_outputs(explainer, cache, pairs, thr, method, ExtractOptions(show_progress=False), None, 512)
    idx, sim = top_words(V, vocabulary_tensor(vocab), 2)
    fx = rank_words(pairs, idx[:, :1], sim[:, :1], vocab, thr, cache, x)
    margin = (sim[:, 0] - sim[:, 1]).view(len(pairs.units), pairs.p).mean(1).numpy()
    return fx, margin


def bins(values, kept, edges):
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (values >= lo) & (values < hi)
        out.append({"low": float(lo), "high": float(hi), "filters": int(m.sum()),
                    "flip": float(1 - kept[m].mean()) if m.any() else None})
    return out


def one_seed(seed: int, model, emb) -> dict:
    from lavise.evaluate import lemma
    from lavise.explain import compute_thresholds, top_pairs

    args = SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR, reuse_heads=True)
    s = quality.Seed(args, seed, model, emb)
    v = quality.Variant()
    head, vocab = s.head(v), s.vocabulary(v.vocabulary)
    noisy = s.noisy_cache()
    thr_c, thr_n = s.thr, compute_thresholds(noisy)
    pairs_c = top_pairs(s.tcache, v.p, s.units, s.ex_rows)
    pairs_n = top_pairs(noisy, v.p, s.units, s.ex_rows)
    clean, margin = words(head, s.tcache, pairs_c, thr_c, vocab, v.method)
    runs = {"noise (rerun)": words(head, noisy, pairs_n, thr_n, vocab, v.method)[0],
            "noise, clean thresholds": words(head, noisy, pairs_n, thr_c, vocab, v.method)[0],
            "noise, clean top images": words(head, noisy, pairs_c, thr_n, vocab, v.method)[0],
            "noise, clean top images and thresholds": words(head, noisy, pairs_c, thr_c, vocab, v.method)[0]}
    live = [i for i, f in enumerate(clean) if f.words]
    out = {"seed": seed, "filters": len(live), "kept": {}}
    kept = {}
    for name, fx in runs.items():
        k = np.array([bool(fx[i].words) and lemma(fx[i].words[0]["word"]) == lemma(clean[i].words[0]["word"])
                      for i in live])
        kept[name] = k
        out["kept"][name] = float(k.mean())
    k = kept["noise (rerun)"]
    share = np.array([clean[i].words[0]["score"] for i in live])
    second = np.array([clean[i].words[1]["score"] if len(clean[i].words) > 1 else 0.0 for i in live])
    sat = np.array([clean[i].saturated for i in live])
    rows_c, rows_n = pairs_c.rows.numpy(), pairs_n.rows.numpy()
    overlap = np.array([len(set(rows_c[i]) & set(rows_n[i])) / v.p for i in live])
    out["saturated"] = {"filters": int(sat.sum()), "flip": float(1 - k[sat].mean()) if sat.any() else None,
                        "flip_unsaturated": float(1 - k[~sat].mean())}
    out["by_vote_share"] = bins(share, k, [0, 0.03, 0.06, 0.1, 0.2, 1.01])
    out["by_vote_margin"] = bins(share - second, k, [0, 0.01, 0.02, 0.05, 0.1, 1.01])
    out["by_top_image_overlap"] = bins(overlap, k, [0, 0.5, 0.7, 0.8, 0.9, 1.01])
    out["by_lookup_margin"] = bins(margin[live], k, [0, 0.01, 0.02, 0.04, 0.08, 2.01])
    out["top_image_overlap"] = float(overlap.mean())
    s.log(f"kept {out['kept']}")
    return out


def fmt_bins(per_seed, key) -> str:
    cells = []
    for j, b in enumerate(per_seed[0][key]):
        flips = " / ".join("-" if r[key][j]["flip"] is None else f"{r[key][j]['flip']:.2f}" for r in per_seed)
        n = " / ".join(str(r[key][j]["filters"]) for r in per_seed)
        cells.append(f"| [{b['low']:.3g}, {b['high']:.3g}) | {n} | {flips} |")
    return "\n".join([f"| {key.replace('_', ' ')} | filters | top word flips |", "|---|---|---|", *cells])


def main() -> None:
    seeds, model, emb = validation_setup(sys.argv[1:])
    per_seed = [one_seed(x, model, emb) for x in seeds]
    lines = ["## Why top words change under pixel noise (validation seeds)", "",
             f"Seeds {seeds}; lavise's defaults; sigma {quality.NOISE_SIGMA}; every value per seed, separated by /.", "",
             "| condition | top word unchanged |", "|---|---|"]
    def per(values) -> str:
        return " / ".join("-" if x is None else f"{x:.3f}" for x in values)

    for name in per_seed[0]["kept"]:
        lines.append(f"| {name} | {per([r['kept'][name] for r in per_seed])} |")
    sat = [r["saturated"] for r in per_seed]
    lines += ["", f"Saturated filters: {' / '.join(str(x['filters']) for x in sat)}; their flip rate "
              f"{per([x['flip'] for x in sat])} against {per([x['flip_unsaturated'] for x in sat])} for the others. "
              f"Mean overlap of the clean and noisy top-100 image sets: {per([r['top_image_overlap'] for r in per_seed])}.",
              ""]
    for key in ("by_vote_share", "by_vote_margin", "by_top_image_overlap", "by_lookup_margin"):
        lines += [fmt_bins(per_seed, key), ""]
    table = "\n".join(lines)
    print(table)
    save("stability-causes", table, {"seeds": seeds, "per_seed": per_seed})


if __name__ == "__main__":
    main()
