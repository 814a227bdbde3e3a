"""Ground truth by IoU, and the NetDissect baseline (Bau et al. 2017; paper §4.4).

For filter u and concept c, the activation map A_u of every image is upsampled
(bilinear) from the feature resolution to the evaluation masks' resolution
(``features.EVAL_MASK_SIZE``, or the cache's own ``eval_size``) and binarised with
the filter's threshold T_u of the evaluated dataset (``Thresholds.masks``: the same
saturation/dead rule as everywhere else). Intersection and union are then
*accumulated over all images*:

    netdissect convention   IoU(u,c) = Σ_x |A_u ∩ M_c| / Σ_x |A_u ∪ M_c|, over ALL images x
                            (M_c is empty where c is absent, so A_u's area there counts in the union)
    present convention      the same sums over the images that contain c only (looser; always labelled)
    netdissect-lite         NetDissect-Lite's rule (``tally_units_cat`` in its feature_operation.py): A_u's
                            area in image x counts in the union of c only when, in x, A_u overlaps a label
                            of c's category (any label of it; an image-level label overlaps any non-empty
                            A_u). Needs each concept's category (``compute_ground_truth(categories=...)``).

A concept belongs to filter u's ground truth when its IoU exceeds the threshold
(0.04, NetDissect's). Everything is vectorised: per batch of images one upsample,
one threshold and one batched matmul of the (B, d, S²) maps with each image's
(B, k, S²) masks; there is no Python loop over filters.

``dissect`` is NetDissect: each filter labelled by its best-IoU concept,
interpretable when that IoU exceeds the threshold; ``Dissection.csv_text`` gives
the per-unit (unit, concept, IoU) table; with the ``netdissect-lite`` convention
(``netdissect_lite.py``) the input, the masks' resolution and the categories are
NetDissect-Lite's too, and ``netdissect_lite.tally_csv_text`` writes its tally.csv.
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import IOU_THRESHOLD
from .errors import DatasetError
from .features import EVAL_MASK_SIZE, FeatureCache
from .options import DISSECT_CONVENTIONS, ExtractOptions
from .stats import Thresholds


@dataclass(frozen=True)
class GroundTruth:
    """Accumulated intersection/union counts of every (filter, concept) pair of one dataset.

    Attributes:
        concepts: concept names (columns).
        intersection: (d, C) Σ |A_u ∩ M_c| in evaluation pixels.
        act_area: (d,) Σ |A_u| over all images.
        mask_area: (C,) Σ |M_c| over all images.
        act_area_present: (d, C) Σ |A_u| over the images that contain c.
        images: number of images.
        images_with: (C,) number of images containing c.
        threshold: IoU threshold for membership.
        dead: (d,) filters that select nothing (their IoU is 0).
        categories: category names (NetDissect-Lite's convention; empty when not computed).
        concept_category: (C,) index into ``categories`` of each concept.
        act_area_category: (d, K) Σ |A_u| over the images where A_u overlaps a label of category k.
    """

    concepts: list[str]
    intersection: np.ndarray
    act_area: np.ndarray
    mask_area: np.ndarray
    act_area_present: np.ndarray
    images: int
    images_with: np.ndarray
    threshold: float = IOU_THRESHOLD
    dead: np.ndarray | None = None
    categories: list[str] = field(default_factory=list)
    concept_category: np.ndarray | None = None
    act_area_category: np.ndarray | None = None

    @property
    def num_filters(self) -> int:
        return self.intersection.shape[0]

    def iou(self, convention: str = "netdissect") -> np.ndarray:
        """(d, C) IoU under ``convention`` (``netdissect``: over all images; ``present``: images with c;
        ``netdissect-lite``: images where the filter overlaps a label of c's category)."""
        if convention == "netdissect":
            union = self.act_area[:, None] + self.mask_area[None, :] - self.intersection
        elif convention == "present":
            union = self.act_area_present + self.mask_area[None, :] - self.intersection
        elif convention == "netdissect-lite":
            if self.act_area_category is None or self.concept_category is None:
                raise ValueError("this ground truth has no per-category areas; compute it with categories=")
            union = self.act_area_category[:, self.concept_category] + self.mask_area[None, :] - self.intersection
        else:
            raise ValueError(f"unknown convention {convention!r}; use one of {DISSECT_CONVENTIONS}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(union > 0, self.intersection / np.maximum(union, 1e-12), 0.0)
        return out

    def labels(self, convention: str = "netdissect", threshold: float | None = None) -> list[list[str]]:
        """Per filter: the concepts with IoU > threshold, best first (ties by name)."""
        thr = self.threshold if threshold is None else threshold
        iou = self.iou(convention)
        out = []
        for u in range(iou.shape[0]):
            idx = np.flatnonzero(iou[u] > thr)
            idx = sorted(idx.tolist(), key=lambda c: (-iou[u, c], self.concepts[c]))
            out.append([self.concepts[c] for c in idx])
        return out

    def summary(self, convention: str = "netdissect") -> dict:
        lab = self.labels(convention)
        n = [len(x) for x in lab if x]
        return {"convention": convention, "iou_threshold": self.threshold, "filters": self.num_filters,
                "filters_with_ground_truth": len(n), "concepts_per_filter": round(float(np.mean(n)), 3) if n else 0.0,
                "distinct_concepts": len({c for x in lab for c in x}), "images": self.images}


def compute_ground_truth(cache: FeatureCache, thresholds: Thresholds | None = None, iou_threshold: float = IOU_THRESHOLD,
                         batch_images: int | None = None, show_progress: bool = False,
                         rows: np.ndarray | None = None, categories: list[str] | None = None) -> GroundTruth:
    """Accumulate IoU counts of every filter with every concept of a cached, annotated dataset.

    Args:
        cache: a ``FeatureCache`` extracted with ``concepts=[...]`` (it has pairs and evaluation masks).
        thresholds: T_u (default: from the cache's own statistics, i.e. the evaluated dataset).
        iou_threshold: IoU above which a concept is in a filter's ground truth.
        batch_images: images per vectorised step (default 32 at 56 x 56 masks, fewer for larger masks).
        show_progress: progress bar.
        rows: the cache rows (ascending) to accumulate over (default all): ground truth of part of the images.
        categories: the category of each of ``cache.concepts``; given, the per-category areas of
            NetDissect-Lite's convention are accumulated too.

    Returns:
        ``GroundTruth``.
    """
    if cache.pairs is None or cache.masks_eval is None:
        raise DatasetError("the evaluated dataset has no concept masks; ground truth needs a dataset with "
                           "annotations (coco:, broden:, vg:, manifest: or builtin:scenes)")
    thr = thresholds or Thresholds.from_stats(cache.stats)
    rows = np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64)
    n, d = len(rows), cache.shape[0]
    C = len(cache.concepts)
    S = cache.eval_size
    if batch_images is None:  # the upsampled maps of a batch take B·d·S² floats: keep that as at 56 x 56
        batch_images = max(1, 32 * EVAL_MASK_SIZE ** 2 // (S * S))
    cat_names = list(dict.fromkeys(categories)) if categories is not None else []  # in order of first use
    if categories is not None and len(categories) != C:
        raise ValueError(f"{len(categories)} categories given for {C} concepts")
    cat_of = torch.tensor([cat_names.index(c) for c in categories] if categories is not None else [], dtype=torch.int64)
    K = len(cat_names)
    pairs = np.asarray(cache.pairs, dtype=np.int64)
    masks = cache.masks_eval.reshape(len(pairs), S * S)
    # pairs of the chosen rows, their rows renumbered 0..n-1 in the order of ``rows``
    pos = np.full(len(cache), -1, dtype=np.int64)
    pos[rows] = np.arange(n)
    keep = pos[pairs[:, 0]] >= 0
    pairs, masks = np.stack([pos[pairs[keep, 0]], pairs[keep, 1]], 1).reshape(-1, 2), masks[keep]
    # merge duplicate (image, concept) pairs so each appears once
    key = pairs[:, 0] * max(C, 1) + pairs[:, 1]
    uniq, inv = np.unique(key, return_inverse=True)
    if len(uniq) != len(key):
        merged = np.zeros((len(uniq), S * S), bool)
        np.logical_or.at(merged, inv, masks)
        masks, pairs = merged, np.stack([uniq // max(C, 1), uniq % max(C, 1)], 1)
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs, masks = pairs[order], masks[order]
    mask_t = torch.from_numpy(masks)
    inter = torch.zeros(d, C, dtype=torch.float64)
    act_present = torch.zeros(d, C, dtype=torch.float64)
    act_area = torch.zeros(d, dtype=torch.float64)
    act_cat = torch.zeros(d, K, dtype=torch.float64)
    mask_area = torch.zeros(C, dtype=torch.float64).index_add_(
        0, torch.from_numpy(pairs[:, 1]), mask_t.sum(1).double())
    images_with = np.bincount(pairs[:, 1], minlength=C)
    starts = np.searchsorted(pairs[:, 0], np.arange(n + 1))
    h, w = cache.shape[1:]
    ih, iw = interpolation_matrix(h, S), interpolation_matrix(w, S)
    from tqdm.auto import tqdm

    for r0 in tqdm(range(0, n, batch_images), desc="ground truth", unit="batch", disable=not show_progress, leave=False):
        r1 = min(n, r0 + batch_images)
        B = r1 - r0
        # Bilinear values are convex combinations of the 4 nearest cells, so a map whose maximum does not pass
        # T_u (same rule as the masks) has an empty upsampled mask: only "qualified" maps are upsampled.
        qual = torch.from_numpy(thr.qualified(np.asarray(cache.maxima[rows[r0:r1]])))
        qb, qu = qual.nonzero(as_tuple=True)
        area = torch.zeros(B, d, dtype=torch.float64)
        act = torch.zeros(0, S * S)
        if len(qb):
            f = torch.from_numpy(np.asarray(cache.features[rows[r0:r1]])).float()  # torch's half->float is fast
            # bilinear upsampling as two matmuls; saturated filters upsample their binary mask (Thresholds)
            act = thr.upsampled_masks(f[qb, qu], qu, lambda x: torch.matmul(torch.matmul(ih, x), iw.T))
            act = act.flatten(1).float()  # (Q, S²)
            area[qb, qu] = act.sum(1).double()
        act_area += area.sum(0)
        p0, p1 = starts[r0], starts[r1]
        if p1 == p0:
            continue
        prow = torch.from_numpy(pairs[p0:p1, 0] - r0)
        pc = torch.from_numpy(pairs[p0:p1, 1])
        act_present.index_add_(1, pc, area[prow].T)
        if not len(qb):
            continue
        # each image's masks padded to k slots: (B*k, S²); one matmul with every qualified map
        counts = torch.bincount(prow, minlength=B)
        k = int(counts.max())
        first = torch.from_numpy(starts[r0:r1] - p0)
        slot = torch.arange(p1 - p0) - first[prow]
        m = torch.zeros(B * k, S * S)
        m[prow * k + slot] = mask_t[p0:p1].float()
        full = act @ m.T  # (Q, B*k)
        sl = torch.arange(k)
        iq = full.gather(1, qb[:, None] * k + sl[None, :])  # (Q, k): intersection with each mask of its image
        valid = sl[None, :] < counts[qb][:, None]
        qi, si = valid.nonzero(as_tuple=True)
        conc = pc[first[qb[qi]] + si]
        inter.index_put_((qu[qi], conc), iq[qi, si].double(), accumulate=True)
        if K:
            # NetDissect-Lite: a map's area joins category k's union when it overlaps some label of k in its image
            touch = torch.zeros(len(qb), K, dtype=torch.bool)
            hit = iq[qi, si] > 0
            touch[qi[hit], cat_of[conc[hit]]] = True
            act_cat.index_add_(0, qu, touch.double() * area[qb, qu][:, None])
    return GroundTruth(list(cache.concepts), inter.numpy(), act_area.numpy(), mask_area.numpy(), act_present.numpy(),
                       n, images_with, iou_threshold, np.asarray(thr.dead, bool), cat_names,
                       cat_of.numpy() if categories is not None else None, act_cat.numpy() if categories is not None else None)


def interpolation_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix equal to 1-D linear interpolation as in ``F.interpolate(..., mode="bilinear",
    align_corners=False)``; bilinear upsampling is separable, so ``Mh @ X @ Mw.T`` equals it (and is much faster
    on CPU for maps with many channels)."""
    eye = torch.eye(n_in).reshape(n_in, 1, n_in, 1)
    return F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False).reshape(n_in, n_out).T.contiguous()


@dataclass(frozen=True)
class Dissection:
    """NetDissect labels: per filter its best-IoU concept and whether it is interpretable (IoU > threshold)."""

    layer: str
    concepts: list[str]
    best: np.ndarray  # (d,) concept index
    iou: np.ndarray  # (d,) best IoU
    threshold: float
    convention: str = "netdissect"

    @classmethod
    def from_ground_truth(cls, gt: GroundTruth, layer: str = "", convention: str = "netdissect") -> "Dissection":
        iou = gt.iou(convention)
        if iou.shape[1] == 0:
            return cls(layer, [], np.zeros(iou.shape[0], np.int64), np.zeros(iou.shape[0]), gt.threshold, convention)
        # ties: the first concept in name order (concepts are sorted in caches)
        best = iou.argmax(1)
        return cls(layer, list(gt.concepts), best, iou[np.arange(len(best)), best], gt.threshold, convention)

    @property
    def interpretable(self) -> np.ndarray:
        return self.iou > self.threshold

    def label(self, unit: int) -> str | None:
        return self.concepts[int(self.best[unit])] if self.interpretable[unit] else None

    def rows(self) -> list[dict]:
        return [{"unit": u, "concept": self.concepts[int(b)] if self.concepts else "", "iou": round(float(v), 6),
                 "interpretable": bool(v > self.threshold)} for u, (b, v) in enumerate(zip(self.best, self.iou))]

    def csv_text(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["layer", "unit", "concept", "iou", "interpretable"])
        for r in self.rows():
            w.writerow([self.layer, r["unit"], r["concept"], f"{r['iou']:.6f}", int(r["interpretable"])])
        return buf.getvalue()

    def summary(self) -> dict:
        interp = self.interpretable
        return {"units": len(self.iou), "interpretable": int(interp.sum()),
                "distinct_concepts": len({int(b) for b, ok in zip(self.best, interp) if ok}),
                "iou_threshold": self.threshold, "convention": self.convention}


def dissect(target, layer: str | None, dataset, cache_dir: str | Path, iou_threshold: float = IOU_THRESHOLD,
            convention: str = "netdissect", extract: ExtractOptions = ExtractOptions()) -> tuple[Dissection, GroundTruth]:
    """Run the NetDissect baseline on one layer: label each filter by its best-IoU concept.

    Args:
        target: a ``TargetModel``.
        layer: dotted layer name (default: the model's default layer).
        dataset: a dataset with concept masks (for ``netdissect-lite``, a Broden folder loaded with
            ``netdissect_lite.load_lite_dataset``).
        cache_dir: feature cache folder.
        iou_threshold: a unit is interpretable when its best IoU exceeds this (0.04).
        convention: ``netdissect`` (all images), ``present`` (images with the concept only) or
            ``netdissect-lite`` (NetDissect-Lite's union rule, whole-image input, masks at the labels'
            resolution; see ``netdissect_lite.py``).
        extract: how the backbone runs.

    Returns:
        (``Dissection``, the ``GroundTruth`` it was computed from; with ``netdissect-lite`` it has the
        per-category areas that ``netdissect_lite.tally_csv_text`` needs).
    """
    return dissect_layers(target, [layer or target.default_layer], dataset, cache_dir, iou_threshold, convention,
                          extract)[layer or target.default_layer]


def dissect_layers(target, layers: list[str], dataset, cache_dir: str | Path, iou_threshold: float = IOU_THRESHOLD,
                   convention: str = "netdissect",
                   extract: ExtractOptions = ExtractOptions()) -> dict[str, tuple[Dissection, GroundTruth]]:
    """``dissect`` for several layers, the dataset extracted once for all of them (``extract_layers``).

    Returns:
        ``{layer: (Dissection, GroundTruth)}``.
    """
    from .features import extract_layers

    if convention not in DISSECT_CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; use one of {DISSECT_CONVENTIONS}")
    if not dataset.concepts:
        raise DatasetError(f"{dataset.spec} has no concepts; NetDissect needs a dataset with concept masks")
    concepts = list(dataset.concepts)
    out = {}
    if convention == "netdissect-lite":
        from dataclasses import replace

        from . import netdissect_lite as lite

        target = replace(target, preprocess=lite.lite_preprocess(target.preprocess))
        size = lite.lite_eval_size(dataset, target.preprocess)
        caches = extract_layers(target, layers, dataset, cache_dir, concepts, extract, eval_size=size)
        for layer, cache in caches.items():
            gt = compute_ground_truth(cache, iou_threshold=iou_threshold, show_progress=extract.show_progress,
                                      categories=lite.concept_categories(dataset, list(cache.concepts)))
            out[layer] = (Dissection.from_ground_truth(gt, layer, convention), gt)
        return out
    for layer, cache in extract_layers(target, layers, dataset, cache_dir, concepts, extract).items():
        gt = compute_ground_truth(cache, iou_threshold=iou_threshold, show_progress=extract.show_progress)
        out[layer] = (Dissection.from_ground_truth(gt, layer, convention), gt)
    return out
