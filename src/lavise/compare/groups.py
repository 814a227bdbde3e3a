"""Comparison of image groups (dataset bias, paper §4.6).

For filter u an image is *qualified* when its max activation exceeds T_u (``Thresholds.qualified``: ``>=``
for saturated filters, never for dead ones). The share of qualified images of every filter is compared
between groups (``stats``: z-test for two groups, chi-square for more, corrected over all filters) and
filters are ranked by the largest difference in percentage points between groups (ties: smaller p-value).
Groups come from a CSV (``image,group``), a list, or the dataset itself (class subfolders, scene themes).
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.base import ConceptDataset
from ..errors import DatasetError, RunError
from ..explain import Explanations
from ..io import read_json, write_json, write_text
from ..options import CompareOptions, ExtractOptions
from ..run import Run, versions
from ..stats import Thresholds
from .files import GROUP_FILE, GROUP_FILES, record_result
from .stats import adjust_pvalues, chi_square, two_proportion_z

if TYPE_CHECKING:
    from ..models import TargetModel

Groups = str | Path | list[str | None] | None


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
        buf = io.StringIO()
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
            from ..plots import plot_group_comparison, save_figure

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
    reader = csv.DictReader(io.StringIO(text))
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


def image_groups(images: ConceptDataset, groups: Groups = None) -> tuple[list[str | None], str]:
    """The group of every image of ``images`` (None: left out) and where the groups came from.

    Args:
        images: the dataset.
        groups: a CSV file (``image,group``), a list with one group per image, or None for the dataset's own.
    """
    if groups is None:
        per_image = list(images.groups)
        if all(g is None for g in per_image):
            raise DatasetError(f"{images.spec} records no groups; give --groups FILE.csv (columns image,group) "
                               "or use a folder dataset with one subfolder per group")
        return per_image, "dataset"
    if isinstance(groups, (str, Path)):
        return read_groups_csv(groups, images), str(groups)
    per_image = list(groups)
    if len(per_image) != len(images):
        raise DatasetError(f"got {len(per_image)} groups for {len(images)} images")
    return per_image, "list"


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
# the comparison
# ----------------------------------------------------------------------------------------------

def run_explanations(run: Run) -> Explanations:
    """The run's saved explanations, or a one-line ``RunError`` naming the step that makes them."""
    if not run.has("explanations", verify=True):
        raise RunError(f"run folder {run.path} has no explanations; run `lavise explain {run.path} --images ...` first")
    return Explanations.load(run.path)


def compare_run(
    run: Run,
    images: ConceptDataset,
    groups: Groups = None,
    only: list[str] | None = None,
    one_vs_rest: str | None = None,
    options: CompareOptions = CompareOptions(),
    extract: ExtractOptions = ExtractOptions(),
    out: str | Path | None = None,
) -> GroupComparison:
    """Compare the share of qualified images of every filter between groups of images.

    Args:
        run: the explained run (``explanations.json`` from ``lavise explain``).
        images: the dataset whose images are grouped.
        groups: a CSV file (``image,group``), a list with one group per dataset image, or None for the
            dataset's own groups (class subfolders of a folder dataset, themes of the built-in scenes).
        only: keep only these groups; one_vs_rest: compare this group against all others.
        options: correction, significance level, ranking, filters given examples and examples per group.
        extract: how the model runs if ``images`` must be extracted (the cache ``lavise explain`` made of
            them is found by the run's cache key and reused, with no model).
        out: folder to write ``compare.json``/``.csv``/``.png`` into (None: do not save).

    Returns:
        The ``GroupComparison`` with every filter, ranked.
    """
    ex = run_explanations(run)
    per_image, source = image_groups(images, groups)
    per_image = select_groups(per_image, only, one_vs_rest)

    cache = run.cache(images, None, extract)
    d = cache.shape[0]
    if d != len(ex.filters) and {f.unit for f in ex.filters} - set(range(d)):
        raise RunError(f"explanations.json lists filters outside the layer's {d} filters; rerun `lavise explain`")
    row_groups = np.array([per_image[int(i)] for i in cache.dataset_index], dtype=object)
    names = sorted({g for g in row_groups if g is not None})
    if one_vs_rest is not None and "rest" in names:
        names = [one_vs_rest, "rest"]
    if len(names) < 2:
        raise DatasetError(f"need at least two groups with images to compare, found {len(names)} ({', '.join(names) or 'none'})")
    q = Thresholds.from_stats(cache.stats).qualified(cache.maxima)  # (N, d)
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
    sel = np.arange(d)
    if options.interpretable_only:
        if not any(f.confidence is not None for f in ex.filters):
            raise RunError("--interpretable-only needs explanations with a calibrated confidence: "
                           f"{ex.verdict().removeprefix('confidence unavailable: ')}")
        sel = np.array(sorted(f.unit for f in ex.filters if f.interpretable and f.unit < d), dtype=np.int64)
        if len(sel) == 0:
            raise RunError("no filter of the explanations is interpretable; leave out --interpretable-only")
    qv = np.full(d, np.nan)
    qv[sel] = adjust_pvalues(p[sel], options.correction)  # over the tested filters only
    key = np.abs(diff) if options.rank_by == "difference" else np.abs(stat)
    order = sel[np.lexsort((sel, p[sel], -key[sel]))]

    words = {f.unit: f.top_words for f in ex.filters}
    mx = np.asarray(cache.maxima, dtype=np.float32)
    filters = []
    for rank, u in enumerate(order.tolist(), 1):
        eg = {}
        if rank <= options.top:
            for gi, g in enumerate(names):
                rows = np.flatnonzero(member[gi] & q[:, u])
                best = rows[np.argsort(-mx[rows, u], kind="stable")[:options.examples]]
                eg[g] = [cache.image_ids[int(r)] for r in best]
        filters.append(FilterDifference(
            unit=int(u), rank=rank, counts={g: int(k[gi, u]) for gi, g in enumerate(names)},
            percentages={g: round(float(pct[gi, u]), 4) for gi, g in enumerate(names)},
            difference=round(float(diff[u]), 4), statistic=round(float(stat[u]), 6),
            p_value=float(p[u]), q_value=float(qv[u]), words=list(words.get(u, [])), examples=eg))
    settings = {"groups_from": source, "only": only, "one_vs_rest": one_vs_rest, "rank_by": options.rank_by,
                "top": options.top, "examples": options.examples, "interpretable_only": options.interpretable_only,
                "filters_tested": int(len(sel)), "quantile": cache.stats.q, "images": int(n.sum()),
                "ungrouped_images": int(len(row_groups) - n.sum()), "cache": cache.path.name,
                "dataset_fingerprint": cache.meta["dataset_fingerprint"], "explanations_dataset": ex.dataset,
                "versions": versions()}
    result = GroupComparison(str(run.path), run.settings["model"], run.layer, images.spec, names,
                             {g: int(c) for g, c in zip(names, n)}, test, options.correction, options.alpha, filters,
                             settings)
    if out is not None:
        result.save(out, top=min(10, max(options.top, 1)))
        if run.saved:
            record_result(run, out, "compare", GROUP_FILES)
    return result


def compare_groups(
    run: "str | Path | Run",
    images: ConceptDataset,
    groups: Groups = None,
    only: list[str] | None = None,
    one_vs_rest: str | None = None,
    options: CompareOptions = CompareOptions(),
    extract: ExtractOptions = ExtractOptions(),
    out: str | Path | None = None,
    target: "TargetModel | None" = None,
    cache_dir: str | Path | None = None,
) -> GroupComparison:
    """``compare_run`` on a run folder (or ``Run``).

    Args:
        run: run folder with ``explanations.json`` (from ``lavise explain``), or a ``Run``.
        images, groups, only, one_vs_rest, options, extract, out: see ``compare_run``.
        target: the model (default: loaded from the run's config, only if features must be extracted); its
            weights must be those the explainer was trained on.
        cache_dir: feature caches (default ``RUN/cache``, shared with ``lavise explain``).
    """
    return compare_run(Run.open(run, target=target, cache_dir=cache_dir), images, groups, only, one_vs_rest, options,
                       extract, out)
