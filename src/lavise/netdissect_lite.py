"""NetDissect-Lite's definitions, for ``lavise dissect --convention netdissect-lite``.

lavise's own NetDissect convention and NetDissect-Lite (CSAILVision/NetDissect-Lite) agree on the arithmetic
but not on the definitions. This mode takes NetDissect-Lite's, each written here from its source
(feature_operation.py, settings.py, loader/data_loader.py), not copied:

* union rule: in image x, a unit's activated area counts in the union of concept c only when it overlaps a
  label of c's (primary) category in x (``compute_ground_truth(categories=...)``; ``tally_units_cat`` there);
* input: the whole image, no crop (``Preprocess(fit="stretch")``, an identity for Broden's 224 px images),
  standardised as NetDissect-Lite does: its BGR mean (109.5388, 118.6897, 124.6901) and one scale 255·0.224;
* resolution: IoU counted at the segmentation's resolution (Broden's 112 px label images), not at 56 x 56;
* categories: object, part, scene, texture, color in category.csv's order, Broden's names as written, only
  images labelled in some chosen category (``broden:DIR?style=netdissect-lite``);
* output: its ``tally.csv`` (``tally_csv_text``) beside lavise's CSV.

Kept from lavise, as documented differences:

* a saturated unit (T_u equal to its maximum) uses ``>=`` on its binary map (``Thresholds.upsampled_masks``),
  where NetDissect-Lite's strict ``>`` gives it IoU 0;
* T_u is ``numpy.quantile(values, 0.995)``. NetDissect-Lite reads its quantile sketch at 994/999; with every
  value kept (up to about 500 images of 7 x 7 maps) that interpolates the sorted values with the recorded
  minimum and maximum among them, so T_u depends on where its unstable argsort puts the maximum beside the
  equal largest value: before it (as a stable sort would), T_u is numpy's quantile to within a few hundredths
  of a rank; after it, half a rank higher. No fixed rule reproduces that tie order, so lavise keeps numpy's
  (experiments/netdissect_parity.py measures the effect);
* maps are cached in float16 (NetDissect-Lite keeps float64 copies of float32 maps);
* a label repeated in the same pixel by two label images of an image counts once (NetDissect-Lite counts it per
  label image), and an image with image-level labels only counts exactly its own categories (NetDissect-Lite
  reuses the category flags left from its previous unit there, a stale variable; Broden's colour labels cover
  every image, so it does not arise with the default categories).
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import replace

import numpy as np

from .data import load_dataset, parse_spec
from .data.base import ConceptDataset
from .data.broden import NETDISSECT_LITE_CATEGORIES
from .data.transforms import Preprocess
from .dissect import GroundTruth

CONVENTION = "netdissect-lite"
CATEGORIES = NETDISSECT_LITE_CATEGORIES
# NetDissect-Lite subtracts this mean from BGR pixels, flips to RGB and divides by 255 * 0.224 (feature_operation.py)
MEAN = (124.6901 / 255, 118.6897 / 255, 109.5388 / 255)  # as RGB fractions of 255
STD = (0.224, 0.224, 0.224)
OTHER_CATEGORY = "concept"  # the one category of datasets that do not group their concepts
TALLY_FIELDS = ("label", "truth", "activation", "intersect", "iou")


def lite_preprocess(pre: Preprocess) -> Preprocess:
    """The model's input size with NetDissect-Lite's geometry and scaling: whole image, no crop, its mean and scale.

    Args:
        pre: the model's own preprocessing (only its input size ``crop`` and interpolation are kept).

    Returns:
        A ``Preprocess`` resizing the whole image to ``crop`` x ``crop`` (Broden's 224 px images pass unchanged).
    """
    # no reduced JPEG decode: NetDissect-Lite reads every pixel, and images with masks load whole anyway
    return replace(pre, resize=pre.crop, fit="stretch", mean=MEAN, std=STD, jpeg_draft=False)


def lite_eval_size(dataset: ConceptDataset, pre: Preprocess) -> int:
    """Side of the evaluation masks: the dataset's label images (Broden: index.csv's sh, 112 for broden1_224), else
    the input size (NetDissect-Lite scores at the labels' resolution; other datasets' masks are the image's)."""
    return int(dataset.segmentation_size or pre.crop)


def load_lite_dataset(spec: str) -> ConceptDataset:
    """Load ``spec``, a Broden folder read as NetDissect-Lite's loader reads it (``style=netdissect-lite`` unless the
    spec names a style); other kinds load as they are."""
    kind, _, options = parse_spec(spec)
    if kind == "broden" and "style" not in options:
        return load_dataset(spec, style=CONVENTION)
    return load_dataset(spec)


def concept_categories(dataset: ConceptDataset, concepts: list[str]) -> list[str]:
    """The category of each of ``concepts`` (``OTHER_CATEGORY`` where the dataset names none)."""
    cats = dataset.concept_categories()
    return [cats.get(c, OTHER_CATEGORY) for c in concepts]


def category_order(dataset: ConceptDataset, gt: GroundTruth) -> list[str]:
    """The tally's categories: the dataset's chosen ones in its order (Broden), then any other of ``gt``."""
    chosen = list(getattr(dataset, "categories", []))
    return chosen + [c for c in gt.categories if c not in chosen]


def tally_rows(gt: GroundTruth, categories: list[str]) -> list[dict]:
    """NetDissect-Lite's tally: per unit its best label in each category and overall, best units first.

    Args:
        gt: ground truth computed with categories (``compute_ground_truth(categories=...)``).
        categories: the categories, in the tally's column order.

    Returns:
        One dict per unit with ``unit`` (1-based), ``category``, ``label``, ``score`` and per category
        ``<category>-label``, ``-truth`` (label pixels), ``-activation`` (the unit's pixels counted in that
        category's union), ``-intersect`` and ``-iou``. A category whose IoUs are all 0 gets an empty label and
        zeros (NetDissect-Lite names its label 0 there). Ties follow NetDissect-Lite's reversed argsort: the later
        category, and the higher unit first.
    """
    iou = gt.iou(CONVENTION)
    d = iou.shape[0]
    assert gt.concept_category is not None and gt.act_area_category is not None
    names = [gt.categories[k] for k in gt.concept_category]
    per_cat = {}
    for cat in categories:
        idx = np.array([i for i, n in enumerate(names) if n == cat], dtype=np.int64)
        if len(idx):
            best = idx[iou[:, idx].argmax(1)]  # ties: the first concept (name order)
            score = iou[np.arange(d), best]
        else:
            best, score = np.full(d, -1), np.zeros(d)
        per_cat[cat] = (best, np.where(score > 0, score, 0.0))
    scores = np.stack([per_cat[c][1] for c in categories], 1) if categories else np.zeros((d, 0))
    rows = []
    for u in np.argsort(scores.max(1) if categories else np.zeros(d), kind="stable")[::-1]:
        top = categories[int(np.argsort(scores[u], kind="stable")[::-1][0])] if categories else ""
        row = {"unit": int(u) + 1, "category": top}
        for cat in categories:
            b, s = int(per_cat[cat][0][u]), float(per_cat[cat][1][u])
            named = b >= 0 and s > 0
            k = gt.categories.index(cat) if cat in gt.categories else -1
            row[f"{cat}-label"] = gt.concepts[b] if named else ""
            row[f"{cat}-truth"] = float(gt.mask_area[b]) if named else 0.0
            row[f"{cat}-activation"] = float(gt.act_area_category[u, k]) if k >= 0 else 0.0
            row[f"{cat}-intersect"] = float(gt.intersection[u, b]) if named else 0.0
            row[f"{cat}-iou"] = s
        row["label"], row["score"] = row.get(f"{top}-label", ""), row.get(f"{top}-iou", 0.0)
        rows.append(row)
    return rows


def tally_csv_text(gt: GroundTruth, categories: list[str]) -> str:
    """``tally.csv`` as NetDissect-Lite writes it: ``unit,category,label,score`` then ``<cat>-label,<cat>-truth,
    <cat>-activation,<cat>-intersect,<cat>-iou`` per category, rows best unit first (see ``tally_rows``)."""
    fields = ["unit", "category", "label", "score"] + [f"{c}-{f}" for c in categories for f in TALLY_FIELDS]
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fields, lineterminator="\n")
    w.writeheader()
    for r in tally_rows(gt, categories):
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})  # floats as Python writes them
    return buf.getvalue()
