"""``lavise rate``: a run's explanations as a self-contained rating page (``index.html`` + ``key.json``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.base import ConceptDataset
from ..data.transforms import Preprocess
from ..errors import LaviseError
from ..explain import Explanations
from ..report import _Thumbs, explained_cache
from ..run import Run
from ..stats import Thresholds
from .study import KEY_FILE, PAGE_FILE, LabelSource, StudyError, plan_study, read_labels, run_labels, write_page


@dataclass(frozen=True)
class Study:
    """A written rating study: where its page and key are, and what it asks."""

    path: Path
    filters: int
    items: int
    checks: int
    sources: list[str]

    @property
    def page(self) -> Path:
        return self.path / PAGE_FILE

    @property
    def key(self) -> Path:
        return self.path / KEY_FILE


def parse_against(spec: str) -> tuple[str | None, str]:
    """``NAME=FILE`` or ``FILE`` -> (name or None, file)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        return name.strip() or None, path
    return None, spec


def build_study(
    run: str | Path | Run,
    out: str | Path,
    against: list[str | tuple[str | None, str | Path]] = (),
    filters: int = 40,
    words: int = 5,
    images: int = 15,
    checks: int = 3,
    control: bool = True,
    seed: int = 0,
    thumb: int = 160,
    dataset: ConceptDataset | None = None,
    title: str | None = None,
    show_progress: bool = True,
) -> Study:
    """Write a rating study of a run's explanations into ``out``.

    Args:
        run: a run folder with explanations (``lavise explain``), or a ``Run``.
        out: the study folder: ``index.html`` (for raters) and ``key.json`` (the answer key; keep it).
        against: other methods' labels: CSV paths, ``NAME=PATH`` strings or ``(name, path)`` pairs.
        filters: filters sampled, stratified by the run's confidence (or top-word vote share).
        words: top words per source (the paper's top-5).
        images: top images per filter, the region above T_u outlined (the paper showed 15).
        checks: attention checks per task.
        control: add a shuffled control source (another sampled filter's words).
        seed: sampling and shuffling seed.
        thumb: image size in pixels.
        dataset: the explained images (default: loaded from the spec in ``explanations.json``).
        title: page title.
        show_progress: progress bar while drawing images.

    Returns:
        the ``Study``.
    """
    for name, v, lo in (("filters", filters, 2), ("words", words, 1), ("images", images, 1), ("checks", checks, 0),
                        ("thumb", thumb, 32)):
        if int(v) < lo:
            raise StudyError(f"{name} must be at least {lo} (got {v})")
    rf = Run.open(run)
    rf.require("explanations", "lavise explain")
    ex = Explanations.load(rf.path)
    sources: list[LabelSource] = [run_labels(ex)]
    n_units = max((f.unit for f in ex.filters), default=-1) + 1
    for a in against:
        name, path = parse_against(a) if isinstance(a, str) else a
        src = read_labels(path, name, layer=ex.layer)
        big = [u for u in src.words if u >= n_units]
        if big:
            raise StudyError(f"{path} names unit {max(big)}, but layer {ex.layer} has {n_units} filters: "
                             "are these labels of another layer or model?")
        sources.append(src)
    if "preprocess" not in rf.settings:
        raise StudyError(f"{rf.path} records no preprocessing; train it again with this version of lavise")
    pre = Preprocess.from_dict(rf.settings["preprocess"])
    if dataset is None:
        from ..data import load_dataset

        try:
            dataset = load_dataset(ex.dataset)
        except LaviseError as e:
            raise StudyError(f"cannot load the images explained in {rf.path} ({e}); the page shows them, so they "
                             "must be where `lavise explain` read them") from None
    cache, ds = explained_cache(rf, ex, dataset)
    if cache is None:
        raise StudyError(f"the feature cache of the images explained in {rf.path} ({ex.dataset}) is missing; "
                         "run `lavise explain` on them again")
    tops = {f.unit: [f"{f.unit}:{im['image_id']}" for im in f.images[:images]] for f in ex.filters if not f.dead}
    strength = {f.unit: (f.confidence if f.confidence is not None else (f.words[0]["score"] if f.words else 0.0))
                for f in ex.filters}
    plan = plan_study(sources, tops, strength, filters=filters, words=words, checks=checks, control=control, seed=seed,
                      strata_by="confidence" if any(f.confidence is not None for f in ex.filters) else "vote share")
    wanted = sorted({k for it in plan.items for k in it["images"]})
    pairs = [(k.split(":", 1)[1], int(k.split(":", 1)[0])) for k in wanted]
    tb = _Thumbs(cache, ds, pre, Thresholds.from_stats(cache.stats), thumb, None, "")
    srcs = {f"{u}:{iid}": s for (iid, u), s in tb.build(pairs, show_progress).items()}
    # an unreadable image is dropped from its item rather than failing the study
    for it in plan.items:
        it["images"] = [k for k in it["images"] if k in srcs]
        if not it["images"]:
            raise StudyError(f"no image of a sampled filter could be read ({tb.failed[:1]}); check the image set")
    context = {"title": title or f"Describe what these image regions show ({ex.model} {ex.layer})",
               "run": str(rf.path.resolve()), "model": ex.model, "layer": ex.layer, "words": words,
               "n_items": len(plan.items), "thumb": thumb, "images": images,
               # as many columns as fill the rows best (15 images: 3 rows of 5)
               "columns": min(range(4, 9), key=lambda c: (-(-images // c) * c - images, -c)) if images > 4 else images}
    write_page(Path(out), plan, srcs, context)
    n_checks = sum(plan.key["checks"].values())
    return Study(Path(out), len(plan.key["filters"]), len(plan.items), n_checks, plan.key["sources"])
