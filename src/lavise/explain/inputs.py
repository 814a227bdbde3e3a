"""The explainer's inputs: each filter's top images, and for every (filter, image) pair the pooled input of
the chosen method (paper §3.2, Table 2).

    attention         every filter k reweighted by cos(A_u, A_k): pooled input = cos ⊙ GAP(F)
    masked-attention  (default; not in the paper) the same weights, pooled only where u fires:
                      cos ⊙ GAP(F ⊙ [A_u > T_u])
    activation        F ⊙ [A_u > T_u], the mask at feature resolution
    image             pixels where upsampled A_u <= T_u set to the mean colour, network rerun (``ImageRerun``)
    original          F unmasked

Inputs for all pairs are built in batched tensor operations, never a Python loop over filters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import ConceptDataset
from ..errors import LaviseError
from ..features import FeatureCache, FeatureExtractor
from ..models import TargetModel
from ..options import METHODS
from ..stats import ActivationStats, Thresholds


@dataclass(frozen=True)
class TopPairs:
    """The (filter, image) pairs a filter is explained with: each filter's top-p images.

    Attributes:
        units: (U,) the filters.
        rows: (U, p) cache rows of each filter's top images, most active first.
        vals: (U, p) their max activations.
    """

    units: torch.Tensor
    rows: torch.Tensor
    vals: torch.Tensor

    @property
    def p(self) -> int:
        return int(self.rows.shape[1])

    @property
    def pair_units(self) -> torch.Tensor:
        """(U·p,) the filter of each pair, filter-major."""
        return self.units[:, None].expand(-1, self.p).reshape(-1)

    @property
    def pair_rows(self) -> torch.Tensor:
        """(U·p,) the cache row of each pair."""
        return self.rows.reshape(-1)

    def select(self, units: list[int] | torch.Tensor) -> "TopPairs":
        """The pairs of ``units`` (filter numbers) from pairs of every filter, in the order given."""
        units_t = torch.as_tensor(units, dtype=torch.long)
        return TopPairs(units_t, self.rows[units_t], self.vals[units_t])

    def first(self, p: int) -> "TopPairs":
        """The same filters with only their ``p`` most activating images."""
        return self if p >= self.p else TopPairs(self.units, self.rows[:, :p], self.vals[:, :p])


def top_pairs(cache: FeatureCache, p: int, units: list[int] | torch.Tensor | None = None,
              rows: np.ndarray | None = None) -> TopPairs:
    """Each filter's (or each of ``units``') top-p images on the cached set, or among ``rows`` (see ``top_images``)."""
    top, vals = top_images(cache, p, rows)
    every = TopPairs(torch.arange(cache.shape[0]), top, vals)
    return every if units is None else every.select(units)


def top_images(cache: FeatureCache, p: int, rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The p rows with the largest max activation per filter: (d, p) rows and values, most active first.

    Ties are broken by the map's mean activation, then dataset order. Uses the streaming statistics when
    they kept enough images (and every row may be chosen), else one chunked pass over the cache (or over
    ``rows``, ascending cache rows, when only those may be chosen); memory is O(d·p) either way.
    """
    p = min(p, len(cache) if rows is None else len(rows))
    if rows is None and p <= cache.stats.keep_images:
        idx, val = cache.stats.top_images(p)
    else:  # one more streaming pass over the cached maps (max, then mean, as the statistics rank them)
        todo = np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64)
        acc = ActivationStats(cache.shape[0], 1, keep_images=p)
        for start in range(0, len(todo), 256):
            chunk = todo[start:start + 256]
            f = cache.read(chunk)
            ix = torch.from_numpy(np.asarray(cache.dataset_index[chunk], dtype=np.int64))
            acc.add_images(torch.cat([acc.img_val, f.amax((2, 3)).T], 1), torch.cat([acc.img_mean, f.mean((2, 3)).T], 1),
                           torch.cat([acc.img_idx, ix[None].expand(f.shape[1], -1)], 1))
        idx, val = acc.top_images(p)
    found = cache.rows_of(idx.reshape(-1)).reshape(idx.shape)
    return torch.from_numpy(found).long(), torch.from_numpy(np.ascontiguousarray(val))


def filter_inputs(method: str, feats: torch.Tensor, units: torch.Tensor, thresholds: Thresholds,
                  image: torch.Tensor | None = None) -> torch.Tensor:
    """Pooled explainer inputs for a batch of (filter, image) pairs.

    Args:
        method: ``attention``, ``masked-attention``, ``activation`` or ``original`` (``image`` needs the network:
            see ``ImageRerun``).
        feats: (M, d, h, w) feature maps of the images involved.
        units: (B,) the filter of each pair.
        thresholds: T_u of the target set.
        image: (B,) row of ``feats`` of each pair (default: pair b uses ``feats[b]``).

    Returns:
        (B, d) pooled inputs.
    """
    if method not in ("attention", "masked-attention", "activation", "original"):
        raise LaviseError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    flat = feats.flatten(2)  # (M, d, hw)
    image = torch.arange(len(units), device=feats.device) if image is None else image
    pooled = flat.mean(-1)  # (M, d)
    if method == "original":
        return pooled[image]
    hw = flat.shape[-1]
    own = flat[image, units]  # (B, hw)
    # The products of each pair's image maps (d, hw) with its right-hand sides: the attention weights (own map,
    # normalised) and/or the activation mask.
    rhs = []
    if method in ("attention", "masked-attention"):
        rhs.append(F.normalize(own, dim=-1))
        inv_norm = 1 / flat.norm(dim=-1).clamp_min(1e-12)  # cos(A_u, A_k) = (A_k · Â_u) / |A_k|
    if method in ("activation", "masked-attention"):
        rhs.append(thresholds.masks(own, units=units).to(flat.dtype))
    prod = pair_products(flat, image, torch.stack(rhs, 2))  # (B, d, r)
    if method == "activation":
        return prod[..., 0] / hw  # GAP(F ⊙ [A_u > T_u])
    if method == "attention":
        return prod[..., 0] * (inv_norm * pooled)[image]  # GAP(cos ⊙ F) = cos ⊙ GAP(F)
    return prod[..., 0] * prod[..., 1] * inv_norm[image] / hw  # GAP(cos ⊙ F ⊙ [A_u > T_u]): attention where u fires


def pair_products(flat: torch.Tensor, image: torch.Tensor, rhs: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
    """``flat[image[b]] @ rhs[b]`` for every pair b: (M, d, hw) maps, (B,) images, (B, hw, r) -> (B, d, r).

    ``batched`` (default: on a GPU) gathers each pair's maps for one batched product. On a CPU a copy of the
    maps per pair costs more than the arithmetic, so each image's maps meet all of its pairs' right-hand
    sides in one matmul instead.
    """
    if flat.device.type != "cpu" if batched is None else batched:
        return torch.bmm(flat[image], rhs)
    B, hw, r = rhs.shape
    out = torch.empty(B, flat.shape[1], r, dtype=flat.dtype, device=flat.device)
    order = torch.argsort(image, stable=True)
    imgs, counts = torch.unique_consecutive(image[order], return_counts=True)
    start = 0
    for j, k in zip(imgs.tolist(), counts.tolist()):
        sel = order[start:start + k]
        start += k
        out[sel] = (flat[j] @ rhs[sel].transpose(0, 1).reshape(hw, k * r)).view(-1, k, r).transpose(0, 1)
    return out


@dataclass(frozen=True)
class ImageRerun:
    """What the ``image`` method needs to rerun the network: the target images and the layer's extractor.

    Args:
        dataset: the target dataset the cache was extracted from.
        extractor: the layer's ``FeatureExtractor``.
    """

    dataset: ConceptDataset
    extractor: FeatureExtractor

    @classmethod
    def of(cls, target: TargetModel, layer: str, dataset: ConceptDataset) -> "ImageRerun":
        return cls(dataset, FeatureExtractor(target, layer))

    def inputs(self, units: torch.Tensor, rows: torch.Tensor, cache: FeatureCache, thresholds: Thresholds,
               device: str) -> torch.Tensor:
        """Pooled features of each pair's image with pixels outside the filter's mask set to the mean colour."""
        pre = self.extractor.target.preprocess
        xs = []
        for u, r in zip(units.tolist(), rows.tolist()):
            x = pre(pre.load(self.dataset[int(cache.dataset_index[r])].path))  # as the target cache decoded it
            a = torch.from_numpy(np.array(cache.features[r, u], dtype=np.float32))
            size = x.shape[-2:]
            keep = thresholds.upsampled_masks(a[None], torch.tensor([u]), lambda m: F.interpolate(
                m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])[0]
            xs.append(x * keep)  # 0 after normalisation = the mean colour
        f = self.extractor(torch.stack(xs).to(device)).float().cpu()
        return f.mean((2, 3))


def default_batch_pairs(shape: tuple[int, int, int], device: str = "cpu", budget: int = 512 << 20) -> int:
    """(filter, image) pairs per explain chunk for maps of ``shape`` (d, h, w).

    A chunk holds up to one float32 copy of the maps per pair (the images read on a CPU, the gathered maps
    on a GPU), kept within ``budget`` bytes so that layers with large maps do not exhaust memory; within
    that, 512 pairs on a CPU and 2,048 on a GPU (fewer kernel launches).
    """
    per_pair = 4 * int(np.prod(shape))
    return int(max(16, min(2048 if device.startswith("cuda") else 512, budget // per_pair)))
