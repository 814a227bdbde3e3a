"""``extract_features``: stream a dataset through the layer into a ``FeatureCache`` (resumable, data-parallel);
``extract_layers``: several layers in one forward pass, one cache each.

The dataset is cut into fixed batches; under ``torch.distributed`` rank r takes batches r, r+W, ... Each rank
appends its rows to files in ``.<key>.partial/rank<r>/`` and commits a checkpoint (stats + counts, written
atomically) every few seconds; a killed run resumes from the last checkpoint. When all ranks are done, rank 0
merges the parts in dataset order into ``<key>/``, so the cache equals a single-process run's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..data.base import ConceptDataset
from ..errors import DatasetError, ModelError
from ..models import TargetModel
from ..options import ExtractOptions
from ..runtime import barrier, check_device, default_batch_size, default_workers, distributed
from ..stats import ActivationStats
from .cache import EVAL_MASK_SIZE, FeatureCache, cache_key
from .extractor import FeatureExtractor
from .loader import ImageLoader, collate
from .parts import PartWriter, merge_parts

CHECKPOINT_SECONDS = 20.0


def extract_features(
    target: TargetModel,
    layer: str,
    dataset: ConceptDataset,
    cache_dir: str | Path,
    concepts: list[str] | None = None,
    options: ExtractOptions = ExtractOptions(),
    eval_size: int = EVAL_MASK_SIZE,
) -> FeatureCache:
    """Compute (or reuse, or resume) the cached features of ``dataset`` at ``layer``.

    Args:
        target: the model.
        layer: dotted layer name.
        dataset: images (with annotations for a reference set).
        cache_dir: folder holding caches; each cache is a subfolder named by its key.
        concepts: concept names to keep masks for (reference sets); None for a target set.
        options: device, batch size (part of a resumable run's identity), workers, mixed precision
            (cached apart), strictness about unreadable images, progress bar.
        eval_size: side S of the (S, S) evaluation masks kept for a reference set (part of the cache key).

    Returns:
        The ``FeatureCache``; unreadable images are skipped and listed in ``meta["skipped"]``.
    """
    return extract_layers(target, [layer], dataset, cache_dir, concepts, options, eval_size)[layer]


def extract_layers(
    target: TargetModel,
    layers: Sequence[str],
    dataset: ConceptDataset,
    cache_dir: str | Path | Mapping[str, str | Path],
    concepts: list[str] | None = None,
    options: ExtractOptions = ExtractOptions(),
    eval_size: int = EVAL_MASK_SIZE,
) -> dict[str, FeatureCache]:
    """``extract_features`` for several layers in one forward pass per batch, cut after the last of them.

    Each layer gets the cache a one-layer extraction would write, byte for byte (same key, same files); layers
    whose cache exists are reused and the others extracted together (resumable like one layer).

    Args:
        layers: dotted layer names.
        cache_dir: one folder for every layer's cache, or ``{layer: folder}``.
        the rest: as ``extract_features``.

    Returns:
        ``{layer: FeatureCache}`` in the order of ``layers``.
    """
    check_device(options.device)
    layers = list(dict.fromkeys(layers))
    dirs = cache_dir if isinstance(cache_dir, Mapping) else {layer: cache_dir for layer in layers}
    finals = {layer: Path(dirs[layer]) / cache_key(target.weights_digest, target.preprocess.to_dict(), layer, dataset,
                                                    concepts, options.amp, eval_size) for layer in layers}
    todo = [layer for layer in layers if not (finals[layer] / "meta.json").is_file()]
    if todo:
        _extract(target, todo, dataset, finals, concepts, options, eval_size)
    barrier()
    return {layer: FeatureCache.open(finals[layer]) for layer in layers}


def _extract(target: TargetModel, layers: list[str], dataset: ConceptDataset, finals: dict[str, Path],
             concepts: list[str] | None, options: ExtractOptions, eval_size: int) -> None:
    device, amp = options.device, options.amp
    batch_size = options.batch_size or default_batch_size(device)
    num_workers = default_workers(device) if options.workers is None else options.workers
    world, rank = distributed()
    extractor = FeatureExtractor(target, layers)
    module = target.module.to(device)
    shapes = extractor.feature_shapes()
    n = len(dataset)
    concept_index = {c: i for i, c in enumerate(concepts)} if concepts is not None else None
    parts = {}
    for layer in layers:
        d, h, w = shapes[layer]
        partial = finals[layer].with_name(f".{finals[layer].name}.partial")
        signature = {"world": world, "batch_size": batch_size, "n": n, "shape": [d, h, w], "amp": amp}
        parts[layer] = PartWriter(partial / f"rank{rank}", signature, d, h, w, ActivationStats(d, n * h * w), eval_size)
    try:
        sizes = list(dict.fromkeys(shapes[layer][1:] for layer in layers))  # masks at each map size, once
        size_of = {layer: sizes.index(shapes[layer][1:]) for layer in layers}
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)][rank::world]
        first = min(p.progress["batches"] for p in parts.values())  # a kill between two layers' commits
        loader = torch.utils.data.DataLoader(
            ImageLoader(dataset, target.preprocess, concept_index, sizes if len(sizes) > 1 else sizes[0], eval_size),
            batch_sampler=batches[first:], num_workers=num_workers, collate_fn=collate,
            pin_memory=device.startswith("cuda"), prefetch_factor=4 if num_workers else None)
        # channels-last was faster for every convnet measured in bench/speed.py, on 2 CPU cores and on an H200
        module.to(memory_format=torch.channels_last)
        every = float(os.environ.get("LAVISE_CHECKPOINT_SECONDS") or CHECKPOINT_SECONDS)  # tests set 0
        last_commit = time.monotonic()
        bar = tqdm(total=len(batches), initial=first, desc=f"features {','.join(layers)}", unit="batch",
                   disable=not options.show_progress, leave=False)
        try:
            for j, batch in enumerate(loader, first):
                behind = {layer: p for layer, p in parts.items() if p.progress["batches"] == j}
                maps = _forward(batch, extractor, dataset, options, behind)
                for layer, part in behind.items():
                    if maps is not None:
                        mfeat = batch.get("mfeat")
                        _write(part, maps[layer], batch, mfeat[size_of[layer]] if isinstance(mfeat, list) else mfeat,
                               layer)
                    part.progress["batches"] += 1
                bar.update(1)
                if time.monotonic() - last_commit >= every:
                    for part in parts.values():
                        part.commit()
                    last_commit = time.monotonic()
            for part in parts.values():
                part.commit()
        finally:
            bar.close()
            module.to(memory_format=torch.contiguous_format)
    finally:
        for part in parts.values():
            part.close()
    barrier()
    if rank == 0:
        for layer in layers:
            info = {"layer": layer, "model": target.spec, "model_digest": target.weights_digest,
                    "preprocess": target.preprocess.to_dict(), "eval_mask": int(eval_size)}
            final = finals[layer]
            merge_parts(final.with_name(f".{final.name}.partial"), final, world, shapes[layer], info, dataset, concepts)


def _forward(batch: dict, extractor: FeatureExtractor, dataset: ConceptDataset, options: ExtractOptions,
             parts: dict[str, PartWriter]) -> dict[str, torch.Tensor] | None:
    """The batch's maps at every layer (None for a batch of unreadable images only); unreadable images are
    recorded in each of ``parts``."""
    device, amp, pre = options.device, options.amp, extractor.target.preprocess
    for b in batch["errors"]:
        if options.strict:
            raise DatasetError(b["error"] + " (rerun without --strict to skip unreadable images)")
        for part in parts.values():
            part.progress["skipped"].append({"index": b["index"], "image_id": dataset.items[b["index"]][0],
                                             "error": b["error"]})
    if batch["x"] is None or not parts:
        return None
    x = batch["x"]
    draws = [x] if x.dim() == 4 else list(x.unbind(1))  # several noisy copies of each image: features averaged
    total: dict[str, torch.Tensor] = {}
    for xk in draws:
        xk = pre.normalize(xk.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))
        with torch.autocast(device_type=device.split(":")[0], enabled=amp):
            maps = extractor.maps(xk)
        for layer, fk in maps.items():  # (inference tensors: no in-place update outside inference mode)
            total[layer] = fk.float() if layer not in total else total[layer] + fk.float()
    return {layer: f / len(draws) if len(draws) > 1 else f for layer, f in total.items()}


def _write(part: PartWriter, f: torch.Tensor, batch: dict, mfeat: torch.Tensor | None, layer: str) -> None:
    """Append one batch's maps ``f`` of ``layer`` (and the reference set's pairs and masks) to ``part``."""
    # Everything per value happens on the model's device; only float16 maps and small summaries come back.
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
        part.append("masks_feat", mfeat.numpy())
        part.append("masks_eval", batch["meval"].numpy())
        part.progress["pairs"] += len(batch["pairs"])
    part.progress["dropped"] += batch["dropped"]
