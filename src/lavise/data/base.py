"""The types every dataset loader produces, and ``load_rgb``, which opens any image as RGB.

A dataset (``ConceptDataset``) is a sequence of images; each image (``Sample``) carries zero or more
``Annotation``s (concept name + binary mask at the image's own resolution, or ``None`` for a whole-image
label). Loaders only parse files; geometry (resize, crop, downsampling to feature resolution) happens
once, in ``transforms.Preprocess`` and ``transforms.downsample_masks``, so masks always follow the image
through the same ops.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import DatasetError

if TYPE_CHECKING:
    import torch

# Allow very large images (we resize them anyway) but keep truncated files an error.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class Annotation:
    """One concept present in one image.

    Attributes:
        concept: concept name as it appears in the vocabulary ("slice of pizza").
        mask: bool array (H, W) at the image's own resolution, or None for the whole image.
    """

    concept: str
    mask: np.ndarray | None = None


@dataclass
class Sample:
    """One image of a dataset with its annotations."""

    index: int
    image_id: str  # stable id, usually the path relative to the dataset root
    path: Path
    annotations: list[Annotation] = field(default_factory=list)
    group: str | None = None  # e.g. builtin scenes' theme or a folder's class


class ConceptDataset:
    """Base class of all loaders: an indexable list of images with concept masks.

    Subclasses fill ``self.items`` (a list of ``(image_id, path, group)``),
    ``self.concepts`` (sorted unique concept names) and implement
    ``annotations(i)``. Unlabeled datasets return ``[]`` from ``annotations``.
    """

    kind: str = "base"
    has_masks: bool = True  # False: labels are whole-image only
    segmentation_size: int | None = None  # side of square label images, where a format stores them apart (Broden)

    def __init__(self, root: Path, spec: str):
        self.root = Path(root)
        self.spec = spec
        self.items: list[tuple[str, Path, str | None]] = []
        self.concepts: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def annotations(self, i: int) -> list[Annotation]:
        return []

    def concept_categories(self) -> dict[str, str]:
        """Concept name -> its category, for datasets that group concepts (Broden); empty: one group."""
        return {}

    def __getitem__(self, i: int) -> Sample:
        image_id, path, group = self.items[i]
        return Sample(index=i, image_id=image_id, path=path, annotations=self.annotations(i), group=group)

    @property
    def groups(self) -> list[str | None]:
        return [g for _, _, g in self.items]

    def fingerprint(self) -> str:
        """A digest of what determines this dataset's content (spec, ids, file sizes and mtimes)."""
        h = hashlib.sha256()
        h.update(self.kind.encode())
        h.update(json.dumps(self.concepts).encode())
        for image_id, path, group in self.items:
            try:
                st = path.stat()
                h.update(f"{image_id}|{st.st_size}|{int(st.st_mtime)}|{group}\n".encode())
            except OSError:
                h.update(f"{image_id}|missing\n".encode())
        for extra in self._fingerprint_files():
            try:
                st = Path(extra).stat()
                h.update(f"{extra}|{st.st_size}|{int(st.st_mtime)}\n".encode())
            except OSError:
                pass
        return h.hexdigest()[:16]

    def perturb(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Image ``i`` after preprocessing, (3, H, W) uint8, as the model sees it: unchanged here; perturbed
        copies (``data.perturb``) override it."""
        return x

    def _fingerprint_files(self) -> Sequence[Path]:
        """Annotation files whose change must invalidate caches."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, {len(self)} images, {len(self.concepts)} concepts)"


def _turn_upright(im: Image.Image) -> None:
    """Apply ``im``'s EXIF orientation in place (Pillow's ``exif_transpose``)."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not make a readable photo unreadable
        pass


def load_rgb(path: Path, min_side: int | None = None, upright: bool = False) -> Image.Image:
    """Open any image (grayscale, palette, CMYK, 16-bit, RGBA) as 8-bit RGB.

    Args:
        path: the image file.
        min_side: if given, a JPEG is decoded at the smallest of libjpeg's scales (1/8, 1/4, 1/2, 1) that
            keeps both sides at least ``min_side`` (PIL's ``draft``): a 12-megapixel photo bound for a
            256-pixel resize decodes at 500 x 375. Other formats load whole.
        upright: turn the image as its EXIF orientation tag says (phone photos are often stored sideways);
            False returns the stored pixels.

    Raises:
        DatasetError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            if min_side:
                im.draft(None, (min_side, min_side))  # a no-op unless JPEG; the mode stays as stored
            im.load()
            if upright:
                _turn_upright(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit: the full 0..65535 range maps to 0..255 (a mid-grey stays mid-grey); 32-bit
                # integers beyond 16 bits are stretched from their own range
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
                if lo < 0 or hi > 65535:
                    arr = (arr - lo) * (65535.0 / max(hi - lo, 1.0))
                im = Image.fromarray(np.round(arr / 257.0).clip(0, 255).astype(np.uint8))
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
                im = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            return im if im.mode == "RGB" else im.convert("RGB")  # (convert would copy an RGB image)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path} (check the dataset root or the annotation's file_name)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e} (file is corrupt or not an image)") from None
