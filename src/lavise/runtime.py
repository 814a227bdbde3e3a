"""Where and how work runs: the device check, batch and worker defaults, torch.distributed helpers and a
file lock. Every stage that runs the backbone or writes shared folders goes through these.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from .errors import LaviseError, RunError


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
    16 cores, 15 workers extracted 8,192 images 14-21% faster than 8 (docs/performance.md).
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


def is_main_process() -> bool:
    """True on rank 0 (or without torch.distributed): the process that writes shared results."""
    return distributed()[1] == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if distributed()[0] > 1:
        torch.distributed.barrier()


def init_distributed(device: str) -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def exclusive_lock(path: Path, what: str) -> FileLock:
    """Hold an exclusive lock on ``path`` (any OS), or fail at once with a one-line ``RunError``.

    Args:
        path: the lock file (created if absent).
        what: the folder being written, for the message.

    Returns:
        The acquired lock; call ``release()`` when done.
    """
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"another lavise process is writing {what}; wait for it or delete the folder") from None
    return lock
