"""A calibrated confidence for every word and a verdict for every filter.

A word's confidence is the probability that it names a concept in the filter's ground truth (IoU > 0.04 on
images the words were not drawn from). It is read off signals the explain step has anyway (the word's vote
share, its similarity, its margin to the next word, its rank, its grounding; the filter's saturation and the
share of its top images that exceed T_u) by a logistic model fitted when the explainer is trained, on the reference set, where the
truth is known: the reference images are split in two seeded halves, filters are explained from one and their
ground truth computed on the other. The model is stored in the run (``calibration.json``) and applied whenever
the run explains.

A filter's verdict is its top word's confidence; it is ``interpretable`` at ``INTERPRETABLE`` or above.

One signal comes from the reference set itself: a word's *grounding*, the IoU on the reference images of the
filter with the concept the word names (``Grounding``; none where the word names no reference concept). The
calibrator is fitted with the grounding of the explain half and applies that of the whole reference set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..defaults import INTERPRETABLE
from ..errors import RunError
from ..stats import SATURATION_TOLERANCE

if TYPE_CHECKING:
    from ..dissect import GroundTruth
    from ..embeddings import Embeddings
    from ..features import FeatureCache
    from ..options import ExplainOptions, ExtractOptions
    from ..train import TrainedExplainer
    from .results import FilterExplanation

# Every signal a calibrator may use, and the default set (each a column of ``word_features``).
KNOWN_FEATURES = ("score", "similarity", "margin", "log_rank", "saturated", "qualified", "stability", "grounding",
                  "grounding_ratio", "grounding_best")
# grounding decided on the validation seeds (experiments/confidence.py grounding): AUROC and top-quartile P@1 up
# on every seed; the filter's vote stability added nothing beside it
FEATURES = ("score", "similarity", "margin", "log_rank", "saturated", "qualified", "grounding")
FORMAT = "lavise-calibration-1"
BEST = {"grounding_ratio", "grounding_best"}  # signals that need the filter's best reference IoU
GROUNDED = {"grounding"} | BEST


def word_features(f: FilterExplanation, features: Sequence[str] = FEATURES) -> np.ndarray:
    """(len(f.words), len(features)) signals of each of the filter's words, best word first.

    Args:
        f: a filter's explanation (words with ``score`` and ``similarity``; top images with ``max_activation``).
        features: the columns, any of ``KNOWN_FEATURES``.

    Returns:
        Per word: vote share, mean similarity, vote-share margin to the next word (the last word's own share),
        log of its 1-based rank, whether the filter is saturated, the share of the top images whose maximum
        reaches T_u, and the filter's vote stability (0 where unknown), in the order of ``features``.
    """
    n = len(f.words)
    if n == 0:
        return np.zeros((0, len(features)))
    score = np.array([w["score"] for w in f.words], dtype=np.float64)
    sim = np.array([w["similarity"] for w in f.words], dtype=np.float64)
    margin = score - np.append(score[1:], 0.0)
    acts = np.array([im["max_activation"] for im in f.images], dtype=np.float64)
    cut = f.threshold * (1 - SATURATION_TOLERANCE) if f.saturated else f.threshold
    qualified = float(np.mean(acts >= cut if f.saturated else acts > cut)) if len(acts) else 0.0
    cols = {"score": score, "similarity": sim, "margin": margin, "log_rank": np.log(np.arange(1, n + 1)),
            "saturated": np.full(n, float(f.saturated)), "qualified": np.full(n, qualified),
            "stability": np.full(n, float(f.stability or 0.0)),
            "grounding": np.array([float(w.get("grounding") or 0.0) for w in f.words])}
    if "grounding_ratio" in features or "grounding_best" in features:  # the filter's best reference IoU beside it
        best = np.array([float(w.get("grounding_best") or 0.0) for w in f.words])
        cols["grounding_best"] = best
        cols["grounding_ratio"] = np.divide(cols["grounding"], best, out=np.zeros(n), where=best > 0)
    return np.column_stack([cols[c] for c in features])


@dataclass(frozen=True)
class Grounding:
    """Every (filter, concept) IoU on the reference set (NetDissect's convention): the evidence, on annotated
    images, for a word that names a reference concept.

    Attributes:
        concepts: the reference concepts (columns).
        iou: (d, C) IoU.
    """

    concepts: tuple[str, ...]
    iou: np.ndarray = field(compare=False, repr=False)

    @classmethod
    def from_counts(cls, *parts: GroundTruth) -> "Grounding":
        """The IoU of the summed counts of ``parts`` (ground truth of disjoint image sets, same concepts)."""
        inter = sum(g.intersection for g in parts)
        union = sum(g.act_area[:, None] + g.mask_area[None, :] - g.intersection for g in parts)
        iou = np.divide(inter, union, out=np.zeros(np.shape(inter), dtype=np.float64), where=union > 0)
        return cls(tuple(parts[0].concepts), iou.astype(np.float32))

    def only(self, concepts: Sequence[str]) -> "Grounding":
        """The columns of ``concepts`` (those the reference set is annotated for)."""
        keep = [j for j, c in enumerate(self.concepts) if c in set(concepts)]
        return Grounding(tuple(self.concepts[j] for j in keep), self.iou[:, keep])

    def attach(self, filters: Sequence[FilterExplanation], best: bool = False) -> list[FilterExplanation]:
        """``filters`` with each word's ``grounding``: its filter's IoU with the concept the word names (lemma
        match), None where it names no reference concept; with ``best``, also ``grounding_best``, the filter's
        highest IoU over all concepts."""
        from ..evaluate.metrics import lemma

        col = {lemma(c): j for j, c in enumerate(self.concepts)}
        top = self.iou.max(1) if self.iou.size else np.zeros(len(self.iou))
        out = []
        for f in filters:
            extra = {"grounding_best": round(float(top[f.unit]), 6)} if best else {}
            words = [{**w, "grounding": round(float(self.iou[f.unit, col[lemma(w["word"])]]), 6)
                      if lemma(w["word"]) in col else None, **extra} for w in f.words]
            out.append(replace(f, words=words))
        return out

    def save(self, path) -> None:
        from ..io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, iou=self.iou, concepts=np.array(self.concepts, dtype=str))

    @classmethod
    def load(cls, path) -> "Grounding":
        try:
            with np.load(path) as z:
                return cls(tuple(str(c) for c in z["concepts"]), z["iou"].astype(np.float32))
        except Exception as e:  # noqa: BLE001 - any damage to the file
            raise RunError(f"cannot read {path} ({str(e)[:120]}); retrain the run with `lavise train`") from None


@dataclass(frozen=True)
class Calibrator:
    """A logistic model from ``FEATURES`` to the probability that a word is in its filter's ground truth.

    Attributes:
        mean, scale: standardisation of each feature.
        coef, intercept: the logistic model on the standardised features.
        fitted_on: where and how it was fitted (dataset, images, words, positives, explain settings).
        grounding: the reference set's IoU table, where ``features`` has ``grounding`` (saved apart, as
            ``grounding.npz``).
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURES
    fitted_on: dict = field(default_factory=dict)
    grounding: Grounding | None = field(default=None, compare=False, repr=False)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, fitted_on: dict | None = None,
            features: Sequence[str] = FEATURES) -> "Calibrator":
        """Fit on features ``X`` (n, len(features)) and 0/1 outcomes ``y`` (n,); both outcomes must occur."""
        from sklearn.linear_model import LogisticRegression

        X, y = np.asarray(X, dtype=np.float64), np.asarray(y).astype(int)
        if len(X) != len(y):
            raise ValueError(f"{len(X)} feature rows but {len(y)} outcomes")
        if len(set(y.tolist())) < 2:
            raise ValueError("a calibrator needs right and wrong words; every outcome is the same")
        mean, scale = X.mean(0), X.std(0)
        scale[scale == 0] = 1.0
        lr = LogisticRegression(C=1.0, max_iter=1000).fit((X - mean) / scale, y)
        return cls(tuple(mean.tolist()), tuple(scale.tolist()), tuple(lr.coef_[0].tolist()),
                   float(lr.intercept_[0]), tuple(features), dict(fitted_on or {}))

    @classmethod
    def constant(cls, words: int, right: int, fitted_on: dict | None = None,
                 features: Sequence[str] = FEATURES) -> "Calibrator":
        """The calibrator of a reference set where every word had the same outcome: no signal can rank words, so
        each gets the base rate, estimated as (right + 1/2) / (words + 1) (Jeffreys' prior: never exactly 0 or 1).
        A randomly initialised model is the usual case: no word is right, and every confidence is near 0."""
        if words < 1:
            raise ValueError("a constant calibrator needs at least one word")
        rate = (right + 0.5) / (words + 1)
        k = len(features)
        return cls((0.0,) * k, (1.0,) * k, (0.0,) * k, float(math.log(rate / (1 - rate))), tuple(features),
                   {**(fitted_on or {}), "constant": True})

    @property
    def is_constant(self) -> bool:
        """Whether every word gets the same confidence (the reference set gave only right or only wrong words)."""
        return bool(self.fitted_on.get("constant"))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities for feature rows ``X`` (n, F)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.features))
        z = ((X - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def apply(self, filters: Sequence[FilterExplanation]) -> list[FilterExplanation]:
        """Each word with its ``confidence``; each filter with its verdict (top word's confidence, ``interpretable``)."""
        if GROUNDED & set(self.features):
            if self.grounding is None:
                raise RunError("this calibrator uses each word's reference IoU but the run has no grounding.npz; "
                               "retrain it with `lavise train`")
            filters = self.grounding.attach(filters, best=bool(BEST & set(self.features)))
        out = []
        for f in filters:
            if not f.words:
                out.append(replace(f, confidence=0.0, interpretable=False))
                continue
            conf = self.predict(word_features(f, self.features))
            words = [{**w, "confidence": round(float(c), 6)} for w, c in zip(f.words, conf)]
            out.append(replace(f, words=words, confidence=round(float(conf[0]), 6),
                               interpretable=bool(conf[0] >= INTERPRETABLE)))
        return out

    def matches(self, options: ExplainOptions) -> bool:
        """Whether ``options`` select words as the fit did (vote shares mean something else at another p, s or
        input method, so the confidence is left out there)."""
        fit = self.fitted_on
        return all(fit.get(k, getattr(options, k)) == getattr(options, k) for k in ("method", "p", "s")) and \
            fit.get("votes", "count") == getattr(options, "votes", "count")  # calibrators before votes: counts

    def to_dict(self) -> dict:
        return {"format": FORMAT, "features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept, "interpretable_at": INTERPRETABLE,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        features = tuple(d.get("features", ()))
        if d.get("format") != FORMAT or not features or not set(features) <= set(KNOWN_FEATURES):
            raise RunError(f"calibration.json has format {d.get('format')!r} and features {list(features)}; this "
                           f"lavise reads {FORMAT} with features among {list(KNOWN_FEATURES)}: retrain the run with "
                           "`lavise train`")
        return cls(tuple(d["mean"]), tuple(d["scale"]), tuple(d["coef"]), float(d["intercept"]), features,
                   d.get("fitted_on", {}))


def constant_note(fitted_on: dict, where: str = "the reference set") -> str:
    """Why a constant calibrator's confidences are all equal, and their value, from its ``fitted_on``."""
    words, right = int(fitted_on.get("words", 0)), int(fitted_on.get("right", 0))
    return (f"{'every' if right else 'no'} word was right on {where} ({words} words), so every word gets the base "
            f"rate {(right + 0.5) / (words + 1):.2g} as its confidence, which cannot rank words")


def outcomes(filters: Sequence[FilterExplanation], truth: Sequence[Sequence[str]],
             match: Callable[[str], str], features: Sequence[str] = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """Features (``features``) and outcomes of every word of ``filters``: 1 where the word matches (by ``match``)
    a concept of its filter's ground truth ``truth[unit]``."""
    X, y = [], []
    for f in filters:
        if not f.words:
            continue
        keys = {match(c) for c in truth[f.unit]}
        X.append(word_features(f, features))
        y.extend(int(match(w["word"]) in keys) for w in f.words)
    return (np.concatenate(X) if X else np.zeros((0, len(features)))), np.array(y, dtype=int)


def expected_calibration_error(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """ECE: the |accuracy − mean confidence| of equal-width confidence bins, weighted by their share of items."""
    conf, right = np.asarray(conf, dtype=np.float64), np.asarray(right, dtype=np.float64)
    if len(conf) == 0:
        return math.nan
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(right[m].mean() - conf[m].mean())
    return float(total / len(conf))


def reliability(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width bin: its range, items, mean confidence and share right (the reliability diagram's data)."""
    conf, right = np.asarray(conf, dtype=np.float64), np.asarray(right, dtype=np.float64)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"low": b / bins, "high": (b + 1) / bins, "items": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(right[m].mean()) if m.any() else None})
    return out


def quartile_precision(conf: np.ndarray, right: np.ndarray) -> list[dict]:
    """Share right in each quartile of confidence (lowest first; ties split by order)."""
    conf, right = np.asarray(conf, dtype=np.float64), np.asarray(right, dtype=np.float64)
    order = np.argsort(conf, kind="stable")
    out = []
    for q, part in enumerate(np.array_split(order, 4), 1):
        out.append({"quartile": q, "items": int(len(part)),
                    "confidence": float(conf[part].mean()) if len(part) else None,
                    "precision": float(right[part].mean()) if len(part) else None})
    return out


def auroc(conf: np.ndarray, right: np.ndarray) -> float:
    """Area under the ROC curve of ``conf`` for ``right`` (NaN where one class is absent)."""
    right = np.asarray(right).astype(bool)
    if right.all() or not right.any():
        return math.nan
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(right, conf))


def fit_on_reference(explainer: TrainedExplainer, cache: FeatureCache, embeddings: Embeddings, dataset: str = "",
                     seed: int = 0, extract: ExtractOptions | None = None,
                     options: ExplainOptions | None = None, rows: np.ndarray | None = None,
                     concepts: Sequence[str] | None = None, features: Sequence[str] = FEATURES) -> Calibrator | None:
    """Fit the calibrator where the truth is known: explain every filter from one seeded half of the reference
    cache, score each word against the IoU ground truth of the other half (lemma match), fit ``Calibrator``.

    Args:
        explainer: the trained head (its own calibrator, if any, is ignored).
        cache: the reference cache (with its concept masks).
        embeddings: the run's embeddings (the default vocabulary is built from them and the training concepts).
        dataset: the reference set's spec, recorded.
        seed: seeds the halves.
        extract: device and progress (default ``ExtractOptions()``).
        options: the word selection to calibrate (default ``ExplainOptions()``; other p, s or methods get no
            confidence).
        rows: the reference cache rows to split (default all).
        concepts: the concepts whose annotations count as truth (default every concept of the cache), as when
            the reference set is annotated only for the categories the head was trained on.
        features: the signals to fit on, any of ``KNOWN_FEATURES``.

    Returns:
        The ``Calibrator``; a constant one (``Calibrator.constant``, with a warning) where the reference set gives
        no right or no wrong word; None (with a warning) where it gives no word at all.
    """
    import warnings

    from ..dissect import compute_ground_truth
    from ..evaluate.core import split_rows
    from ..evaluate.metrics import lemma
    from ..options import ExplainOptions, ExtractOptions
    from .core import compute_thresholds, explain_cache

    options = options or ExplainOptions()
    extract = extract or ExtractOptions()
    rows = np.arange(len(cache)) if rows is None else np.sort(np.asarray(rows))
    if len(rows) < 2:
        warnings.warn("confidence unavailable: the reference set has fewer than 2 images to split", stacklevel=2)
        return None
    vocab = embeddings.vocabulary(options.vocabulary, concepts=list(explainer.concepts), size=options.vocabulary_size)
    thr = compute_thresholds(cache)
    ex, sc = (rows[half] for half in split_rows(len(rows), seed))
    gt = compute_ground_truth(cache, thr, rows=sc, show_progress=False)
    filters = explain_cache(replace(explainer, calibrator=None), cache, vocab, options, None, extract, None, thr, ex)
    truth = gt.labels("netdissect")
    if concepts is not None:
        keep = set(concepts)
        truth = [[c for c in t if c in keep] for t in truth]
    grounding = None
    if GROUNDED & set(features):  # fitted with the explain half's IoU, applied with the whole reference set's
        gex = compute_ground_truth(cache, thr, rows=ex, show_progress=False)
        half, grounding = Grounding.from_counts(gex), Grounding.from_counts(gex, gt)
        if concepts is not None:  # the IoU of annotated concepts only
            half, grounding = half.only(concepts), grounding.only(concepts)
        filters = half.attach(filters, best=bool(BEST & set(features)))
    X, y = outcomes(filters, truth, lemma, features)
    info = {"dataset": dataset, "explain_images": int(len(ex)), "truth_images": int(len(sc)), "words": int(len(y)),
            "right": int(y.sum()), "method": options.method, "p": options.p, "s": options.s, "x": options.x,
            "votes": options.votes,
            "vocabulary": options.vocabulary, "seed": seed,
            "concepts": "all" if concepts is None else len(set(concepts))}
    where = dataset or "the reference set"
    if len(y) == 0:
        warnings.warn(f"confidence unavailable: no filter got a word on {where}", stacklevel=2)
        return None
    if y.min() == y.max():
        cal = Calibrator.constant(len(y), int(y.sum()), info, features)
        warnings.warn(constant_note(cal.fitted_on, where), stacklevel=2)
        return replace(cal, grounding=grounding)
    return replace(Calibrator.fit(X, y, info, features), grounding=grounding)
