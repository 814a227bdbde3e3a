"""The hub-word correction (``--hubness``) scored on the quality benchmark's trained runs.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python experiments/hubness.py                                              # seeds 0 1 2, both modes

Every filter is explained with ``explain_cache`` (as ``lavise explain`` does, so one r_w comes from all
1,280 filters' inputs) without and with the correction, and scored like bench/quality.py: default
vocabulary, NetDissect's convention, held-out concepts found in the top 10 words. The uncorrected rows
reproduce quality.py's. Results: experiments/results/hubness.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODES, explain_and_score, explain_options, header, mean_sd, quality_seed, write_lines  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.models import load_model  # noqa: E402

# bench/ is on sys.path once common is imported
from quality import paired  # noqa: E402

METHODS = ("masked-attention", "activation", "attention")
LAMBDAS = (0.0, 0.25, 0.5)


def one_seed(seed: int, mode: str, model, emb) -> list[dict]:
    q = quality_seed(seed, mode, model, emb)
    rows = []
    for m in METHODS:
        for lam in LAMBDAS:
            name = m + ("" if lam == 0 else f" +hubness {lam}")
            row = explain_and_score(q, name, explain_options(m, hubness=lam))
            rows.append(row)
            print(f"[{mode} seed {seed}] {name}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f}"
                  + (f" held-out found {row['novel_discovered']}" if q["held_out"] else ""), flush=True)
    return rows


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = header("Hub-word correction on the built-in benchmark", "hubness.py", ", without and with `hubness=λ`")
    for mode, title in MODES:
        per_seed = [one_seed(s, mode, model, emb) for s in seeds]
        cols = ["P@1", "R@5", "R@10", "R@20"] + (["novel_discovered"] if mode == "seen" else [])
        lines += [f"## {title}", "", "| method | " + " | ".join(c.replace("novel_discovered", "held-out found") for c in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for i, r0 in enumerate(per_seed[0]):
            vals = [[rows[i][c] for rows in per_seed] for c in cols]
            lines.append(f"| {r0['name']} | " + " | ".join(mean_sd(v) for v in vals) + " |")
        lines.append("")
        for m in METHODS:
            for metric in ("P@1", "R@10"):
                mu, sd, per = paired([[dict(r, convention="netdissect") for r in rows] for rows in per_seed],
                                     f"{m} +hubness 0.25", m, metric)
                lines.append(f"- {m} +hubness 0.25 − {m}, {metric}: {mu:+.3f} ± {sd:.3f} (per seed "
                             + ", ".join(f"{d:+.3f}" for d in per) + ")")
        lines.append("")
    write_lines("hubness", lines)


if __name__ == "__main__":
    main()
