"""Dataset registry: ``load_dataset("coco:instances.json?images=DIR")``.

A spec is ``KIND:ARG`` optionally followed by ``?key=value&key=value``
options. Each loader module registers itself with ``register_dataset``.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qsl

from ..errors import DatasetError
from .base import Annotation, ConceptDataset, Sample, load_rgb

_LOADERS: dict[str, Callable[[str, dict[str, str]], ConceptDataset]] = {}


def register_dataset(kind: str):
    """Decorator: register ``fn(arg, options) -> ConceptDataset`` under ``kind``."""

    def deco(fn):
        _LOADERS[kind] = fn
        return fn

    return deco


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``KIND:ARG?k=v&k2=v2`` into (kind, arg, options)."""
    if ":" not in spec:
        raise DatasetError(
            f"dataset spec {spec!r} has no kind; write KIND:PATH with KIND one of {', '.join(sorted(_LOADERS))}"
        )
    kind, rest = spec.split(":", 1)
    arg, _, query = rest.partition("?")
    return kind.strip().lower(), arg, dict(parse_qsl(query, keep_blank_values=True))


def load_dataset(spec: str, **options) -> ConceptDataset:
    """Load a reference or target dataset from a spec string.

    Args:
        spec: ``coco:ANN.json``, ``vg:OBJECTS.json``, ``broden:DIR``, ``folder:DIR``,
            ``manifest:FILE.jsonl`` or ``builtin:scenes``, with optional ``?key=value`` options.
        **options: options that override those in the spec's query string.

    Returns:
        A ``ConceptDataset``.
    """
    _import_loaders()
    kind, arg, opts = parse_spec(spec)
    opts.update({k: str(v) for k, v in options.items()})
    if kind not in _LOADERS:
        raise DatasetError(f"unknown dataset kind {kind!r} in {spec!r}; use one of {', '.join(sorted(_LOADERS))}")
    ds = _LOADERS[kind](arg, opts)
    if len(ds) == 0:
        raise DatasetError(f"dataset {spec!r} has no images; check the path and the annotation file")
    return ds


def _import_loaders() -> None:
    # Imported lazily so that `import lavise` stays fast and optional parts stay optional.
    from . import broden, coco, folder, manifest, scenes, vg  # noqa: F401


__all__ = ["Annotation", "ConceptDataset", "Sample", "load_rgb", "load_dataset", "register_dataset", "parse_spec"]
