"""Explanation-quality benchmark: the paper's Table 2 on the built-in scenes, under a validation / test discipline.

Two roles, never mixed (seeds >= 100 are validation draws, the others test draws; each role refuses the other's)::

    python bench/quality.py --role validation    # seeds 100-102: every variant of each default, one factor at a time
    python bench/quality.py                      # --role test, seeds 0-4: the defaults, every control, both ceilings
    python bench/quality.py --seeds 0 --quick    # a small smoke test

Per seed: the reference is ``builtin:scenes?split=train&concepts=all`` (4,000 scenes, every category: the paper's
setting), the target ``builtin:scenes?split=test`` (8,000 scenes: at 4,000 the score half's ground truth was too
thin for the quartile and recall figures to settle; ``experiments/target_size.py`` and ``experiments/confidence.py
default --target-size 8000``, validation seeds). Held-out scoring: the target scenes are split
in two seeded halves; filters are explained from one half and scored against the IoU ground truth of the other
(IoU > 0.04 accumulated over the score half: NetDissect's convention; the present-only convention beside it);
words match concepts by lemmas (``exact_`` columns: exact match). AUPRC: how well a filter's maximum activation
separates score-half images with the concept its top word names from images without it (AUPRC_random: the same
for random concepts).

The validation role scores each default's alternatives (input method, p, s, vocabulary, hubness, heads, epochs,
patience, small masks; one factor at a time around the current defaults) and names the winner of each by
(P@1 + R@10 + F1@10) / 3, mean over the validation seeds; ``lavise/defaults.py`` holds what won there.

The test role scores the defaults and the paper's word selection for the four input methods (and image masking
on a random subset of filters), NetDissect labels from the reference set, random words, the controls (the most
frequent reference concepts for every filter, random concept names, the explanations shuffled across filters,
the whole pipeline on a randomly initialised copy of the model) and two ceilings (the explain half's own
ground truth; NetDissect on the explain half's masks). Then, for each category split (``--splits``; split 0 is
the one shipped in the data, split k the seed ``scenes.SPLIT_SEED + k``), a head trained on that split's seen
categories only (the same reference features, held-out pairs dropped) explains the same filters: held-out
concepts discovered in the top-10 words, against random concept names.

Any dataset::

    python bench/quality.py --run RUN --dataset coco:val.json   # scores an existing run on that dataset

Output: the tables on stdout and ``bench/results/quality-<name>.{md,json}`` with the command and versions; each
seed's result is kept in ``--work`` and reused by ``--resume``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from lavise.defaults import (
    DEFAULT_METHOD,
    EPOCHS,
    HEADS,
    LR,
    NOISE_SIGMA,
    PAPER_TOP_IMAGES,
    PAPER_WORDS_PER_IMAGE,
    PATIENCE,
    SMALL_MASKS,
    TOP_IMAGES,
    VOCABULARY,
    VOTES,
    WORDS_PER_IMAGE,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KS = (1, 5, 10, 20)
FIRST_VALIDATION_SEED = 100
VALIDATION_SEEDS = [100, 101, 102]
TEST_SEEDS = [0, 1, 2, 3, 4]
METHODS = ("attention", "masked-attention", "activation", "original")
COLUMNS = ("filters", "P@1", "P@5", "P@10", "R@1", "R@5", "R@10", "R@20", "F1@10", "exact_P@1", "exact_R@10",
           "AUPRC", "AUPRC_random")
SPLIT_COLUMNS = ("filters", "P@1", "R@10", "F1@10", "novel_available", "novel_discovered", "novel_filters",
                 "novel_R@10")
HEADLINE = ("P@1", "R@10", "F1@10")
RANDOM_DRAWS = 200
RANDOM_MEAN = f"random words, mean of {RANDOM_DRAWS} draws"
NAMES_MEAN = f"control: random concept names, mean of {RANDOM_DRAWS} draws"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- one variant of the pipeline


@dataclass(frozen=True)
class Variant:
    """Everything a default decides: training (heads, epochs, patience, small masks) and explaining."""

    method: str = DEFAULT_METHOD
    p: int = TOP_IMAGES
    s: int = WORDS_PER_IMAGE
    vocabulary: str = VOCABULARY
    hubness: float = 0.0
    votes: str = VOTES
    heads: int = HEADS
    epochs: int = EPOCHS
    patience: int | None = PATIENCE
    small_masks: int = SMALL_MASKS

    def train_options(self, seed: int, lr: float = LR):
        from lavise.options import TrainOptions

        return TrainOptions(epochs=self.epochs, patience=self.patience, lr=lr, seed=seed, heads=self.heads,
                            small_masks=self.small_masks)

    @property
    def train_tag(self) -> str:
        return (f"h{self.heads}-e{self.epochs}" + (f"-pat{self.patience}" if self.patience else "")
                + (f"-sm{self.small_masks}" if self.small_masks else ""))

    def label(self) -> str:
        """The fields that differ from the defaults, e.g. ``heads=1``; ``defaults`` when none do."""
        base = Variant()
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)]
        return ", ".join(diff) or "defaults"


GRID = {"method": list(METHODS), "p": [10, 25, 50, 100], "s": [1, 3, 5], "vocabulary": ["nouns", "common"],
        "hubness": [0.0, 0.25, 0.5], "votes": ["count", "similarity"], "heads": [1, 3, 5], "epochs": [10, 30], "patience": [None, 5],
        "small_masks": [0, 2]}


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``FIELD=V1,V2`` specs (``--grid``) as a grid of those factors only, values typed like the field's default."""
    fields = {f.name: f for f in dataclasses.fields(Variant)}
    out = {}
    for spec in specs:
        name, _, vals = spec.partition("=")
        if name not in fields or not vals:
            raise SystemExit(f"--grid {spec!r}: use FIELD=V1,V2 with FIELD one of {', '.join(fields)}")
        kind = type(getattr(Variant(), name))
        kind = int if kind is type(None) else kind  # patience: None or epochs
        out[name] = [None if v == "None" else (v if kind is str else kind(float(v)) if kind is int else float(v))
                     for v in vals.split(",")]
    return out


def validation_grid(values: dict[str, list] | None = None) -> dict[str, list[Variant]]:
    """Each default's alternatives, one factor at a time around the current defaults (the default included)."""
    values = GRID if values is None else values
    base = Variant()
    grid = {}
    for field, vals in values.items():
        vals = vals if getattr(base, field) in vals else [getattr(base, field)] + vals
        grid[field] = [dataclasses.replace(base, **{field: v}) for v in vals]
    return grid


# ----------------------------------------------------------------------------- shared stages


def method_vectors(explainer, cache, method, p, units, dataset=None, target=None, batch_pairs=512, rows=None):
    """The explainer's output for every (filter, top image) input: ``explain_cache``'s first stages, run once per
    (head, method) so that word settings reuse them (the same public stages; checked below). ``rows``: the cache
    rows top images may come from (the explain half)."""
    from lavise.explain import ImageRerun, compute_thresholds, head_outputs, top_pairs
    from lavise.options import ExtractOptions

    thr = compute_thresholds(cache)
    pairs = top_pairs(cache, p, units, rows)
    rerun = ImageRerun.of(target, explainer.config["layer"], dataset) if method == "image" else None
    V = head_outputs(explainer, cache, pairs, thr, method, ExtractOptions(show_progress=False), rerun, batch_pairs)
    return {"pairs": pairs, "V": V, "thr": thr, "method": method}


def first(mv, p):
    """``mv`` restricted to each filter's p most activating images (they come first)."""
    pairs = mv["pairs"]
    if p >= pairs.p:
        return mv
    U = len(pairs.units)
    return dict(mv, V=mv["V"].view(U, pairs.p, -1)[:, :p].reshape(U * p, -1), pairs=pairs.first(p))


def words_from_vectors(mv, cache, vocab, s, x, explainer=None, calibration=0.0, hubness=0.0, votes=VOTES):
    """``explain_cache``'s last stages: top-s words per input (optionally calibrated, optionally with the hubness
    correction, whose r_w comes from ``mv``'s outputs: every filter's, as in ``explain_cache``), ranked by votes."""
    from lavise.explain import calibration_penalty, hub_scores, rank_words, top_words, vocabulary_tensor

    vt = vocabulary_tensor(vocab)
    s = min(s, len(vt))
    pen = calibration_penalty(vocab, explainer.concepts, calibration) if calibration else None
    if hubness:
        hub = hubness * hub_scores(mv["V"], vt)
        pen = hub if pen is None else pen + hub
    idx, sim = top_words(mv["V"], vt, s, pen)
    filters = rank_words(mv["pairs"], idx, sim, vocab, mv["thr"], cache, x, votes)
    cal = getattr(explainer, "calibrator", None)
    pairs = mv["pairs"]
    if cal is not None and cal.matches(SimpleNamespace(method=mv.get("method"), p=pairs.p, s=s, votes=votes)):
        filters = cal.apply(filters)  # as explain_cache does
    return filters


def full_lists(fx, d):
    out = [[] for _ in range(d)]
    for f in fx:
        out[f.unit] = f.top_words
    return out


def train_subset(cache, concepts, vectors, keep, variant, seed, x_all=None, lr=LR):
    """Train a head on the reference pairs whose concept is in ``keep`` (reuses the cached features), with
    ``lavise.train.fit_head`` and the same validation split and small-mask inputs as ``train_explainer``."""
    from lavise.train import TrainedExplainer, fit_head, training_pairs

    options = variant.train_options(seed, lr)
    x_all = cache.masked_pooled() if x_all is None else x_all
    y_all = torch.from_numpy(cache.pairs[:, 1])
    keep_idx = [concepts.index(c) for c in keep]
    remap = torch.full((len(concepts),), -1, dtype=torch.long)
    remap[torch.tensor(keep_idx)] = torch.arange(len(keep_idx))
    y = remap[y_all]
    cv = torch.from_numpy(np.ascontiguousarray(vectors[keep_idx], dtype=np.float32))
    xtr, ytr, xva, yva, g = training_pairs(cache, x_all, y, options.val_fraction, seed, options.small_masks,
                                           select=y >= 0)
    head, history = fit_head(xtr, ytr, xva, yva, cv, options, generator=g)
    best = min(history, key=lambda r: r["val_loss"])
    return TrainedExplainer(head, list(keep), cv, {"layer": cache.meta["layer"]}, [best])


def gamma_from_vectors(mv, explainer, vocab, pool, max_pairs=8000, seed=0):
    """γ for calibrated stacking, chosen without labels: on a sample of the (filter, top image) inputs, the share
    of unseen names among the top-1 predictions over ``pool`` (the candidate concept names) equals their share
    of ``pool``."""
    V = mv["V"]
    rng = np.random.default_rng(seed)
    pick = torch.from_numpy(rng.choice(len(V), size=min(max_pairs, len(V)), replace=False))
    pool = set(pool)
    words = [w for w in vocab.words if w in pool]
    vecs = torch.from_numpy(vocab.vectors[[vocab.index(w) for w in words]])
    seen = torch.tensor([w in set(explainer.concepts) for w in words])
    target_share = float((~seen).float().mean())
    sims = V[pick] @ vecs.T

    def share(g):
        return float((~seen[(sims - g * seen.float()).argmax(1)]).float().mean())

    if share(0.0) >= target_share:
        return 0.0
    lo, hi = 0.0, 2.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < target_share else (lo, mid)
    return hi


def random_mean_row(words, d, gt, held_out, seed, name, **info) -> dict:
    """Expected scores of random lists drawn from ``words`` (NetDissect convention): the mean over many draws."""
    from lavise.evaluate import random_words, score_row

    rows = [score_row(name, random_words(words, d, max(KS), seed * 100_003 + r), gt, "netdissect", KS, None,
                      held_out, 10) for r in range(RANDOM_DRAWS)]
    out = {"name": name, "convention": "netdissect", "kind": "control" if name.startswith("control") else "baseline",
           **info}
    for key, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and key not in info:
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


class Seed:
    """One draw: data, caches, the halves and their ground truth, and heads and head outputs by variant."""

    def __init__(self, args, seed, model, emb):
        from lavise.data import load_dataset
        from lavise.dissect import compute_ground_truth
        from lavise.evaluate import split_rows
        from lavise.explain import compute_thresholds
        from lavise.features import extract_features
        from lavise.options import ExtractOptions

        self.args, self.seed, self.model, self.emb, self.t0 = args, seed, model, emb, time.time()
        scn = f"&cache={args.work}"  # own cache: other processes may clear the default one
        self.ref = load_dataset(f"builtin:scenes?size={args.reference_size}&seed={seed}&split=train&concepts=all{scn}")
        self.tgt = load_dataset(f"builtin:scenes?size={args.target_size}&seed={seed}&split=test{scn}")
        self.base = args.work / f"seed{seed}-b{args.reference_size}-all"
        self.quiet = ExtractOptions(show_progress=False)
        self.layer = model.default_layer
        self.tcache = extract_features(model, self.layer, self.tgt, args.work / f"cache-target-{args.target_size}",
                                       list(self.tgt.concepts), self.quiet)
        self.rcache = extract_features(model, self.layer, self.ref, self.base / "cache", list(self.ref.concepts),
                                       self.quiet)
        self.ex_rows, self.sc_rows = split_rows(len(self.tcache), seed)
        self.thr = compute_thresholds(self.tcache)  # label-free, from every target scene
        self.gt = compute_ground_truth(self.tcache, self.thr, rows=self.sc_rows)
        self.gt_a = compute_ground_truth(self.tcache, self.thr, rows=self.ex_rows)
        self.rgt = compute_ground_truth(self.rcache)
        self.d = self.tcache.shape[0]
        self.units = list(range(self.d))
        self.names = list(dict.fromkeys(list(self.ref.concepts) + list(self.tgt.concepts)))
        self._heads, self._vectors, self._vocabs, self._noisy = {}, {}, {}, None
        self.log(f"ground truth {self.gt.summary()}")

    def log(self, msg):
        log(f"[seed {self.seed}] {msg} ({time.time() - self.t0:.0f} s)")

    def head(self, v: Variant):
        from lavise.train import TrainedExplainer, train_explainer

        out = self.base.with_name(self.base.name + f"-{v.train_tag}")
        if v.train_tag not in self._heads and getattr(self.args, "reuse_heads", False) and \
                (out / "explainer.safetensors").is_file():
            kept = TrainedExplainer.load(out)  # an earlier head of this seed trained with the same options
            want = v.train_options(self.seed, self.args.lr).to_dict()
            if all(kept.config["train"].get(k) == x for k, x in want.items() if k != "calibrate"):
                self._heads[v.train_tag] = self.recalibrated(kept, out)
        if v.train_tag not in self._heads:
            self._heads[v.train_tag] = train_explainer(
                self.model, self.ref, self.emb, out=self.base.with_name(self.base.name + f"-{v.train_tag}"),
                cache_dir=self.base / "cache", extract=self.quiet, options=v.train_options(self.seed, self.args.lr))
            self.log(f"head {v.train_tag}")
        return self._heads[v.train_tag]

    def recalibrated(self, kept, out):
        """A reused head with the calibrator training would fit now: refitted (and saved) where the kept one was
        fitted for another word selection (e.g. before the default votes changed) or on other signals."""
        from lavise.explain.confidence import FEATURES, fit_on_reference
        from lavise.io import write_json
        from lavise.options import ExplainOptions
        from lavise.run import RunFolder

        cal = kept.calibrator
        if cal is not None and cal.matches(ExplainOptions()) and cal.features == FEATURES:
            return kept
        cal = fit_on_reference(kept, self.rcache, self.emb, self.ref.spec, self.seed, self.quiet)
        if cal is not None:  # written as training would, with the folder's manifest recording the new files
            write_json(out / "calibration.json", cal.to_dict())
            files = ["explainer.safetensors", "config.json", "train_log.csv", "calibration.json"]
            if cal.grounding is not None:
                cal.grounding.save(out / "grounding.npz")
                files.append("grounding.npz")
            RunFolder(out).record("explainer", files)
        self.log("calibrator refitted for the current word selection and signals")
        return dataclasses.replace(kept, calibrator=cal)

    def vocabulary(self, name):
        if name not in self._vocabs:
            self._vocabs[name] = self.emb.vocabulary(name, concepts=self.names,
                                                     size=20000 if name == "common" else 10000)
        return self._vocabs[name]

    def vectors(self, v: Variant, p_max: int, probe: str = ""):
        """Head outputs of the explain half (``probe`` "": the explanations; "halves": the score half instead;
        "noise": the explain half of the noisy copy, its thresholds its own)."""
        key = (v.train_tag, v.method, probe, p_max)  # p_max too: ``first`` cuts a longer list, never extends one
        if key not in self._vectors:
            cache = self.noisy_cache() if probe == "noise" else self.tcache
            rows = self.sc_rows if probe == "halves" else self.ex_rows
            self._vectors[key] = method_vectors(self.head(v), cache, v.method, p_max, self.units, rows=rows)
        return self._vectors[key]

    def noisy_cache(self):
        """The target scenes with the default probe noise (σ = NOISE_SIGMA, seeded by the draw), extracted once."""
        if self._noisy is None:
            from lavise.data.perturb import NoisyImages
            from lavise.features import extract_features

            self._noisy = extract_features(self.model, self.layer, NoisyImages(self.tgt, NOISE_SIGMA, self.seed),
                                           self.args.work / f"cache-target-{self.args.target_size}", None, self.quiet)
            assert list(self._noisy.image_ids) == list(self.tcache.image_ids)
            self.log(f"noisy copy (sigma {NOISE_SIGMA})")
        return self._noisy

    def explanations(self, v: Variant, p_max: int, explainer=None, vectors=None, calibration=0.0, probe: str = ""):
        mv = self.vectors(v, p_max, probe) if vectors is None else vectors
        cache = self.noisy_cache() if probe == "noise" else self.tcache
        return words_from_vectors(first(mv, v.p), cache, self.vocabulary(v.vocabulary), v.s, max(KS),
                                  explainer or self.head(v), calibration, v.hubness, v.votes)

    def lists(self, v: Variant, p_max: int, explainer=None, vectors=None, calibration=0.0):
        return full_lists(self.explanations(v, p_max, explainer, vectors, calibration), self.d)

    def stability(self, v: Variant, p_max: int) -> dict:
        """The variant's stability under both probes (``lavise.evaluate.stability``), as ``lavise evaluate
        --stability halves,noise`` measures it."""
        from lavise.evaluate import lemma
        from lavise.evaluate.stability import per_filter, summarise

        fx = self.explanations(v, p_max)
        base = full_lists(fx, self.d)
        vote = {f.unit: f.stability for f in fx if f.stability is not None}
        inter = {f.unit: f.interpretable for f in fx} if any(f.interpretable is not None for f in fx) else None
        units = [f.unit for f in fx]
        out = {}
        for probe in ("halves", "noise"):
            other = full_lists(self.explanations(v, p_max, probe=probe), self.d)
            out[probe] = summarise(per_filter(base, [other], units, lemma), vote, inter)
        return out

    def netdissect_stability(self) -> dict:
        """The supervised ceiling's stability: NetDissect's ranked labels from the explain half's masks, against
        the same from the noisy copy of the explain half (its own thresholds) and from the score half."""
        from lavise.data.perturb import NoisyImages
        from lavise.dissect import compute_ground_truth
        from lavise.evaluate import lemma, ranked_by_iou
        from lavise.evaluate.stability import per_filter, summarise
        from lavise.explain import compute_thresholds
        from lavise.features import extract_features

        noisy = extract_features(self.model, self.layer, NoisyImages(self.tgt, NOISE_SIGMA, self.seed),
                                 self.args.work / f"cache-target-{self.args.target_size}", list(self.tgt.concepts),
                                 self.quiet)  # the probe's noisy copy, with the (unchanged) masks kept
        assert list(noisy.image_ids) == list(self.tcache.image_ids)
        base = ranked_by_iou(self.gt_a, max(KS))
        other = {"halves": ranked_by_iou(self.gt, max(KS)),
                 "noise": ranked_by_iou(compute_ground_truth(noisy, compute_thresholds(noisy), rows=self.ex_rows),
                                        max(KS))}
        units = [u for u in self.units if base[u]]
        return {probe: summarise(per_filter(base, [lst], units, lemma)) for probe, lst in other.items()}

    def score(self, name, lists, conv="netdissect", held_out=None, units=None, grounded=True, **info):
        from lavise.evaluate import grounded_scores, lemma, score_row

        row = score_row(name, lists, self.gt, conv, KS, units, held_out, 10, **info)
        if grounded and conv == "netdissect":
            row.update(grounded_scores(lists, self.tcache, lemma, rows=self.sc_rows, seed=self.seed))
        return row


def check_shortcut(s: Seed, v: Variant, p_max: int):
    """The shared-vector shortcut gives ``explain_cache``'s words (also a unit test; checked here on real data)."""
    from lavise.explain import explain_cache
    from lavise.options import ExplainOptions

    units = s.units[:: max(1, s.d // 20)]
    want = explain_cache(s.head(v), s.tcache, s.vocabulary(v.vocabulary),
                         ExplainOptions(method=v.method, p=v.p, s=v.s, x=max(KS), hubness=v.hubness, votes=v.votes),
                         units, s.quiet,
                         rows=s.ex_rows)
    got = {u: words for u, words in enumerate(s.lists(v, p_max)) if u in set(units)}
    assert [f.top_words for f in want] == [got[f.unit] for f in want], "quality shortcut drifted"


# ----------------------------------------------------------------------------- the validation role


def run_validation(args, seed, model, emb) -> dict:
    s = Seed(args, seed, model, emb)
    grid = validation_grid(parse_grid(args.grid) if args.grid else None)
    p_max = max(v.p for vs in grid.values() for v in vs)
    check_shortcut(s, Variant(), p_max)
    rows, done = {}, {}
    for field, variants in grid.items():
        for v in variants:
            if v not in done:
                done[v] = s.score(v.label(), s.lists(v, p_max), variant=dataclasses.asdict(v))
                done[v].update(stability_columns(s.stability(v, p_max)))
            rows.setdefault(field, []).append(done[v])
        s.log(f"{field}: " + ", ".join(f"{r['name']} {decision(r):.3f}" for r in rows[field]))
    return {"seed": seed, "role": "validation", "layer": s.layer, "grid": rows, "seconds": time.time() - s.t0}


def stability_columns(st: dict) -> dict:
    """A row's stability columns: the share of filters keeping their top word under each probe."""
    out = {}
    for probe, r in st.items():
        out[f"kept_{probe}"] = r["top1_unchanged"]
        if "top1_unchanged_interpretable" in r:
            out[f"kept_{probe}_interpretable"] = r["top1_unchanged_interpretable"]
    return out


def decision(row) -> float:
    """The validation criterion: the mean of the three headline metrics."""
    return float(np.mean([row[m] for m in HEADLINE]))


# ----------------------------------------------------------------------------- the test role


def run_test(args, seed, model, emb) -> dict:
    from lavise.evaluate import (
        constant_words,
        netdissect_lists,
        random_words,
        ranked_by_iou,
        shuffled_lists,
    )

    s = Seed(args, seed, model, emb)
    base, paper, counted = test_variants()
    p_max = max(base.p, paper.p)
    check_shortcut(s, base, p_max)
    trained = s.head(base)
    best = trained.config["train"]["best_epoch"]
    truth = s.gt.labels("netdissect")
    res = {"seed": seed, "role": "test", "layer": s.layer, "val_top1": trained.history[best - 1].get("val_top1"),
           "gt": {c: s.gt.summary(c) for c in ("netdissect", "present")}, "splits": {}}
    lists, kinds = {}, {}
    for m in METHODS:
        lists[m] = s.lists(dataclasses.replace(base, method=m), p_max)
        lists[f"{m} [paper p={paper.p} s={paper.s}]"] = s.lists(dataclasses.replace(paper, method=m), p_max)
        kinds[m] = kinds[f"{m} [paper p={paper.p} s={paper.s}]"] = "method"
    lists[COUNTED], kinds[COUNTED] = s.lists(counted, p_max), "method"  # the paper's votes, lavise's other defaults
    lists["netdissect (reference set)"], kinds["netdissect (reference set)"] = netdissect_lists(s.rgt), "baseline"
    vocab = s.vocabulary(base.vocabulary)
    lists["random words"], kinds["random words"] = random_words(vocab.words, s.d, max(KS), seed), "baseline"
    counts = dict(zip(s.rgt.concepts, s.rgt.images_with.tolist()))
    lists["control: constant"], kinds["control: constant"] = constant_words(counts, s.d, max(KS)), "control"
    scored = [u for u in s.units if truth[u]]
    lists["control: shuffled"] = shuffled_lists(lists[base.method], scored, seed)
    kinds["control: shuffled"] = "control"
    lists["ceiling: ground truth of the explain half"] = s.gt_a.labels("netdissect")
    lists["ceiling: NetDissect on the explain half"] = ranked_by_iou(s.gt_a, max(KS))
    kinds.update({n: "ceiling" for n in lists if n.startswith("ceiling")})
    rows = [s.score(n, lst, conv, kind=kinds[n]) for conv in ("netdissect", "present") for n, lst in lists.items()]
    rows.append(random_mean_row(vocab.words, s.d, s.gt, None, seed, RANDOM_MEAN))
    rows.append(random_mean_row(list(s.tgt.concepts), s.d, s.gt, None, seed, NAMES_MEAN))
    if args.random_init:
        rows.append(random_init_row(s, base, p_max))
    res["table"] = rows
    fx = [f for f in s.explanations(base, p_max) if f.confidence is not None]
    if fx:  # issue 20: the default's calibrated confidence on the score half
        from lavise.evaluate import lemma
        from lavise.evaluate.core import confidence_report

        res["confidence"] = confidence_report(fx, s.gt.labels("netdissect"), lemma)
    res["stability"] = test_stability(s, base, paper, counted, p_max)
    s.log("every category trained")
    if args.image_units:
        res["subset"] = image_subset(s, base, paper, lists, p_max)
    done = {str(k): split_rows_for(s, base, k, lists) for k in args.splits}
    res["splits"] = {k: v[0] for k, v in done.items()}
    res["split_confidence"] = {k: v[1] for k, v in done.items()}
    res["seconds"] = time.time() - s.t0
    return res


COUNTED = f"{DEFAULT_METHOD} [count votes]"


def test_variants() -> tuple[Variant, Variant, Variant]:
    """lavise's defaults; the paper code's word selection (p = 25, s = 5, one vote per word); lavise's defaults
    with the paper's one vote per word."""
    return Variant(), Variant(p=PAPER_TOP_IMAGES, s=PAPER_WORDS_PER_IMAGE, votes="count"), Variant(votes="count")


def test_stability(s: Seed, base: Variant, paper: Variant, counted: Variant, p_max: int) -> dict:
    """Stability (issue 23) of lavise's defaults, of the paper code's word selection and of the defaults with
    counted votes, both probes."""
    return {"defaults": s.stability(base, p_max), f"paper p={paper.p} s={paper.s}": s.stability(paper, p_max),
            "count votes": s.stability(counted, p_max), NETDISSECT_STABILITY: s.netdissect_stability()}


# The control of the stability probes: the supervised ceiling's labels (concepts ranked by IoU on the explain
# half's own masks) under the same probes. No label-free explainer should be expected to be steadier than this.
NETDISSECT_STABILITY = "ceiling: NetDissect on the explain half"


def random_init_row(s: Seed, v: Variant, p_max: int) -> dict:
    """The whole pipeline (head training, explaining, ground truth) on a randomly initialised copy of the model."""
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate import grounded_scores, lemma, random_init_copy, score_row
    from lavise.explain import compute_thresholds
    from lavise.features import extract_features
    from lavise.train import train_explainer

    rnd = random_init_copy(s.model, s.layer, s.seed)
    trained = train_explainer(rnd, s.ref, s.emb, out=s.base.with_name(s.base.name + f"-randominit-{v.train_tag}"),
                              cache_dir=s.base / "cache", extract=s.quiet, options=v.train_options(s.seed, s.args.lr))
    cache = extract_features(rnd, s.layer, s.tgt, s.args.work / f"cache-target-{s.args.target_size}",
                             list(s.tgt.concepts), s.quiet)
    thr = compute_thresholds(cache)
    gt = compute_ground_truth(cache, thr, rows=s.sc_rows)
    mv = method_vectors(trained, cache, v.method, p_max, s.units, rows=s.ex_rows)
    fx = words_from_vectors(first(mv, v.p), cache, s.vocabulary(v.vocabulary), v.s, max(KS), trained, 0.0, v.hubness,
                            v.votes)
    preds = full_lists(fx, s.d)
    row = score_row("control: random-init model", preds, gt, "netdissect", KS, None, None, 10, kind="control")
    conf = [f.confidence for f in fx if f.confidence is not None]
    if conf:
        row["median_confidence"] = float(np.median(conf))
    if trained.calibrator is not None:  # what its reference set gave the calibrator
        fit = trained.calibrator.fitted_on
        row["calibrator"] = {"constant": trained.calibrator.is_constant, "words": fit.get("words"),
                             "right": fit.get("right")}
    row.update(grounded_scores(preds, cache, lemma, rows=s.sc_rows, seed=s.seed))
    s.log("random-init control")
    return row


def image_subset(s: Seed, base: Variant, paper: Variant, lists: dict, p_max: int) -> list[dict]:
    """All five input methods on the same random filters with ground truth (image masking reruns the network
    p times per filter)."""
    truth = s.gt.labels("netdissect")
    cand = [u for u in s.units if truth[u]]
    units = sorted(np.random.default_rng(s.seed).choice(cand, size=min(s.args.image_units, len(cand)),
                                                        replace=False).tolist())
    mvi = method_vectors(s.head(base), s.tcache, "image", p_max, units, s.tgt, s.model, rows=s.ex_rows)
    sub = {n: lists[n] for n in lists if not n.startswith(("control", "ceiling", "random"))}
    for tag, v in (("", base), (f" [paper p={paper.p} s={paper.s}]", paper)):
        fx = words_from_vectors(first(mvi, v.p), s.tcache, s.vocabulary(v.vocabulary), v.s, max(KS), s.head(base),
                                0.0, v.hubness, v.votes)
        sub["image" + tag] = full_lists(fx, s.d)
    s.log(f"image masking on {len(units)} filters")
    return [s.score(n, lst, units=units, grounded=False) for n, lst in sub.items()]


def split_rows_for(s: Seed, base: Variant, k: int, lists: dict) -> tuple[list[dict], dict]:
    """A head trained on split k's seen categories only explains the filters; held-out concepts found. Its
    calibrator is fitted as a user's would be, on reference annotations of the seen categories only, and measured
    on the score half separately for words naming seen and held-out concepts (issue 20)."""
    from lavise.data.scenes import SPLIT_SEED, category_split
    from lavise.evaluate import constant_words, shuffled_lists
    from lavise.explain.confidence import fit_on_reference

    side = category_split(SPLIT_SEED + k)
    trained = s.head(base)
    seen = [c for c in trained.concepts if side.get(c) == "seen"]
    held = [c for c in s.tgt.concepts if side.get(c) == "held_out"]
    ex = train_subset(s.rcache, list(trained.concepts), trained.concept_vectors.numpy(), seen, base, s.seed)
    ex = dataclasses.replace(ex, calibrator=fit_on_reference(ex, s.rcache, s.emb, seed=s.seed, extract=s.quiet,
                                                             concepts=seen))
    out, conf = {}, {}
    for m in METHODS:
        mv = method_vectors(ex, s.tcache, m, base.p, s.units, rows=s.ex_rows)
        fx = s.explanations(dataclasses.replace(base, method=m), base.p, ex, mv)
        out[m] = full_lists(fx, s.d)
        if m == base.method:
            conf = split_confidence(fx, s.gt.labels("netdissect"), seen, held)
            gamma = gamma_from_vectors(mv, ex, s.vocabulary(base.vocabulary), s.names, seed=s.seed)
            out[f"{m} +calibrated (γ={gamma:.3f}, label-free)"] = s.lists(base, base.p, ex, mv, gamma)
            shuffled = shuffled_lists(out[m], [u for u in s.units if s.gt.labels("netdissect")[u]], s.seed)
    keep = set(seen)
    out["netdissect (reference set, seen categories)"] = [[w for w in lst if w in keep]
                                                          for lst in lists["netdissect (reference set)"]]
    counts = {c: n for c, n in zip(s.rgt.concepts, s.rgt.images_with.tolist()) if c in keep}
    out["control: constant"] = constant_words(counts, s.d, max(KS))
    out["control: shuffled"] = shuffled
    rows = [s.score(n, lst, held_out=held, grounded=False) for n, lst in out.items()]
    rows.append(random_mean_row(list(s.tgt.concepts), s.d, s.gt, held, s.seed, NAMES_MEAN))
    s.log(f"split {k}: {len(seen)} seen, {len(held)} held out")
    return rows, conf


def split_confidence(fx, truth, seen, held, top: int = 10) -> dict:
    """Calibration of the words of each filter's top ``top`` by what they name: a seen concept, a held-out
    concept or neither (lemma match). Per group: words, share right, mean confidence, ECE."""
    from lavise.evaluate import lemma
    from lavise.explain.confidence import expected_calibration_error

    groups = {"seen": {lemma(c) for c in seen}, "held_out": {lemma(c) for c in held}}
    acc = {g: ([], []) for g in ("seen", "held_out", "other")}
    for f in fx:
        keys = {lemma(c) for c in truth[f.unit]}
        for w in f.words[:top]:
            if w.get("confidence") is None:
                return {}
            key = lemma(w["word"])
            g = next((g for g, names in groups.items() if key in names), "other")
            acc[g][0].append(w["confidence"])
            acc[g][1].append(int(key in keys))
    res = {}
    for g, (c, r) in acc.items():
        c, r = np.array(c, dtype=float), np.array(r, dtype=float)
        res[g] = {"words": int(len(c)), "right": int(r.sum()),
                  "share_right": float(r.mean()) if len(r) else float("nan"),
                  "mean_confidence": float(c.mean()) if len(c) else float("nan"),
                  "ECE": expected_calibration_error(c, r)}
    return res


REDO = ("splits", "stability", "confidence")


def redo(args, res: dict, model, emb) -> dict:
    """Recompute parts (``args.redo``) of a kept test seed's result, its heads reloaded, not retrained."""
    from lavise.evaluate import netdissect_lists

    args.reuse_heads = True
    s = Seed(args, res["seed"], model, emb)
    res = dict(res)
    if "splits" in args.redo:
        lists = {"netdissect (reference set)": netdissect_lists(s.rgt)}
        done = {str(k): split_rows_for(s, Variant(), k, lists) for k in args.splits}
        res.update(splits={k: v[0] for k, v in done.items()}, split_confidence={k: v[1] for k, v in done.items()})
    if "stability" in args.redo:
        base, paper, counted = test_variants()
        res["stability"] = test_stability(s, base, paper, counted, max(base.p, paper.p))
    if "confidence" in args.redo:  # the reused heads' calibrators refitted on today's signals (Seed.recalibrated)
        from lavise.evaluate import lemma
        from lavise.evaluate.core import confidence_report

        base = test_variants()[0]
        fx = [f for f in s.explanations(base, base.p) if f.confidence is not None]
        res["confidence"] = confidence_report(fx, s.gt.labels("netdissect"), lemma)
    res.setdefault("redone", {}).update({part: time.time() - s.t0 for part in args.redo})
    return res


# ----------------------------------------------------------------------------- report


def aggregate(rows_by_seed: list[list[dict]]) -> list[dict]:
    """Mean and sample SD over seeds of every numeric field, row by row (rows matched by name + convention);
    ``per_seed`` keeps every seed's headline values."""
    def name(r):  # a per-seed detail in parentheses (the label-free γ) does not make another row
        return r["name"].split(" (γ=")[0]

    out = []
    for r0 in rows_by_seed[0]:
        key = (name(r0), r0.get("convention"))
        same = [next(r for r in rows if (name(r), r.get("convention")) == key) for rows in rows_by_seed]
        agg = {"name": name(r0), "convention": r0.get("convention"), "kind": r0.get("kind", "")}
        for k, v in r0.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = np.array([float(r[k]) for r in same])
                agg[k] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
                agg.setdefault("per_seed", {})[k] = vals.tolist()
        out.append(agg)
    return out


def per_seed_table(rows, metrics=HEADLINE) -> str:
    from lavise.evaluate import format_table

    flat = [{"name": r["name"], **{m: " ".join(f"{v:.3f}" for v in r["per_seed"][m]) for m in metrics}} for r in rows]
    return format_table(flat, metrics)


def beats(rows_by_seed, a, others, metric) -> list[str]:
    """The rows in ``others`` that ``a`` does not beat on every seed (strictly) on ``metric``."""
    lost = []
    for b in others:
        va = [next(r for r in rows if r["name"] == a and r.get("convention") == "netdissect")[metric]
              for rows in rows_by_seed]
        vb = [next(r for r in rows if r["name"] == b and r.get("convention") == "netdissect")[metric]
              for rows in rows_by_seed]
        if not all(x > y for x, y in zip(va, vb)):
            lost.append(f"{b} ({sum(x > y for x, y in zip(va, vb))}/{len(va)} seeds)")
    return lost


def header(all_res, args, cmd) -> list[str]:
    return [f"Command: `{cmd}`", "",
            f"Model efficientnet-lite0, layer `{all_res[0]['layer']}` (1280 filters, 7x7), embeddings {args.embeddings}; "
            f"reference {args.reference_size} train scenes (every category), target {args.target_size} test scenes; "
            f"{args.role} seeds {args.seeds}. Held-out scoring: explanations from one seeded half of the target "
            "scenes, ground truth (IoU > 0.04, NetDissect's convention unless marked) from the other; lemma "
            "matching (exact_ columns: exact). Figures are mean ± sample SD over seeds.", ""]


def decide(agg: list[dict], incumbent: str = "defaults") -> dict:
    """The incumbent (the current default's row) unless alternatives beat it on every seed: then the best of those
    by mean decision score."""
    current = next(r for r in agg if r["name"] == incumbent)
    better = [r for r in agg if r is not current and all(
        a > b for a, b in zip(r["per_seed"]["decision"], current["per_seed"]["decision"]))]
    return max(better, key=lambda r: r["decision"][0]) if better else current


def render_validation(all_res, args, cmd) -> str:
    from lavise.evaluate import format_table

    lines = ["# Explanation quality: validation draws (decisions)", ""] + header(all_res, args, cmd)
    lines += [f"Each default against its alternatives, one factor at a time, every other setting at its default "
              f"(`{Variant()}`). Decision score: (P@1 + R@10 + F1@10) / 3 (`per seed` lists it for each seed). A default "
              "changes only to an alternative that beats it on every validation seed; among those, the highest mean "
              "wins.", ""]
    for field in all_res[0]["grid"]:
        by_seed = [res["grid"][field] for res in all_res]
        for rows in by_seed:
            for r in rows:
                r["decision"] = decision(r)
                r.setdefault("convention", "netdissect")
        agg = aggregate(by_seed)
        # the incumbent is today's default: a follow-up grid rendered after a change compares with the new default
        now = dataclasses.asdict(Variant())
        incumbent = next((r["name"] for r in by_seed[0] if r.get("variant") == now), "defaults")
        win = decide(agg, incumbent)
        for r in agg:
            r["per seed"] = " ".join(f"{v:.3f}" for v in r["per_seed"]["decision"])
        lines += [f"## {field}: decided {win['name']} (incumbent: {incumbent})", "", "```",
                  format_table(agg, ("P@1", "R@10", "F1@10", "AUPRC", "decision", "per seed", "kept_noise",
                                           "kept_noise_interpretable", "kept_halves", "kept_halves_interpretable")), "```", ""]
    lines.append(f"Versions: {json.dumps(versions())}; {platform.processor() or platform.machine()}; "
                 f"wall time {sum(r['seconds'] for r in all_res):.0f} s.")
    return "\n".join(lines)


def render_test(all_res, args, cmd) -> str:
    from lavise.evaluate import format_table

    lines = ["# Explanation quality: test draws", ""] + header(all_res, args, cmd)
    lines += [f"Defaults: `{Variant()}` (decided on the validation draws, bench/results/quality-validation.md). "
              f"Head validation top-1: {np.mean([r['val_top1'] for r in all_res]):.3f}.", ""]
    for conv in ("netdissect", "present"):
        rows = aggregate([[r for r in res["table"] if r.get("convention", "netdissect") == conv] for res in all_res])
        lines += [f"## Every category trained; ground truth: {conv} convention", "", "```",
                  format_table(rows, ("kind",) + COLUMNS), "```", ""]
        if conv == "netdissect":
            lines += ["Every seed (P@1, R@10, F1@10):", "", "```", per_seed_table(rows), "```", ""]
    tables = [[r for r in res["table"] if r.get("convention", "netdissect") == "netdissect"] for res in all_res]
    others = [r["name"] for r in tables[0] if r.get("kind") in ("control", "baseline")]
    for m in HEADLINE:
        lost = beats(tables, DEFAULT_METHOD, others, m)
        lines.append(f"- {DEFAULT_METHOD} {m}: ahead of every control and baseline on every seed" if not lost else
                     f"- {DEFAULT_METHOD} {m}: not ahead on every seed of {', '.join(lost)}")
    lines.append("")
    if all("confidence" in res for res in all_res):
        lines += confidence_lines(all_res)
    if all("stability" in res for res in all_res):
        lines += stability_lines(all_res)
    if "subset" in all_res[0]:
        rows = aggregate([res["subset"] for res in all_res])
        lines += [f"## The input methods on the same {args.image_units} random filters with ground truth per seed "
                  "(image masking reruns the network p times per filter)", "", "```",
                  format_table(rows, ("P@1", "R@10", "F1@10")), "```", ""]
    for k in all_res[0]["splits"]:
        rows = aggregate([res["splits"][k] for res in all_res])
        names = next(r for r in rows if r["name"] == NAMES_MEAN)
        lines += [f"## Category split {k}: head trained on the seen categories only; held-out concepts discovered",
                  "", "```", format_table(rows, SPLIT_COLUMNS), "```", "",
                  "Held-out concepts discovered, every seed:", "", "```",
                  per_seed_table(rows, ("novel_discovered",)), "```", ""]
        if all(res.get("split_confidence", {}).get(k) for res in all_res):
            lines += split_confidence_lines([res["split_confidence"][k] for res in all_res])
        for r in rows:
            if r["kind"] == "method" or not r["name"].startswith(("control", "netdissect")):
                ratio = r["novel_discovered"][0] / max(names["novel_discovered"][0], 1e-9)
                lines.append(f"- {r['name']}: {ratio:.2f}x the held-out concepts of random concept names")
        lines.append("")
    lines.append(f"Versions: {json.dumps(versions())}; {platform.processor() or platform.machine()}; "
                 f"wall time {sum(r['seconds'] for r in all_res):.0f} s.")
    return "\n".join(lines)


def split_confidence_lines(per_seed: list[dict]) -> list[str]:
    """Calibration of the split head's top-10 words by what they name, every seed."""
    lines = ["Calibrated confidence of the default's top-10 words (calibrator fitted on seen-category annotations "
             "only), per seed: words, share right, mean confidence, ECE:", ""]
    for g, label in (("seen", "naming a seen concept"), ("held_out", "naming a held-out concept"),
                     ("other", "naming no concept of the dataset")):
        cells = [f"{c[g]['words']} words, {c[g]['share_right']:.3f} right, confidence {c[g]['mean_confidence']:.3f}, "
                 f"ECE {c[g]['ECE']:.3f}" for c in per_seed]
        lines.append(f"- {label}: " + "; ".join(cells))
    return lines + [""]


def stability_lines(all_res) -> list[str]:
    """Stability of the default's and the paper's word selection under both probes, every seed."""
    lines = ["## Stability: the top word under another half of the images and under pixel noise "
             f"(sigma {NOISE_SIGMA})", ""]
    for variant in all_res[0]["stability"]:
        for probe in ("noise", "halves"):
            rs = [res["stability"][variant][probe] for res in all_res]

            def per(key, rs=rs):
                return " / ".join("-" if r.get(key) is None else f"{r[key]:.3f}" for r in rs)
            lines.append(f"- {variant}, {probe}: top word unchanged {per('top1_unchanged')} (interpretable filters "
                         f"{per('top1_unchanged_interpretable')}); top-10 Jaccard {per('top10_jaccard')}; AUROC of the "
                         f"filters' own vote stability {per('AUROC_vote_stability')}")
    return lines + [""]


def confidence_lines(all_res) -> list[str]:
    """The default method's calibrated confidence (issue 20) on the score half, every seed."""
    def seeds(f):
        vals = [f(res) for res in all_res]
        return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f} ({' / '.join(f'{v:.3f}' for v in vals)})"

    def rnd(res):
        return next((r.get("median_confidence", np.nan) for r in res["table"]
                     if r["name"] == "control: random-init model"), np.nan)

    quart = [" / ".join(f"{res['confidence']['quartiles'][q]['precision']:.3f}" for res in all_res) for q in range(4)]
    quart_gt = [" / ".join(f"{res['confidence']['quartiles_with_truth'][q]['precision']:.3f}" for res in all_res)
                for q in range(4)]
    return ["## Calibrated confidence of the default's top word (score half)", "",
            f"- ECE (10 bins): {seeds(lambda r: r['confidence']['ECE'])}; word-level ECE "
            f"{seeds(lambda r: r['confidence']['ECE_words'])}",
            f"- AUROC of the filter confidence for a right top word: {seeds(lambda r: r['confidence']['AUROC_confidence'])}",
            f"- share right by confidence quartile, lowest to highest (per seed): {'; '.join(quart)}",
            f"- the same among filters with ground truth (where P@1 is measured): {'; '.join(quart_gt)}; AUROC there "
            f"{seeds(lambda r: r['confidence']['AUROC_with_truth'])}",
            f"- interpretable filters (confidence ≥ 0.5): {seeds(lambda r: r['confidence']['interpretable'])}, P@1 there "
            f"{seeds(lambda r: r['confidence']['P@1_interpretable'])}",
            f"- median filter confidence: trained model {seeds(lambda r: r['confidence']['median_confidence'])}, "
            f"randomly initialised copy {seeds(rnd)}", ""]


def versions():
    from lavise.run import versions as v

    return v()


# ----------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["test", "validation"], default="test",
                    help="test (default): the headline figures; validation: the decisions")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help=f"default {TEST_SEEDS} (test) or {VALIDATION_SEEDS} (validation)")
    ap.add_argument("--splits", type=int, nargs="*", default=[0, 1, 2],
                    help="category splits for held-out discovery (test role; 0: the shipped split)")
    ap.add_argument("--reference-size", type=int, default=4000)
    ap.add_argument("--target-size", type=int, default=8000)
    ap.add_argument("--embeddings", default="glove-6b-50d")
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--image-units", type=int, default=16)
    ap.add_argument("--no-random-init", dest="random_init", action="store_false",
                    help="leave out the random-init control (it extracts and trains once more per seed)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--name", default=None, help="results name (default: quality-test or quality-validation)")
    ap.add_argument("--resume", action="store_true", help="reuse the per-seed results kept in --work")
    ap.add_argument("--grid", nargs="+", default=None, metavar="FIELD=V1,V2",
                    help="validation role: score only these factors and values (default: every default's grid)")
    ap.add_argument("--reuse-heads", action="store_true",
                    help="load a seed's head saved by an earlier run with the same training options instead of "
                         "training it again")
    ap.add_argument("--redo", nargs="+", choices=REDO, default=[],
                    help="with --resume (test role): recompute these parts of the kept seeds' results, reloading "
                         "their heads")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--run", help="user mode: an existing run folder to evaluate")
    ap.add_argument("--dataset", help="user mode: the dataset spec to evaluate on")
    args = ap.parse_args(argv)
    cmd = "python bench/quality.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.run or args.dataset:
        return user_mode(args, cmd)
    args.seeds = args.seeds or (TEST_SEEDS if args.role == "test" else VALIDATION_SEEDS)
    wrong = [s for s in args.seeds if (s >= FIRST_VALIDATION_SEED) != (args.role == "validation")]
    if wrong:
        raise SystemExit(f"seeds {wrong} belong to the other role: validation seeds are >= {FIRST_VALIDATION_SEED}, "
                         "test seeds below; decisions never see a test draw")
    args.name = args.name or f"quality-{args.role}"
    if args.quick:
        args.reference_size, args.target_size, args.image_units = 150, 60, 4
        args.work = args.work.with_name(args.work.name + "-quick")
        args.name += "-quick"
    from lavise.embeddings import load_embeddings
    from lavise.models import load_model

    model = load_model("efficientnet-lite0")
    emb = load_embeddings(args.embeddings)
    all_res = []
    for seed in args.seeds:
        kept = args.work / f"{args.name}-seed{seed}-r{args.reference_size}-t{args.target_size}.json"
        if args.resume and kept.is_file():
            all_res.append(json.loads(kept.read_text()))
            if args.redo and args.role == "test":
                all_res[-1] = redo(args, all_res[-1], model, emb)
                kept.write_text(json.dumps(all_res[-1], default=str))
            continue
        run = run_test if args.role == "test" else run_validation
        all_res.append(run(args, seed, model, emb))
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(all_res[-1], default=str))
    text = (render_test if args.role == "test" else render_validation)(all_res, args, cmd)
    print(text)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"command": cmd, "versions": versions(), "args": {k: str(v) for k, v in vars(args).items()}, "seeds": all_res},
        indent=1, default=str))
    return 0


def user_mode(args, cmd):
    """Score an existing run on a named dataset: all methods, NetDissect, random words, controls and ceilings."""
    from lavise.data import load_dataset
    from lavise.evaluate import evaluate_run
    from lavise.options import EvalOptions

    if not (args.run and args.dataset):
        raise SystemExit("user mode needs both --run RUN and --dataset SPEC")
    ds = load_dataset(args.dataset)
    options = EvalOptions(methods=METHODS + ("image",), image_units=args.image_units)
    ev = evaluate_run(args.run, ds, options)
    text = "\n\n".join([f"# Explanation quality on {args.dataset}", f"Command: `{cmd}`",
                        *[f"## {conv} convention\n\n```\n{ev.table(conv, COLUMNS)}\n```" for conv in ev.ground_truth],
                        f"Versions: {json.dumps(versions())}"])
    print(text)
    name = args.name or "quality-user"
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": cmd, **ev.to_dict()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
