"""What ``--amp`` (bfloat16 autocast of the explainer head on a CPU) costs in explanation quality, and saves in time.

    python experiments/amp_quality.py            # validation seeds 100-102 (their heads and caches are bench's)

On a CPU with AMX or AVX512-BF16 the head's matrix products run several times faster in bfloat16, but its
outputs move by about 1e-3, so near-tied words may swap. This explains every filter with lavise's defaults
in float32 and under ``amp`` (``explain_cache`` on the explain half of bench/quality.py's target scenes), times
both (the better of two runs each, alternating) and reports, per seed, how many filters' top-10 words changed
and the paired change in P@1 and R@10 (bench/quality.py's protocol). Results: experiments/results/amp-quality.md.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from common import WORK, save

quality = importlib.import_module("quality")  # bench/quality.py: importing common put bench/ on the path

PRECISIONS = {"float32 (default)": False, "bfloat16 (`--amp`)": True}


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags) or "neither amx_bf16 nor avx512_bf16"


def one_seed(seed: int, model, emb) -> dict:
    from lavise.explain import explain_cache
    from lavise.options import ExplainOptions, ExtractOptions

    s = quality.Seed(SimpleNamespace(work=WORK, reference_size=4000, target_size=4000, lr=quality.LR), seed, model, emb)
    v = quality.Variant()
    options = ExplainOptions(method=v.method, p=v.p, s=v.s, x=max(quality.KS))
    runs = {label: [] for label in PRECISIONS}
    for _ in range(2):
        for label, amp in PRECISIONS.items():
            t = time.perf_counter()
            fx = explain_cache(s.head(v), s.tcache, s.vocabulary(v.vocabulary), options,
                               extract=ExtractOptions(show_progress=False, amp=amp), thresholds=s.thr, rows=s.ex_rows)
            runs[label].append((time.perf_counter() - t, quality.full_lists(fx, s.d)))
    ref = runs[next(iter(PRECISIONS))][0][1]
    out = {}
    for label, rr in runs.items():
        lists = rr[0][1]
        row = s.score(label, lists, grounded=False)
        row["seconds"] = min(t for t, _ in rr)
        row["changed"] = sum(a[:10] != b[:10] for a, b in zip(lists, ref))
        row["changed_top1"] = sum(a[:1] != b[:1] for a, b in zip(lists, ref))
        out[label] = row
        s.log(f"{label}: P@1 {row['P@1']:.3f} R@10 {row['R@10']:.3f} {row['seconds']:.2f} s, "
              f"top-10 changed for {row['changed']} filters")
    return out


def main() -> None:
    from lavise.embeddings import load_embeddings
    from lavise.models import load_model

    seeds = [int(s) for s in sys.argv[1:]] or quality.VALIDATION_SEEDS
    model, emb = load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
    per_seed = [one_seed(s, model, emb) for s in seeds]
    cmd = "python experiments/amp_quality.py " + " ".join(sys.argv[1:])
    lines = ["## Explainer head in bfloat16 (`--amp`) against float32 on the built-in benchmark", "",
             f"Seeds {seeds} (validation draws), bench/quality.py's protocol and default heads; every filter explained "
             f"with lavise's defaults. CPU: {torch.backends.cpu.get_cpu_capability()} ({cpu_flags()}), "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}. Seconds: explaining all filters from the "
             "2,000-scene explain half, the better of two runs. Changed: filters whose top-10 (top-1) words differ "
             "from float32's.", "",
             "| head precision | P@1 | R@10 | seconds | top-10 (top-1) changed, per seed | P@1, R@10 − float32 (per seed) |",
             "|---|---|---|---|---|---|"]
    for label in PRECISIONS:
        rows = [r[label] for r in per_seed]
        base = [r[next(iter(PRECISIONS))] for r in per_seed]
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("P@1", "R@10", "seconds")}
        lines.append(f"| {label} | {mean['P@1']:.3f} | {mean['R@10']:.3f} | {mean['seconds']:.2f} | "
                     + ", ".join(f"{r['changed']} ({r['changed_top1']})" for r in rows) + " | "
                     + ", ".join(f"{r['P@1'] - b['P@1']:+.3f} / {r['R@10'] - b['R@10']:+.3f}" for r, b in zip(rows, base))
                     + " |")
    md = "\n".join(lines)
    print(md)
    save("amp-quality", md, {"command": cmd, "seeds": seeds, "rows": per_seed})


if __name__ == "__main__":
    main()
