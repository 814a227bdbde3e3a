"""Per-filter activation statistics gathered while features stream past.

``ActivationStats`` is updated batch by batch and merged across processes. It
keeps, per filter, the largest K spatial activations (K fixed from the known
total count), which makes the upper-quantile threshold T_u *exactly* equal to
``numpy.quantile(..., 0.995)`` with linear interpolation, plus global min/max.

Threshold rule (``activation_masks``): a cell is active when ``a > T_u``. A
filter whose threshold equals its maximum is saturated (e.g. after ReLU6 many
cells sit at the cap); strict ``>`` would select nothing, so such filters use
``a >= T_u``. A constant (dead) filter selects nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

QUANTILE = 0.995


def topk_size(n: int, q: float = QUANTILE) -> int:
    """How many of the largest values determine the linear-interpolated q-quantile of n values."""
    lo = math.floor(q * (n - 1))
    return max(1, min(n, n - lo))


class ActivationStats:
    """Streaming per-filter statistics of a layer's spatial activations.

    Args:
        num_filters: d.
        total_values: number of spatial values per filter over the whole dataset (N*h*w).
        q: the quantile for T_u.
    """

    def __init__(self, num_filters: int, total_values: int, q: float = QUANTILE):
        self.d, self.n_total, self.q = num_filters, int(total_values), q
        self.k = topk_size(self.n_total, q)
        self.top = torch.full((num_filters, 0), float("-inf"))
        self.max = torch.full((num_filters,), float("-inf"))
        self.min = torch.full((num_filters,), float("inf"))
        self.count = 0

    def update(self, feats: torch.Tensor) -> None:
        """Add a batch of feature maps (B, d, h, w)."""
        f = feats.detach().to(torch.float32).cpu()
        vals = f.transpose(0, 1).reshape(self.d, -1)
        self.count += vals.shape[1]
        self.max = torch.maximum(self.max, vals.amax(1))
        self.min = torch.minimum(self.min, vals.amin(1))
        self._keep_top(torch.cat([self.top, vals], 1))

    def merge(self, other: "ActivationStats") -> None:
        """Fold in statistics gathered on another shard of the same dataset."""
        self.count += other.count
        self.max = torch.maximum(self.max, other.max)
        self.min = torch.minimum(self.min, other.min)
        self._keep_top(torch.cat([self.top, other.top], 1))

    def _keep_top(self, cand: torch.Tensor) -> None:
        k = min(self.k, cand.shape[1])
        self.top = cand.topk(k, dim=1, sorted=True).values

    def thresholds(self) -> np.ndarray:
        """T_u for every filter, equal to ``np.quantile(values_u, q)`` (linear interpolation)."""
        n = self.count
        if n == 0:
            raise ValueError("no activations were recorded")
        pos = self.q * (n - 1)
        lo = math.floor(pos)
        frac = pos - lo
        # sorted ascending index i is descending index n-1-i
        a = self.top[:, n - 1 - lo]
        b = self.top[:, max(n - 2 - lo, 0)]
        return (a + frac * (b - a)).numpy().astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"top": self.top.numpy(), "max": self.max.numpy(), "min": self.min.numpy(),
                "count": np.array([self.count]), "n_total": np.array([self.n_total])}

    @classmethod
    def from_state(cls, s: dict[str, np.ndarray], q: float = QUANTILE) -> "ActivationStats":
        st = cls(int(s["top"].shape[0]), int(s["n_total"][0]), q)
        st.top, st.max, st.min = torch.from_numpy(s["top"]), torch.from_numpy(s["max"]), torch.from_numpy(s["min"])
        st.count = int(s["count"][0])
        return st


@dataclass(frozen=True)
class Thresholds:
    """T_u per filter and whether each filter is saturated (mask uses >=) or dead (mask empty)."""

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
        t = torch.as_tensor(self.values, dtype=acts.dtype, device=acts.device)
        inc = torch.as_tensor(self.inclusive, device=acts.device)
        dead = torch.as_tensor(self.dead, device=acts.device)
        if units is not None:
            t, inc, dead = t[units], inc[units], dead[units]
            shape = (-1,) + (1,) * (acts.dim() - 1)
        else:
            shape = (-1, 1, 1)
        t, inc, dead = t.view(shape), inc.view(shape), dead.view(shape)
        return torch.where(inc, acts >= t, acts > t) & ~dead
