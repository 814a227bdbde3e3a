"""Broden loader: ``broden:DIR?categories=object,part,material,scene,texture&style=lavise``.

``DIR/index.csv`` lists the images (``DIR/images/<image>``) and, per category
column, ';'-separated label PNGs (pixel code = R + 256 * G, 0 = no label) or,
for scene and texture, ';'-separated label numbers for the whole image.
``DIR/label.csv`` maps numbers to names. Label PNGs may be smaller than the
image; they are upsampled with nearest neighbour to the image's size.

``style=netdissect-lite`` reads the folder as NetDissect-Lite's loader does: its
default categories (object, part, scene, texture, color) in category.csv's order,
Broden's names as written ("street-s"), and only the images labelled in at least one
chosen category. In either style each concept has a primary category: the chosen
category in which its label covers most (c_<category>.csv's coverage, or label.csv's
counts without those files), as NetDissect-Lite assigns it.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DatasetError
from . import register_dataset
from .base import Annotation, ConceptDataset
from .util import check_options, spec_string

PIXEL_CATEGORIES = ("object", "part", "material", "color")
IMAGE_CATEGORIES = ("scene", "texture")
DEFAULT_CATEGORIES = ("object", "part", "material", "scene", "texture")
NETDISSECT_LITE_CATEGORIES = ("object", "part", "scene", "texture", "color")  # NetDissect-Lite's settings.py
STYLES = ("lavise", "netdissect-lite")
_OPTIONS = ("categories", "split", "style")
_SUFFIX = re.compile(r"-[a-z]$")  # Broden tags some names with their category: "black-c", "street-s"


def broden_name(name: str) -> str:
    """``"street-s"`` -> ``"street"``; other names are kept as written.

    Args:
        name: a name from Broden's label.csv.

    Returns:
        The name without a trailing one-letter category suffix.
    """
    return _SUFFIX.sub("", name.strip()).strip()


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError(f"Broden file not found: {path} (a Broden folder holds index.csv, label.csv and images/)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise DatasetError(f"cannot parse {path}: {str(e).splitlines()[0] if str(e) else e}; fix the CSV") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(missing)}; is this a Broden {path.name}?")
    return df


def _category_count(text: str) -> tuple[str, float]:
    """``"object(2231)"`` -> ("object", 2231.0); a bare ``"object"`` counts 1."""
    name, _, rest = text.strip().partition("(")
    try:
        return name.strip(), float(rest.rstrip(")")) if rest else 1.0
    except ValueError:
        return name.strip(), 1.0


def _cells(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(";") if v.strip()]


class BrodenDataset(ConceptDataset):
    """A Broden folder as a concept dataset.

    Attributes:
        categories: the index.csv columns read, in order.
        names: label number -> concept name.
        style: ``lavise`` or ``netdissect-lite`` (see the module docstring).
        segmentation_size: the label images' side (index.csv's sh = sw), if every row gives the same.
    """

    kind = "broden"

    def __init__(
        self,
        root: str | Path,
        categories: Sequence[str] | None = None,
        split: str | None = None,
        spec: str | None = None,
        style: str = "lavise",
    ):
        root = Path(root)
        super().__init__(root, spec or f"broden:{root}")
        if style not in STYLES:
            raise DatasetError(f"unknown Broden style {style!r}; use one of {', '.join(STYLES)}")
        self.style = style
        lite = style == "netdissect-lite"
        if not root.is_dir():
            raise DatasetError(f"Broden folder not found: {root} (give the folder that holds index.csv)")
        index = _read_csv(root / "index.csv", ["image"])
        labels = _read_csv(root / "label.csv", ["number", "name"])
        if categories is None:
            categories = [c for c in (NETDISSECT_LITE_CATEGORIES if lite else DEFAULT_CATEGORIES) if c in index.columns]
        if lite and (root / "category.csv").is_file():  # NetDissect-Lite orders categories as category.csv lists them
            listed = _read_csv(root / "category.csv", ["name"])["name"].str.strip().tolist()
            categories = sorted(categories, key=lambda c: listed.index(c) if c in listed else len(listed))
        bad = [c for c in categories if c not in PIXEL_CATEGORIES + IMAGE_CATEGORIES]
        if bad:
            raise DatasetError(
                f"unknown Broden categor{'ies' if len(bad) > 1 else 'y'} {', '.join(bad)}; "
                f"choose from {','.join(PIXEL_CATEGORIES + IMAGE_CATEGORIES)}"
            )
        missing = [c for c in categories if c not in index.columns]
        if missing:
            raise DatasetError(f"{root / 'index.csv'} has no column(s) {', '.join(missing)}; drop them from categories=")
        self.categories = list(categories)
        if split:
            if "split" not in index.columns:
                raise DatasetError(f"split={split} given but {root / 'index.csv'} has no split column; drop split=")
            index = index[index["split"] == split]

        self.names: dict[int, str] = {}
        label_categories: dict[int, dict[str, float]] = {}  # number -> {category: count from label.csv}
        for row in labels.itertuples(index=False):
            try:
                number = int(row.number)
            except ValueError:
                raise DatasetError(f"{root / 'label.csv'}: number {row.number!r} is not an integer") from None
            if number == 0:
                continue
            self.names[number] = row.name.strip() if lite else broden_name(row.name)
            cats = getattr(row, "category", "") or ""
            label_categories[number] = dict(_category_count(c) for c in cats.split(";") if c.strip())

        self._rows: list[dict[str, list[str]]] = []
        self._sizes: list[tuple[int, int] | None] = []
        concepts: set[str] = set()
        unknown = 0
        self.segmentation_size: int | None = None
        seg_sizes: set[tuple[str, str]] = set()
        for n, row in enumerate(index.to_dict("records")):
            cells = {c: _cells(row[c]) for c in self.categories}
            if lite and not any(cells.values()):  # NetDissect-Lite's loader keeps only images with some label
                continue
            seg_sizes.add((str(row.get("sh", "")).strip(), str(row.get("sw", "")).strip()))
            for c in IMAGE_CATEGORIES:
                if c in cells:
                    try:
                        numbers = [int(float(v)) for v in cells[c]]
                    except ValueError:
                        raise DatasetError(
                            f"{root / 'index.csv'} row {n + 2}: {c} labels {row[c]!r} are not numbers"
                        ) from None
                    unknown += sum(1 for v in numbers if v and v not in self.names)
                    cells[c] = [str(v) for v in numbers if v in self.names]
                    concepts.update(self.names[int(v)] for v in cells[c])
            self._rows.append(cells)
            self.items.append((row["image"], root / "images" / row["image"], None))
            try:
                self._sizes.append((int(float(row["ih"])), int(float(row["iw"]))))
            except (KeyError, ValueError):
                self._sizes.append(None)
        if len(seg_sizes) == 1:
            sh, sw = next(iter(seg_sizes))
            if sh.isdigit() and sh == sw:
                self.segmentation_size = int(sh)
        if unknown:
            warnings.warn(f"{root / 'index.csv'}: {unknown} scene/texture labels are not in label.csv; skipped", stacklevel=2)
        # Pixel labels live in PNGs; reading them all here would be slow, so trust label.csv's
        # category column (e.g. "object(2231);part(4)") and, if it is absent, list every label.
        pixel = [c for c in self.categories if c in PIXEL_CATEGORIES]
        for number, cats in label_categories.items():
            if pixel and (not cats or set(cats) & set(pixel)):
                concepts.add(self.names[number])
        self.concepts = sorted(c for c in concepts if c)
        self._primary = self._primary_categories(label_categories)
        self._warned_unknown = False

    def _primary_categories(self, label_categories: dict[int, dict[str, float]]) -> dict[str, str]:
        """Concept name -> the chosen category where its label covers most (NetDissect-Lite's primary category).

        Coverage comes from c_<category>.csv (NetDissect-Lite's source); without that file, label.csv's count for
        the category stands in. Ties go to the later category, as NetDissect-Lite's ``max`` over (coverage, index).
        """
        coverage: dict[str, dict[int, float]] = {}
        for cat in self.categories:
            path = self.root / f"c_{cat}.csv"
            if path.is_file():
                df = _read_csv(path, ["number"])
                if "coverage" in df.columns:  # without it, label.csv's counts stand in (below)
                    coverage[cat] = {int(float(n)): float(c or 0) for n, c in zip(df["number"], df["coverage"])}
        out: dict[str, str] = {}
        for number, name in self.names.items():
            scores = [(coverage[c].get(number, 0.0) if c in coverage else label_categories.get(number, {}).get(c, 0.0), i)
                      for i, c in enumerate(self.categories)]
            if max(scores)[0] > 0:
                out.setdefault(name, self.categories[max(scores)[1]])
        return out

    def concept_categories(self) -> dict[str, str]:
        """Concept name -> its primary category (see ``_primary_categories``)."""
        return {c: self._primary[c] for c in self.concepts if c in self._primary}

    def _image_size(self, i: int) -> tuple[int, int]:
        if self._sizes[i] is None:
            path = self.items[i][1]
            try:
                with Image.open(path) as im:
                    self._sizes[i] = (im.height, im.width)
            except (OSError, ValueError) as e:
                raise DatasetError(f"cannot read image {path}: {e} (or add ih/iw to index.csv)") from None
        return self._sizes[i]  # type: ignore[return-value]

    def _codes(self, rel: str, h: int, w: int) -> np.ndarray:
        path = self.root / "images" / rel
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
        except FileNotFoundError:
            raise DatasetError(f"Broden label image not found: {path} (listed in index.csv)") from None
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot read Broden label image {path}: {e}") from None
        codes = rgb[..., 0] + 256 * rgb[..., 1]
        lh, lw = codes.shape
        if (lh, lw) != (h, w):
            # Nearest neighbour, sampling at pixel centres like PIL's NEAREST.
            rows = np.minimum(((np.arange(h) + 0.5) * lh / h).astype(np.int64), lh - 1)
            cols = np.minimum(((np.arange(w) + 0.5) * lw / w).astype(np.int64), lw - 1)
            codes = codes[rows[:, None], cols[None, :]]
        return codes

    def annotations(self, i: int) -> list[Annotation]:
        """Masks of image ``i``: pixel labels as (H, W) masks, scene/texture as whole-image.

        Args:
            i: image index.

        Returns:
            One Annotation per concept name, sorted; labels of one name in several
            categories are OR-ed, and a whole-image label wins over a mask.
        """
        cells = self._rows[i]
        found: dict[str, np.ndarray | None] = {}
        for cat, values in cells.items():
            if cat in IMAGE_CATEGORIES:
                for v in values:
                    found[self.names[int(v)]] = None
                continue
            if not values:
                continue
            h, w = self._image_size(i)
            for rel in values:
                codes = self._codes(rel, h, w)
                for code in np.unique(codes).tolist():
                    if code == 0:
                        continue
                    name = self.names.get(code)
                    if name is None:
                        if not self._warned_unknown:
                            self._warned_unknown = True
                            warnings.warn(f"{rel}: label code {code} is not in label.csv; skipped", stacklevel=2)
                        continue
                    if name in found and found[name] is None:
                        continue
                    m = codes == code
                    found[name] = m if found.get(name) is None else (found[name] | m)
        return [Annotation(name, found[name]) for name in sorted(found)]

    def _fingerprint_files(self) -> Sequence[Path]:
        return [self.root / "index.csv", self.root / "label.csv"]


@register_dataset("broden")
def load_broden(arg: str, options: dict[str, str]) -> BrodenDataset:
    """Spec ``broden:DIR?categories=object,part,material,scene,texture&split=train&style=lavise``."""
    check_options("broden", options, _OPTIONS)
    if not arg:
        raise DatasetError("broden spec has no folder; write broden:PATH/broden1_224")
    cats = options.get("categories")
    categories = [c.strip().lower() for c in cats.split(",") if c.strip()] if cats else None
    return BrodenDataset(arg, categories=categories, split=options.get("split") or None,
                         spec=spec_string("broden", arg, options), style=options.get("style") or "lavise")
