"""``FeatureExtractor``: a layer's output for a batch as a (B, C, H, W) map, with the forward pass cut at that
layer (token and channels-last outputs are read as maps, ``features.layout``)."""
from __future__ import annotations

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
        layer: dotted module name.
    """

    def __init__(self, target: TargetModel, layer: str):
        self.target, self.layer_name = target, layer
        self.layer = target.layer(layer)
        self.patch = patch_size(target.module)  # lays a transformer's tokens on the image grid
        self.prefix = prefix_tokens(target.module)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_m, _inp, out):
            captured.append(out)
            raise _StopForward

        handle = self.layer.register_forward_hook(hook)
        try:
            self.target.module(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"layer {self.layer_name!r} was never called in the forward pass")
        return read_map(captured[0], tuple(x.shape[-2:]), self.patch, self.layer_name, self.prefix)

    def feature_shape(self) -> tuple[int, int, int]:
        """(d, h', w') for this model's input size."""
        crop = self.target.preprocess.crop
        p = next(self.target.module.parameters(), None)
        x = torch.zeros(1, 3, crop, crop, device=p.device if p is not None else "cpu")
        return tuple(self(x).shape[1:])  # type: ignore[return-value]
