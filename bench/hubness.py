"""The hub-word correction (``--hubness``) scored on the quality benchmark's trained runs.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python bench/hubness.py                                              # seeds 0 1 2, both modes

Every filter is explained with ``explain_cache`` (as ``lavise explain`` does, so one r_w comes from all
1,280 filters' inputs) without and with the correction, and scored like bench/quality.py: default
vocabulary, NetDissect's convention, held-out concepts found in the top 10 words. The uncorrected rows
reproduce quality.py's. Results: bench/results/hubness.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import paired  # noqa: E402

from lavise.data import load_dataset  # noqa: E402
from lavise.defaults import HEADS  # noqa: E402
from lavise.dissect import compute_ground_truth  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.evaluate import score_row  # noqa: E402
from lavise.explain import explain_cache  # noqa: E402
from lavise.features import extract_features  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.train import TrainedExplainer  # noqa: E402

WORK = Path(__file__).resolve().parents[1] / "runs" / "bench"
METHODS = ("masked-attention", "activation", "attention")
LAMBDAS = (0.0, 0.25, 0.5)


def one_seed(seed: int, mode: str, model, emb) -> list[dict]:
    tgt = load_dataset(f"builtin:scenes?size=1000&seed={seed}&split=test&cache={WORK}")
    trained = TrainedExplainer.load(WORK / f"seed{seed}-b4000{'-all' if mode == 'all' else ''}-h{HEADS}")
    tcache = extract_features(model, model.default_layer, tgt, WORK / "cache-target-1000", concepts=list(tgt.concepts),
                              show_progress=False)
    gt = compute_ground_truth(tcache)
    names = list(dict.fromkeys(list(trained.concepts) + list(tgt.concepts)))
    vocab = emb.vocabulary("nouns", concepts=names, size=10000)
    held_out = list(tgt.meta["held_out"]) if mode == "seen" else None
    rows = []
    for m in METHODS:
        for lam in LAMBDAS:
            fx = explain_cache(trained, tcache, vocab, m, x=20, show_progress=False, hubness=lam)
            lists = [[] for _ in range(tcache.shape[0])]
            for f in fx:
                lists[f.unit] = f.top_words
            name = m + ("" if lam == 0 else f" +hubness {lam}")
            row = score_row(name, lists, gt, "netdissect", (1, 5, 10, 20), None, held_out, 10)
            rows.append(row)
            print(f"[{mode} seed {seed}] {name}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f}"
                  + (f" held-out found {row['novel_discovered']}" if held_out else ""), flush=True)
    return rows


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = ["# Hub-word correction on the built-in benchmark", "",
             f"Command: `python bench/hubness.py{''.join(' ' + str(s) for s in sys.argv[1:])}`", "",
             f"Heads of bench/quality.py ({HEADS} members), seeds {seeds}; every filter explained with lavise's defaults "
             "(p=50, s=1, default vocabulary), without and with `hubness=λ`; NetDissect's convention. Mean ± SD over seeds.", ""]
    for mode, title in (("all", "every category trained (`--concepts all`)"), ("seen", "seen categories only (the default split)")):
        per_seed = [one_seed(s, mode, model, emb) for s in seeds]
        cols = ["P@1", "R@5", "R@10", "R@20"] + (["novel_discovered"] if mode == "seen" else [])
        lines += [f"## {title}", "", "| method | " + " | ".join(c.replace("novel_discovered", "held-out found") for c in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for i, r0 in enumerate(per_seed[0]):
            vals = [np.array([rows[i][c] for rows in per_seed], float) for c in cols]
            lines.append(f"| {r0['name']} | " + " | ".join(f"{v.mean():.3f}±{v.std(ddof=1) if len(v) > 1 else 0:.3f}"
                                                           for v in vals) + " |")
        lines.append("")
        for m in METHODS:
            for metric in ("P@1", "R@10"):
                mu, sd, per = paired([[dict(r, convention="netdissect") for r in rows] for rows in per_seed],
                                     f"{m} +hubness 0.25", m, metric)
                lines.append(f"- {m} +hubness 0.25 − {m}, {metric}: {mu:+.3f} ± {sd:.3f} (per seed "
                             + ", ".join(f"{d:+.3f}" for d in per) + ")")
        lines.append("")
    out = Path(__file__).resolve().parent / "results" / "hubness.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("saved", out)


if __name__ == "__main__":
    main()
