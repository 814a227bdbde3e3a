"""What every embedding space shares: the ``Embeddings`` base class, ``Vocabulary`` and phrase handling.

Phrases with word vectors: a phrase that is itself a vocabulary entry (``"e-mail"``) uses that vector.
Otherwise it is lowercased, split on spaces, underscores and hyphens (``phrase_tokens``), stopwords
(``PHRASE_STOPWORDS``) are dropped unless nothing would remain, and the phrase vector is the mean of the
L2-normalised vectors of the words found, re-normalised. A phrase is *missing* only when none of its words
is known; missing phrases are never dropped silently (``EmbeddingWarning``, once per phrase and
``Embeddings`` instance).

Vocabularies (``Embeddings.vocabulary``) put the given concepts first, then the most frequent plain words
(``common_words``, optionally only singular nouns: ``is_singular_noun``), every word, or the lines of a
word file (``read_word_file``).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .. import defaults
from ..errors import EmbeddingError

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

VOCAB_KINDS = ("nouns", "common", "concepts", "all", "glove")
_COMMON_RE = re.compile(r"[a-z]{3,}")
_SPLIT_RE = re.compile(r"[\s_\-]+")


class EmbeddingWarning(UserWarning):
    """Phrases that cannot be encoded, or a vocabulary choice worth a second look."""


def cache_root() -> Path:
    """Folder of lavise's embedding caches: ``$LAVISE_CACHE/embeddings`` or ``~/.cache/lavise/embeddings``."""
    base = os.environ.get("LAVISE_CACHE") or Path.home() / ".cache" / "lavise"
    return Path(base).expanduser() / "embeddings"


def digest(*parts: object, n: int = 16) -> str:
    """Short hex digest of ``parts`` (keys caches and fingerprints)."""
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:n]


def normalise(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 with L2-normalised last axis (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def phrase_tokens(phrase: str) -> list[str]:
    """The words of ``phrase``, split on spaces, underscores and hyphens."""
    return [t for t in _SPLIT_RE.split(phrase.strip()) if t]


def phrase_key(phrase: str) -> str:
    """Dedup key: "Hot_dog" and "hot dog" are the same candidate."""
    return " ".join(_SPLIT_RE.split(phrase.lower())).strip()


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
    """A word/phrase embedding space (base class; see ``load_embeddings``).

    Subclasses implement ``fingerprint``, ``has``, ``_encode_known``, ``_common`` and ``_everything``.
    """

    name: str
    dim: int
    # The advice in the missing-phrase warning; encoders that know every phrase override it.
    missing_fix = "rename them or use 'minilm' embeddings"

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
        return normalise(vectors).reshape(len(kept), self.dim), kept, missing

    def _warn_missing(self, missing: list[str]) -> None:
        new = list(dict.fromkeys(p for p in missing if p not in self._warned))
        if not new:
            return
        self._warned.update(new)
        shown = ", ".join(repr(p) for p in new[:20]) + (", ..." if len(new) > 20 else "")
        warnings.warn(f"{len(new)} phrase(s) not in the {self.name} embeddings, left out: {shown}; {self.missing_fix}",
                      EmbeddingWarning, stacklevel=3)

    def vocabulary(self, kind: str = "nouns", concepts: Iterable[str] = (),
                   size: int = defaults.VOCABULARY_SIZE) -> Vocabulary:
        """Build the candidate words for explanations.

        Args:
            kind: "nouns" (``size`` most frequent singular common nouns + concepts; readable
                explanations, the default), "common" (``size`` most frequent plain words + concepts), "concepts"
                (only ``concepts``), "all"/"glove" (every vocabulary word, concepts
                first), or the path of a text file (one word/phrase a line, ``#`` comments).
            concepts: concept names; they come first, in their exact form.
            size: number of words after the concepts for "nouns" and "common".
        Returns:
            A Vocabulary with unit-norm float32 vectors.
        """
        concepts = list(dict.fromkeys(concepts))
        if kind == "concepts":
            vecs, words, _ = self.encode(concepts)
        elif kind in ("nouns", "common", "all", "glove"):
            cvecs, cwords, _ = self.encode(concepts)
            taken = {phrase_key(c) for c in cwords}
            if kind in ("nouns", "common"):
                bvecs, bwords = self._common(size, taken, nouns=kind == "nouns")
            else:
                bvecs, bwords = self._everything(taken)
                warnings.warn(f"vocabulary {kind!r} has {len(bwords):,} words: ranking is slower and noisier "
                              "than with 'common'", EmbeddingWarning, stacklevel=2)
            vecs, words = np.concatenate([cvecs, bvecs]), cwords + bwords
        else:
            vecs, words, _ = self.encode(read_word_file(kind))
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


def read_word_file(path: str) -> list[str]:
    """The distinct non-empty lines of a word file, ``#`` comments removed, in file order."""
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


def common_words(words: Sequence[str], size: int, taken: set[str] = frozenset(),
                 ok: Callable[[int], bool] = lambda i: True, nouns: bool = False) -> tuple[list[str], list[int]]:
    """The ``size`` first (most frequent) plain lowercase words (or singular nouns), with their rows.

    Args:
        words: the candidates, most frequent first.
        size: how many to return (fewer if ``words`` runs out).
        taken: words to skip (the concepts already in the vocabulary).
        ok: extra test on a row index (e.g. "has a non-zero vector").
        nouns: keep only singular common nouns.
    """
    out, rows = [], []
    for i, w in enumerate(words):
        if len(out) >= size:
            break
        if (_COMMON_RE.fullmatch(w) and w not in STOPWORDS and w not in taken and ok(i)
                and (not nouns or is_singular_noun(w))):
            out.append(w)
            rows.append(i)
    return out, rows
