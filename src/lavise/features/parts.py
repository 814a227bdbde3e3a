"""Resumable, data-parallel cache writing: each rank appends its rows to a part folder with checkpoints;
rank 0 merges the parts in dataset order into the final cache folder, renamed into place last."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.base import ConceptDataset
from ..errors import DatasetError
from ..io import atomic_path, read_json, write_json
from ..runtime import exclusive_lock
from ..stats import ActivationStats
from .cache import CACHE_FORMAT, EVAL_MASK_SIZE

_PART_FILES = {"features": ".f16", "index": ".i64", "maxima": ".f32", "pairs": ".i64", "masks_feat": ".f16", "masks_eval": ".u8"}


class PartWriter:
    """One rank's rows, appended to flat binary files; ``commit`` makes a resumable checkpoint."""

    def __init__(self, folder: Path, signature: dict, d: int, h: int, w: int, stats: ActivationStats,
                 eval_size: int = EVAL_MASK_SIZE):
        self.folder, self.signature = folder, signature
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = exclusive_lock(folder / "lock", f"the feature cache {folder}")
        s = eval_size
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
        self._lock.release()


def _read(path: Path, dtype, shape_tail: tuple[int, ...]) -> np.ndarray:
    size = path.stat().st_size
    n = size // (np.dtype(dtype).itemsize * int(np.prod(shape_tail) if shape_tail else 1))
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, *shape_tail)) if n else np.zeros((0, *shape_tail), dtype)


def merge_parts(partial: Path, final: Path, world: int, shape: tuple[int, int, int], info: dict,
                dataset: ConceptDataset, concepts: list[str] | None) -> None:
    """Merge the ranks' parts, in dataset order, into the final cache folder (renamed into place last).

    ``info`` goes into meta.json; its ``eval_mask`` is the side of the evaluation masks (56 if absent)."""
    d, h, w = shape
    s = int(info.get("eval_mask", EVAL_MASK_SIZE))
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
    meta = {"format": CACHE_FORMAT, "key": final.name, "shape": [n_rows, d, h, w], **info, "dataset": dataset.spec,
            "dataset_fingerprint": dataset.fingerprint(), "lavise_version": __version__, "image_ids": ids,
            "skipped": skipped, "dropped_masks": dropped, "concepts": list(concepts) if concepts is not None else []}
    write_json(tmp / "meta.json", meta)
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same cache first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
