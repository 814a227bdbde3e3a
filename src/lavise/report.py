"""A self-contained HTML report of a run: ``lavise report RUN`` writes ``RUN/report.html``.

The page opens from disk with no server and no network: thumbnails are small
JPEGs in ``RUN/report_files/`` beside it (or base64-embedded with
``embed=True``), CSS and the vanilla JS for filtering and sorting are inline.
It shows an overview (model, layer, dataset, settings, evaluation table if
``lavise evaluate`` ran), one card per filter with its ranked words and its top
activating images with the region above T_u highlighted (paper Fig. 4: the
activation map is upsampled bilinearly to the crop, thresholded at T_u, the
rest of the crop darkened and the region outlined), and a section per
comparison result. Rendering goes through jinja2 with autoescaping on.
"""
from __future__ import annotations

import base64
import io as _io
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .compare import GROUP_FILE, MODEL_FILE, GroupComparison, ModelComparison
from .data.base import ConceptDataset
from .data.transforms import Preprocess
from .defaults import INTERPRETABLE
from .errors import LaviseError, RunError
from .explain import Explanations
from .features import FeatureCache
from .io import read_json, write_text
from .run import Run, RunFolder
from .stats import Thresholds

REPORT_FILE = "report.html"
FILES_DIR = "report_files"
OUTLINE = (255, 214, 0)
DARKEN = 0.35


# ----------------------------------------------------------------------------------------------
# thumbnails with the region above T_u highlighted
# ----------------------------------------------------------------------------------------------

def crop_image(path: Path, pre: Preprocess) -> torch.Tensor:
    """The model's resize + centre crop of an image, without normalisation: (3, crop, crop) uint8."""
    return pre(pre.load(path), normalize=False)  # decoded and cropped as extraction did: the region lines up


def region_masks(maps: torch.Tensor, units: torch.Tensor, thresholds: Thresholds, crop: int, size: int) -> torch.Tensor:
    """Masks of the region above T_u at thumbnail size.

    Args:
        maps: (B, h, w) activation maps of filter ``units[b]``.
        units: (B,) filter indices.
        thresholds: T_u.
        crop: the model's crop size: maps are upsampled (bilinear) to it and thresholded there
            (``Thresholds.upsampled_masks``: saturated filters upsample their binary mask).
        size: thumbnail size; the crop-size mask is area-averaged to it (>= 0.5 is inside).

    Returns:
        (B, size, size) bool.
    """
    m = thresholds.upsampled_masks(maps.float(), units, lambda x: F.interpolate(
        x[:, None], size=(crop, crop), mode="bilinear", align_corners=False)[:, 0])
    if size != crop:
        m = F.interpolate(m[:, None].float(), size=(size, size), mode="area")[:, 0] >= 0.5
    return m


def highlight(thumbs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Darken outside the region and outline it: (B, 3, S, S) uint8 and (B, S, S) bool -> (B, 3, S, S) uint8."""
    x = thumbs.float()
    m = masks[:, None].float()
    out = x * (DARKEN + (1 - DARKEN) * m)
    eroded = -F.max_pool2d(-m, 3, stride=1, padding=1)
    edge = (m - eroded) > 0
    colour = torch.tensor(OUTLINE, dtype=out.dtype).view(1, 3, 1, 1)
    out = torch.where(edge.expand_as(out), colour.expand_as(out), out)
    return out.round().clamp(0, 255).to(torch.uint8)


@dataclass
class _Thumbs:
    """Builds highlighted thumbnails of (image row, filter) pairs of one feature cache."""

    cache: FeatureCache
    dataset: ConceptDataset
    pre: Preprocess
    thresholds: Thresholds
    size: int
    out: Path | None  # folder for files; None: embed as data URIs
    prefix: str
    rel: str = FILES_DIR
    quality: int = 82

    def __post_init__(self):
        self.rows = {iid: r for r, iid in enumerate(self.cache.image_ids)}
        self.index = {iid: i for i, (iid, _p, _g) in enumerate(self.dataset.items)}
        self.failed: list[str] = []

    def build(self, pairs: list[tuple[str, int]], show_progress: bool = False) -> dict[tuple[str, int], str]:
        """``(image_id, unit)`` -> src (relative file path or data URI); unreadable images are left out."""
        want = sorted({(self.rows[i], u) for i, u in pairs if i in self.rows})
        by_row: dict[int, list[int]] = {}
        for r, u in want:
            by_row.setdefault(r, []).append(u)
        result: dict[tuple[str, int], str] = {}
        rows = sorted(by_row)
        chunk = 64
        bar = tqdm(range(0, len(rows), chunk), desc="report images", unit="batch", disable=not show_progress, leave=False)
        for start in bar:
            rs = rows[start:start + chunk]
            crops, keep = [], []
            for r in rs:
                iid = self.cache.image_ids[r]
                di = int(self.cache.dataset_index[r])
                if iid in self.index:
                    di = self.index[iid]
                try:
                    crops.append(crop_image(self.dataset.items[di][1], self.pre))
                    keep.append(r)
                except (LaviseError, OSError, IndexError) as e:
                    self.failed.append(f"{iid}: {e}")
            if not keep:
                continue
            thumbs = F.interpolate(torch.stack(crops).float(), size=(self.size, self.size), mode="bilinear",
                                   antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
            pr = [(j, r, u) for j, r in enumerate(keep) for u in by_row[r]]
            for s in range(0, len(pr), 256):
                part = pr[s:s + 256]
                js = torch.tensor([p[0] for p in part])
                rr = np.array([p[1] for p in part])
                uu = torch.tensor([p[2] for p in part])
                maps = torch.from_numpy(np.asarray(self.cache.features[rr, uu.numpy()], dtype=np.float32))
                masks = region_masks(maps, uu, self.thresholds, self.pre.crop, self.size)
                imgs = highlight(thumbs[js], masks).permute(0, 2, 3, 1).numpy()
                for (_, r, u), arr in zip(part, imgs):
                    result[(self.cache.image_ids[r], u)] = self._save(arr, r, u)
        return result

    def _save(self, arr: np.ndarray, row: int, unit: int) -> str:
        buf = _io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=self.quality)
        if self.out is None:
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        name = f"{self.prefix}u{unit}_r{row}.jpg"
        (self.out / name).write_bytes(buf.getvalue())
        return f"{self.rel}/{name}"


# ----------------------------------------------------------------------------------------------
# gathering what the page shows
# ----------------------------------------------------------------------------------------------

def explained_cache(run: Run, ex: Explanations, dataset: ConceptDataset | None = None
                    ) -> tuple[FeatureCache | None, ConceptDataset | None]:
    """The explained images (``dataset``, else loaded from the spec in ``ex``) and the feature cache
    ``lavise explain`` made of them, found by the run's cache key (None when absent: nothing is extracted).

    An image set that cannot be loaded gives (None, None): without its images there is nothing to draw,
    so no cache is looked for.
    """
    ds = dataset if dataset is not None else _load_dataset(ex.dataset)
    if ds is None:
        return None, None
    return run.find_cache(ds, None, bool(ex.settings.get("amp", False))), ds


def find_comparisons(run: Path, extra: list[str | Path] = ()) -> tuple[list[tuple[str, GroupComparison]], list[tuple[str, ModelComparison]]]:
    """Comparison results recorded in the run's manifest, found under the run folder, or named in ``extra``."""
    run = Path(run)
    paths: list[Path] = []
    for part, entry in RunFolder(run).manifest().get("parts", {}).items():
        if part.startswith(("compare:", "compare-models:")):
            for f in entry.get("files", {}):
                if f.endswith((GROUP_FILE, MODEL_FILE)):
                    paths.append(run / f)
    for name in (GROUP_FILE, MODEL_FILE):
        paths += sorted(p for p in run.glob(f"**/{name}") if "cache" not in p.relative_to(run).parts[:1])
    for e in extra:
        e = Path(e)
        if e.is_dir():
            paths += [e / n for n in (GROUP_FILE, MODEL_FILE) if (e / n).is_file()]
        elif e.is_file():
            paths.append(e)
        else:
            raise RunError(f"comparison result {e} not found; give a folder written by `lavise compare` or its JSON")
    groups, models, seen = [], [], set()
    for p in paths:
        key = p.resolve()
        if key in seen or not p.is_file():
            continue
        seen.add(key)
        try:
            rel = p.parent.resolve().relative_to(run.resolve()).as_posix()
        except ValueError:
            rel = str(p.parent)
        if p.name == MODEL_FILE:
            models.append((rel, ModelComparison.load(p)))
        else:
            groups.append((rel, GroupComparison.load(p)))
    return groups, models


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]:.3f} ± {v[1]:.3f}"
    return str(v)


def evaluation_table(run: Path) -> dict | None:
    """Rows of ``RUN/evaluation.json`` (``lavise evaluate``) as a header + string cells, or None."""
    p = Path(run) / "evaluation.json"
    if not p.is_file():
        return None
    try:
        d = read_json(p)
    except RunError:
        return None
    rows = d.get("rows") if isinstance(d, dict) else None
    if not rows or not isinstance(rows, list):
        return None
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            scalar = isinstance(v, (int, float, str)) or (isinstance(v, list) and len(v) == 2)
            if scalar and k not in cols:
                cols.append(k)
    front = [c for c in ("name", "convention", "filters") if c in cols]
    cols = front + [c for c in cols if c not in front]
    return {"columns": cols, "rows": [[_fmt(r.get(c)) for c in cols] for r in rows]}


def _figure_src(plot, result, out: Path | None, name: str) -> str:
    from .plots import save_figure

    fig, _ = plot(result)
    if out is None:
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        import matplotlib.pyplot as plt

        plt.close(fig)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    save_figure(fig, out / name, dpi=100)
    return f"{FILES_DIR}/{name}"


def _load_dataset(spec: str, cache: ConceptDataset | None = None) -> ConceptDataset | None:
    if cache is not None and cache.spec == spec:
        return cache
    from .data import load_dataset

    try:
        return load_dataset(spec)
    except LaviseError as e:
        warnings.warn(f"cannot load {spec} for the report's images ({e}); cards will have no images", stacklevel=3)
        return None


def _training_summary(rf: RunFolder, cfg: dict) -> dict:
    import csv

    out = {"reference": cfg.get("reference"), "embeddings": cfg.get("embeddings"),
           "concepts": len(cfg.get("concepts", [])), "feature shape": " x ".join(map(str, cfg.get("feature_shape", [])))}
    out.update({k: v for k, v in cfg.get("train", {}).items()})
    log = rf / "train_log.csv"
    if log.is_file():
        with log.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        best = int(cfg.get("train", {}).get("best_epoch", len(rows)) or len(rows))
        if rows:
            row = rows[min(max(best, 1), len(rows)) - 1]
            for k in ("val_top1", "val_top5"):
                if row.get(k):
                    out[f"{k} (best epoch)"] = round(float(row[k]), 3)
    return {k: v for k, v in out.items() if v not in (None, "")}


# ----------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------

def render(context: dict) -> str:
    """Render the report template (jinja2, autoescape on) with ``context``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lavise", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{v:.1f}%"
    env.filters["num"] = _fmt
    env.filters["sci"] = lambda v: f"{v:.2g}"
    return env.get_template("report.html.j2").render(**context)


def build_report(
    run: str | Path | Run,
    out: str | Path | None = None,
    images: int = 4,
    thumb: int = 112,
    embed: bool = False,
    comparisons: list[str | Path] = (),
    dataset: ConceptDataset | None = None,
    title: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Write the HTML report of a run.

    Args:
        run: run folder with ``explanations.json``, or a ``Run``.
        out: the HTML file (default ``RUN/report.html``); thumbnails go to ``report_files/`` beside it.
        images: top activating images per filter card.
        thumb: thumbnail size in pixels.
        embed: put images into the HTML as data URIs (one file, larger) instead of ``report_files/``.
        comparisons: extra comparison folders/JSON files (those recorded in or saved under the run are found).
        dataset: the explained image set (default: loaded from the spec in ``explanations.json``).
        title: page title.
        show_progress: progress bar.

    Returns:
        Path of the HTML file.
    """
    rf = Run.open(run)
    rf.require("explanations", "lavise explain")
    cfg = rf.settings
    ex = Explanations.load(rf.path)
    html_path = Path(out) if out else rf / REPORT_FILE
    html_path.parent.mkdir(parents=True, exist_ok=True)
    pre = Preprocess.from_dict(cfg["preprocess"]) if "preprocess" in cfg else None
    files_dir = html_path.parent / FILES_DIR
    tmp_dir = None if embed else html_path.parent / f".{FILES_DIR}.tmp{os.getpid()}"
    if tmp_dir is not None:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
    notes: list[str] = []
    try:
        # filter cards
        cache, ds = explained_cache(rf, ex, dataset) if pre is not None and images > 0 else (None, dataset)
        srcs: dict[tuple[str, int], str] = {}
        thresholds = None
        if cache is not None and ds is not None and pre is not None and images > 0:
            thresholds = Thresholds.from_stats(cache.stats)
            tb = _Thumbs(cache, ds, pre, thresholds, thumb, tmp_dir, "f")
            srcs = tb.build([(im["image_id"], f.unit) for f in ex.filters for im in f.images[:images]], show_progress)
            if tb.failed:
                notes.append(f"{len(tb.failed)} image(s) could not be read, e.g. {tb.failed[0]}")
        elif images > 0:
            notes.append("images are not shown: the feature cache or the image set of the explanations is missing")
        cards = []
        for f in ex.filters:
            top = f.words[0]["score"] if f.words else 0.0
            cards.append({
                "unit": f.unit, "words": f.words, "dead": f.dead, "saturated": f.saturated, "threshold": f.threshold,
                "top_score": top, "search": "|".join(w["word"].lower() for w in f.words),
                "confidence": f.confidence, "interpretable": f.interpretable, "stability": f.stability,
                "images": [{"id": im["image_id"], "act": im["max_activation"], "src": srcs.get((im["image_id"], f.unit))}
                           for im in f.images[:images]],
            })

        # comparisons
        group_results, model_results = find_comparisons(rf.path, list(comparisons))
        group_sections = []
        for i, (where, gc) in enumerate(group_results):
            shown = [f for f in gc.filters if f.examples] or gc.filters[:10]
            shown = shown[:20]
            eg_src: dict[tuple[str, int], str] = {}
            if pre is not None and shown and any(f.examples for f in shown):
                # the comparison names the very cache it counted (its dataset may be gone; no key is needed)
                gcache = None
                name = gc.settings.get("cache")
                if name and (rf.cache_dir / name / "meta.json").is_file():
                    gcache = FeatureCache.open(rf.cache_dir / name)
                gds = _load_dataset(gc.dataset, ds) if gcache is not None else None
                if gcache is not None and gds is not None:
                    tb = _Thumbs(gcache, gds, pre, Thresholds.from_stats(gcache.stats), thumb, tmp_dir, f"c{i}_")
                    eg_src = tb.build([(iid, f.unit) for f in shown for ids in f.examples.values() for iid in ids])
            from .plots import plot_group_comparison

            group_sections.append({
                "index": i, "where": where, "result": gc, "significant": len(gc.significant),
                "figure": _figure_src(plot_group_comparison, gc, tmp_dir, f"compare{i}.png"),
                "rows": [{"f": f, "examples": {g: [{"id": iid, "src": eg_src.get((iid, f.unit))} for iid in f.examples.get(g, [])]
                                               for g in gc.groups}} for f in shown],
            })
        model_sections = []
        for i, (where, mc) in enumerate(model_results):
            from .plots import plot_model_comparison

            def lst(names, mc=mc):
                return [{"word": c, "a": len(mc.a.concepts.get(c, [])), "b": len(mc.b.concepts.get(c, []))} for c in names]

            model_sections.append({"index": i, "where": where, "result": mc, "counts": mc.counts,
                                   "figure": _figure_src(plot_model_comparison, mc, tmp_dir, f"compare_models{i}.png"),
                                   "shared": lst(mc.shared), "only_a": lst(mc.only_a), "only_b": lst(mc.only_b)})

        settings = {k: v for k, v in ex.settings.items() if k not in ("versions", "confidence")}
        train_cfg = _training_summary(rf, cfg)
        context = {
            "title": title or f"LaViSE report: {ex.model} {ex.layer}",
            "overview": {"model": ex.model, "layer": ex.layer, "dataset": ex.dataset, "method": ex.method,
                         "filters": len(ex.filters), "dead": sum(f.dead for f in ex.filters),
                         "run": str(rf.path.resolve()), "verdict": ex.verdict()},
            "has_confidence": any(f.confidence is not None for f in ex.filters),
            "has_stability": any(f.stability is not None for f in ex.filters),
            "interpretable_at": (ex.settings.get("confidence") or {}).get("interpretable_at", INTERPRETABLE),
            "settings": settings, "train": train_cfg, "versions": ex.settings.get("versions", {}),
            "evaluation": evaluation_table(rf.path), "cards": cards, "groups": group_sections,
            "models": model_sections, "notes": notes, "images": images, "thumb": thumb,
        }
        html = render(context)
        if tmp_dir is not None:
            shutil.rmtree(files_dir, ignore_errors=True)
            os.replace(tmp_dir, files_dir)
            tmp_dir = None
        write_text(html_path, html)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return html_path
