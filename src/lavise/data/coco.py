"""COCO instances-format loader: ``coco:ANNOTATIONS.json?images=DIR&concepts=all``.

Masks come from polygons, RLE (compressed string or uncompressed list counts)
or, failing both, the bounding box. Instances of one category in one image are
OR-ed into a single mask. Decoding happens in ``annotations(i)`` so that a
large annotation file never holds every decoded mask in memory at once.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io import read_json
from . import register_dataset
from .base import Annotation, ConceptDataset
from .util import box_mask, check_options, exists, spec_string

CONCEPT_PARTS = ("all", "seen", "held_out")  # the values of the concepts= option
_OPTIONS = ("images", "concepts")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _valid_rle(seg: dict) -> bool:
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(v) for v in size)):
        return False
    if isinstance(counts, list):
        return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts)
    return isinstance(counts, str)


def _clean_geometry(ann: dict) -> Any:
    """The part of an annotation that gives its mask, or None if it has no area.

    Returns a polygon list, an RLE dict, or ``("bbox", [x, y, w, h])``. A malformed
    segmentation (wrong types, non-finite numbers, an RLE without a valid size) counts as absent.
    """
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        if "counts" in seg and "size" in seg and _valid_rle(seg):
            return seg
    if isinstance(seg, list) and seg:
        if all(isinstance(v, (int, float)) for v in seg):
            seg = [seg]  # a single flat polygon
        # pycocotools reads a 4-number "polygon" as a box, and <3 points has no area anyway.
        polys = [[float(v) for v in p] for p in seg
                 if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_num(v) for v in p)]
        if polys:
            return polys
    # No usable segmentation: fall back to the box.
    box = ann.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box) and box[2] > 0 and box[3] > 0:
        return ("bbox", [float(v) for v in box])
    return None


def _hashable(v: Any) -> bool:
    return isinstance(v, (int, str, float)) and not isinstance(v, bool)


class CocoDataset(ConceptDataset):
    """A COCO instances annotation file as a concept dataset.

    Attributes:
        meta: the file's top-level ``lavise`` dict ({} if absent), e.g. the seen/held-out split.
        skipped: counts of annotations skipped, by reason.
    """

    kind = "coco"

    def __init__(
        self,
        annotation_file: str | Path,
        images_dir: str | Path | None = None,
        concepts: str = "all",
        spec: str | None = None,
    ):
        ann_path = Path(annotation_file)
        images = Path(images_dir) if images_dir else None
        super().__init__(images or ann_path.parent, spec or f"coco:{ann_path}")
        self.annotation_file = ann_path
        if concepts not in CONCEPT_PARTS:
            raise DatasetError(f"concepts={concepts!r} is not valid for coco; use one of {', '.join(CONCEPT_PARTS)}")
        data = read_json(ann_path, DatasetError, "COCO annotation file")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DatasetError(
                f"{ann_path} is not a COCO instances file (expected an object with 'images', "
                "'annotations' and 'categories' lists)"
            )
        meta = data.get("lavise")
        self.meta: dict = meta if isinstance(meta, dict) else {}
        self.skipped: dict[str, int] = {"unknown_category": 0, "missing_image": 0, "empty": 0}

        categories = self._categories(data.get("categories") or [], ann_path)
        keep = self._kept_names(concepts, set(categories.values()), ann_path)

        self._sizes: list[tuple[int, int] | None] = []
        index_of: dict[Any, int] = {}
        for n, im in enumerate(data["images"]):
            if not isinstance(im, dict) or not _hashable(im.get("id")) or not isinstance(im.get("file_name"), str):
                raise DatasetError(f"{ann_path}: images[{n}] needs an 'id' (number or string) and a 'file_name'; fix the entry")
            if im["id"] in index_of:
                raise DatasetError(f"{ann_path}: image id {im['id']!r} appears twice in 'images'; ids must be unique")
            index_of[im["id"]] = len(self.items)
            group = im.get("group", im.get("theme"))
            path = self._resolve(im["file_name"], ann_path.parent, images)
            self.items.append((im["file_name"], path, None if group is None else str(group)))
            hw = (im.get("height"), im.get("width"))
            # read from the image file when absent or not positive whole numbers
            self._sizes.append(hw if all(_positive_int(v) for v in hw) else None)  # type: ignore[arg-type]

        # Per image: concept -> raw geometries, kept undecoded until annotations(i).
        self._geoms: list[dict[str, list]] = [{} for _ in self.items]
        for ann in data.get("annotations") or []:
            if not isinstance(ann, dict):
                self.skipped["empty"] += 1
                continue
            name = categories.get(ann.get("category_id")) if _hashable(ann.get("category_id")) else None
            if name is None:
                self.skipped["unknown_category"] += 1
                continue
            i = index_of.get(ann.get("image_id")) if _hashable(ann.get("image_id")) else None
            if i is None:
                self.skipped["missing_image"] += 1
                continue
            if name not in keep:
                continue
            geom = _clean_geometry(ann)
            if geom is None:
                self.skipped["empty"] += 1
                continue
            self._geoms[i].setdefault(name, []).append(geom)
        self.concepts = sorted({c for g in self._geoms for c in g})
        self._warned_empty = False
        self._warn_skipped()

    @staticmethod
    def _categories(cats: list, ann_path: Path) -> dict[Any, str]:
        out: dict[Any, str] = {}
        for n, c in enumerate(cats):
            if not isinstance(c, dict) or not _hashable(c.get("id")) or not isinstance(c.get("name"), str):
                raise DatasetError(f"{ann_path}: categories[{n}] needs an 'id' and a 'name'; fix the entry")
            out[c["id"]] = c["name"].strip()
        return out

    def _kept_names(self, part: str, names: set[str], ann_path: Path) -> set[str]:
        if part == "all":
            return names
        split = self.meta
        if not isinstance(split.get("seen"), list) or not isinstance(split.get("held_out"), list):
            raise DatasetError(
                f"concepts={part} needs a seen/held-out split, but {ann_path} has no "
                "'lavise': {'seen': [...], 'held_out': [...]} entry; use concepts=all"
            )
        return {str(n).strip() for n in split[part]}

    @staticmethod
    def _resolve(file_name: str, json_dir: Path, images: Path | None) -> Path:
        p = Path(file_name)
        if p.is_absolute():
            return p
        candidates = [images / p, images / p.name, json_dir / p] if images else [json_dir / p]
        for c in candidates:
            if exists(c):
                return c
        return candidates[0]  # load_rgb reports the missing file with this path

    def _warn_skipped(self) -> None:
        reasons = {
            "unknown_category": "with a category_id not in 'categories'",
            "missing_image": "with an image_id not in 'images'",
            "empty": "with no area (no usable segmentation and an empty bbox)",
        }
        parts = [f"{self.skipped[k]} {why}" for k, why in reasons.items() if self.skipped[k]]
        if parts:
            warnings.warn(f"{self.annotation_file}: skipped annotations: {'; '.join(parts)}", stacklevel=3)

    def _size(self, i: int) -> tuple[int, int]:
        size = self._sizes[i]
        if size is None:
            # An RLE records the image size, which spares opening the image.
            rles = [g for gs in self._geoms[i].values() for g in gs if isinstance(g, dict)]
            if rles:
                size = (int(rles[0]["size"][0]), int(rles[0]["size"][1]))
                self._sizes[i] = size
                return size
            path = self.items[i][1]
            try:
                with Image.open(path) as im:
                    size = (im.height, im.width)
            except (OSError, ValueError) as e:
                raise DatasetError(f"cannot read the size of image {path}: {e} (add height/width to the JSON)") from None
            self._sizes[i] = size
        return size

    def _decode(self, geom: Any, h: int, w: int) -> np.ndarray:
        from pycocotools import mask as mask_utils

        if isinstance(geom, tuple):
            return box_mask(geom[1], h, w)
        try:
            return self._decode_segmentation(mask_utils, geom, h, w)
        except (ValueError, TypeError, OverflowError) as e:
            raise DatasetError(f"{self.annotation_file}: invalid segmentation ({e}); fix or remove the annotation") from None

    def _decode_segmentation(self, mask_utils, geom: Any, h: int, w: int) -> np.ndarray:
        if isinstance(geom, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(geom, h, w))
        else:
            size = [int(v) for v in geom["size"]]
            if size != [h, w]:
                raise DatasetError(
                    f"{self.annotation_file}: an RLE mask of size {size} belongs to an image of size {[h, w]}; "
                    "fix the segmentation 'size' or the image's height/width"
                )
            counts = geom["counts"]
            if isinstance(counts, list):
                rle = mask_utils.frPyObjects(geom, h, w)
            else:
                rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        with warnings.catch_warnings():
            # pycocotools 2.0.x + numpy 2 warn on every decode; the result is correct.
            warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
            mask = mask_utils.decode(rle).view(bool)  # 0/1 bytes: a bool view, no copy
        if mask.shape != (h, w):
            raise ValueError(f"decoded to shape {mask.shape}")
        return mask

    def annotations(self, i: int) -> list[Annotation]:
        """Decode image ``i``'s masks: one Annotation per concept, instances OR-ed.

        Args:
            i: image index.

        Returns:
            Annotations with bool (H, W) masks, sorted by concept name; empty masks are skipped.
        """
        geoms = self._geoms[i]
        if not geoms:
            return []
        h, w = self._size(i)
        out = []
        for name in sorted(geoms):
            parts = [self._decode(g, h, w) for g in geoms[name]]
            mask = parts[0] if len(parts) == 1 else np.logical_or.reduce(parts)  # one instance: no copy
            if not mask.any():
                self.skipped["empty"] += 1
                if not self._warned_empty:
                    self._warned_empty = True
                    warnings.warn(
                        f"{self.annotation_file}: some masks decode to no pixels and are skipped "
                        "(see dataset.skipped['empty'] for the running count)",
                        stacklevel=2,
                    )
                continue
            out.append(Annotation(name, mask))
        return out

    def _fingerprint_files(self) -> Sequence[Path]:
        return [self.annotation_file]


@register_dataset("coco")
def load_coco(arg: str, options: dict[str, str]) -> CocoDataset:
    """Spec ``coco:ANNOTATIONS.json?images=DIR&concepts=all|seen|held_out``."""
    check_options("coco", options, _OPTIONS)
    if not arg:
        raise DatasetError("coco spec has no annotation file; write coco:PATH/instances.json?images=DIR")
    return CocoDataset(arg, images_dir=options.get("images") or None, concepts=options.get("concepts", "all"),
                       spec=spec_string("coco", arg, options))
