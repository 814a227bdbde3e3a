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


def _tick() -> None:
    """Count a forward pass; kill or sleep as the test asked."""
    global _calls
    _calls += 1
    if KILL_AT_FORWARD is not None and _calls == KILL_AT_FORWARD:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("RELMODELS_SLEEP"):  # slow extraction down for the external-kill test
        time.sleep(float(os.environ["RELMODELS_SLEEP"]))


class TinyNet(_TinyNet):
    """conftest's TinyNet (two conv blocks, 8 and 16 filters, at 64 px) that can kill or slow itself."""

    lavise_default_layer = "block2"
    lavise_preprocess = Preprocess(resize=64, crop=64)

    def forward(self, x):
        _tick()
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


def vit():
    """A tiny timm ViT (8 px patches at 64 px, 16 channels, a class and 2 register tokens) that can kill itself:
    its blocks output tokens, which lavise reads as 16 x 8 x 8 maps."""
    from timm.models.vision_transformer import VisionTransformer

    class TinyViT(VisionTransformer):
        lavise_default_layer = "blocks.1"
        lavise_preprocess = Preprocess(resize=64, crop=64)

        def forward(self, x):
            _tick()
            return super().forward(x)

    torch.manual_seed(0)
    return TinyViT(img_size=64, patch_size=8, embed_dim=16, depth=2, num_heads=2, reg_tokens=2, num_classes=3)


def not_a_module():
    return "not a module"
