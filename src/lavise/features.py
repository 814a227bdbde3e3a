"""Features at one layer, computed once per dataset and cached on disk.

``FeatureExtractor`` owns a forward hook on the layer (removed in ``finally``)
and stops the forward pass there. ``extract_features`` streams a dataset
through it (DataLoader workers decode while the model runs) and writes a
``FeatureCache``: float16 feature maps (memmap), per-image maxima, streaming
activation statistics, and for reference sets the (image, concept) pairs with
masks at feature and evaluation resolution.

Extraction is resumable and data-parallel. The dataset is cut into fixed
batches; under ``torch.distributed`` rank r takes batches r, r+W, ... Each
rank appends its rows to files in ``.<key>.partial/rank<r>/`` and commits a
checkpoint (stats + counts, written atomically) every few batches; a killed
run resumes from the last checkpoint. When all ranks are done, rank 0 merges
the parts in dataset order into ``<key>/`` and renames it into place, so the
cache is identical to a single-process run and never half-written.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .data.base import ConceptDataset
from .data.transforms import Preprocess, downsample_masks
from .errors import DatasetError, LaviseError, ModelError, RunError
from .io import atomic_path, read_json, write_json
from .models import TargetModel
from .stats import ActivationStats

CACHE_FORMAT = 3
EVAL_MASK_SIZE = 56  # masks for IoU evaluation: 1/4 of a 224 crop
CHECKPOINT_SECONDS = 20.0


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
        p = next(self.target.module.parameters(), None)
        x = torch.zeros(1, 3, crop, crop, device=p.device if p is not None else "cpu")
        return tuple(self(x).shape[1:])  # type: ignore[return-value]


class RowFile:
    """A read-only (N, ...) array in a flat binary file, read with ``pread``.

    Unlike a memmap, rows read here do not stay mapped into the process, so peak
    memory does not grow with the number of images a pass touches. Supports the
    indexing the package uses: ``a[i]``, ``a[i:j]``, ``a[rows]``, ``a[rows, cols]``, ``a[i, j]``.
    """

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]):
        self.path, self.dtype, self.shape = Path(path), np.dtype(dtype), tuple(int(x) for x in shape)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self._row_items = int(np.prod(self.shape[1:])) if self.ndim > 1 else 1
        self._row_bytes = self._row_items * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, idx) -> np.ndarray:
        """Rows ``idx`` (a 1-D integer array), in that order; consecutive runs are read in one call."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        if len(idx) == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.shape[0]:
            raise IndexError(f"row out of range for {self.path.name} with {self.shape[0]} rows")
        flat = out.reshape(len(idx), -1)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        for run in np.split(np.arange(len(idx)), breaks):
            first, n = int(idx[run[0]]), len(run)
            buf = os.pread(self._fd, n * self._row_bytes, first * self._row_bytes)
            if len(buf) != n * self._row_bytes:
                raise RunError(f"feature cache file {self.path} is truncated; delete its folder and rerun")
            flat[run[0]:run[0] + n] = np.frombuffer(buf, self.dtype).reshape(n, -1)
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            if isinstance(first, (int, np.integer)):
                return self.rows([int(first)])[0][rest]
            block = self[first]
            if any(isinstance(r, (np.ndarray, list, torch.Tensor)) for r in rest):
                return block[(np.arange(len(block)), *rest)]
            return block[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return self.rows([int(key)])[0]
        if isinstance(key, slice):
            return self.rows(np.arange(*key.indices(self.shape[0])))
        return self.rows(np.asarray(key))

    def __array__(self, dtype=None, copy=None):
        a = self.rows(np.arange(self.shape[0]))
        return a.astype(dtype) if dtype is not None else a


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
            s = EVAL_MASK_SIZE
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


class _Loader(torch.utils.data.Dataset):
    """Loads one image (+ masks) and applies the model's preprocessing, in a DataLoader worker."""

    def __init__(self, ds: ConceptDataset, pre: Preprocess, concept_index: dict[str, int] | None, feat_hw: tuple[int, int]):
        self.ds, self.pre, self.concept_index, self.feat_hw = ds, pre, concept_index, feat_hw

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        try:
            path = self.ds.items[i][1]
            if self.concept_index is None:  # a target set: its annotations (if any) are not needed
                return {"index": i, "x": self.pre(self.pre.load(path), normalize=False)}
            anns = [a for a in self.ds.annotations(i) if a.concept in self.concept_index]
            img = self.pre.load(path, masks=any(a.mask is not None for a in anns))
            x, mk = self.pre(img, [a.mask for a in anns], normalize=False)
        except (DatasetError, ValueError) as e:
            return {"index": i, "error": str(e)}
        s = EVAL_MASK_SIZE
        frac = downsample_masks(mk, (s, s))
        keep = frac.flatten(1).amax(1) > 0  # a mask left empty by the crop covers no cell
        frac = frac[keep]
        (h, w), crop = self.feat_hw, mk.shape[-1]
        # where the blocks nest evenly, the mean of the s×s means is the mean: one pass over the full masks
        mfeat = downsample_masks(frac if crop % s == 0 and s % h == 0 and s % w == 0 else mk[keep], (h, w))
        meval = (frac >= 0.5).numpy().reshape(len(frac), s * s)
        return {"index": i, "x": x, "concepts": [self.concept_index[a.concept] for a, k in zip(anns, keep.tolist()) if k],
                "dropped": int((~keep).sum()), "mfeat": mfeat.to(torch.float16), "meval": torch.from_numpy(np.packbits(meval, axis=1))}


def _collate(items: list[dict]) -> dict:
    """One batch as a few tensors (one shared-memory block and one pinned copy each, not one per image).

    ``x`` (B, 3, H, W) uint8 images in channels-last memory; ``index`` (B,); for reference sets ``pairs`` (P, 2) of (image, concept),
    ``mfeat`` (P, h', w') and ``meval`` (P, bytes) masks in pair order; ``errors`` of unreadable images.
    """
    good = [b for b in items if "error" not in b]
    # stacked as (B, H, W, 3) and viewed as NCHW: channels-last, the model's format, in one copy
    out = {"x": torch.stack([b["x"].permute(1, 2, 0) for b in good]).permute(0, 3, 1, 2) if good else None,
           "index": torch.tensor([b["index"] for b in good], dtype=torch.int64),
           "errors": [b for b in items if "error" in b], "dropped": sum(b.get("dropped", 0) for b in good)}
    if good and "concepts" in good[0]:
        out["pairs"] = torch.tensor([(b["index"], c) for b in good for c in b["concepts"]], dtype=torch.int64).view(-1, 2)
        out["mfeat"] = torch.cat([b["mfeat"] for b in good])
        out["meval"] = torch.cat([b["meval"] for b in good])
    return out


def cache_key(target: TargetModel, layer: str, dataset: ConceptDataset, concepts: list[str] | None,
              amp: bool = False) -> str:
    """Digest of everything that determines a cache's content."""
    parts = {"format": CACHE_FORMAT, "model": target.weights_digest, "layer": layer,
             "preprocess": target.preprocess.to_dict(), "dataset": dataset.fingerprint(),
             "concepts": concepts, "eval_mask": EVAL_MASK_SIZE}
    if amp:  # mixed-precision maps differ slightly: never served for a full-precision request (or back)
        parts["amp"] = True
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def check_device(device: str) -> str:
    """``device`` if torch can use it here (``cpu``, ``cuda`` or ``cuda:N``), else a one-line ``LaviseError``."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise LaviseError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return device
    if dev.type != "cuda":
        raise LaviseError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise LaviseError(f"device {device!r} asked for, but torch ({torch.__version__}, {build}) sees no CUDA GPU; "
                          "use --device cpu, or check the GPU driver")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LaviseError(f"no device {device!r}: torch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
                          f"cuda:{torch.cuda.device_count() - 1}")
    return device


def default_batch_size(device: str = "cpu") -> int:
    """Images per forward pass: 8 on a CPU (fastest on 2 cores), 128 on a GPU (bench/speed.py on an H200)."""
    return 128 if device.startswith("cuda") else 8


def default_workers(device: str = "cpu") -> int:
    """DataLoader workers that keep up without starving the model of cores.

    Decoding and preprocessing cost about a fifth of a forward pass here. On a CPU the model's
    threads use every core, so a worker process only pays where cores are plenty: on 2 cores,
    decoding inline was 17% faster than one worker in bench/speed.py (oversubscribed threads stall).
    With a GPU the workers are the bottleneck, so all cores but one decode (up to 16): on an H200 with
    16 cores, 15 workers extracted 8,192 images 14-21% faster than 8 (one machine; bench/results/speed-cuda-h200-*).
    """
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return min(16, max(0, cores - 1))
    return 0 if cores <= 2 else min(4, cores // 4)


def distributed() -> tuple[int, int]:
    """(world size, rank) of the current torch.distributed group, or (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _barrier() -> None:
    if distributed()[0] > 1:
        torch.distributed.barrier()


_PART_FILES = {"features": ".f16", "index": ".i64", "maxima": ".f32", "pairs": ".i64", "masks_feat": ".f16", "masks_eval": ".u8"}


class _Part:
    """One rank's rows, appended to flat binary files; ``commit`` makes a resumable checkpoint."""

    def __init__(self, folder: Path, signature: dict, d: int, h: int, w: int, stats: ActivationStats):
        self.folder, self.signature = folder, signature
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = open(folder / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunError(f"another lavise process is extracting into {folder}; wait for it or delete the folder") from None
        s = EVAL_MASK_SIZE
        self.row_bytes = {"features": d * h * w * 2, "index": 8, "maxima": d * 4}
        self.pair_bytes = {"pairs": 16, "masks_feat": h * w * 2, "masks_eval": (s * s + 7) // 8}
        self.progress = {"batches": 0, "rows": 0, "pairs": 0, "skipped": [], "dropped": 0}
        self.stats = stats
        prog = folder / "progress.json"
        saved = read_json(prog) if prog.is_file() else {}
        stats_file = folder / saved.get("stats", "stats.npz")  # the stats of exactly this checkpoint
        if saved.get("signature") == signature and stats_file.is_file():
            self.progress = saved["progress"]
            with np.load(stats_file) as z:
                self.stats = ActivationStats.from_state({k: z[k] for k in z.files})
        if any(self._size(n) > ((folder / f"{n}{e}").stat().st_size if (folder / f"{n}{e}").is_file() else 0)
               for n, e in _PART_FILES.items()):
            # a file lost rows of the checkpoint (killed during the merge, which moves files): start over
            self.progress = {"batches": 0, "rows": 0, "pairs": 0, "skipped": [], "dropped": 0}
            self.stats = stats
        # drop bytes written after the last checkpoint
        self.files = {}
        for name, ext in _PART_FILES.items():
            path = folder / f"{name}{ext}"
            size = self._size(name)
            with open(path, "ab"):
                pass
            os.truncate(path, size)
            self.files[name] = open(path, "ab")

    def _size(self, name: str) -> int:
        if name in self.row_bytes:
            return self.progress["rows"] * self.row_bytes[name]
        return self.progress["pairs"] * self.pair_bytes[name]

    def append(self, name: str, arr: np.ndarray) -> None:
        if arr.size:  # a memoryview, not tobytes: no copy, half the time
            self.files[name].write(memoryview(np.ascontiguousarray(arr)).cast("B"))

    def commit(self) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
        # stats and progress must describe the same batches: a new stats file, then progress.json naming it
        name = f"stats{self.progress['batches']}.npz"
        with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.stats.state())
        prog = self.folder / "progress.json"
        old = self.folder / read_json(prog).get("stats", "stats.npz") if prog.is_file() else None
        write_json(prog, {"signature": self.signature, "progress": self.progress, "stats": name})
        if old is not None and old.name != name:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self._lock.close()


def extract_features(
    target: TargetModel,
    layer: str,
    dataset: ConceptDataset,
    cache_dir: str | Path,
    concepts: list[str] | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str = "cpu",
    amp: bool = False,
    strict: bool = False,
    show_progress: bool = True,
) -> FeatureCache:
    """Compute (or reuse, or resume) the cached features of ``dataset`` at ``layer``.

    Args:
        target: the model.
        layer: dotted layer name.
        dataset: images (with annotations for a reference set).
        cache_dir: folder holding caches; each cache is a subfolder named by its key.
        concepts: concept names to keep masks for (reference sets); None for a target set.
        batch_size: images per forward pass (default: ``default_batch_size(device)``; part of a resumable
            run's identity).
        num_workers: DataLoader worker processes (default: ``default_workers(device)``).
        device: ``cpu`` or ``cuda``.
        amp: bfloat16/float16 autocast on the device (faster on GPUs, results differ slightly).
        strict: fail on the first unreadable image instead of skipping it.
        show_progress: show a progress bar.

    Returns:
        The ``FeatureCache``; unreadable images are skipped and listed in ``meta["skipped"]``.
    """
    check_device(device)
    key = cache_key(target, layer, dataset, concepts, amp)
    final = Path(cache_dir) / key
    batch_size = batch_size or default_batch_size(device)
    if not (final / "meta.json").is_file():
        _extract(target, layer, dataset, final, concepts, batch_size, num_workers, device, amp, strict, show_progress)
    _barrier()
    return FeatureCache.open(final)


def _extract(target, layer, dataset, final, concepts, batch_size, num_workers, device, amp, strict, show_progress):
    world, rank = distributed()
    extractor = FeatureExtractor(target, layer)
    module = target.module.to(device)
    d, h, w = extractor.feature_shape()
    n = len(dataset)
    concept_index = {c: i for i, c in enumerate(concepts)} if concepts is not None else None
    partial = final.with_name(f".{final.name}.partial")
    signature = {"world": world, "batch_size": batch_size, "n": n, "shape": [d, h, w], "amp": amp}
    part = _Part(partial / f"rank{rank}", signature, d, h, w, ActivationStats(d, n * h * w))
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)][rank::world]
    todo = batches[part.progress["batches"]:]
    if num_workers is None:
        num_workers = default_workers(device)
    loader = torch.utils.data.DataLoader(
        _Loader(dataset, target.preprocess, concept_index, (h, w)), batch_sampler=todo, num_workers=num_workers,
        collate_fn=_collate, pin_memory=device.startswith("cuda"), prefetch_factor=4 if num_workers else None)
    # channels-last was faster for every convnet measured in bench/speed.py, on 2 CPU cores and on an H200
    module.to(memory_format=torch.channels_last)
    every = float(os.environ.get("LAVISE_CHECKPOINT_SECONDS") or CHECKPOINT_SECONDS)  # tests set 0
    last_commit = time.monotonic()
    bar = tqdm(total=len(batches), initial=part.progress["batches"], desc=f"features {layer}", unit="batch",
               disable=not show_progress, leave=False)
    try:
        for batch in loader:
            _consume(batch, part, extractor, dataset, device, amp, strict, layer, target.preprocess)
            part.progress["batches"] += 1
            bar.update(1)
            if time.monotonic() - last_commit >= every:
                part.commit()
                last_commit = time.monotonic()
        part.commit()
    finally:
        bar.close()
        part.close()
        module.to(memory_format=torch.contiguous_format)
    _barrier()
    if rank == 0:
        _merge(partial, final, world, (d, h, w), target, layer, dataset, concepts)


def _consume(batch, part, extractor, dataset, device, amp, strict, layer, pre) -> None:
    for b in batch["errors"]:
        if strict:
            raise DatasetError(b["error"] + " (rerun without --strict to skip unreadable images)")
        part.progress["skipped"].append({"index": b["index"], "image_id": dataset.items[b["index"]][0], "error": b["error"]})
    if batch["x"] is None:
        return
    x = batch["x"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    x = pre.normalize(x)  # on the device, keeping the memory format
    with torch.autocast(device_type=device.split(":")[0], enabled=amp):
        f = extractor(x)
    # Everything per value happens on the model's device; only float16 maps and small summaries come back.
    f = f.float()
    maxima, means = f.amax((2, 3)), f.mean((2, 3))
    if not torch.isfinite(means).all():  # a NaN or infinity anywhere in a map makes its mean non-finite
        raise ModelError(f"layer {layer!r} produced NaN or infinite activations; check the weights and input scaling")
    index = batch["index"]
    part.stats.update(f, index, maxima=maxima, means=means)
    part.append("features", f.to(torch.float16, memory_format=torch.contiguous_format).cpu().numpy())
    part.append("maxima", maxima.cpu().numpy())
    part.append("index", index.numpy())
    part.progress["rows"] += len(index)
    if "pairs" in batch and len(batch["pairs"]):
        part.append("pairs", batch["pairs"].numpy())
        part.append("masks_feat", batch["mfeat"].numpy())
        part.append("masks_eval", batch["meval"].numpy())
        part.progress["pairs"] += len(batch["pairs"])
    part.progress["dropped"] += batch["dropped"]


def _read(path: Path, dtype, shape_tail: tuple[int, ...]) -> np.ndarray:
    size = path.stat().st_size
    n = size // (np.dtype(dtype).itemsize * int(np.prod(shape_tail) if shape_tail else 1))
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, *shape_tail)) if n else np.zeros((0, *shape_tail), dtype)


def _merge(partial: Path, final: Path, world: int, shape, target, layer, dataset, concepts) -> None:
    """Merge the ranks' parts, in dataset order, into the final cache folder (renamed into place last)."""
    d, h, w = shape
    s = EVAL_MASK_SIZE
    parts = [partial / f"rank{r}" for r in range(world)]
    index = [np.array(_read(p / "index.i64", np.int64, ())) for p in parts]
    progress = [read_json(p / "progress.json")["progress"] for p in parts]
    skipped = sorted((x for pr in progress for x in pr["skipped"]), key=lambda x: x["index"])
    all_index = np.concatenate(index)
    n_rows = len(all_index)
    if n_rows == 0:
        shutil.rmtree(partial, ignore_errors=True)
        first = skipped[0]["error"] if skipped else "?"
        raise DatasetError(f"none of the {len(dataset)} images of {dataset.spec!r} could be read (first error: {first})")
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    order = np.argsort(all_index, kind="stable")
    src_part = np.concatenate([np.full(len(ix), r) for r, ix in enumerate(index)])[order]
    src_row = np.concatenate([np.arange(len(ix)) for ix in index])[order]
    if world == 1:  # already in order: move, don't copy
        os.replace(parts[0] / "features.f16", tmp / "features.f16")
        os.replace(parts[0] / "maxima.f32", tmp / "maxima.f32")
    else:
        for name, dtype, tail in (("features", np.float16, (d, h, w)), ("maxima", np.float32, (d,))):
            srcs = [_read(p / f"{name}{_PART_FILES[name]}", dtype, tail) for p in parts]
            with open(tmp / f"{name}{_PART_FILES[name]}", "wb") as out:
                for start in range(0, n_rows, 256):
                    sl = slice(start, start + 256)
                    chunk = np.stack([srcs[p][r] for p, r in zip(src_part[sl], src_row[sl])])
                    out.write(chunk.tobytes())
    stats = None
    for p in parts:
        with np.load(p / read_json(p / "progress.json").get("stats", "stats.npz")) as z:
            st = ActivationStats.from_state({k: z[k] for k in z.files})
        stats = st if stats is None else (stats.merge(st) or stats)
    sorted_index = all_index[order]
    arrays = {"dataset_index": sorted_index}
    arrays.update({f"stats_{k}": v for k, v in stats.state().items()})
    if concepts is not None:
        pairs = [np.array(_read(p / "pairs.i64", np.int64, (2,))) for p in parts]
        mf = [np.array(_read(p / "masks_feat.f16", np.float16, (h, w))) for p in parts]
        me = [np.array(_read(p / "masks_eval.u8", np.uint8, ((s * s + 7) // 8,))) for p in parts]
        pairs_all = np.concatenate(pairs)
        o = np.argsort(pairs_all[:, 0], kind="stable")  # dataset order, image's own concept order kept
        pairs_all = pairs_all[o]
        pairs_all[:, 0] = np.searchsorted(sorted_index, pairs_all[:, 0])
        arrays["pairs"] = pairs_all
        arrays["masks_feat"] = np.concatenate(mf)[o]
        arrays["masks_eval"] = np.concatenate(me)[o]
    np.savez(tmp / "arrays.npz", **arrays)
    dropped = sum(pr["dropped"] for pr in progress)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) of {dataset.spec}, e.g. {skipped[0]['error']}", stacklevel=3)
    if dropped:
        warnings.warn(f"{dropped} mask(s) of {dataset.spec} were empty after cropping and were skipped", stacklevel=3)
    ids = [dataset.items[int(i)][0] for i in sorted_index]
    meta = {"format": CACHE_FORMAT, "key": final.name, "shape": [n_rows, d, h, w], "layer": layer, "model": target.spec,
            "model_digest": target.weights_digest, "preprocess": target.preprocess.to_dict(), "dataset": dataset.spec,
            "dataset_fingerprint": dataset.fingerprint(), "lavise_version": __version__, "image_ids": ids,
            "skipped": skipped, "dropped_masks": dropped, "concepts": list(concepts) if concepts is not None else []}
    write_json(tmp / "meta.json", meta)
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same cache first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
