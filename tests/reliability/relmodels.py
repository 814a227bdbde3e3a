"""Tiny target models for the reliability tests (``python:relmodels:FACTORY`` with tests/reliability on PYTHONPATH).

``KILL_AT_FORWARD`` (set by the kill-test child process) makes the N-th forward pass SIGKILL its own
process: a ``kill -9`` in the middle of feature extraction, at a reproducible point.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest's TinyNet
from conftest import TinyNet as _TinyNet  # noqa: E402
from lavise.data.transforms import Preprocess

KILL_AT_FORWARD: int | None = None
_calls = 0


class TinyNet(_TinyNet):
    """conftest's TinyNet (two conv blocks, 8 and 16 filters, at 64 px) that can kill or slow itself."""

    lavise_default_layer = "block2"
    lavise_preprocess = Preprocess(resize=64, crop=64)

    def forward(self, x):
        global _calls
        _calls += 1
        if KILL_AT_FORWARD is not None and _calls == KILL_AT_FORWARD:
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("RELMODELS_SLEEP"):  # slow extraction down for the external-kill test
            time.sleep(float(os.environ["RELMODELS_SLEEP"]))
        return self.fc(self.pool(self.block2(self.block1(x))).flatten(1))


class NanNet(TinyNet):
    """Its block2 produces NaN for every input."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.block2[0].bias.fill_(float("nan"))


def tiny() -> TinyNet:
    return TinyNet()


def nan() -> NanNet:
    return NanNet()


def not_a_module():
    return "not a module"
