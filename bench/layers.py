"""The paper's Table 3 on the built-in benchmark: how well lavise explains each depth of EfficientNet-Lite0.

    python bench/layers.py                  # test seeds 0-4, the model's four stage outputs
    python bench/layers.py --seeds 0 --reference-size 1000 --target-size 1000   # a smaller run

Per seed, one run of several layers (``lavise train --layer stages``: ``_blocks.2``, ``_blocks.4``, ``_blocks.10``,
``_head_act``; each dataset through the model once for all four) on the same scenes as ``bench/quality.py``
(reference ``builtin:scenes?split=train&concepts=all``, target ``split=test``), scored by ``lavise evaluate``
itself: explained from one seeded half of the target scenes, scored against the IoU ground truth of the other,
beside NetDissect, random words, the controls (constant list, random concept names, shuffled lists, the whole
pipeline on a randomly initialised model) and both ceilings. Nothing here decides a default: lavise's defaults
as they stand, on test seeds only. Results: ``bench/results/layers-test.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TEST_SEEDS = [0, 1, 2, 3, 4]
HEADLINE = ("P@1", "R@10", "F1@10")


def one_seed(seed: int, args) -> dict:
    from lavise.data import load_dataset
    from lavise.defaults import DEFAULT_METHOD
    from lavise.models import load_model
    from lavise.multilayer import LayeredRun, resolve_layers, train_layers
    from lavise.options import EvalOptions, ExtractOptions, TrainOptions

    t0 = time.time()
    quiet = ExtractOptions(show_progress=False)
    tm = load_model("efficientnet-lite0")
    layers = resolve_layers(tm, args.layers)
    ref = load_dataset(f"builtin:scenes?size={args.reference_size}&seed={seed}&split=train&concepts=all")
    tgt = load_dataset(f"builtin:scenes?size={args.target_size}&seed={seed}&split=test")
    out = args.work / f"layers-seed{seed}-b{args.reference_size}-t{args.target_size}"
    train_layers(tm, ref, "glove-6b-50d", layers, out, TrainOptions(seed=seed), quiet)
    print(f"[seed {seed}] trained {len(layers)} layers ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    options = EvalOptions(methods=(DEFAULT_METHOD,), baselines=("netdissect", "random"),
                          controls=("constant", "names", "shuffled", "random-init"), conventions=("netdissect",),
                          seed=seed)
    evs = LayeredRun(out).evaluate(tgt, options, quiet)
    res = {"seed": seed, "layers": {}}
    for layer, ev in evs.items():
        rows = {r["name"]: {k: r.get(k) for k in ("kind", *HEADLINE, "AUPRC", "AUPRC_random", "filters")}
                for r in ev.rows}
        conf = next(iter(ev.confidence.values()), {})
        res["layers"][layer] = {"rows": rows, "ground_truth": ev.ground_truth["netdissect"],
                                "interpretable": conf.get("interpretable"),
                                "P@1_interpretable": conf.get("P@1_interpretable"), "ECE": conf.get("ECE"),
                                "AUROC_confidence": conf.get("AUROC_confidence")}
    res["seconds"] = time.time() - t0
    res["val_top1"] = val_top1(out)
    if not args.keep_caches:  # 6 GB a seed at 4,000 + 4,000 scenes; the figures are in the results file
        import shutil

        shutil.rmtree(out / "cache", ignore_errors=True)
    print(f"[seed {seed}] evaluated ({res['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return res


def val_top1(out: Path) -> dict[str, float]:
    """Each layer's explainer: top-1 accuracy on the reference set's held-out 10% of pairs at its last epoch (from
    the run's train_log.csv): how well the layer's masked features name the annotated concept at all."""
    import csv

    info = json.loads((out / "layers.json").read_text())
    got = {}
    for x in info["layers"]:
        with open(out / x["folder"] / "train_log.csv", newline="") as fh:
            got[x["layer"]] = float(list(csv.DictReader(fh))[-1]["val_top1"])
    return got


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}" if isinstance(v, float) else str(v)


def table(per_seed: list[dict]) -> str:
    """One block per layer: every row's headline figures, mean ± SD and per seed, and whether the default beats
    every control and NetDissect on every seed."""
    layers = list(per_seed[0]["layers"])
    seeds = " / ".join(str(r["seed"]) for r in per_seed)
    lines = []
    for layer in layers:
        by = [r["layers"][layer] for r in per_seed]
        gt = by[0]["ground_truth"]
        lines += [f"### {layer} ({gt['filters']} filters)", "",
                  f"Filters with ground truth per seed: {' / '.join(str(b['ground_truth']['filters_with_ground_truth']) for b in by)}; "
                  f"interpretable (confidence ≥ 0.5): {' / '.join(_fmt(b['interpretable']) for b in by)}, P@1 there "
                  f"{' / '.join(_fmt(b['P@1_interpretable']) for b in by)}; confidence ECE "
                  f"{' / '.join(_fmt(b['ECE']) for b in by)}, AUROC {' / '.join(_fmt(b['AUROC_confidence']) for b in by)}.",
                  "", "| row | kind | " + " | ".join(f"{h} (mean ± SD)" for h in HEADLINE)
                  + " | " + " | ".join(f"{h} per seed ({seeds})" for h in HEADLINE) + " |",
                  "|---|---|" + "---|" * (2 * len(HEADLINE))]
        for name, r0 in by[0]["rows"].items():
            vals = {h: [b["rows"][name][h] for b in by] for h in HEADLINE}
            mean = [f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" for v in vals.values()]
            per = [" / ".join(_fmt(x) for x in v) for v in vals.values()]
            lines.append(f"| {name} | {r0['kind']} | " + " | ".join(mean) + " | " + " | ".join(per) + " |")
        method = next(n for n, r in by[0]["rows"].items() if r["kind"] == "method")
        others = [n for n, r in by[0]["rows"].items() if r["kind"] in ("control", "baseline")]
        for h in HEADLINE:
            lost = [n for n in others if not all(b["rows"][method][h] > b["rows"][n][h] for b in by)]
            lines.append(f"- {h}: above every control and baseline on every seed: "
                         + ("yes" if not lost else f"no (not above {', '.join(lost)} on every seed)"))
        lines.append("")
    return "\n".join(lines)


def summary(per_seed: list[dict]) -> str:
    """One row per layer: how many filters the benchmark can score, lavise's P@1 and R@10 beside NetDissect's and
    the best control's, and whether lavise beats every control and baseline on every seed."""
    seeds = " / ".join(str(r["seed"]) for r in per_seed)
    lines = [f"| layer | filters | explainer's reference top-1 ({seeds}) | with ground truth ({seeds}) | lavise P@1 | NetDissect P@1 | best control P@1 | "
             "lavise R@10 | NetDissect R@10 | best control R@10 | lavise above every control on every seed (P@1, R@10) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ms(v):
        return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"

    for layer in per_seed[0]["layers"]:
        by = [r["layers"][layer] for r in per_seed]
        rows0 = by[0]["rows"]
        method = next(n for n, r in rows0.items() if r["kind"] == "method")
        controls = [n for n, r in rows0.items() if r["kind"] == "control"]
        cells = []
        for h in ("P@1", "R@10"):
            lav = [b["rows"][method][h] for b in by]
            nd = [b["rows"]["netdissect"][h] for b in by]
            best = [max(b["rows"][c][h] for c in controls) for b in by]
            cells.append((ms(lav), ms(nd), ms(best), all(a > c for a, c in zip(lav, best))))
        beat = ", ".join("yes" if c[3] else "no" for c in cells)
        top1 = " / ".join(f"{r['val_top1'][layer]:.2f}" if "val_top1" in r else "-" for r in per_seed)
        lines.append(f"| {layer} | {by[0]['ground_truth']['filters']} | {top1} | "
                     f"{' / '.join(str(b['ground_truth']['filters_with_ground_truth']) for b in by)} | "
                     f"{cells[0][0]} | {cells[0][1]} | {cells[0][2]} | {cells[1][0]} | {cells[1][1]} | {cells[1][2]} | "
                     f"{beat} |")
    return "\n".join(lines)


def write(done: list[dict], path: Path, args) -> None:
    from lavise.run import versions

    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = "python bench/layers.py " + " ".join(sys.argv[1:])
    path.write_text(json.dumps({"command": cmd, "machine": machine(), "versions": versions(), "per_seed": done},
                               indent=1))
    (RESULTS / f"{args.name}.md").write_text(f"# Explanation quality by layer (test seeds)\n\nCommand: `{cmd}`\n\n"
                                             f"Machine: {json.dumps(machine())}\n\n## Summary\n\n"
                                             f"{summary(done)}\n\n## Every row, per layer\n\n{table(done)}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=TEST_SEEDS)
    ap.add_argument("--layers", default="stages", help="the layers (default: the model's stage outputs)")
    ap.add_argument("--reference-size", type=int, default=4000)
    ap.add_argument("--target-size", type=int, default=4000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench", help="runs and caches (default runs/bench)")
    ap.add_argument("--resume", action="store_true", help="keep the seeds already in the results file")
    ap.add_argument("--keep-caches", action="store_true",
                    help="keep each seed's feature caches (about 6 GB a seed at the default sizes; default: removed "
                         "once the seed's figures are written)")
    ap.add_argument("--name", default="layers-test", help="results file name in bench/results (default layers-test)")
    args = ap.parse_args()
    if any(s >= 100 for s in args.seeds):
        raise SystemExit("test seeds only (below 100): this benchmark decides nothing")
    done = []
    path = RESULTS / f"{args.name}.json"
    if args.resume and path.is_file():
        done = [r for r in json.loads(path.read_text())["per_seed"] if r["seed"] in args.seeds]
        for r in done:  # seeds recorded before the explainer's accuracy was: read from their run folders
            out = args.work / f"layers-seed{r['seed']}-b{args.reference_size}-t{args.target_size}"
            if "val_top1" not in r and (out / "layers.json").is_file():
                r["val_top1"] = val_top1(out)
    for seed in args.seeds:
        if any(r["seed"] == seed for r in done):
            continue
        done.append(one_seed(seed, args))
        done.sort(key=lambda r: r["seed"])
        write(done, path, args)
    if done:
        write(done, path, args)  # also after --resume with every seed done: the files in today's format
    print(table(done))


if __name__ == "__main__":
    main()
