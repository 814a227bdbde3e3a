"""``extract_features``: stream a dataset through the layer into a ``FeatureCache`` (resumable, data-parallel).

The dataset is cut into fixed batches; under ``torch.distributed`` rank r takes batches r, r+W, ... Each rank
appends its rows to files in ``.<key>.partial/rank<r>/`` and commits a checkpoint (stats + counts, written
atomically) every few seconds; a killed run resumes from the last checkpoint. When all ranks are done, rank 0
merges the parts in dataset order into ``<key>/``, so the cache equals a single-process run's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

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
    check_device(options.device)
    key = cache_key(target.weights_digest, target.preprocess.to_dict(), layer, dataset, concepts, options.amp, eval_size)
    final = Path(cache_dir) / key
    if not (final / "meta.json").is_file():
        _extract(target, layer, dataset, final, concepts, options, eval_size)
    barrier()
    return FeatureCache.open(final)


def _extract(target: TargetModel, layer: str, dataset: ConceptDataset, final: Path, concepts: list[str] | None,
             options: ExtractOptions, eval_size: int) -> None:
    device, amp = options.device, options.amp
    batch_size = options.batch_size or default_batch_size(device)
    num_workers = default_workers(device) if options.workers is None else options.workers
    world, rank = distributed()
    extractor = FeatureExtractor(target, layer)
    module = target.module.to(device)
    d, h, w = extractor.feature_shape()
    n = len(dataset)
    concept_index = {c: i for i, c in enumerate(concepts)} if concepts is not None else None
    partial = final.with_name(f".{final.name}.partial")
    signature = {"world": world, "batch_size": batch_size, "n": n, "shape": [d, h, w], "amp": amp}
    part = PartWriter(partial / f"rank{rank}", signature, d, h, w, ActivationStats(d, n * h * w), eval_size)
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)][rank::world]
    todo = batches[part.progress["batches"]:]
    loader = torch.utils.data.DataLoader(
        ImageLoader(dataset, target.preprocess, concept_index, (h, w), eval_size), batch_sampler=todo, num_workers=num_workers,
        collate_fn=collate, pin_memory=device.startswith("cuda"), prefetch_factor=4 if num_workers else None)
    # channels-last was faster for every convnet measured in bench/speed.py, on 2 CPU cores and on an H200
    module.to(memory_format=torch.channels_last)
    every = float(os.environ.get("LAVISE_CHECKPOINT_SECONDS") or CHECKPOINT_SECONDS)  # tests set 0
    last_commit = time.monotonic()
    bar = tqdm(total=len(batches), initial=part.progress["batches"], desc=f"features {layer}", unit="batch",
               disable=not options.show_progress, leave=False)
    try:
        for batch in loader:
            _consume(batch, part, extractor, dataset, options, layer)
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
    barrier()
    if rank == 0:
        info = {"layer": layer, "model": target.spec, "model_digest": target.weights_digest,
                "preprocess": target.preprocess.to_dict(), "eval_mask": int(eval_size)}
        merge_parts(partial, final, world, (d, h, w), info, dataset, concepts)


def _consume(batch: dict, part: PartWriter, extractor: FeatureExtractor, dataset: ConceptDataset,
             options: ExtractOptions, layer: str) -> None:
    device, amp, pre = options.device, options.amp, extractor.target.preprocess
    for b in batch["errors"]:
        if options.strict:
            raise DatasetError(b["error"] + " (rerun without --strict to skip unreadable images)")
        part.progress["skipped"].append({"index": b["index"], "image_id": dataset.items[b["index"]][0], "error": b["error"]})
    if batch["x"] is None:
        return
    x = batch["x"]
    draws = [x] if x.dim() == 4 else list(x.unbind(1))  # several noisy copies of each image: features averaged
    f = None
    for xk in draws:
        xk = pre.normalize(xk.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))
        with torch.autocast(device_type=device.split(":")[0], enabled=amp):
            fk = extractor(xk).float()
        f = fk if f is None else f + fk  # (inference tensors: no in-place update outside inference mode)
    if len(draws) > 1:
        f = f / len(draws)
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
        part.append("masks_feat", batch["mfeat"].numpy())
        part.append("masks_eval", batch["meval"].numpy())
        part.progress["pairs"] += len(batch["pairs"])
    part.progress["dropped"] += batch["dropped"]
