"""``FeatureExtractor``: one or several layers' outputs for a batch as (B, C, H, W) maps, in one forward pass cut
after the last of them (token and channels-last outputs are read as maps, ``features.layout``)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ModelError
from ..models import TargetModel
from .layout import patch_size, prefix_tokens, read_map


class _StopForward(Exception):
    pass


class FeatureExtractor:
    """Returns a layer's output for a batch as a (B, C, H, W) map, cutting the forward pass at that layer.

    Args:
        target: the model.
        layer: dotted module name, or several: then a call returns ``{layer: map}`` from one forward pass that
            stops once every layer has given its output.
    """

    def __init__(self, target: TargetModel, layer: str | Sequence[str]):
        self.target = target
        self.layers = [layer] if isinstance(layer, str) else list(dict.fromkeys(layer))
        if not self.layers:
            raise ModelError("no layer named; pass at least one")
        self.single = isinstance(layer, str)
        self.layer_name = self.layers[0] if self.single else ",".join(self.layers)
        self.modules = {name: target.layer(name) for name in self.layers}
        self.layer = self.modules[self.layers[0]]
        self.patch = patch_size(target.module)  # lays a transformer's tokens on the image grid
        self.prefix = prefix_tokens(target.module)

    @torch.inference_mode()
    def maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{layer: (B, C, H, W) map}`` for a batch ``x``."""
        captured: dict[str, object] = {}

        def hook(name):
            def fn(_m, _inp, out):
                captured.setdefault(name, out)  # a module called twice gives its first output
                if len(captured) == len(self.layers):
                    raise _StopForward
            return fn

        handles = [m.register_forward_hook(hook(name)) for name, m in self.modules.items()]
        try:
            self.target.module(x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [name for name in self.layers if name not in captured]
        if missing:
            raise ModelError(f"layer {missing[0]!r} was never called in the forward pass")
        hw = tuple(x.shape[-2:])
        return {name: read_map(captured[name], hw, self.patch, name, self.prefix) for name in self.layers}

    def __call__(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        maps = self.maps(x)
        return maps[self.layers[0]] if self.single else maps

    def feature_shapes(self) -> dict[str, tuple[int, int, int]]:
        """``{layer: (d, h', w')}`` for this model's input size."""
        crop = self.target.preprocess.crop
        p = next(self.target.module.parameters(), None)
        x = torch.zeros(1, 3, crop, crop, device=p.device if p is not None else "cpu")
        return {name: tuple(m.shape[1:]) for name, m in self.maps(x).items()}  # type: ignore[misc]

    def feature_shape(self) -> tuple[int, int, int]:
        """(d, h', w') of the (first) layer for this model's input size."""
        return self.feature_shapes()[self.layers[0]]
