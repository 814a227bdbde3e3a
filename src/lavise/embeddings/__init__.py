"""Word embeddings: the space in which LaViSE explanations are words.

The explainer maps filter features to a vector in this space; the words of a ``Vocabulary``
(``Embeddings.vocabulary``) are then ranked by cosine similarity (``search.top_words``,
``similarity_topk``).

Specs understood by ``load_embeddings`` (``list_embeddings()`` names the kinds):

- ``glove-6b-50d`` (default): the built-in GloVe 6B 50-d vectors (400K words).
- ``glove:PATH``: Stanford text format, ``word v1 v2 ...``, any dimension; a
  word2vec-style ``N D`` first line is tolerated.
- ``word2vec:PATH``: word2vec text format (``N D`` header) or binary format
  (``.bin``, or detected from the bytes).
- ``fasttext:PATH``: fastText ``.vec`` files (word2vec text format).
- ``minilm``: the all-MiniLM-L6-v2 sentence encoder (384-d); every non-empty
  phrase is encodable. Needs the ``lavise[minilm]`` extra.

Modules: ``base`` (``Embeddings``, ``Vocabulary``, phrases, vocabulary building), ``wordvectors``
(``WordVectors``, the built-in GloVe, file parsers and their cache), ``minilm`` (``MiniLM``) and
``search`` (top-k word search).
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import EmbeddingError
from ..registry import Registry
from .base import PHRASE_STOPWORDS, STOPWORDS, VOCAB_KINDS, Embeddings, EmbeddingWarning, Vocabulary, cache_root, is_singular_noun
from .minilm import MiniLM
from .search import similarity_topk, top_words
from .wordvectors import DEFAULT_SPEC, WordVectors, load_builtin, load_file

# A factory takes the argument after "name:" (None without one) and load_embeddings' options.
Factory = Callable[[str | None, dict[str, Any]], Embeddings]

EMBEDDINGS: Registry[Factory] = Registry(
    "embeddings", EmbeddingError, usage="glove-6b-50d, glove:PATH, word2vec:PATH, fasttext:PATH or minilm")

# Kinds that are a whole spec: in "minilm:x" the ":x" is a mistake, not an argument to ignore.
_WHOLE_SPECS = ("glove-6b-50d", "minilm")


@EMBEDDINGS.register("glove-6b-50d", "the built-in GloVe 6B 50-d vectors (400K words)")
def _builtin(arg: str | None, options: dict[str, Any]) -> Embeddings:
    return load_builtin()


def _file_factory(fmt: str) -> Factory:
    def factory(arg: str | None, options: dict[str, Any]) -> Embeddings:
        return load_file(fmt, arg, cache_dir=options.get("cache_dir"), binary=options.get("binary"))

    return factory


EMBEDDINGS.register("glove", "glove:PATH, Stanford GloVe text vectors")(_file_factory("glove"))
EMBEDDINGS.register("word2vec", "word2vec:PATH, word2vec text or binary vectors")(_file_factory("word2vec"))
EMBEDDINGS.register("fasttext", "fasttext:PATH, fastText .vec vectors")(_file_factory("fasttext"))


@EMBEDDINGS.register("minilm", "the all-MiniLM-L6-v2 sentence encoder (needs lavise[minilm])")
def _minilm(arg: str | None, options: dict[str, Any]) -> Embeddings:
    return MiniLM(**{k: v for k, v in options.items() if k in ("device", "batch_size")})


def list_embeddings() -> list[str]:
    """The embedding kinds ``load_embeddings`` knows (the part of a spec before ``:``), sorted."""
    return EMBEDDINGS.names()


def load_embeddings(spec: str = DEFAULT_SPEC, **options: Any) -> Embeddings:
    """Load word embeddings from a spec.

    Args:
        spec: "glove-6b-50d", "glove:PATH", "word2vec:PATH", "fasttext:PATH" or "minilm".
        **options: ``cache_dir`` (file formats), ``binary`` (word2vec: force the
            format), ``device`` / ``batch_size`` (minilm); options a kind does not use are ignored.
    Returns:
        An Embeddings whose ``name`` is ``spec``.
    """
    name, sep, arg = spec.partition(":")
    # A whole spec with an argument is looked up as written, so it fails with the same message as any unknown kind.
    factory = EMBEDDINGS.get(spec if sep and name in _WHOLE_SPECS else name, spec)
    emb = factory(arg if sep else None, options)
    emb.name = spec
    return emb


__all__ = [
    "DEFAULT_SPEC", "EMBEDDINGS", "PHRASE_STOPWORDS", "STOPWORDS", "VOCAB_KINDS", "EmbeddingError",
    "EmbeddingWarning", "Embeddings", "MiniLM", "Vocabulary", "WordVectors", "cache_root", "is_singular_noun",
    "list_embeddings", "load_embeddings", "similarity_topk", "top_words",
]
