"""``FeatureExtractor``: a layer's output for a batch, with the forward pass cut at that layer."""
from __future__ import annotations

import torch

from ..errors import ModelError
from ..models import TargetModel


class _StopForward(Exception):
    pass


class FeatureExtractor:
    """Returns a layer's output for a batch, cutting the forward pass at that layer.

    Args:
        target: the model.
        layer: dotted module name.
    """

    def __init__(self, target: TargetModel, layer: str):
        self.target, self.layer_name = target, layer
        self.layer = target.layer(layer)

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
        out = captured[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"layer {self.layer_name!r} outputs {shape}, not a 4-D feature map; "
                             "pick a convolutional layer (see `lavise layers`)")
        return out

    def feature_shape(self) -> tuple[int, int, int]:
        """(d, h', w') for this model's input size."""
        crop = self.target.preprocess.crop
        p = next(self.target.module.parameters(), None)
        x = torch.zeros(1, 3, crop, crop, device=p.device if p is not None else "cpu")
        return tuple(self(x).shape[1:])  # type: ignore[return-value]
