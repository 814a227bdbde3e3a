"""The bench scripts are not a package: the fixtures import them from bench/ for the tests here."""
import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def quality():
    """bench/quality.py."""
    return _bench_module("quality")


@pytest.fixture(scope="module")
def qdocs():
    """bench/quality_docs.py."""
    return _bench_module("quality_docs")
