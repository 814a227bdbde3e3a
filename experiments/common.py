"""Shared helpers of the experiments: result files (``bench/record.py``'s, kept in experiments/results) and the
folder of the quality benchmark's heads and caches, which the scripts that import ``quality`` reuse."""
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


WORK = Path(__file__).resolve().parents[1] / "runs" / "bench"  # where bench/quality.py keeps its heads and caches


def validation_setup(args: list[str]):
    """The validation seeds named in ``args`` (default bench/quality.py's), refusing test seeds, and the benchmark's
    model and embeddings: ``(seeds, model, embeddings)``."""
    import quality  # bench/quality.py
    from lavise.embeddings import load_embeddings
    from lavise.models import load_model

    seeds = [int(x) for x in args] or quality.VALIDATION_SEEDS
    if any(x < quality.FIRST_VALIDATION_SEED for x in seeds):
        raise SystemExit("validation seeds only: test seeds are for bench/quality.py's reports")
    return seeds, load_model("efficientnet-lite0"), load_embeddings("glove-6b-50d")
