"""A layer's output as the (B, C, H, W) map the method works on.

Convolutional layers give that map directly (``nchw``). Others are read into one:

- ``nhwc``: channels last, as Swin stages and some ConvNeXt blocks output (B, H, W, C); permuted.
- ``tokens``: a transformer's (B, N, C) token sequence. The image grid comes from the model's patch size and
  the input's size (any size: gh = H / patch, rounded down, or up where the model pads); the N − gh·gw tokens
  in front (class, distillation, register tokens) are dropped and the rest laid out row by row, as timm's
  ``forward_intermediates`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError

KINDS = ("nchw", "nhwc", "tokens")


@dataclass(frozen=True)
class Layout:
    """How to read one layer's output as a map.

    Attributes:
        kind: one of ``KINDS``.
        prefix: tokens dropped in front of the grid (``tokens`` only).
        grid: (gh, gw) of the token grid (``tokens`` only).
    """

    kind: str = "nchw"
    prefix: int = 0
    grid: tuple[int, int] = (0, 0)

    def to_map(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` (this layout) as a contiguous (B, C, H, W) map."""
        if self.kind == "nchw":
            return out
        if self.kind == "nhwc":
            return out.permute(0, 3, 1, 2).contiguous()
        b, n, c = out.shape
        gh, gw = self.grid
        return out[:, self.prefix:].reshape(b, gh, gw, c).permute(0, 3, 1, 2).contiguous()

    def describe(self) -> str:
        if self.kind == "tokens":
            return f"tokens ({self.prefix} prefix, {self.grid[0]}x{self.grid[1]} grid)"
        return "channels last" if self.kind == "nhwc" else "map"


def patch_size(module: nn.Module) -> tuple[int, int] | None:
    """The patch size of a transformer's patch embedding: timm's ``patch_embed.patch_size``, torchvision's
    ``VisionTransformer.patch_size``, else the first convolution whose kernel equals its stride (a patchify stem);
    None where the model has none."""
    for m in module.modules():
        p = getattr(m, "patch_size", None)
        if isinstance(p, int) and p > 0:
            return (p, p)
        if isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(x, int) and x > 0 for x in p):
            return (int(p[0]), int(p[1]))
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == tuple(m.stride) and m.stride[0] > 1:
            return (int(m.stride[0]), int(m.stride[1]))
    return None


def prefix_tokens(module: nn.Module) -> int | None:
    """How many tokens a transformer puts before its patch tokens, where it says: timm's ``num_prefix_tokens``,
    1 for torchvision's ``class_token``; None otherwise."""
    n = getattr(module, "num_prefix_tokens", None)
    if isinstance(n, int):
        return n
    return 1 if isinstance(getattr(module, "class_token", None), torch.Tensor) else None


def detect(shape: tuple[int, ...], input_hw: tuple[int, int], patch: tuple[int, int] | None,
           strict: bool = False, prefix: int | None = None) -> Layout | None:
    """The layout of an output of ``shape`` (batch first) for an input of ``input_hw``; None where it is neither
    a map nor tokens on the model's patch grid.

    Tokens: the grid is the input's size over the patch size, rounded down or, for a patch embedding that pads,
    up; where both fit the token count, the one that leaves ``prefix`` tokens in front (the model's own count,
    ``prefix_tokens``) wins, else the one that leaves fewer.

    A 4-D output is channels first where its last two dimensions have the input's proportions (ties read as
    channels first), channels last where only its middle two do; any other 4-D output reads as channels first,
    or as None if ``strict`` (e.g. an attention's (B, heads, N, dim), when choosing a default layer).
    """
    H, W = input_hw
    if len(shape) == 4:
        def spatial(h: int, w: int) -> bool:  # same stride both ways, up to rounding
            return h > 0 and w > 0 and abs(math.log((H / h) / (W / w))) < 0.35

        _, a, b, c = shape
        if spatial(a, b) and not spatial(b, c):
            return Layout("nhwc")
        return Layout("nchw") if spatial(b, c) or not strict else None
    if len(shape) == 3 and patch is not None:
        n, (ph, pw) = shape[1], patch
        fits = [Layout("tokens", n - gh * gw, (gh, gw))
                for gh, gw in ((math.ceil(H / ph), math.ceil(W / pw)), (H // ph, W // pw))
                if gh > 0 and gw > 0 and 0 <= n - gh * gw < gh * gw]
        return next((f for f in fits if f.prefix == prefix), fits[0]) if fits else None
    return None


def map_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, int, int]:
    """The (C, H, W) map that an output of ``shape`` (batch first) in ``layout`` becomes."""
    if layout.kind == "nchw":
        return tuple(shape[1:])  # type: ignore[return-value]
    if layout.kind == "nhwc":
        return (shape[3], shape[1], shape[2])
    return (shape[2], *layout.grid)


def read_map(out: object, input_hw: tuple[int, int], patch: tuple[int, int] | None, layer: str,
             prefix: int | None = None) -> torch.Tensor:
    """``out`` as a (B, C, H, W) map, or a ``ModelError`` that names the layer and what it gave."""
    layout = detect(tuple(out.shape), input_hw, patch, prefix=prefix) if isinstance(out, torch.Tensor) else None
    if layout is None:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        why = ("tokens, but the model has no patch embedding to lay them on a grid" if isinstance(out, torch.Tensor)
               and out.dim() == 3 and patch is None else "neither a feature map nor a sequence of image tokens")
        raise ModelError(f"layer {layer!r} outputs {shape}: {why}; pick a convolutional or transformer block "
                         "(see `lavise layers`)")
    return layout.to_map(out)
