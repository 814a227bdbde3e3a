"""Helpers the dataset loaders share: spec options, spec strings, file checks, box masks.

JSON annotation files are read with ``lavise.io.read_json(path, DatasetError, what)``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError


def check_options(kind: str, options: dict[str, str], allowed: Sequence[str]) -> None:
    """Reject misspelt spec options, which would otherwise be silently ignored."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(
            f"unknown option(s) {', '.join(unknown)} for dataset kind {kind!r}; "
            f"valid options: {', '.join(allowed) or 'none'}"
        )


def spec_string(kind: str, arg: str, options: dict[str, str]) -> str:
    """The spec ``KIND:ARG?k=v&...`` with its options in sorted order, as recorded on a dataset."""
    query = "&".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{kind}:{arg}" + (f"?{query}" if query else "")


def exists(path: Path) -> bool:
    """``path.exists()`` that is False, not an error, for names the OS rejects (too long, NUL bytes)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def box_mask(box: Sequence[float], h: int, w: int) -> np.ndarray:
    """Fill an ``[x, y, w, h]`` box into a bool mask, clipped to the image.

    Args:
        box: x, y, width, height in pixels; fractional edges are rounded outwards.
        h: image height.
        w: image width.

    Returns:
        A bool (h, w) array, all False if the box lies outside the image.
    """
    x, y, bw, bh = (float(v) for v in box)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(w, math.ceil(x + bw)), min(h, math.ceil(y + bh))
    m = np.zeros((h, w), dtype=bool)
    if x1 > x0 and y1 > y0:
        m[y0:y1, x0:x1] = True
    return m
