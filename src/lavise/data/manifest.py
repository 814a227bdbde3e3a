"""JSON-lines manifest loader: ``manifest:FILE.jsonl``.

One object per line::

    {"image": "img/1.jpg", "concepts": ["dog", "grass"],
     "boxes": {"dog": [[x0, y0, x1, y1]]}, "masks": {"grass": "masks/1_grass.png"}, "group": "park"}

Paths are relative to the manifest's folder. A concept with neither a box nor
a mask labels the whole image. Boxes are pixel corners (``x1``/``y1`` exclusive).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError
from . import register_dataset
from .base import Annotation, ConceptDataset
from .util import check_options


@dataclass(slots=True)
class _Entry:
    """One parsed manifest line: concepts, their boxes and their mask files."""

    line: int
    concepts: list[str]
    boxes: dict[str, list[tuple[float, float, float, float]]]
    masks: dict[str, Path]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_boxes(value: Any, where: str) -> dict[str, list[tuple[float, float, float, float]]]:
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: 'boxes' must map concept -> [[x0, y0, x1, y1], ...]")
    out = {}
    for concept, boxes in value.items():
        if isinstance(boxes, list) and len(boxes) == 4 and all(isinstance(v, (int, float)) for v in boxes):
            boxes = [boxes]  # a single box written without the outer list
        if not isinstance(boxes, list):
            raise DatasetError(f"{where}: boxes of {concept!r} must be a list of [x0, y0, x1, y1]")
        parsed = []
        for b in boxes:
            if not (isinstance(b, list) and len(b) == 4 and all(_finite(v) for v in b)):
                raise DatasetError(f"{where}: box {b!r} of {concept!r} is not [x0, y0, x1, y1] finite numbers")
            x0, y0, x1, y1 = (float(v) for v in b)
            if x1 <= x0 or y1 <= y0:
                raise DatasetError(f"{where}: box {b!r} of {concept!r} has x1 <= x0 or y1 <= y0; boxes are corners")
            parsed.append((x0, y0, x1, y1))
        out[str(concept).strip()] = parsed
    return out


class ManifestDataset(ConceptDataset):
    """A JSON-lines manifest of images with concept lists, boxes and mask files."""

    kind = "manifest"

    def __init__(self, manifest_file: str | Path, spec: str | None = None):
        path = Path(manifest_file)
        super().__init__(path.parent, spec or f"manifest:{path}")
        self.manifest_file = path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError(f"manifest not found: {path} (check the path in the dataset spec)") from None
        except IsADirectoryError:
            raise DatasetError(f"manifest {path} is a directory; give the .jsonl file itself") from None
        except UnicodeDecodeError:
            raise DatasetError(f"manifest {path} is not UTF-8 text; save it as UTF-8 JSON lines") from None
        except OSError as e:
            raise DatasetError(f"cannot read manifest {path}: {e.strerror or e}") from None
        self._entries: list[_Entry] = []
        self.skipped: dict[str, int] = {"empty": 0}
        self._warned_empty = False
        base = path.parent
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"manifest line {n} ({path})"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); one object per line") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or not obj["image"].strip():
                raise DatasetError(f"{where}: each line needs an \"image\" path, e.g. {{\"image\": \"a.jpg\"}}")
            concepts = obj.get("concepts", [])
            if not isinstance(concepts, list) or not all(isinstance(c, str) for c in concepts):
                raise DatasetError(f"{where}: 'concepts' must be a list of strings")
            boxes = _parse_boxes(obj.get("boxes", {}), where)
            masks_raw = obj.get("masks", {})
            if not isinstance(masks_raw, dict) or not all(isinstance(v, str) for v in masks_raw.values()):
                raise DatasetError(f"{where}: 'masks' must map concept -> PNG path")
            masks = {str(c).strip(): base / m for c, m in masks_raw.items()}
            for c, m in masks.items():
                if not m.is_file():
                    raise DatasetError(f"{where}: mask file of {c!r} not found: {m} (paths are relative to the manifest)")
            names = [c.strip() for c in concepts if c.strip()]
            names += [c for c in list(boxes) + list(masks) if c not in names]  # boxed but unlisted still counts
            group = obj.get("group")
            image = obj["image"].strip()
            image_path = Path(image) if Path(image).is_absolute() else base / image
            image_id = str(obj.get("id", image))
            self.items.append((image_id, image_path, None if group is None else str(group)))
            self._entries.append(_Entry(n, list(dict.fromkeys(names)), boxes, masks))
        self.concepts = sorted({c for e in self._entries for c in e.concepts})

    def _image_size(self, i: int) -> tuple[int, int]:
        path = self.items[i][1]
        try:
            with Image.open(path) as im:  # reads the header only
                return im.height, im.width
        except FileNotFoundError:
            raise DatasetError(
                f"manifest line {self._entries[i].line}: image not found: {path} (paths are relative to the manifest)"
            ) from None
        except (OSError, ValueError) as e:
            raise DatasetError(f"manifest line {self._entries[i].line}: cannot read image {path}: {e}") from None

    def _read_mask(self, path: Path, h: int, w: int, line: int) -> np.ndarray:
        try:
            with Image.open(path) as im:
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.NEAREST)
                arr = np.asarray(im)
                mode = im.mode
        except (OSError, ValueError) as e:
            raise DatasetError(f"manifest line {line}: cannot read mask {path}: {e}") from None
        if arr.ndim == 3:
            # Colour masks: ignore alpha so that an opaque black background still reads as outside.
            arr = arr[..., : (3 if mode in ("RGBA", "RGBa") else 1 if mode == "LA" else arr.shape[-1])].any(-1)
        return arr != 0

    def annotations(self, i: int) -> list[Annotation]:
        """Masks of image ``i``: boxes and mask PNGs OR-ed per concept, whole image otherwise.

        Args:
            i: image index.

        Returns:
            One Annotation per concept, in the manifest's order.
        """
        e = self._entries[i]
        if not e.boxes and not e.masks:
            return [Annotation(c, None) for c in e.concepts]
        h, w = self._image_size(i)
        out = []
        for c in e.concepts:
            if c not in e.boxes and c not in e.masks:
                out.append(Annotation(c, None))
                continue
            m = np.zeros((h, w), dtype=bool)
            for x0, y0, x1, y1 in e.boxes.get(c, []):
                c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
                c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
                if c1 > c0 and r1 > r0:
                    m[r0:r1, c0:c1] = True
            if c in e.masks:
                m |= self._read_mask(e.masks[c], h, w, e.line)
            if m.any():
                out.append(Annotation(c, m))
            else:  # boxes outside the image, or an all-zero mask PNG
                self.skipped["empty"] += 1
                if not self._warned_empty:
                    self._warned_empty = True
                    warnings.warn(f"{self.manifest_file}: some masks are empty (boxes outside the image or blank "
                                  "mask files) and are skipped (see dataset.skipped['empty'] for the count)", stacklevel=2)
        return out

    def _fingerprint_files(self) -> Sequence[Path]:
        return [self.manifest_file] + sorted({m for e in self._entries for m in e.masks.values()})


@register_dataset("manifest")
def load_manifest(arg: str, options: dict[str, str]) -> ManifestDataset:
    """Spec ``manifest:FILE.jsonl``."""
    check_options("manifest", options, ())
    if not arg:
        raise DatasetError("manifest spec has no file; write manifest:PATH/TO/FILE.jsonl")
    return ManifestDataset(arg, spec=f"manifest:{arg}")
