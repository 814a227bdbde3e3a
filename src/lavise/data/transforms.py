"""Geometry shared by images and masks: one transform, so masks stay aligned.

The image and every mask go through the same torchvision v2 Resize + CenterCrop
(masks as ``tv_tensors.Mask``, which v2 resizes with nearest neighbour), or with
``fit="stretch"`` one Resize of the whole image to the input size (no crop), then
masks are area-averaged to the feature map's resolution.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from .base import load_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FITS = ("crop", "stretch")  # shorter side resized then centre-cropped; or the whole image resized to crop x crop


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: resize shorter side, centre crop, normalise.

    ``jpeg_draft``: images with no mask to keep aligned are decoded by ``load`` at a reduced JPEG scale
    (see ``load_rgb``) whose shorter side is still at least ``resize``; the resize then starts from fewer
    pixels. Pixels differ slightly from a full decode, so the setting is part of every cache key.

    ``exif_upright``: the same images are turned upright as their EXIF orientation tag says, so a phone
    photo stored sideways is explained as it is seen. Images with masks load as stored, since their masks
    are drawn on the stored pixels. Also part of every cache key.

    ``fit``: ``crop`` (default) resizes the shorter side to ``resize`` and centre-crops ``crop``; ``stretch``
    resizes the whole image to ``crop`` x ``crop`` (no pixel lost, aspect ratio not kept), as NetDissect-Lite
    feeds Broden's square images whole. ``resize`` is then unused.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    jpeg_draft: bool = True
    exif_upright: bool = True
    fit: str = "crop"

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r}; use one of {', '.join(FITS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["fit"] == "crop":  # left out at its default, so the cache keys and configs of earlier runs still match
            del d["fit"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            resize=int(d["resize"]), crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            jpeg_draft=bool(d.get("jpeg_draft", False)),  # runs saved before the option decoded in full
            exif_upright=bool(d.get("exif_upright", False)),  # ... and loaded the stored pixels
            fit=d.get("fit", "crop"),
        )

    def load(self, path, masks: bool = False) -> Image.Image:
        """Open an image as RGB for this preprocessing.

        Args:
            path: the image file.
            masks: True if masks at the file's own resolution must follow the image: it then loads whole.

        Returns:
            RGB PIL image, reduced at decode time where ``jpeg_draft`` allows, upright where ``exif_upright`` does.
        """
        side = self.crop if self.fit == "stretch" else self.resize  # the least side the resize starts from
        return load_rgb(path, None if masks or not self.jpeg_draft else side, upright=self.exif_upright and not masks)

    def geometry(self) -> v2.Compose:
        """The Resize + CenterCrop pipeline (or the whole-image Resize of ``fit="stretch"``, torchvision v2) that
        images and ``tv_tensors.Mask`` go through."""
        return _geometry(self.resize, self.crop, self.interpolation, self.fit)

    def __call__(self, image: Image.Image, masks: list[np.ndarray | None] | None = None, normalize: bool = True):
        """Transform an image and (optionally) its masks with the same geometry.

        Args:
            image: RGB PIL image.
            masks: bool arrays of the image's (H, W), or None for whole-image masks.
            normalize: scale and standardise; False returns the uint8 crop, for ``normalize`` to finish
                later on a whole batch (the extractor does it on the model's device: 4x fewer bytes to move).

        Returns:
            ``x`` (3, crop, crop) float tensor (uint8 if not ``normalize``), and if masks were given a
            (K, crop, crop) bool tensor.
        """
        finish = self.normalize if normalize else (lambda t: t.as_subclass(torch.Tensor))
        img = tv_tensors.Image(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
        h, w = img.shape[-2:]
        geometry = self.geometry()
        if masks is None:
            return finish(geometry(img))
        stack = []
        for m in masks:
            if m is None:
                stack.append(np.ones((h, w), dtype=bool))
            else:
                if m.shape != (h, w):
                    raise ValueError(f"mask shape {m.shape} does not match image size {(h, w)}")
                stack.append(m.astype(bool, copy=False))
        mk = np.stack(stack) if stack else np.zeros((0, h, w), dtype=bool)
        index = _repeated_size_index(self.resize, self.crop, self.interpolation, self.fit, h, w)
        if index is not None:  # nearest resize + crop is a gather: one indexing pass, no upsampled copy
            return finish(geometry(img)), torch.from_numpy(mk[:, index[0]][:, :, index[1]])  # two takes: 8x faster than one 2-D take
        x, mk = geometry(img, tv_tensors.Mask(torch.from_numpy(mk).to(torch.uint8)))
        return finish(x), mk.bool()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) image(s) to standardised float32, on ``x``'s device and in its memory format."""
        out = x.to(torch.float32)  # keeps x's memory format
        mean = torch.tensor(self.mean, device=x.device)
        std = torch.tensor(self.std, device=x.device)
        if out.dim() == 4 and out.is_contiguous(memory_format=torch.channels_last):
            view = out.permute(0, 2, 3, 1)  # channels innermost: the parameters broadcast along memory (about 20% faster)
        else:
            view, mean, std = out, mean.view(3, 1, 1), std.view(3, 1, 1)
        # in place, the same arithmetic as (x / 255 - mean) / std; on a CPU image by image, which stays in cache
        for img in ([view] if view.dim() == 3 or out.device.type != "cpu" else view):
            img.div_(255.0).sub_(mean).div_(std)
        return out


@lru_cache(maxsize=16)
def _geometry(resize: int, crop: int, interpolation: str, fit: str = "crop") -> v2.Compose:
    """The Resize + CenterCrop pipeline, built once per setting (building it costs as much as a small resize)."""
    interp = v2.InterpolationMode(interpolation)
    if fit == "stretch":  # an image already crop x crop passes unchanged (torchvision skips a same-size resize)
        return v2.Compose([v2.Resize((crop, crop), interpolation=interp, antialias=True)])
    return v2.Compose([v2.Resize(resize, interpolation=interp, antialias=True), v2.CenterCrop(crop)])


_SIZES_SEEN: Counter = Counter()


def _repeated_size_index(resize: int, crop: int, interpolation: str, fit: str, h: int, w: int):
    """``_mask_index`` for an image size met before, else None: finding the index costs a transform of the
    full-size canvas, which only pays off when the size comes back (as in most datasets; not in a folder of
    photos of all sizes)."""
    key = (resize, crop, interpolation, fit, h, w)
    if len(_SIZES_SEEN) > 100_000:
        _SIZES_SEEN.clear()
    _SIZES_SEEN[key] += 1
    return _mask_index(*key) if _SIZES_SEEN[key] > 1 else None


@lru_cache(maxsize=256)
def _mask_index(resize: int, crop: int, interpolation: str, fit: str, h: int,
                w: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Source row and column of every output pixel of a mask under the geometry, or None where the crop pads.

    Found by sending index ramps through the very transform masks go through (nearest neighbour), so the
    gather reproduces it exactly; cached per image size.
    """
    ramps = torch.stack([torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w),
                         torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w)])
    out = _geometry(resize, crop, interpolation, fit)(tv_tensors.Mask(ramps.contiguous())).as_subclass(torch.Tensor)
    rows, cols = out[0, :, 0], out[1, 0, :]
    if (rows == 0).any() or (cols == 0).any() or not (out[0] == rows[:, None]).all() or not (out[1] == cols[None]).all():
        return None  # padded, or not separable: use the transform itself
    return rows.long().numpy() - 1, cols.long().numpy() - 1


def downsample_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average (K, H, W) bool masks (or coverage fractions) to ``size``: the fraction of each cell covered."""
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], *size))
    # bool -> float through uint8: torch converts bytes several times faster than bools
    x = (masks.view(torch.uint8) if masks.dtype == torch.bool else masks)[:, None].float()
    (H, W), (h, w) = masks.shape[-2:], size
    if H % h == 0 and W % w == 0:  # equal blocks: the same values as adaptive pooling, several times faster
        return F.avg_pool2d(x, (H // h, W // w))[:, 0]
    return F.adaptive_avg_pool2d(x, size)[:, 0]
