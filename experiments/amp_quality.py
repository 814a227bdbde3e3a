"""What ``--amp`` (bfloat16 autocast of the explainer head on a CPU) costs in explanation quality, and saves in time.

    python bench/quality.py --concepts all && python bench/quality.py   # once: heads and caches
    python experiments/amp_quality.py                                          # seeds 0 1 2, both modes

On a CPU with AMX or AVX512-BF16 the head's matrix products run several times faster in bfloat16, but its
outputs move by about 1e-3, so near-tied words may swap. This explains every filter with lavise's defaults
in float32 and under ``amp``, times both (the better of two runs each, alternating) and reports, per seed, how
many filters' top-10 words changed and the paired change in P@1 and R@10 (NetDissect's convention).
Results: experiments/results/amp-quality.md.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODES, explain_lists, explain_options, header, mean_sd, quality_seed, quiet, score, write_lines  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.models import load_model  # noqa: E402

METHODS = ("masked-attention", "activation")
PRECISIONS = {"float32 (default)": False, "bfloat16 (`--amp`)": True}


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags) or "neither amx_bf16 nor avx512_bf16"


def one_seed(seed: int, mode: str, model, emb) -> dict:
    q = quality_seed(seed, mode, model, emb)
    out = {}
    for m in METHODS:
        runs = {label: [] for label in PRECISIONS}
        for _ in range(2):
            for label, amp in PRECISIONS.items():
                t = time.perf_counter()
                lists = explain_lists(q, explain_options(m), quiet(amp=amp))
                runs[label].append((time.perf_counter() - t, lists))
        ref = runs[next(iter(PRECISIONS))][0][1]
        for label, rr in runs.items():
            lists = rr[0][1]
            row = score(q, m, lists)
            row["seconds"] = min(t for t, _ in rr)
            row["changed"] = sum(a[:10] != b[:10] for a, b in zip(lists, ref))
            row["changed_top1"] = sum(a[:1] != b[:1] for a, b in zip(lists, ref))
            out[(m, label)] = row
            print(f"[{mode} seed {seed}] {m}, {label}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f} "
                  f"{row['seconds']:.2f} s, top-10 changed for {row['changed']} filters", flush=True)
    return out


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    lines = header("Explainer head in bfloat16 (`--amp`) against float32 on the built-in benchmark", "amp_quality.py",
                   ", in float32 and under `--amp`")
    lines += [f"CPU: {torch.backends.cpu.get_cpu_capability()} ({cpu_flags()}), {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}. Seconds: explaining all filters of the 1,000-image target cache, "
              "the better of two runs. Changed: filters whose top-10 (top-1) words differ from float32's.", ""]
    for mode, title in MODES:
        per_seed = [one_seed(s, mode, model, emb) for s in seeds]
        cols = ["P@1", "R@10", "R@20"] + (["novel_discovered"] if mode == "seen" else [])
        lines += [f"## {title}", "",
                  "| method | head precision | " + " | ".join(c.replace("novel_discovered", "held-out found") for c in cols)
                  + " | seconds | top-10 (top-1) changed, per seed | P@1, R@10 − float32 (per seed) |",
                  "|---" * (len(cols) + 5) + "|"]
        for m in METHODS:
            for label in PRECISIONS:
                rows = [r[(m, label)] for r in per_seed]
                base = [r[(m, next(iter(PRECISIONS)))] for r in per_seed]
                vals = [mean_sd([r[c] for r in rows]) for c in cols]
                diff = ", ".join(f"{r['P@1'] - b['P@1']:+.3f} / {r['R@10'] - b['R@10']:+.3f}" for r, b in zip(rows, base))
                lines.append(f"| {m} | {label} | " + " | ".join(vals)
                             + f" | {mean_sd([r['seconds'] for r in rows])} | "
                             + ", ".join(f"{r['changed']} ({r['changed_top1']})" for r in rows) + f" | {diff} |")
        lines.append("")
    write_lines("amp-quality", lines)


if __name__ == "__main__":
    main()
