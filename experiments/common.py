"""Shared helpers of the experiments: result files (``bench/record.py``'s, kept in experiments/results) and the
quality benchmark's trained heads, caches and scoring reused by the variant scripts."""
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # bench/record.py, and bench/quality.py / speed.py for the scripts that reuse them

import record  # noqa: E402
from record import machine  # noqa: E402,F401

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, table_md: str, data: dict) -> Path:
    """``record.save`` into experiments/results."""
    return record.save(name, table_md, data, RESULTS)


# ----------------------------------------------------------------------------- variants on the quality runs

WORK = Path(__file__).resolve().parents[1] / "runs" / "bench"
MODES = (("all", "every category trained (`--concepts all`)"), ("seen", "seen categories only (the default split)"))


def quality_seed(seed: int, mode: str, model, emb, run: Path | None = None) -> dict:
    """What bench/quality.py left for one seed and mode (``all`` or ``seen``): its trained head (or the one in
    ``run``), the target cache, the IoU ground truth, the default vocabulary and the held-out concepts
    (``seen`` only)."""
    from lavise.data import load_dataset
    from lavise.defaults import HEADS
    from lavise.dissect import compute_ground_truth
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer

    tgt = load_dataset(f"builtin:scenes?size=1000&seed={seed}&split=test&cache={WORK}")
    trained = TrainedExplainer.load(run or WORK / f"seed{seed}-b4000{'-all' if mode == 'all' else ''}-h{HEADS}")
    cache = extract_features(model, model.default_layer, tgt, WORK / "cache-target-1000", list(tgt.concepts), quiet())
    names = list(dict.fromkeys(list(trained.concepts) + list(tgt.concepts)))
    return {"trained": trained, "cache": cache, "gt": compute_ground_truth(cache),
            "vocab": emb.vocabulary("nouns", concepts=names, size=10000),
            "held_out": list(tgt.meta["held_out"]) if mode == "seen" else None}


def quiet(**changes):
    """``ExtractOptions`` with lavise's defaults and no progress bars (``changes``: e.g. ``amp=True``)."""
    from lavise.options import ExtractOptions

    return ExtractOptions(show_progress=False, **changes)


def explain_options(method: str, **changes):
    """``ExplainOptions`` of ``method`` with lavise's defaults (p, s, no penalties) and 20 words per filter, so that
    R@20 can be scored; ``changes`` (e.g. ``hubness=0.25``) override them."""
    from lavise.options import ExplainOptions

    return ExplainOptions(method=method, x=20).replace(**changes)


def explain_lists(q: dict, options, extract=None, thresholds=None) -> list[list[str]]:
    """Every filter's words from ``explain_cache`` with ``options`` (see ``explain_options``), ``extract``
    (default ``quiet()``) and ``thresholds`` (default the cache's T_u, ``compute_thresholds``)."""
    from lavise.explain import explain_cache

    fx = explain_cache(q["trained"], q["cache"], q["vocab"], options, extract=extract or quiet(), thresholds=thresholds)
    lists = [[] for _ in range(q["cache"].shape[0])]
    for f in fx:
        lists[f.unit] = f.top_words
    return lists


def score(q: dict, name: str, lists: list[list[str]]) -> dict:
    """Scored like bench/quality.py: NetDissect's convention, held-out concepts found in the top 10 words."""
    from lavise.evaluate import score_row

    return score_row(name, lists, q["gt"], "netdissect", (1, 5, 10, 20), None, q["held_out"], 10)


def explain_and_score(q: dict, name: str, options, extract=None, thresholds=None) -> dict:
    """Every filter explained (``explain_lists``) and scored (``score``) as row ``name``."""
    return score(q, name, explain_lists(q, options, extract, thresholds))


def header(title: str, script: str, what: str, seeds: list[int] | None = None,
           heads: str = "Heads of bench/quality.py") -> list[str]:
    """The first lines of a variants result file: title, command, setting (``seeds`` default: the
    command's arguments, or 0 1 2; ``heads`` says where the trained heads come from)."""
    from lavise.defaults import HEADS

    seeds = seeds if seeds is not None else [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    return [f"# {title}", "", f"Command: `python experiments/{script}{''.join(' ' + a for a in sys.argv[1:])}`", "",
            f"{heads} ({HEADS} members), seeds {seeds}; every filter explained with lavise's defaults "
            f"(p=50, s=1, default vocabulary){what}; NetDissect's convention. Mean ± SD over seeds.", ""]


def mean_sd(values) -> str:
    """``mean±SD`` of per-seed values (SD 0 for one seed)."""
    import numpy as np

    v = np.asarray(values, float)
    return f"{v.mean():.3f}±{v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def write_lines(name: str, lines: list[str]) -> Path:
    """Write ``experiments/results/<name>.md`` (a fixed name: the variants scripts rerun on the same runs) and print it."""
    out = RESULTS / f"{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("saved", out)
    return out


def variants_section(title: str, per_seed: list[list[dict]], mode: str) -> list[str]:
    """A variants result file's section for one mode: the scores table over seeds, then each variant's paired
    difference from its base (a row named ``base +variant`` against ``base``) in P@1 and R@10."""
    import numpy as np

    cols = ["P@1", "R@5", "R@10", "R@20"] + (["novel_discovered"] if mode == "seen" else [])
    lines = [f"## {title}", "", "| method | " + " | ".join(c.replace("novel_discovered", "held-out found")
                                                    for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    names = [r["name"] for r in per_seed[0]]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(mean_sd([rs[i][c] for rs in per_seed]) for c in cols) + " |")
    lines.append("")
    for name in names:
        base = name.split(" +")[0]
        if name != base:
            for c in ("P@1", "R@10"):
                d = np.array([next(r for r in rows if r["name"] == name)[c] - next(r for r in rows if r["name"] == base)[c]
                              for rows in per_seed])
                sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
                lines.append(f"- {name} − {base}, {c}: {d.mean():+.3f} ± {sd:.3f} (per seed "
                             + ", ".join(f"{v:+.3f}" for v in d) + ")")
    lines.append("")
    return lines
