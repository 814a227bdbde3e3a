"""``FeatureCache``: one dataset's features at one layer, on disk, and the key that names it.

A cache folder holds float16 feature maps (``features.f16``), per-image maxima (``maxima.f32``), the streaming
activation statistics, and for reference sets the (image, concept) pairs with masks at feature and evaluation
resolution (``arrays.npz``), described by ``meta.json``. ``cache_key`` is the one function that names a cache
from everything that determines its content.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.base import ConceptDataset
from ..errors import RunError
from ..io import read_json
from ..stats import ActivationStats
from .rowfile import RowFile

CACHE_FORMAT = 3
EVAL_MASK_SIZE = 56  # masks for IoU evaluation: 1/4 of a 224 crop (NetDissect-Lite's mode keeps its labels' size)


@dataclass
class FeatureCache:
    """Cached features of one dataset at one layer (see module docstring)."""

    path: Path
    meta: dict
    features: RowFile  # (N, d, h, w) float16
    maxima: RowFile  # (N, d) float32
    image_ids: list[str]
    dataset_index: np.ndarray  # (N,) ascending index of each row in the dataset
    stats: ActivationStats
    concepts: list[str] = field(default_factory=list)
    pairs: np.ndarray | None = None  # (P, 2) int64: (row, concept index)
    masks_feat: np.ndarray | None = None  # (P, h, w) float16 fraction of each cell covered
    masks_eval: np.ndarray | None = None  # (P, S, S) bool

    @property
    def eval_size(self) -> int:
        """S, the side of the evaluation masks (``EVAL_MASK_SIZE`` unless the cache was made with another)."""
        if self.masks_eval is not None:
            return int(self.masks_eval.shape[-1])
        return int(self.meta.get("eval_mask", EVAL_MASK_SIZE))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["shape"][1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    @classmethod
    def open(cls, path: Path) -> "FeatureCache":
        try:
            return cls._open(Path(path))
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:  # never unpickles: allow_pickle=False
            raise RunError(f"feature cache {path} is damaged ({str(e)[:150]}); delete that folder and rerun") from None

    @classmethod
    def _open(cls, path: Path) -> "FeatureCache":
        meta = read_json(path / "meta.json")
        n, d, h, w = meta["shape"]
        feats = RowFile(path / "features.f16", np.float16, (n, d, h, w))
        maxima = RowFile(path / "maxima.f32", np.float32, (n, d))
        with np.load(path / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
        stats = ActivationStats.from_state({k.removeprefix("stats_"): v for k, v in arrays.items() if k.startswith("stats_")})
        cache = cls(path, meta, feats, maxima, meta["image_ids"], arrays["dataset_index"], stats, meta.get("concepts", []))
        if "pairs" in arrays:
            s = int(meta.get("eval_mask", EVAL_MASK_SIZE))  # caches written before the setting hold 56 x 56
            cache.pairs = arrays["pairs"]
            cache.masks_feat = arrays["masks_feat"]
            cache.masks_eval = np.unpackbits(arrays["masks_eval"], axis=1, count=s * s).reshape(-1, s, s).astype(bool)
        return cache

    def rows_of(self, dataset_indices: np.ndarray) -> np.ndarray:
        """Cache rows of the given dataset indices (which must have been extracted)."""
        return np.searchsorted(self.dataset_index, dataset_indices)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Feature maps of ``rows`` as float32 (B, d, h, w)."""
        # torch's half-to-float conversion is vectorised; numpy's astype is several times slower here
        return torch.from_numpy(self.features.rows(rows)).float()

    def pooled(self, rows: np.ndarray | None = None) -> torch.Tensor:
        """Global average of each image's feature maps: (N, d) float32."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        out = [self.read(rows[i:i + 256]).mean((2, 3)) for i in range(0, len(rows), 256)]
        return torch.cat(out) if out else torch.zeros(0, self.shape[0])

    def masked_pooled(self) -> torch.Tensor:
        """GAP(F ⊙ M) for every (image, concept) pair: (P, d) float32, the explainer's training input."""
        assert self.pairs is not None and self.masks_feat is not None
        out = torch.zeros(len(self.pairs), self.shape[0])
        for start in range(0, len(self.pairs), 1024):  # pairs are in row order: sequential reads
            sl = slice(start, start + 1024)
            f = self.read(self.pairs[sl, 0])
            m = torch.from_numpy(self.masks_feat[sl].astype(np.float32))
            out[sl] = (f * m[:, None]).mean((2, 3))
        return out


def cache_key(model_digest: str, preprocess: dict, layer: str, dataset: ConceptDataset, concepts: list[str] | None,
              amp: bool = False, eval_size: int = EVAL_MASK_SIZE) -> str:
    """Digest of everything that determines a cache's content.

    Args:
        model_digest: ``TargetModel.weights_digest`` (also in a run's config).
        preprocess: ``Preprocess.to_dict()`` of the model.
        layer: dotted layer name.
        dataset: the dataset (its fingerprint is used).
        concepts: concept names kept with masks (None for a target set).
        amp: mixed-precision maps, cached apart.
        eval_size: side of the evaluation masks kept for reference sets.

    Returns:
        A 20-character hex key, the cache's folder name.
    """
    parts = {"format": CACHE_FORMAT, "model": model_digest, "layer": layer,
             "preprocess": preprocess, "dataset": dataset.fingerprint(),
             "concepts": concepts, "eval_mask": int(eval_size)}
    if amp:  # mixed-precision maps differ slightly: never served for a full-precision request (or back)
        parts["amp"] = True
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
