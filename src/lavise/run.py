"""A run folder: settings, outputs and a manifest of which parts are complete.

Layout::

    RUN/config.json            every setting and library version
    RUN/explainer.safetensors  the trained head
    RUN/train_log.csv          training curves
    RUN/explanations.json|csv  per-filter words
    RUN/cache/<key>/           feature caches
    RUN/manifest.json          part -> files with sha256; a part absent here is not valid

Parts are written atomically (``io``) and recorded in the manifest only
after all their files are in place, so an interrupted step is redone, never read.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

from . import __version__
from .errors import RunError
from .io import read_json, sha256_file, write_json


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results."""
    import numpy
    import torch
    import torchvision

    return {"lavise": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__, "platform": platform.platform()}


class RunFolder:
    """Read and write one run folder.

    Args:
        path: the folder (created on first write).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def manifest(self) -> dict:
        p = self.path / "manifest.json"
        return read_json(p) if p.is_file() else {"parts": {}}

    def record(self, part: str, files: list[str], **info) -> None:
        """Mark ``part`` complete, with the checksums of its files (relative names)."""
        m = self.manifest()
        m["parts"][part] = {"files": {f: sha256_file(self.path / f) for f in files}, **info}
        write_json(self.path / "manifest.json", m)

    def has(self, part: str, verify: bool = False) -> bool:
        entry = self.manifest()["parts"].get(part)
        if not entry:
            return False
        for f, digest in entry["files"].items():
            p = self.path / f
            if not p.is_file() or (verify and sha256_file(p) != digest):
                return False
        return True

    def require(self, part: str, step: str) -> None:
        """Raise a clear error unless ``part`` is complete and its files are intact."""
        if not self.path.is_dir():
            raise RunError(f"run folder {self.path} does not exist; create it with `{step}`")
        if not self.has(part, verify=True):
            raise RunError(f"run folder {self.path} has no complete {part}; run `{step}` first")

    def config(self) -> dict:
        self.require("explainer", "lavise train")
        return read_json(self.path / "config.json")
