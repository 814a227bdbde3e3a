"""Visual Genome loader: ``vg:objects.json?images=DIR&merge_synsets=1&merge_instances=1&min_images=0``.

Objects are boxes; each box fills a mask at the image's resolution. The
paper's preprocessing is available as options: name a category by its
WordNet synset's lemma ("dog.n.01" -> "dog"), OR all instances of one
category in one image into one mask, and drop categories seen in fewer than
``min_images`` images.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io import read_json
from . import register_dataset
from .base import Annotation, ConceptDataset
from .util import box_mask, check_options, exists, spec_string

_OPTIONS = ("images", "merge_synsets", "merge_instances", "min_images")
# VG ships its images split over two folders; accept either layout.
_SUBDIRS = ("", "VG_100K", "VG_100K_2", "images")


def synset_lemma(synset: str) -> str:
    """``"hot_dog.n.01"`` -> ``"hot dog"``.

    Args:
        synset: a WordNet synset name.

    Returns:
        The lemma with underscores as spaces, lowercased.
    """
    lemma = synset.strip().split(".")[0] if synset.count(".") >= 2 else synset.strip()
    return " ".join(lemma.replace("_", " ").lower().split())


def _object_concept(obj: dict, merge_synsets: bool) -> str | None:
    if merge_synsets:
        syns = obj.get("synsets") or []
        if isinstance(syns, str):
            syns = [syns]
        if isinstance(syns, list) and syns and isinstance(syns[0], str) and syns[0].strip():
            return synset_lemma(syns[0])
    names = obj.get("names")
    if names is None and "name" in obj:  # older VG releases
        names = [obj["name"]]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        return None
    name = " ".join(names[0].lower().split())
    return name or None


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    v = options.get(key)
    if v is None or v == "":
        return default
    v = v.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise DatasetError(f"option {key}={v!r} is not a yes/no value; use {key}=1 or {key}=0")


class VisualGenomeDataset(ConceptDataset):
    """Visual Genome ``objects.json`` as a concept dataset with box masks.

    Attributes:
        skipped: counts of objects skipped, by reason.
    """

    kind = "vg"

    def __init__(
        self,
        objects_file: str | Path,
        images_dir: str | Path | None = None,
        merge_synsets: bool = True,
        merge_instances: bool = True,
        min_images: int = 0,
        spec: str | None = None,
    ):
        obj_path = Path(objects_file)
        images = Path(images_dir) if images_dir else obj_path.parent
        super().__init__(images, spec or f"vg:{obj_path}")
        self.objects_file = obj_path
        self.merge_instances = merge_instances
        data = read_json(obj_path, DatasetError, "Visual Genome objects file")
        if not isinstance(data, list):
            raise DatasetError(
                f"{obj_path} is not a Visual Genome objects.json (expected a list of "
                '{"image_id": ..., "objects": [...]} entries)'
            )
        self.skipped: dict[str, int] = {"malformed": 0, "empty": 0}
        per_image: list[list[tuple[str, float, float, float, float]]] = []
        self._sizes: list[tuple[int, int] | None] = []
        seen_ids: set = set()
        for n, entry in enumerate(data):
            image_id = entry.get("image_id", entry.get("id")) if isinstance(entry, dict) else None
            if image_id is None:
                raise DatasetError(f"{obj_path}: entry {n} has no 'image_id'; fix the entry or the file")
            if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
                raise DatasetError(f"{obj_path}: entry {n} has image_id {image_id!r}; ids must be numbers or strings")
            if image_id in seen_ids:
                raise DatasetError(f"{obj_path}: image_id {image_id!r} appears twice; merge its objects into one entry")
            seen_ids.add(image_id)
            self.items.append((str(image_id), self._resolve(entry, image_id, images), None))
            hw = (entry.get("height"), entry.get("width"))
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw)
            self._sizes.append(hw if ok else None)  # type: ignore[arg-type]  # else read from the image
            objs = []
            objects = entry.get("objects") or []
            if not isinstance(objects, list):
                raise DatasetError(f"{obj_path}: 'objects' of image {image_id!r} must be a list of objects")
            for obj in objects:
                concept = _object_concept(obj, merge_synsets) if isinstance(obj, dict) else None
                try:
                    box = tuple(float(obj[k]) for k in ("x", "y", "w", "h"))
                    if not all(math.isfinite(v) for v in box) or any(isinstance(obj[k], bool) for k in "xywh"):
                        concept = None
                except (KeyError, TypeError, ValueError, OverflowError):
                    concept = None
                if concept is None:
                    self.skipped["malformed"] += 1
                    continue
                if box[2] <= 0 or box[3] <= 0:
                    self.skipped["empty"] += 1
                    continue
                objs.append((concept, *box))
            per_image.append(objs)

        counts = Counter(c for objs in per_image for c in {o[0] for o in objs})
        self.concepts = sorted(c for c, k in counts.items() if k >= min_images)
        index = {c: j for j, c in enumerate(self.concepts)}
        # Compact per-image arrays: VG has millions of objects, Python tuples would cost gigabytes.
        self._concept_idx: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        for objs in per_image:
            kept = [o for o in objs if o[0] in index]
            self._concept_idx.append(np.array([index[o[0]] for o in kept], dtype=np.int32))
            self._boxes.append(np.array([o[1:] for o in kept], dtype=np.float32).reshape(-1, 4))
        if self.skipped["malformed"] or self.skipped["empty"]:
            warnings.warn(
                f"{obj_path}: skipped {self.skipped['malformed']} objects without a name or box and "
                f"{self.skipped['empty']} with a zero-area box",
                stacklevel=2,
            )

    @staticmethod
    def _resolve(entry: dict, image_id: Any, images: Path) -> Path:
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            url = entry.get("image_url") or entry.get("url")
            name = url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) and url else f"{image_id}.jpg"
        p = Path(name)
        if p.is_absolute():
            return p
        candidates = [images / sub / p if sub else images / p for sub in _SUBDIRS]
        for c in candidates:
            if exists(c):
                return c
        return candidates[0]

    def _size(self, i: int) -> tuple[int, int]:
        if self._sizes[i] is None:
            path = self.items[i][1]
            try:
                with Image.open(path) as im:  # reads the header only
                    self._sizes[i] = (im.height, im.width)
            except FileNotFoundError:
                raise DatasetError(f"image not found: {path} (check the images= folder of the vg spec)") from None
            except (OSError, ValueError) as e:
                raise DatasetError(f"cannot read image {path}: {e} (file is corrupt or not an image)") from None
        return self._sizes[i]  # type: ignore[return-value]

    def annotations(self, i: int) -> list[Annotation]:
        """Box masks of image ``i``, clipped to the image.

        Args:
            i: image index.

        Returns:
            One Annotation per concept (instances OR-ed) if ``merge_instances``,
            else one per object; boxes entirely outside the image are skipped.
        """
        idx, boxes = self._concept_idx[i], self._boxes[i]
        if len(idx) == 0:
            return []
        h, w = self._size(i)
        masks = [box_mask(b, h, w) for b in boxes]
        out = []
        if self.merge_instances:
            for c in sorted(set(idx.tolist())):
                m = np.logical_or.reduce([masks[k] for k in np.flatnonzero(idx == c)])
                if m.any():
                    out.append(Annotation(self.concepts[c], m))
                else:
                    self.skipped["empty"] += 1
        else:
            for c, m in zip(idx.tolist(), masks):
                if m.any():
                    out.append(Annotation(self.concepts[c], m))
                else:
                    self.skipped["empty"] += 1
        return out

    def _fingerprint_files(self) -> Sequence[Path]:
        return [self.objects_file]


@register_dataset("vg")
def load_vg(arg: str, options: dict[str, str]) -> VisualGenomeDataset:
    """Spec ``vg:OBJECTS.json?images=DIR&merge_synsets=1&merge_instances=1&min_images=0``."""
    check_options("vg", options, _OPTIONS)
    if not arg:
        raise DatasetError("vg spec has no objects file; write vg:PATH/objects.json?images=DIR")
    try:
        min_images = int(options.get("min_images") or 0)
    except ValueError:
        raise DatasetError(f"min_images={options['min_images']!r} is not a whole number; e.g. min_images=10") from None
    return VisualGenomeDataset(
        arg,
        images_dir=options.get("images") or None,
        merge_synsets=_flag(options, "merge_synsets", True),
        merge_instances=_flag(options, "merge_instances", True),
        min_images=min_images,
        spec=spec_string("vg", arg, options),
    )
