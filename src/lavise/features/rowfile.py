"""``RowFile``: a read-only (N, ...) array in a flat binary file, read with ``pread``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import RunError


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
