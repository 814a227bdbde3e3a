"""Features at one layer, computed once per dataset and cached on disk.

``FeatureExtractor`` owns a forward hook on the layer (removed in ``finally``)
and stops the forward pass there. ``extract_features`` streams a dataset
through it with DataLoader workers and writes a ``FeatureCache``: float16
feature maps in a numpy memmap, per-image maxima, activation statistics, and
for reference sets the (image, concept) pairs with masks at feature and
evaluation resolution.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .data.base import ConceptDataset, load_rgb
from .data.transforms import Preprocess, downsample_masks
from .errors import DatasetError, ModelError
from .io import write_json
from .models import TargetModel
from .stats import ActivationStats

CACHE_FORMAT = 1
EVAL_MASK_SIZE = 56  # masks for IoU evaluation: crop/4, as fine as NetDissect's 112 px Broden masks at 1/2


class _StopForward(Exception):
    pass


class FeatureExtractor:
    """Returns a layer's output for a batch, cutting the forward pass at that layer.

    Args:
        target: the model.
        layer: dotted module name.
    """

    def __init__(self, target: TargetModel, layer: str):
        self.target, self.layer_name = target, layer
        self.layer = target.layer(layer)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_m, _inp, out):
            captured.append(out)
            raise _StopForward

        handle = self.layer.register_forward_hook(hook)
        try:
            self.target.module(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"layer {self.layer_name!r} was never called in the forward pass")
        out = captured[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"layer {self.layer_name!r} outputs {shape}, not a 4-D feature map; "
                             "pick a convolutional layer (see `lavise layers`)")
        return out

    def feature_shape(self) -> tuple[int, int, int]:
        """(d, h', w') for this model's input size."""
        crop = self.target.preprocess.crop
        return tuple(self(torch.zeros(1, 3, crop, crop)).shape[1:])  # type: ignore[return-value]


@dataclass
class FeatureCache:
    """Cached features of one dataset at one layer (see module docstring)."""

    path: Path
    meta: dict
    features: np.ndarray  # memmap (N, d, h, w) float16
    maxima: np.ndarray  # (N, d) float32
    image_ids: list[str]
    dataset_index: np.ndarray  # (N,) index of each row in the dataset
    stats: ActivationStats
    concepts: list[str] = field(default_factory=list)
    pairs: np.ndarray | None = None  # (P, 2) int64: (row, concept index)
    masks_feat: np.ndarray | None = None  # (P, h, w) float16 fraction of each cell covered
    masks_eval: np.ndarray | None = None  # (P, S, S) bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.features.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.features.shape[0]

    @classmethod
    def open(cls, path: Path) -> "FeatureCache":
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        n, d, h, w = meta["shape"]
        feats = np.memmap(path / "features.f16", dtype=np.float16, mode="r", shape=(n, d, h, w)) if n else np.zeros((0, d, h, w), np.float16)
        z = np.load(path / "arrays.npz")
        stats = ActivationStats.from_state({k.removeprefix("stats_"): z[k] for k in z.files if k.startswith("stats_")})
        cache = cls(path, meta, feats, z["maxima"], meta["image_ids"], z["dataset_index"], stats, meta.get("concepts", []))
        if "pairs" in z.files:
            s = EVAL_MASK_SIZE
            cache.pairs = z["pairs"]
            cache.masks_feat = z["masks_feat"]
            cache.masks_eval = np.unpackbits(z["masks_eval"], axis=1, count=s * s).reshape(-1, s, s).astype(bool)
        return cache

    def pooled(self, rows: np.ndarray | None = None) -> torch.Tensor:
        """Global average of each image's feature maps: (N, d) float32."""
        rows = np.arange(len(self)) if rows is None else rows
        out = [torch.from_numpy(np.asarray(self.features[rows[i:i + 512]], dtype=np.float32)).mean((2, 3))
               for i in range(0, len(rows), 512)]
        return torch.cat(out) if out else torch.zeros(0, self.shape[0])

    def masked_pooled(self) -> torch.Tensor:
        """GAP(F ⊙ M) for every (image, concept) pair: (P, d) float32, the explainer's training input."""
        assert self.pairs is not None and self.masks_feat is not None
        out = torch.zeros(len(self.pairs), self.shape[0])
        order = np.argsort(self.pairs[:, 0], kind="stable")
        for start in range(0, len(order), 1024):
            idx = order[start:start + 1024]
            rows = self.pairs[idx, 0]
            f = torch.from_numpy(np.asarray(self.features[rows], dtype=np.float32))
            m = torch.from_numpy(self.masks_feat[idx].astype(np.float32))
            out[torch.from_numpy(idx)] = (f * m[:, None]).mean((2, 3))
        return out


class _Loader(torch.utils.data.Dataset):
    """Loads one image (+ masks) and applies the model's preprocessing, in a DataLoader worker."""

    def __init__(self, ds: ConceptDataset, pre: Preprocess, concept_index: dict[str, int] | None, feat_hw: tuple[int, int]):
        self.ds, self.pre, self.concept_index, self.feat_hw = ds, pre, concept_index, feat_hw

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        try:
            sample = self.ds[i]
            img = load_rgb(sample.path)
            if self.concept_index is None:
                return {"index": i, "x": self.pre(img)}
            anns = [a for a in sample.annotations if a.concept in self.concept_index]
            x, mk = self.pre(img, [a.mask for a in anns])
        except (DatasetError, ValueError) as e:
            return {"index": i, "error": str(e)}
        keep = mk.flatten(1).any(1) if len(anns) else torch.zeros(0, dtype=torch.bool)
        mk = mk[keep]
        concepts = [self.concept_index[a.concept] for a, k in zip(anns, keep.tolist()) if k]
        s = EVAL_MASK_SIZE
        return {"index": i, "x": x, "concepts": concepts, "dropped": int((~keep).sum()),
                "mfeat": downsample_masks(mk, self.feat_hw).to(torch.float16),
                "meval": downsample_masks(mk, (s, s)) >= 0.5}


def _collate(items: list[dict]) -> list[dict]:
    return items


def cache_key(target: TargetModel, layer: str, dataset: ConceptDataset, concepts: list[str] | None) -> str:
    """Digest of everything that determines a cache's content."""
    parts = {"format": CACHE_FORMAT, "model": target.weights_digest, "layer": layer,
             "preprocess": target.preprocess.to_dict(), "dataset": dataset.fingerprint(),
             "concepts": concepts, "eval_mask": EVAL_MASK_SIZE}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def extract_features(
    target: TargetModel,
    layer: str,
    dataset: ConceptDataset,
    cache_dir: str | Path,
    concepts: list[str] | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    device: str = "cpu",
    strict: bool = False,
    show_progress: bool = True,
) -> FeatureCache:
    """Compute (or reuse) the cached features of ``dataset`` at ``layer``.

    Args:
        target: the model.
        layer: dotted layer name.
        dataset: images (with annotations for a reference set).
        cache_dir: folder holding caches; each cache is a subfolder named by its key.
        concepts: concept names to keep masks for (reference sets); None for a target set.
        batch_size, num_workers, device: extraction settings (results do not depend on them).
        strict: fail on the first unreadable image instead of skipping it.
        show_progress: show a progress bar.

    Returns:
        The ``FeatureCache``; unreadable images are skipped and listed in ``meta["skipped"]``.
    """
    key = cache_key(target, layer, dataset, concepts)
    final = Path(cache_dir) / key
    if (final / "meta.json").is_file():
        return FeatureCache.open(final)
    extractor = FeatureExtractor(target, layer)
    d, h, w = extractor.feature_shape()
    n = len(dataset)
    tmp = final.with_name(f".{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    concept_index = {c: i for i, c in enumerate(concepts)} if concepts is not None else None
    if num_workers is None:
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    loader = torch.utils.data.DataLoader(
        _Loader(dataset, target.preprocess, concept_index, (h, w)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate, pin_memory=device.startswith("cuda"),
        persistent_workers=False, prefetch_factor=4 if num_workers else None,
    )
    module = target.module.to(device)
    channels_last = device == "cpu"
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    feats = np.memmap(tmp / "features.f16", mode="w+", dtype=np.float16, shape=(max(n, 1), d, h, w))
    maxima = np.zeros((n, d), np.float32)
    stats = ActivationStats(d, n * h * w)
    rows, ids, skipped = [], [], []
    pairs, mfeat, meval = [], [], []
    dropped = 0
    row = 0
    try:
        for batch in tqdm(loader, desc=f"features {layer}", unit="batch", disable=not show_progress, leave=False):
            good = [b for b in batch if "error" not in b]
            for b in batch:
                if "error" in b:
                    if strict:
                        raise DatasetError(b["error"] + " (rerun without --strict to skip unreadable images)")
                    skipped.append({"image_id": dataset.items[b["index"]][0], "error": b["error"]})
            if not good:
                continue
            x = torch.stack([b["x"] for b in good]).to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            f = extractor(x).float()
            if not torch.isfinite(f).all():
                raise ModelError(f"layer {layer!r} produced NaN or infinite activations; check the weights and input scaling")
            stats.update(f)
            f = f.cpu()
            feats[row:row + len(good)] = f.numpy().astype(np.float16)
            maxima[row:row + len(good)] = f.amax((2, 3)).numpy()
            for j, b in enumerate(good):
                rows.append(b["index"])
                ids.append(dataset.items[b["index"]][0])
                if concept_index is not None:
                    for c in b["concepts"]:
                        pairs.append((row + j, c))
                    mfeat.append(b["mfeat"].numpy())
                    meval.append(b["meval"].numpy())
                    dropped += b["dropped"]
            row += len(good)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        target.module.to(memory_format=torch.contiguous_format)
    if row == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"none of the {n} images of {dataset.spec!r} could be read (first error: {skipped[0]['error'] if skipped else '?'})")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) of {dataset.spec}, e.g. {skipped[0]['error']}", stacklevel=2)
    if dropped:
        warnings.warn(f"{dropped} mask(s) of {dataset.spec} were empty after cropping and were skipped", stacklevel=2)
    feats.flush()
    del feats
    os.truncate(tmp / "features.f16", row * d * h * w * 2)  # drop rows of skipped images
    arrays = {"maxima": maxima[:row], "dataset_index": np.asarray(rows, np.int64)}
    arrays.update({f"stats_{k}": v for k, v in stats.state().items()})
    if concept_index is not None:
        s = EVAL_MASK_SIZE
        arrays["pairs"] = np.asarray(pairs, np.int64).reshape(-1, 2)
        arrays["masks_feat"] = np.concatenate(mfeat) if mfeat else np.zeros((0, h, w), np.float16)
        me = np.concatenate(meval) if meval else np.zeros((0, s, s), bool)
        arrays["masks_eval"] = np.packbits(me.reshape(len(me), -1), axis=1)
    np.savez(tmp / "arrays.npz", **arrays)
    meta = {"format": CACHE_FORMAT, "key": key, "shape": [row, d, h, w], "layer": layer, "model": target.spec,
            "model_digest": target.weights_digest, "preprocess": target.preprocess.to_dict(),
            "dataset": dataset.spec, "dataset_fingerprint": dataset.fingerprint(), "lavise_version": __version__,
            "image_ids": ids, "skipped": skipped, "concepts": list(concepts) if concepts is not None else []}
    write_json(tmp / "meta.json", meta)
    try:
        os.replace(tmp, final)
    except OSError:
        # Another process finished the same cache first; theirs is identical.
        shutil.rmtree(tmp, ignore_errors=True)
    return FeatureCache.open(final)

