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
