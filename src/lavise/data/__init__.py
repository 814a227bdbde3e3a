"""Dataset registry: ``load_dataset("coco:instances.json?images=DIR")``.

A spec is ``KIND:ARG`` optionally followed by ``?key=value&key=value``
options. Each loader module registers its loader with ``register_dataset``;
``list_datasets()`` names the kinds.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qsl

from ..errors import DatasetError
from ..registry import Registry
from .base import Annotation, ConceptDataset, Sample, load_rgb

# Loader modules, imported on first use so that `import lavise` stays fast and optional parts stay optional.
_LOADER_MODULES = ("broden", "coco", "folder", "manifest", "scenes", "vg")

DATASETS: Registry[Callable[[str, dict[str, str]], ConceptDataset]] = Registry(
    "dataset kind", DatasetError, modules=tuple(f"{__name__}.{m}" for m in _LOADER_MODULES)
)

register_dataset = DATASETS.register
"""Decorator: ``@register_dataset(kind)`` registers ``fn(arg, options) -> ConceptDataset`` under ``kind``."""


def list_datasets() -> list[str]:
    """The registered dataset kinds, sorted (``builtin``, ``coco``, ...)."""
    return DATASETS.names()


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``KIND:ARG?k=v&k2=v2`` into (kind, arg, options)."""
    if ":" not in spec:
        raise DatasetError(
            f"dataset spec {spec!r} has no kind; write KIND:PATH with KIND one of {', '.join(list_datasets())}"
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
    kind, arg, opts = parse_spec(spec)
    opts.update({k: str(v) for k, v in options.items()})
    ds = DATASETS.get(kind, spec)(arg, opts)
    if len(ds) == 0:
        raise DatasetError(f"dataset {spec!r} has no images; check the path and the annotation file")
    return ds


__all__ = ["Annotation", "ConceptDataset", "Sample", "load_rgb", "load_dataset", "register_dataset", "parse_spec",
           "list_datasets", "DATASETS"]
