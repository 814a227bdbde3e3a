"""Per-filter activation statistics gathered while features stream past.

``ActivationStats`` is updated batch by batch and merged across shards
(processes, resumed chunks) with results independent of the order:

* **Threshold T_u** (upper 0.5% quantile of each filter's spatial activations).
  While the number of values above the quantile fits in ``EXACT_LIMIT``, the
  largest K values per filter are kept and T_u equals
  ``numpy.quantile(values, 0.995)`` (linear interpolation) exactly. Beyond that,
  a bottom-k hash sample of ``SAMPLE_SIZE`` spatial positions (the same
  positions for every filter; mergeable and deterministic) estimates T_u; the
  rank of the estimate is within ±3·sqrt(q(1-q)/k)·n of the exact rank
  (±0.0017·n for k = 16384), i.e. T_u lies between the 99.33% and 99.67% quantiles.
* **Top images**: the ``keep_images`` largest per-image maxima per filter, ties
  broken by the map's mean activation, then by dataset index, so top-p selection
  needs no O(N) array. (At a clipping layer such as ReLU6 many images reach the
  cap; the mean then prefers the images where the filter responds most broadly,
  not the first ones in the dataset.)
* Global min / max per filter (for the saturation rule) and counts.

Memory is O(d·(K + keep_images)) whatever the number of images.

Threshold rule (``Thresholds.masks``): a cell is active when ``a > T_u``. A
filter whose threshold equals its maximum is saturated (e.g. after ReLU6 many
cells sit at the cap); strict ``>`` would select nothing, so such filters use
``a >= T_u``. A constant (dead) filter selects nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

QUANTILE = 0.995
EXACT_LIMIT = 8192  # per-filter values kept for the exact quantile
SAMPLE_SIZE = 16384  # positions in the hash sample beyond that
PENDING_VALUES = 4096  # spatial values per filter buffered between folds
KEEP_IMAGES = 100


def topk_size(n: int, q: float = QUANTILE) -> int:
    """How many of the largest values determine the linear-interpolated q-quantile of n values."""
    lo = math.floor(q * (n - 1))
    return max(1, min(n, n - lo))


def _position_hash(index: torch.Tensor, cells: int) -> torch.Tensor:
    """A fixed pseudo-random priority for each (image, cell): splitmix64 of image*cells + cell."""
    z = (index[:, None] * cells + torch.arange(cells)[None]).reshape(-1)
    z = z * -7046029254386353131 + 0x632BE59BD9B4E019  # int64 wraparound arithmetic
    z = (z ^ (z >> 30)) * -4658895280553007687
    z = (z ^ (z >> 27)) * -7723592293110705685
    return z ^ (z >> 31)


class ActivationStats:
    """Streaming, mergeable per-filter statistics of a layer's spatial activations.

    Args:
        num_filters: d.
        total_values: spatial values per filter over the whole dataset (N·h·w); fixes exact vs sampled mode.
        q: the quantile for T_u.
        keep_images: how many top images per filter to remember.
    """

    def __init__(self, num_filters: int, total_values: int, q: float = QUANTILE, keep_images: int = KEEP_IMAGES):
        self.d, self.n_total, self.q, self.keep_images = num_filters, int(total_values), q, keep_images
        self.k = topk_size(self.n_total, q)
        self.exact = self.k <= EXACT_LIMIT
        self.top = torch.zeros((num_filters, 0))  # exact mode: largest values, descending
        self.sample_prio = torch.zeros(0, dtype=torch.int64)  # sampled mode: hash priorities of kept positions
        self.sample = torch.zeros((num_filters, 0))  # sampled mode: values at those positions
        self.max = torch.full((num_filters,), float("-inf"))
        self.min = torch.full((num_filters,), float("inf"))
        self.img_val = torch.zeros((num_filters, 0))
        self.img_mean = torch.zeros((num_filters, 0))
        self.img_idx = torch.zeros((num_filters, 0), dtype=torch.int64)
        self.count = 0
        # Batches not yet folded in: one topk/sort per PENDING_VALUES columns instead of per batch
        # (same result, since every fold keeps a total order), so ``update`` no longer sorts on every batch.
        self._pending: list[tuple[torch.Tensor, ...]] = []
        self._pending_cols = 0

    def update(self, feats: torch.Tensor, index: torch.Tensor | None = None, maxima: torch.Tensor | None = None,
               means: torch.Tensor | None = None) -> None:
        """Add a batch of feature maps (B, d, h, w) of the images with dataset indices ``index`` (B,).

        The work per value runs on ``feats``' device (a GPU's maps need not come back first); the
        kept statistics live on the CPU. ``maxima`` and ``means`` (B, d), when the caller has them
        already, spare a pass over the maps.
        """
        f = feats.detach().to(torch.float32)
        b, d, h, w = f.shape
        if index is None:
            index = torch.arange(self.count // (h * w), self.count // (h * w) + b)
        index = torch.as_tensor(index, dtype=torch.int64)
        vals = f.transpose(0, 1).reshape(d, -1)  # (d, B·h·w), image-major
        self.count += vals.shape[1]
        self.max = torch.maximum(self.max, vals.amax(1).cpu())
        self.min = torch.minimum(self.min, vals.amin(1).cpu())
        mx = (f.amax((2, 3)) if maxima is None else maxima.float()).T
        mean = (f.mean((2, 3)) if means is None else means.float()).T  # (d, B)
        prio = None if self.exact else _position_hash(index, h * w).to(f.device)
        self._pending.append((vals, prio, mx, mean, index.to(f.device)[None].expand(d, -1)))
        self._pending_cols += vals.shape[1]
        if self._pending_cols >= max(PENDING_VALUES, self.k):
            self._fold()

    def _fold(self) -> None:
        """Fold the pending batches into the kept statistics (on the batches' device; kept on the CPU)."""
        if not self._pending:
            return
        vals, prio, mx, mean, idx = zip(*self._pending)
        self._pending, self._pending_cols = [], 0
        dev = vals[0].device
        if self.exact:
            self._keep_top(torch.cat([self.top.to(dev), *vals], 1))
        else:
            self._keep_sample(torch.cat([self.sample_prio.to(dev), *prio]), torch.cat([self.sample.to(dev), *vals], 1))
        self.add_images(torch.cat([self.img_val.to(dev), *mx], 1), torch.cat([self.img_mean.to(dev), *mean], 1),
                          torch.cat([self.img_idx.to(dev), *idx], 1))
        if dev.type != "cpu":
            self.top, self.sample_prio, self.sample = self.top.cpu(), self.sample_prio.cpu(), self.sample.cpu()
            self.img_val, self.img_mean, self.img_idx = self.img_val.cpu(), self.img_mean.cpu(), self.img_idx.cpu()

    def merge(self, other: "ActivationStats") -> None:
        """Fold in statistics gathered on another shard of the same dataset."""
        self._fold()
        other._fold()
        self.count += other.count
        self.max = torch.maximum(self.max, other.max)
        self.min = torch.minimum(self.min, other.min)
        if self.exact:
            self._keep_top(torch.cat([self.top, other.top], 1))
        else:
            self._keep_sample(torch.cat([self.sample_prio, other.sample_prio]), torch.cat([self.sample, other.sample], 1))
        self.add_images(torch.cat([self.img_val, other.img_val], 1), torch.cat([self.img_mean, other.img_mean], 1),
                          torch.cat([self.img_idx, other.img_idx], 1))

    def _keep_top(self, cand: torch.Tensor) -> None:
        self.top = cand.topk(min(self.k, cand.shape[1]), dim=1, sorted=True).values

    def _keep_sample(self, prio: torch.Tensor, vals: torch.Tensor) -> None:
        keep = torch.sort(prio, stable=True).indices[:SAMPLE_SIZE]
        self.sample_prio, self.sample = prio[keep], vals[:, keep]

    def add_images(self, val: torch.Tensor, mean: torch.Tensor, idx: torch.Tensor) -> None:
        """Keep, per filter, the ``keep_images`` best of the kept and the given (d, n) maxima, means and indices."""
        # max desc, then mean desc, then dataset index asc: the same order whatever the shard order
        o = torch.sort(idx, dim=1, stable=True).indices
        val, mean, idx = val.gather(1, o), mean.gather(1, o), idx.gather(1, o)
        o = torch.sort(mean, dim=1, descending=True, stable=True).indices
        val, mean, idx = val.gather(1, o), mean.gather(1, o), idx.gather(1, o)
        o = torch.sort(val, dim=1, descending=True, stable=True).indices[:, : self.keep_images]
        self.img_val, self.img_mean, self.img_idx = val.gather(1, o), mean.gather(1, o), idx.gather(1, o)

    def thresholds(self) -> np.ndarray:
        """T_u for every filter: ``np.quantile(values_u, q)`` (exact mode) or its sample estimate."""
        if self.count == 0:
            raise ValueError("no activations were recorded")
        self._fold()
        if self.exact:
            n, top = self.count, self.top
        else:
            n, top = self.sample.shape[1], self.sample.sort(dim=1, descending=True).values
        pos = self.q * (n - 1)
        lo = math.floor(pos)
        frac = pos - lo
        a = top[:, n - 1 - lo]  # ascending index i is descending index n-1-i
        b = top[:, max(n - 2 - lo, 0)]
        return (a + frac * (b - a)).numpy().astype(np.float32)

    def top_images(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """(d, p) dataset indices and max activations of each filter's top images, most active first."""
        if p > self.keep_images:
            raise ValueError(f"only the top {self.keep_images} images per filter are kept")
        self._fold()
        return self.img_idx[:, :p].numpy(), self.img_val[:, :p].numpy()

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that ``from_state`` turns back into an equal object (for checkpoints and caches)."""
        self._fold()
        return {"top": self.top.numpy(), "sample_prio": self.sample_prio.numpy(), "sample": self.sample.numpy(),
                "max": self.max.numpy(), "min": self.min.numpy(), "img_val": self.img_val.numpy(),
                "img_mean": self.img_mean.numpy(), "img_idx": self.img_idx.numpy(),
                "scalars": np.array([self.count, self.n_total, self.keep_images], np.int64), "q": np.array([self.q])}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray]) -> "ActivationStats":
        count, n_total, keep = (int(v) for v in s["scalars"])
        st = cls(int(s["max"].shape[0]), n_total, float(s["q"][0]), keep)
        for name in ("top", "sample_prio", "sample", "max", "min", "img_val", "img_mean", "img_idx"):
            setattr(st, name, torch.from_numpy(np.array(s[name])))
        st.count = count
        return st


# A saturated filter's T_u is its maximum in full precision; caches hold float16 maps, which round the maximum
# by up to half a float16 step (a relative 2^-11) either way. Its cells count as at the cap from T_u (1 - 2^-11):
# a cap rounded down still qualifies, and the next float16 value below the cap (e.g. 5.996 under ReLU6's 6) does not.
SATURATION_TOLERANCE = 2.0 ** -11


@dataclass(frozen=True)
class Thresholds:
    """T_u per filter and whether each filter is saturated (mask uses >= the cap, within float16 rounding) or dead
    (mask empty)."""

    values: np.ndarray  # (d,) float32
    inclusive: np.ndarray  # (d,) bool
    dead: np.ndarray  # (d,) bool

    @classmethod
    def from_stats(cls, stats: ActivationStats) -> "Thresholds":
        t = stats.thresholds()
        mx, mn = stats.max.numpy(), stats.min.numpy()
        dead = mx <= mn
        return cls(values=t, inclusive=(t >= mx) & ~dead, dead=dead)

    def masks(self, acts: torch.Tensor, units: torch.Tensor | None = None) -> torch.Tensor:
        """Binary activation masks.

        Args:
            acts: activation maps (..., d, h, w), or with ``units`` maps (B, ...) whose first dim is a batch.
            units: optional (B,) filter index of each map.

        Returns:
            bool tensor shaped like ``acts``.
        """
        t = torch.as_tensor(self.cut, dtype=torch.float32, device=acts.device).to(acts.dtype)
        inc = torch.as_tensor(self.inclusive, device=acts.device)
        dead = torch.as_tensor(self.dead, device=acts.device)
        if units is not None:
            t, inc, dead = t[units], inc[units], dead[units]
            shape = (-1,) + (1,) * (acts.dim() - 1)
        else:
            shape = (-1, 1, 1)
        t, inc, dead = t.view(shape), inc.view(shape), dead.view(shape)
        return torch.where(inc, acts >= t, acts > t) & ~dead

    def upsampled_masks(self, maps: torch.Tensor, units: torch.Tensor,
                        upsample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Binary masks of (B, h, w) maps at the resolution ``upsample`` gives, for filters ``units`` (B,).

        An unsaturated filter thresholds its upsampled map (NetDissect's rule). A saturated filter (T_u equals
        its maximum, e.g. ReLU6 capped at 6) cannot: bilinear values reach the cap only inside 2×2 blocks of
        capped cells, so one capped cell, the common case, would give an empty mask. Its binary mask at feature
        resolution is upsampled instead, keeping the pixels at or above one half.

        Args:
            maps: (B, h, w) activation maps.
            units: (B,) the filter of each map.
            upsample: maps (B, h, w) float to (B, H, W), e.g. bilinear interpolation.

        Returns:
            (B, H, W) bool masks.
        """
        out = self.masks(upsample(maps), units=units)
        sat = torch.as_tensor(self.inclusive, device=maps.device)[units]
        if bool(sat.any()):
            low = self.masks(maps[sat], units=units[sat]).to(maps.dtype)
            out[sat] = upsample(low) >= 0.5
        return out

    def qualified(self, maxima: np.ndarray) -> np.ndarray:
        """Which images qualify for each filter (max activation above T_u, same rule as ``masks``): (N, d) bool."""
        mx = np.asarray(maxima, dtype=np.float32)
        return np.where(self.inclusive, mx >= self.cut, mx > self.values) & ~self.dead

    @property
    def cut(self) -> np.ndarray:
        """(d,) float32 what ``masks`` compares with: T_u, lowered by ``SATURATION_TOLERANCE`` for saturated filters."""
        v = np.asarray(self.values, dtype=np.float32)
        return np.where(self.inclusive, v - np.abs(v) * np.float32(SATURATION_TOLERANCE), v).astype(np.float32)
