"""Settings of each stage as frozen dataclasses, importable without torch (the CLI builds them for its help).

One object per stage: ``ExtractOptions`` (how the backbone runs: device, batches, workers, precision),
``TrainOptions`` (the explainer head), ``ExplainOptions`` (turning a filter into words), ``EvalOptions``
(scoring against IoU ground truth) and ``CompareOptions`` (image groups). Public functions take these
objects instead of long keyword lists; ``config.json`` and result settings are written from ``to_dict``.
Every value is checked when the object is made, so a bad setting fails before any work starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import defaults as D
from .errors import LaviseError

# The choices, named once: the CLI's `choices=`, the error messages and the checks below use these.
# "masked-attention" is not in the paper: filter attention restricted to the filter's own activation mask.
METHODS = ("attention", "masked-attention", "activation", "image", "original")
# "netdissect-lite": NetDissect-Lite's definitions on the reference set (another extraction: not on by default)
BASELINES = ("netdissect", "random", "netdissect-lite")
# Controls: a constant list (most frequent concepts), random concept names of the evaluated dataset, the
# explanations shuffled across filters, and the explainer run on a randomly initialised backbone.
CONTROLS = ("constant", "names", "shuffled", "random-init")
# Stability probes of `evaluate`: explain from the other half of the images; explain from noisy copies.
STABILITY_PROBES = ("halves", "noise")
# How a filter's top images vote for words: one vote each, or each vote weighted by the word's cosine.
VOTES = ("count", "similarity")
MATCHING = ("lemma", "exact")
SPLITS = ("halves", "none")  # evaluation images: explain on one half, score on the other; or all for both  # how words meet concepts: nouns lemmatised (the headline), or exact names
CONVENTIONS = ("netdissect", "present")
# `lavise dissect` also offers NetDissect-Lite's definitions (its union rule, input, mask size, categories, tally.csv)
DISSECT_CONVENTIONS = (*CONVENTIONS, "netdissect-lite")
CORRECTIONS = ("bh", "holm", "none")
RANK_BY = ("difference", "statistic")
VOCABULARIES = ("nouns", "common", "concepts")  # or a FILE with one word per line
KS = (1, 5, 10, 20)

T = TypeVar("T")


def _one_of(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LaviseError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")


def _number(what: str, value: Any, allow_none: bool = False) -> None:
    """A one-line error for a setting that is not a real number (a bool is not one)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LaviseError(f"{what} must be a number, not {value!r}")


def _positive(what: str, value: int | None, allow_none: bool = True, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero else 1):
        raise LaviseError(f"{what} must be a whole number {'0' if zero else '1'} or more, not {value!r}")


class _Options:
    """Shared helpers: ``to_dict``, ``from_dict`` (unknown keys ignored, so older configs load) and ``replace``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any] | None) -> T:
        kw = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in (d or {}):
                continue
            v = d[f.name]  # type: ignore[index]
            nested = f.default_factory if isinstance(f.default_factory, type) else None
            if nested is not None and issubclass(nested, _Options):
                v = nested.from_dict(v)
            kw[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _plain(v: Any) -> Any:
    if isinstance(v, _Options):
        return v.to_dict()
    return list(v) if isinstance(v, tuple) else v


@dataclass(frozen=True)
class ExtractOptions(_Options):
    """How the backbone runs over a dataset (every stage that reads images takes one).

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per forward pass (None: 8 on a CPU, 128 on a GPU).
        workers: DataLoader worker processes (None: ``runtime.default_workers``).
        amp: mixed precision for extraction and the explainer head (maps are cached apart).
        strict: fail on the first unreadable image instead of skipping it.
        show_progress: progress bars.
    """

    device: str = "cpu"
    batch_size: int | None = None
    workers: int | None = None
    amp: bool = False
    strict: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.device, str):
            raise LaviseError(f"--device must be a name such as cpu, cuda or cuda:1, not {self.device!r}")
        _positive("--batch-size", self.batch_size)
        _positive("--workers", self.workers, zero=True)


@dataclass(frozen=True)
class TrainOptions(_Options):
    """Training of the explainer head (hinge rank loss over cached masked features).

    Args:
        epochs: most epochs; the epoch of least validation loss is kept.
        patience: stop once this many epochs bring no new least validation loss (None: run all).
        lr: Adam learning rate.
        batch_size: (input, concept) pairs per step.
        val_fraction: share of reference images held out for validation.
        seed: seeds the split, the initialisation and the shuffling.
        heads: independently trained members whose unit outputs are summed (1: the paper's head).
        small_masks: extra inputs per pair pooled over 1-3 random cells of the object (0: the paper's set).
        calibrate: fit the confidence calibrator on the reference set after training (``explain.confidence``).
    """

    epochs: int = D.EPOCHS
    patience: int | None = D.PATIENCE
    lr: float = D.LR
    batch_size: int = D.TRAIN_BATCH_SIZE
    val_fraction: float = D.VAL_FRACTION
    seed: int = 0
    heads: int = D.HEADS
    small_masks: int = D.SMALL_MASKS
    calibrate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.calibrate, bool):
            raise LaviseError(f"calibrate must be True or False, not {self.calibrate!r}")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise LaviseError(f"--epochs must be 1 or more, not {self.epochs!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or isinstance(self.patience, bool)
                                          or self.patience < 1):
            raise LaviseError(f"--patience must be 1 or more epochs, not {self.patience!r}; leave it out to run "
                              "every epoch")
        if not isinstance(self.heads, int) or isinstance(self.heads, bool) or self.heads < 1:
            raise LaviseError(f"the explainer head needs at least one member, not {self.heads!r}; use --heads 1 "
                              "for the paper's single head or more to average several")
        _positive("--small-masks", self.small_masks, allow_none=False, zero=True)
        _positive("--train-batch-size", self.batch_size, allow_none=False)
        _number("--val-fraction", self.val_fraction)
        _number("--lr", self.lr)
        _positive("--seed", self.seed, allow_none=False, zero=True)
        if not 0 <= self.val_fraction < 1:
            raise LaviseError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if not self.lr > 0:
            raise LaviseError(f"--lr must be positive, not {self.lr}")


@dataclass(frozen=True)
class ExplainOptions(_Options):
    """How a filter is put into words.

    Args:
        method: the explainer input, one of ``METHODS``.
        p: top activating images per filter.
        s: words kept per image.
        x: words reported per filter.
        vocabulary: ``nouns``, ``common``, ``concepts`` or a FILE with one word per line.
        vocabulary_size: frequent words taken by ``nouns`` / ``common``.
        hubness: λ of the hub-word correction (CSLS; 0: off).
        calibration: γ subtracted from training-concept similarities (calibrated stacking; 0: off).
        votes: ``count`` (each top image's words get one vote: the paper) or ``similarity`` (each vote weighted
            by the word's cosine to the image's explainer output).
        smooth: noisy copies of each target image whose layer maps are averaged (0: the clean images only).
        smooth_sigma: their pixel noise (standard deviation on [0, 1] pixels).
    """

    method: str = D.DEFAULT_METHOD
    p: int = D.TOP_IMAGES
    s: int = D.WORDS_PER_IMAGE
    x: int = D.WORDS_PER_FILTER
    vocabulary: str = D.VOCABULARY
    vocabulary_size: int = D.VOCABULARY_SIZE
    hubness: float = 0.0
    calibration: float = 0.0
    votes: str = D.VOTES
    smooth: int = D.SMOOTH
    smooth_sigma: float = D.SMOOTH_SIGMA

    def __post_init__(self) -> None:
        _one_of("method", self.method, METHODS)
        _positive("--smooth", self.smooth, allow_none=False, zero=True)
        _number("--smooth-sigma", self.smooth_sigma)
        if not 0 < self.smooth_sigma <= 1:
            raise LaviseError(f"--smooth-sigma must be above 0 and at most 1 (on [0, 1] pixels), not {self.smooth_sigma}")
        if self.smooth and self.method == "image":
            raise LaviseError("--smooth averages layer maps, but method 'image' reruns the clean images; "
                              "use --smooth 0 with it")
        if self.votes not in VOTES:
            raise LaviseError(f"--votes must be one of {', '.join(VOTES)}, not {self.votes!r}")
        _positive("-p/--top-images", self.p, allow_none=False)
        _positive("-s/--words-per-image", self.s, allow_none=False)
        _positive("-x/--words", self.x, allow_none=False)
        _positive("--vocabulary-size", self.vocabulary_size, allow_none=False)
        _number("--hubness", self.hubness)
        _number("--calibration", self.calibration)
        if not self.hubness >= 0:
            raise LaviseError(f"--hubness must be 0 (off) or positive, not {self.hubness}")
        if not self.calibration >= 0:
            raise LaviseError(f"--calibration must be 0 (off) or positive, not {self.calibration}")


@dataclass(frozen=True)
class EvalOptions(_Options):
    """Scoring explanations against IoU ground truth.

    Args:
        explain: how the scored methods put filters into words (``x`` is the novel-concept list length;
            words are computed to ``max(ks)``).
        methods: input methods to compute and score (empty: the run's saved explanations, else the default).
        baselines: any of ``BASELINES``.
        controls: any of ``CONTROLS``.
        conventions: ground-truth conventions to report, any of ``CONVENTIONS``.
        iou_threshold: ground-truth IoU threshold.
        ks: cut-offs of P@k / R@k.
        dataset_concepts_in_vocabulary: the evaluated dataset's concept names are candidate words too.
        synonym_threshold: cosine of the synonym-aware match (None: not computed).
        match: the headline match of words with concepts, one of ``MATCHING`` (exact matches are reported
            beside a lemma headline).
        image_units: score the slow ``image`` method on a seeded sample of this many filters.
        seed: seed of the random baseline, of the controls' draws, of that sample and of the halves.
        split: ``halves`` (default): explanations come from a seeded half of the evaluated images and are scored
            against the ground truth of the other half, never from the images they were drawn from; ``none``:
            every image on both sides (the paper's protocol, optimistic).
        stability: any of ``STABILITY_PROBES`` (``evaluate.stability``): ``halves`` re-explains from the score
            half (cheap; needs the halves split), ``noise`` from noisy copies of the images (one more extraction
            per draw).
        noise_sigma: the noise probe's standard deviation on [0, 1] pixels.
        noise_draws: the noise probe's draws.
    """

    explain: ExplainOptions = field(default_factory=ExplainOptions)
    methods: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("netdissect", "random")
    conventions: tuple[str, ...] = CONVENTIONS
    iou_threshold: float = D.IOU_THRESHOLD
    ks: tuple[int, ...] = KS
    dataset_concepts_in_vocabulary: bool = True
    synonym_threshold: float | None = None
    image_units: int | None = None
    seed: int = 0
    match: str = "lemma"
    controls: tuple[str, ...] = ("constant", "names", "shuffled")
    split: str = "halves"
    stability: tuple[str, ...] = ("halves",)
    noise_sigma: float = D.NOISE_SIGMA
    noise_draws: int = 1

    def __post_init__(self) -> None:
        _one_of("--split", self.split, SPLITS)  # "unknown --split ..."
        for m in self.methods:
            _one_of("method", m, METHODS)
        for b in self.baselines:
            _one_of("baseline", b, BASELINES)
        if isinstance(self.controls, str):
            raise LaviseError(f"--controls must be a list of names, not the string {self.controls!r}")
        for c in self.controls:
            if c not in CONTROLS:
                raise LaviseError(f"unknown control {c!r} in --controls; use any of {', '.join(CONTROLS)}")
        if isinstance(self.stability, str):
            raise LaviseError(f"--stability must be a list of names, not the string {self.stability!r}")
        for c in self.stability:
            if c not in STABILITY_PROBES:
                raise LaviseError(f"unknown probe {c!r} in --stability; use any of {', '.join(STABILITY_PROBES)}")
        if not (isinstance(self.noise_sigma, (int, float)) and 0 < self.noise_sigma <= 1):
            raise LaviseError(f"--noise-sigma must be in (0, 1] (on [0, 1] pixels), not {self.noise_sigma!r}")
        _positive("--noise-draws", self.noise_draws)
        if self.match not in MATCHING:
            raise LaviseError(f"--match must be one of {', '.join(MATCHING)}, not {self.match!r}")
        for c in self.conventions:
            _one_of("convention", c, CONVENTIONS)
        if not self.conventions:
            raise LaviseError(f"give at least one ground-truth convention ({', '.join(CONVENTIONS)})")
        if not self.ks or any(not isinstance(k, int) or k < 1 for k in self.ks):
            raise LaviseError(f"cut-offs k must be whole numbers 1 or more, not {self.ks!r}")
        _number("--iou-threshold", self.iou_threshold)
        _number("--synonyms", self.synonym_threshold, allow_none=True)
        _positive("--seed", self.seed, allow_none=False, zero=True)
        if not 0 <= self.iou_threshold < 1:
            raise LaviseError(f"--iou-threshold must be in [0, 1), not {self.iou_threshold}")
        _positive("--image-units", self.image_units)


@dataclass(frozen=True)
class CompareOptions(_Options):
    """Comparing how often filters fire on groups of images.

    Args:
        correction: multiple-testing correction over filters, one of ``CORRECTIONS``.
        alpha: significance level.
        rank_by: rank filters by percentage-point ``difference`` or by the test ``statistic``.
        top: filters listed with example images.
        examples: example qualified images per group and filter.
        interpretable_only: test only the filters whose explanation is ``interpretable`` (calibrated confidence
            of the top word at least ``defaults.INTERPRETABLE``); the correction then runs over those alone.
    """

    correction: str = "bh"
    alpha: float = 0.05
    rank_by: str = "difference"
    top: int = 20
    examples: int = 4
    interpretable_only: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.interpretable_only, bool):
            raise LaviseError(f"interpretable_only must be True or False, not {self.interpretable_only!r}")
        _one_of("correction", self.correction, CORRECTIONS)
        _one_of("ranking", self.rank_by, RANK_BY)
        _number("--alpha", self.alpha)
        if not 0 < self.alpha < 1:
            raise LaviseError(f"--alpha must be between 0 and 1, not {self.alpha}")
        _positive("--top", self.top, allow_none=False, zero=True)
        _positive("--examples", self.examples, allow_none=False, zero=True)
