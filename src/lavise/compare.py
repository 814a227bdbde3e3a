"""Unsupervised comparisons (paper §4.6): image groups (dataset bias) and models.

Group comparison: for filter u an image is *qualified* when its max activation
exceeds T_u (``Thresholds``: ``>=`` for saturated filters, never for dead
ones). The share of qualified images is compared between groups with a test
suited to proportions — the pooled two-proportion z-test for two groups, the
chi-square test of independence (groups x qualified) for more — and the
p-values of all filters are corrected together (Benjamini–Hochberg by
default, or Holm). Filters are ranked by the largest difference in
percentage points between groups (ties: smaller p-value). All statistics are
computed for every filter at once with numpy.

Model comparison: the concepts a model's filters express are the distinct
top words of its interpretable filters (not dead, top word voted by at least
``min_score`` of the filter's top images); two models are compared by the
shared and unique concepts, as in the paper's pretrained-versus-scratch count.
"""
from __future__ import annotations

import csv
import io as _io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import stats as _st

from .data.base import ConceptDataset
from .errors import DatasetError, LaviseError, RunError
from .explain import Explanations
from .features import FeatureCache, cache_key, extract_features
from .io import read_json, write_json, write_text
from .run import RunFolder, versions
from .stats import Thresholds

CORRECTIONS = ("bh", "holm", "none")
RANK_BY = ("difference", "statistic")
GROUP_FILE = "compare.json"
MODEL_FILE = "compare_models.json"


# ----------------------------------------------------------------------------------------------
# statistics (vectorised over filters)
# ----------------------------------------------------------------------------------------------

def two_proportion_z(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-test for every filter.

    Args:
        k: (2, d) qualified counts per group.
        n: (2,) group sizes.

    Returns:
        z (d,) (positive when group 0 has the larger share) and two-sided p-values (d,).
        Filters qualified in no image or in every image get z = 0, p = 1.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p1, p2 = k[0] / n[0], k[1] / n[1]
    pooled = (k[0] + k[1]) / (n[0] + n[1])
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n[0] + 1.0 / n[1]))
    ok = se > 0
    z = np.zeros_like(pooled)
    z[ok] = (p1[ok] - p2[ok]) / se[ok]
    p = np.ones_like(pooled)
    p[ok] = 2.0 * _st.norm.sf(np.abs(z[ok]))
    return z, p


def chi_square(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Chi-square test of independence of group and qualification, for every filter.

    Args:
        k: (G, d) qualified counts per group.
        n: (G,) group sizes.

    Returns:
        statistic (d,), p-values (d,), degrees of freedom (G - 1).
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)[:, None]
    obs = np.stack([k, n - k])  # (2, G, d): qualified / not qualified
    col = obs.sum(1, keepdims=True)  # (2, 1, d)
    total = n.sum()
    exp = col * n[None] / total  # (2, G, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(exp > 0, (obs - exp) ** 2 / np.where(exp > 0, exp, 1.0), 0.0)
    stat = terms.sum((0, 1))
    dof = k.shape[0] - 1
    p = np.where(stat > 0, _st.chi2.sf(stat, dof), 1.0)
    return stat, p, dof


def adjust_pvalues(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """Correct p-values for testing every filter: ``bh`` (Benjamini–Hochberg FDR), ``holm`` (FWER) or ``none``."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ps = p[order]
    if method == "bh":
        adj = ps * m / np.arange(1, m + 1)
        adj = np.minimum.accumulate(adj[::-1])[::-1]
    elif method == "holm":
        adj = np.maximum.accumulate(ps * (m - np.arange(m)))
    else:
        raise LaviseError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def qualified(maxima: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """(N, d) bool: image n is qualified for filter u (max activation above T_u)."""
    mx = np.asarray(maxima, dtype=np.float32)
    t = thresholds.values[None]
    q = np.where(thresholds.inclusive[None], mx >= t, mx > t)
    return q & ~thresholds.dead[None]


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterDifference:
    """One filter's qualified-image shares per group and its test.

    Attributes:
        unit: filter index.
        rank: 1 = largest difference.
        counts / percentages: qualified images per group (count, % of the group).
        difference: percentage points; two groups: first minus second; more: largest minus smallest.
        statistic: z (two groups) or chi-square (more).
        p_value, q_value: raw and corrected p-values.
        words: the filter's explanation, best first.
        examples: group -> most activating qualified image ids (empty beyond the listed top filters).
    """

    unit: int
    rank: int
    counts: dict
    percentages: dict
    difference: float
    statistic: float
    p_value: float
    q_value: float
    words: list
    examples: dict = field(default_factory=dict)

    @property
    def top_word(self) -> str:
        return self.words[0] if self.words else ""


@dataclass(frozen=True)
class GroupComparison:
    """Which filters fire on a larger share of one group's images; ``save`` writes JSON, CSV and a figure."""

    run: str
    model: str
    layer: str
    dataset: str
    groups: list
    sizes: dict
    test: str
    correction: str
    alpha: float
    filters: list  # FilterDifference, ranked
    settings: dict = field(default_factory=dict)

    def top(self, n: int = 10) -> list[FilterDifference]:
        return list(self.filters[:n])

    @property
    def significant(self) -> list[FilterDifference]:
        return [f for f in self.filters if f.q_value < self.alpha]

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("run", "model", "layer", "dataset", "groups", "sizes", "test",
                                          "correction", "alpha", "settings")}
        d["filters"] = [asdict(f) for f in self.filters]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GroupComparison":
        filters = [FilterDifference(**f) for f in d["filters"]]
        return cls(d["run"], d["model"], d["layer"], d["dataset"], d["groups"], d["sizes"], d["test"],
                   d["correction"], d["alpha"], filters, d.get("settings", {}))

    def csv_text(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["rank", "unit", *[f"pct_{g}" for g in self.groups], *[f"n_{g}" for g in self.groups],
                    "difference", "statistic", "p_value", "q_value", "words"])
        for f in self.filters:
            w.writerow([f.rank, f.unit, *[f.percentages[g] for g in self.groups], *[f.counts[g] for g in self.groups],
                        f.difference, f.statistic, f.p_value, f.q_value, " | ".join(f.words)])
        return buf.getvalue()

    def save(self, out: str | Path, figure: bool = True, top: int = 10) -> Path:
        """Write ``compare.json``, ``compare.csv`` and ``compare.png`` (top filters) into ``out``."""
        out = Path(out)
        write_json(out / GROUP_FILE, self.to_dict())
        write_text(out / "compare.csv", self.csv_text())
        if figure:
            from .plots import plot_group_comparison, save_figure

            fig, _ = plot_group_comparison(self, top=top)
            save_figure(fig, out / "compare.png")
        return out / GROUP_FILE

    @classmethod
    def load(cls, path: str | Path) -> "GroupComparison":
        p = Path(path)
        return cls.from_dict(read_json(p / GROUP_FILE if p.is_dir() else p))


# ----------------------------------------------------------------------------------------------
# groups
# ----------------------------------------------------------------------------------------------

def read_groups_csv(path: str | Path, dataset: ConceptDataset) -> list[str | None]:
    """Group of every dataset image from a CSV with columns ``image,group``.

    ``image`` is the image's path relative to the dataset root (or its image id). Images
    the CSV does not list get ``None`` (left out); CSV rows naming no dataset image are an
    error when none match and a warning otherwise.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"groups file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read groups file {path}: {e}") from None
    reader = csv.DictReader(_io.StringIO(text))
    cols = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
    if "image" not in cols or "group" not in cols:
        raise DatasetError(f"{path} needs a header with columns image,group (found {', '.join(cols) or 'none'})")
    index: dict[str, int] = {}
    root = dataset.root.resolve() if dataset.root else None
    for i, (image_id, p, _g) in enumerate(dataset.items):
        index.setdefault(str(image_id).replace("\\", "/"), i)
        if root is not None:
            try:
                index.setdefault(Path(p).resolve().relative_to(root).as_posix(), i)
            except ValueError:
                pass
    groups: list[str | None] = [None] * len(dataset)
    unknown: list[str] = []
    for line, row in enumerate(reader, 2):
        img = (row.get(cols["image"]) or "").strip().replace("\\", "/").removeprefix("./")
        grp = (row.get(cols["group"]) or "").strip()
        if not img and not grp:
            continue
        if not img or not grp:
            raise DatasetError(f"{path} line {line}: both image and group are needed")
        i = index.get(img)
        if i is None:
            unknown.append(img)
            continue
        if groups[i] is not None and groups[i] != grp:
            raise DatasetError(f"{path} line {line}: image {img!r} is in two groups ({groups[i]!r} and {grp!r})")
        groups[i] = grp
    if unknown and all(g is None for g in groups):
        raise DatasetError(f"none of the images in {path} are in {dataset.spec} (e.g. {unknown[0]!r}); "
                           "write image paths relative to the dataset root")
    if unknown:
        warnings.warn(f"{len(unknown)} image(s) of {path} are not in {dataset.spec}, e.g. {unknown[0]!r}", stacklevel=2)
    return groups


def select_groups(groups: list[str | None], only: list[str] | None = None,
                  one_vs_rest: str | None = None) -> list[str | None]:
    """Restrict to ``only`` groups, or relabel into ``one_vs_rest`` against ``rest``."""
    present = {g for g in groups if g is not None}
    if only:
        missing = [g for g in only if g not in present]
        if missing:
            raise DatasetError(f"no image is in group(s) {', '.join(map(repr, missing))}; groups are {', '.join(sorted(present))}")
        keep = set(only)
        groups = [g if g in keep else None for g in groups]
    if one_vs_rest is not None:
        if one_vs_rest not in present:
            raise DatasetError(f"no image is in group {one_vs_rest!r}; groups are {', '.join(sorted(present))}")
        groups = [None if g is None else (g if g == one_vs_rest else "rest") for g in groups]
    return groups


# ----------------------------------------------------------------------------------------------
# comparison of groups
# ----------------------------------------------------------------------------------------------

def open_target_cache(run: str | Path, dataset: ConceptDataset, target=None, cache_dir: str | Path | None = None,
                      **extract) -> FeatureCache:
    """The run's target feature cache of ``dataset``, extracted only if ``lavise explain`` has not done it already."""
    rf = RunFolder(run)
    cfg = rf.config()
    cache_dir = Path(cache_dir) if cache_dir else rf.cache_dir
    if target is None and "model_digest" in cfg and "preprocess" in cfg:
        from .data.transforms import Preprocess

        stand_in = SimpleNamespace(weights_digest=cfg["model_digest"], preprocess=Preprocess.from_dict(cfg["preprocess"]))
        key = cache_key(stand_in, cfg["layer"], dataset, None, extract.get("amp", False))  # type: ignore[arg-type]
        if (cache_dir / key / "meta.json").is_file():
            return FeatureCache.open(cache_dir / key)
    if target is None:
        from .models import load_model

        target = load_model(cfg["model"], cfg.get("weights"))
        if target.weights_digest != cfg.get("model_digest", target.weights_digest):
            raise RunError(f"the weights of {cfg['model']} differ from those the explainer was trained on; pass the same weights")
    return extract_features(target, cfg["layer"], dataset, cache_dir, None, **extract)


def compare_groups(
    run: str | Path,
    images: ConceptDataset,
    groups: str | Path | list[str | None] | None = None,
    only: list[str] | None = None,
    one_vs_rest: str | None = None,
    correction: str = "bh",
    alpha: float = 0.05,
    rank_by: str = "difference",
    top: int = 20,
    examples: int = 4,
    target=None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    amp: bool = False,
    strict: bool = False,
    show_progress: bool = True,
) -> GroupComparison:
    """Compare the share of qualified images of every filter between groups of images.

    Args:
        run: run folder with ``explanations.json`` (from ``lavise explain``).
        images: the dataset whose images are grouped.
        groups: a CSV file (``image,group``), a list with one group per dataset image, or None for the
            dataset's own groups (class subfolders of a folder dataset, themes of the built-in scenes).
        only: keep only these groups; one_vs_rest: compare this group against all others.
        correction: ``bh``, ``holm`` or ``none`` over all filters; alpha: significance level.
        rank_by: ``difference`` (percentage points) or ``statistic`` (|z| or chi-square).
        top: filters given example images; examples: images per group and filter.
        target: the model (default: loaded from the run's config, only if features must be extracted).
        cache_dir: feature caches (default ``RUN/cache``, shared with ``lavise explain``).
        out: folder to write ``compare.json``/``.csv``/``.png`` into (None: do not save).
        device, batch_size, num_workers, amp, strict, show_progress: extraction settings.

    Returns:
        The ``GroupComparison`` with every filter, ranked.
    """
    if correction not in CORRECTIONS:
        raise LaviseError(f"unknown correction {correction!r}; use one of {', '.join(CORRECTIONS)}")
    if rank_by not in RANK_BY:
        raise LaviseError(f"unknown ranking {rank_by!r}; use one of {', '.join(RANK_BY)}")
    rf = RunFolder(run)
    cfg = rf.config()
    if not rf.has("explanations", verify=True):
        raise RunError(f"run folder {rf.path} has no explanations; run `lavise explain {rf.path} --images ...` first")
    ex = Explanations.load(rf.path)
    if groups is None:
        per_image = list(images.groups)
        if all(g is None for g in per_image):
            raise DatasetError(f"{images.spec} records no groups; give --groups FILE.csv (columns image,group) "
                               "or use a folder dataset with one subfolder per group")
        source = "dataset"
    elif isinstance(groups, (str, Path)):
        per_image = read_groups_csv(groups, images)
        source = str(groups)
    else:
        per_image = list(groups)
        if len(per_image) != len(images):
            raise DatasetError(f"got {len(per_image)} groups for {len(images)} images")
        source = "list"
    per_image = select_groups(per_image, only, one_vs_rest)

    cache = open_target_cache(rf.path, images, target, cache_dir, batch_size=batch_size, num_workers=num_workers, amp=amp,
                              device=device, strict=strict, show_progress=show_progress)
    d = cache.shape[0]
    if d != len(ex.filters) and {f.unit for f in ex.filters} - set(range(d)):
        raise RunError(f"explanations.json lists filters outside the layer's {d} filters; rerun `lavise explain`")
    thr = Thresholds.from_stats(cache.stats)
    row_groups = np.array([per_image[int(i)] for i in cache.dataset_index], dtype=object)
    names = sorted({g for g in row_groups if g is not None})
    if one_vs_rest is not None and "rest" in names:
        names = [one_vs_rest, "rest"]
    if len(names) < 2:
        raise DatasetError(f"need at least two groups with images to compare, found {len(names)} ({', '.join(names) or 'none'})")
    q = qualified(cache.maxima, thr)  # (N, d)
    member = np.stack([row_groups == g for g in names])  # (G, N)
    n = member.sum(1)
    k = member.astype(np.int64) @ q.astype(np.int64)  # (G, d)
    pct = 100.0 * k / n[:, None]
    if len(names) == 2:
        stat, p = two_proportion_z(k, n)
        test, diff = "two-proportion z-test (pooled)", pct[0] - pct[1]
    else:
        stat, p, _dof = chi_square(k, n)
        test, diff = f"chi-square test of independence ({len(names) - 1} dof)", pct.max(0) - pct.min(0)
    qv = adjust_pvalues(p, correction)
    key = np.abs(diff) if rank_by == "difference" else np.abs(stat)
    order = np.lexsort((np.arange(d), p, -key))

    words = {f.unit: f.top_words for f in ex.filters}
    mx = np.asarray(cache.maxima, dtype=np.float32)
    filters = []
    for rank, u in enumerate(order.tolist(), 1):
        eg = {}
        if rank <= top:
            for gi, g in enumerate(names):
                rows = np.flatnonzero(member[gi] & q[:, u])
                best = rows[np.argsort(-mx[rows, u], kind="stable")[:examples]]
                eg[g] = [cache.image_ids[int(r)] for r in best]
        filters.append(FilterDifference(
            unit=int(u), rank=rank, counts={g: int(k[gi, u]) for gi, g in enumerate(names)},
            percentages={g: round(float(pct[gi, u]), 4) for gi, g in enumerate(names)},
            difference=round(float(diff[u]), 4), statistic=round(float(stat[u]), 6),
            p_value=float(p[u]), q_value=float(qv[u]), words=list(words.get(u, [])), examples=eg))
    settings = {"groups_from": source, "only": only, "one_vs_rest": one_vs_rest, "rank_by": rank_by, "top": top,
                "examples": examples, "quantile": cache.stats.q, "images": int(n.sum()), "ungrouped_images": int(len(row_groups) - n.sum()),
                "cache": cache.path.name, "dataset_fingerprint": cache.meta["dataset_fingerprint"],
                "explanations_dataset": ex.dataset, "versions": versions()}
    result = GroupComparison(str(rf.path), cfg["model"], cfg["layer"], images.spec, names,
                             {g: int(c) for g, c in zip(names, n)}, test, correction, alpha, filters, settings)
    if out is not None:
        result.save(out, top=min(10, max(top, 1)))
        _record(rf, Path(out), "compare", [GROUP_FILE, "compare.csv", "compare.png"])
    return result


def _record(rf: RunFolder, out: Path, kind: str, files: list[str]) -> None:
    """Record a comparison saved inside the run folder in its manifest (outside: nothing to record)."""
    try:
        rel = out.resolve().relative_to(rf.path.resolve())
    except ValueError:
        return
    present = [f for f in files if (out / f).is_file()]
    rf.record(f"{kind}:{rel.as_posix()}", [(rel / f).as_posix() for f in present])


# ----------------------------------------------------------------------------------------------
# comparison of models
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConcepts:
    """The concepts one model's filters express."""

    label: str
    run: str
    model: str
    layer: str
    dataset: str
    filters: int
    interpretable: int
    concepts: dict  # concept -> list of units whose top words include it


@dataclass(frozen=True)
class ModelComparison:
    """Shared and unique concepts of two models; ``save`` writes JSON, CSV and a figure."""

    a: ModelConcepts
    b: ModelConcepts
    shared: list
    only_a: list
    only_b: list
    settings: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict:
        return {"a": len(self.a.concepts), "b": len(self.b.concepts), "shared": len(self.shared),
                "only_a": len(self.only_a), "only_b": len(self.only_b)}

    def to_dict(self) -> dict:
        return {"a": asdict(self.a), "b": asdict(self.b), "counts": self.counts, "shared": self.shared,
                "only_a": self.only_a, "only_b": self.only_b, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelComparison":
        return cls(ModelConcepts(**d["a"]), ModelConcepts(**d["b"]), d["shared"], d["only_a"], d["only_b"],
                   d.get("settings", {}))

    def csv_text(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["concept", "where", f"filters_{self.a.label}", f"filters_{self.b.label}"])
        for where, names in (("shared", self.shared), ("only_a", self.only_a), ("only_b", self.only_b)):
            for c in names:
                w.writerow([c, where, len(self.a.concepts.get(c, [])), len(self.b.concepts.get(c, []))])
        return buf.getvalue()

    def save(self, out: str | Path, figure: bool = True) -> Path:
        """Write ``compare_models.json``, ``compare_models.csv`` and ``compare_models.png`` into ``out``."""
        out = Path(out)
        write_json(out / MODEL_FILE, self.to_dict())
        write_text(out / "compare_models.csv", self.csv_text())
        if figure:
            from .plots import plot_model_comparison, save_figure

            fig, _ = plot_model_comparison(self)
            save_figure(fig, out / "compare_models.png")
        return out / MODEL_FILE

    @classmethod
    def load(cls, path: str | Path) -> "ModelComparison":
        p = Path(path)
        return cls.from_dict(read_json(p / MODEL_FILE if p.is_dir() else p))


def model_concepts(ex: Explanations, label: str, run: str = "", top_words: int = 1,
                   min_score: float = 0.2) -> ModelConcepts:
    """Distinct top words over the interpretable filters of one explained layer.

    Args:
        ex: the layer's explanations.
        label: a short name for the model.
        top_words: words per filter counted as its concepts (1 = the top word, as in the paper's counts).
        min_score: a filter is interpretable when its top word was voted by at least this share of its top images.
    """
    concepts: dict[str, list[int]] = {}
    interpretable = 0
    for f in ex.filters:
        if f.dead or not f.words or f.words[0]["score"] < min_score:
            continue
        interpretable += 1
        for w in f.words[:top_words]:
            concepts.setdefault(w["word"], []).append(f.unit)
    concepts = dict(sorted(concepts.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    return ModelConcepts(label, run, ex.model, ex.layer, ex.dataset, len(ex.filters), interpretable, concepts)


def compare_models(
    run_a: str | Path | Explanations,
    run_b: str | Path | Explanations,
    labels: tuple[str, str] | None = None,
    top_words: int = 1,
    min_score: float = 0.2,
    out: str | Path | None = None,
) -> ModelComparison:
    """Concepts learned by two models (any architectures), shared and unique.

    Args:
        run_a, run_b: run folders with ``explanations.json`` (or ``Explanations``).
        labels: names for the two models (default: the run folders' names).
        top_words, min_score: see ``model_concepts``.
        out: folder to write ``compare_models.json``/``.csv``/``.png`` into (None: do not save).
    """
    exs, runs = [], []
    for r in (run_a, run_b):
        if isinstance(r, Explanations):
            exs.append(r)
            runs.append("")
        else:
            rf = RunFolder(r)
            if not rf.has("explanations", verify=True):
                raise RunError(f"run folder {rf.path} has no explanations; run `lavise explain {rf.path} --images ...` first")
            exs.append(Explanations.load(rf.path))
            runs.append(str(rf.path))
    if labels is None:
        labels = tuple(Path(r).name if r else ex.model for r, ex in zip(runs, exs))  # type: ignore[assignment]
        if labels[0] == labels[1]:
            labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    fa, fb = (e.settings.get("dataset_fingerprint") for e in exs)
    same_images = exs[0].dataset == exs[1].dataset or (fa is not None and fa == fb)
    if not same_images:
        warnings.warn(f"the two models were explained on different images ({exs[0].dataset} and {exs[1].dataset}); "
                      "concepts are only comparable on the same images", stacklevel=2)
    a = model_concepts(exs[0], labels[0], runs[0], top_words, min_score)
    b = model_concepts(exs[1], labels[1], runs[1], top_words, min_score)
    shared = sorted(set(a.concepts) & set(b.concepts))
    only_a = sorted(set(a.concepts) - set(b.concepts))
    only_b = sorted(set(b.concepts) - set(a.concepts))
    res = ModelComparison(a, b, shared, only_a, only_b,
                          {"top_words": top_words, "min_score": min_score, "same_images": bool(same_images),
                           "versions": versions()})
    if out is not None:
        res.save(out)
        if runs[0]:
            _record(RunFolder(runs[0]), Path(out), "compare-models",
                    [MODEL_FILE, "compare_models.csv", "compare_models.png"])
    return res
