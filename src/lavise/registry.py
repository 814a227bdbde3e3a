"""One registry mechanism for the pluggable parts: models, datasets, embeddings.

A ``Registry`` maps a name (the part of a spec before the first ``:``) to a factory. Modules that define
factories register them with the ``register`` decorator; a registry imports those modules lazily on first
use, so ``import lavise`` stays light. ``names()`` lists what is there, for error messages and ``--help``.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from .errors import LaviseError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Named factories of one kind.

    Args:
        kind: what is registered, for messages ("model", "dataset kind", "embeddings").
        error: the ``LaviseError`` subclass raised for an unknown name.
        modules: modules to import (lazily, once) so that their ``register`` decorators run.
        usage: how specs are written, for the error message (default: the names).
    """

    def __init__(self, kind: str, error: type[LaviseError] = LaviseError, modules: tuple[str, ...] = (),
                 usage: str | None = None):
        self.kind, self.error, self._modules, self._usage = kind, error, modules, usage
        self._items: dict[str, F] = {}
        self._help: dict[str, str] = {}
        self._loaded = not modules

    def register(self, name: str, help: str = "") -> Callable[[F], F]:
        """Decorator: register the factory under ``name`` (a one-line ``help`` shows in listings)."""

        def deco(fn: F) -> F:
            self._items[name] = fn
            self._help[name] = help or (fn.__doc__ or "").strip().split("\n")[0]
            return fn

        return deco

    def _load(self) -> None:
        if not self._loaded:
            for m in self._modules:
                importlib.import_module(m)
            self._loaded = True  # only once every module imported: a failed import is retried, not hidden

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """name -> one-line help."""
        self._load()
        return {n: self._help[n] for n in sorted(self._items)}

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def get(self, name: str, spec: str | None = None) -> F:
        """The factory called ``name``, or a one-line error listing the known names."""
        self._load()
        if name not in self._items:
            shown = f" in {spec!r}" if spec is not None and spec != name else ""
            raise self.error(f"unknown {self.kind} {name!r}{shown}; use {self.usage()}")
        return self._items[name]

    def usage(self) -> str:
        return self._usage or f"one of {', '.join(self.names())}"
