"""Tests of the built-in scenes generator (``builtin:scenes``)."""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from lavise.data import scenes
from lavise.data.scene_categories import THEMES, UNICODE_NAMES
from lavise.errors import DatasetError

SMALL = dict(size=20, seed=0, image_size=(96, 80), show_progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return scenes.generate_scenes(tmp_path_factory.mktemp("scenes"), **SMALL)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _image_bytes(json_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((json_path.parent / "images").iterdir())}


# ---------------------------------------------------------------- categories


def test_at_least_300_categories_with_unique_names_and_codepoints():
    rows = scenes.category_table()
    assert len(rows) >= 300
    names = [r[0] for r in rows]
    assert len(set(names)) == len(names)
    assert len({r[1] for r in rows}) == len(rows)
    assert all(r[2] in THEMES for r in rows)
    assert len(THEMES) >= 12
    assert min(len(v) for v in THEMES.values()) >= 10  # themed scenes need variety
    assert rows == [tuple(c) for c in scenes.CATEGORIES]


def test_names_match_unicode_or_are_documented_renames():
    for name, cp, _ in scenes.category_table():
        official = unicodedata.name(chr(cp), None)
        if cp in UNICODE_NAMES:
            assert UNICODE_NAMES[cp] != name
            if official is not None:
                assert UNICODE_NAMES[cp] == official.lower(), hex(cp)
        elif official is not None:  # None: newer than this Python's Unicode tables
            assert name == official.lower(), hex(cp)
    table_cps = {cp for _, cp, _ in scenes.category_table()}
    assert set(UNICODE_NAMES) <= table_cps


def test_no_faces_people_hands_or_flags():
    banned = {"face", "person", "man", "woman", "people", "hand", "hands", "flag", "symbol"}
    for name, _, _ in scenes.category_table():
        assert not banned & set(name.split()), name


def test_every_glyph_renders_in_colour():
    coloured = 0
    for name, cp, _ in scenes.category_table():
        im = scenes.render_glyph(cp)
        rgba = np.asarray(im)
        alpha = rgba[..., 3] > 0
        assert alpha.mean() > 0.05, name  # non-empty, and cropped to the glyph
        assert rgba.shape[0] >= 32 and rgba.shape[1] >= 32, name
        px = rgba[..., :3][alpha].astype(int)
        if (px.max(axis=1) - px.min(axis=1)).max() > 60:  # some saturated pixel
            coloured += 1
    # Many objects are grey in OpenMoji (spoon, keyboard); most are coloured.
    assert coloured >= 0.7 * len(scenes.CATEGORIES)
    apple = np.asarray(scenes.render_glyph(0x1F34E)).astype(int)
    body = apple[..., 3] > 127
    assert (apple[..., 0][body] - apple[..., 1][body] > 100).mean() > 0.3  # mostly red, not black


def test_split_is_fixed_stratified_and_70_30():
    split = scenes.category_split()
    assert set(split) == {c.name for c in scenes.CATEGORIES}
    held = [n for n, s in split.items() if s == "held_out"]
    assert len(held) == round(0.3 * len(split))
    for theme, rows in THEMES.items():
        n_held = sum(split[n] == "held_out" for _, n in rows)
        assert abs(n_held - 0.3 * len(rows)) < 1.0, theme
    scenes.category_split.cache_clear()
    assert scenes.category_split() == split  # no hidden state


def test_other_split_seeds_give_other_stratified_splits():
    base = scenes.category_split()
    other = scenes.category_split(1)
    assert set(other) == set(base) and other != base
    assert sum(v == "held_out" for v in other.values()) == sum(v == "held_out" for v in base.values())
    for theme, rows in THEMES.items():
        assert abs(sum(other[n] == "held_out" for _, n in rows) - 0.3 * len(rows)) < 1.0, theme
    assert scenes.category_split(1) == other


# ---------------------------------------------------------------- generated data


def test_coco_file_is_valid_and_complete(small):
    data = _load(small)
    coco = COCO(str(small))
    assert len(coco.getImgIds()) == SMALL["size"]
    assert len(coco.getCatIds()) == len(scenes.CATEGORIES)
    assert len(data["annotations"]) >= SMALL["size"]
    for im in data["images"]:
        assert (im["width"], im["height"]) == SMALL["image_size"]
        assert im["group"] == "mixed" or im["group"] in THEMES
        with Image.open(small.parent / im["file_name"]) as f:
            assert f.size == (im["width"], im["height"]) and f.mode == "RGB"
    for cat in data["categories"]:
        assert cat["supercategory"] == cat["theme"] in THEMES
        assert cat["split"] in ("seen", "held_out")
    for name in ("LICENSE-OpenMoji.txt", "README.txt", "done"):
        assert (small.parent / name).is_file()
    assert "OpenMoji" in data["lavise"]["attribution"]
    assert "creativecommons.org/licenses/by-sa/4.0" in data["lavise"]["attribution"]


def test_themed_scenes_draw_from_their_theme(small):
    data = _load(small)
    theme_of = {c["id"]: c["theme"] for c in data["categories"]}
    group_of = {im["id"]: im["group"] for im in data["images"]}
    for ann in data["annotations"]:
        group = group_of[ann["image_id"]]
        if group != "mixed":
            assert theme_of[ann["category_id"]] == group
    assert any(g != "mixed" for g in group_of.values())


def test_masks_decode_to_area_and_bbox_and_are_disjoint(small):
    data = _load(small)
    w, h = SMALL["image_size"]
    by_image: dict[int, list[np.ndarray]] = {}
    for ann in data["annotations"]:
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        m = mask_utils.decode(rle).astype(bool)
        assert m.shape == (h, w)
        assert int(m.sum()) == ann["area"] > 0
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        assert ann["iscrowd"] == 0
        by_image.setdefault(ann["image_id"], []).append(m)
    # Occlusion: a pixel belongs to at most one object, the one drawn last over it.
    for masks in by_image.values():
        assert int(np.sum(masks, axis=0).max()) <= 1


def test_occlusion_removes_covered_pixels(monkeypatch):
    # Two opaque squares where the second covers the right half of the first.
    def fake_glyph(codepoint, longer_side, angle, font_size):
        return Image.new("RGBA", (40, 40), (200, 30, 30, 255) if codepoint == scenes.CATEGORIES[0].codepoint
                         else (30, 30, 200, 255))

    positions = iter([10, 10, 30, 10])

    class Rng:
        def __init__(self, real):
            self.real = real

        def integers(self, lo, hi=None):
            return next(positions)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(scenes, "_place_glyph", fake_glyph)
    monkeypatch.setattr(scenes, "_choose_objects", lambda rng, themed: ("mixed", [0, 1]))
    monkeypatch.setattr(scenes, "_background", lambda rng, w, h: ("plain", Image.new("RGB", (w, h), (128, 128, 128))))
    image, group, bg, objects = scenes._compose(Rng(np.random.default_rng(0)), 96, 80, 0.8)
    (c0, m0), (c1, m1) = objects
    assert (c0, c1) == (0, 1)
    assert m0.sum() == 20 * 40 and m1.sum() == 40 * 40  # the first lost its right half
    assert not (m0 & m1).any()
    assert tuple(image[20, 45]) == (30, 30, 200)  # the later object is drawn on top
    assert tuple(image[20, 15]) == (200, 30, 30)


def test_generation_is_deterministic(small, tmp_path):
    again = scenes.generate_scenes(tmp_path, **SMALL)
    assert again != small
    assert again.read_bytes() == small.read_bytes()
    assert _image_bytes(again) == _image_bytes(small)


def test_split_recorded_and_independent_of_seed(small, tmp_path):
    data = _load(small)
    meta = data["lavise"]
    names = {c["name"] for c in data["categories"]}
    assert set(meta["seen"]) | set(meta["held_out"]) == names
    assert not set(meta["seen"]) & set(meta["held_out"])
    assert len(meta["held_out"]) == round(0.3 * len(names))
    assert {c["name"] for c in data["categories"] if c["split"] == "held_out"} == set(meta["held_out"])
    assert set(meta["themes"]) == set(THEMES)
    assert meta["generator"]["seed"] == 0 and meta["generator"]["size"] == SMALL["size"]
    other = _load(scenes.generate_scenes(tmp_path, **dict(SMALL, seed=7, size=5)))
    assert other["lavise"]["seen"] == meta["seen"]
    assert other["lavise"]["held_out"] == meta["held_out"]


def test_train_and_test_splits_differ(small, tmp_path):
    test = scenes.generate_scenes(tmp_path, **dict(SMALL, split="test"))
    train_imgs, test_imgs = _image_bytes(small), _image_bytes(test)
    assert not set(train_imgs.values()) & set(test_imgs.values())
    assert _load(test)["lavise"]["seen"] == _load(small)["lavise"]["seen"]


def test_smaller_dataset_is_a_prefix(small, tmp_path):
    few = scenes.generate_scenes(tmp_path, **dict(SMALL, size=6))
    a, b = _image_bytes(small), _image_bytes(few)
    assert all(a[k] == v for k, v in b.items())


def test_reused_from_cache(tmp_path, monkeypatch):
    first = scenes.generate_scenes(tmp_path, **dict(SMALL, size=3))
    calls = []
    real = scenes._write_dataset
    monkeypatch.setattr(scenes, "_write_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert scenes.generate_scenes(tmp_path, **dict(SMALL, size=3)) == first
    assert calls == []
    scenes.generate_scenes(tmp_path, **dict(SMALL, size=3, themed=0.5))  # other parameters: new data
    assert calls == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(scenes, "_compose", boom)
    with pytest.raises(RuntimeError):
        scenes.generate_scenes(tmp_path, **dict(SMALL, size=2))
    assert list(tmp_path.iterdir()) == []


def test_default_cache_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVISE_CACHE", str(tmp_path))
    path = scenes.generate_scenes(**dict(SMALL, size=2))
    assert path.parent.parent == tmp_path / "scenes"


@pytest.mark.parametrize(
    "kwargs",
    [dict(size=0), dict(split="val"), dict(image_size=(16, 16)), dict(themed=1.5), dict(seed=-1)],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(DatasetError):
        scenes.generate_scenes(tmp_path, **dict(SMALL, **kwargs))


# ---------------------------------------------------------------- loader


def test_builtin_loader_returns_coco_dataset(tmp_path):
    from lavise.data import DATASETS

    assert DATASETS.get("builtin") is scenes.load_builtin
    opts = {"size": "6", "seed": "1", "image_size": "96x80", "cache": str(tmp_path)}
    ds = scenes.load_builtin("scenes", dict(opts))
    assert len(ds) == 6
    assert ds.meta["held_out"] and ds.meta["seen"]
    assert all(g == "mixed" or g in THEMES for g in ds.groups)
    sample = ds[0]
    assert sample.annotations
    for ann in sample.annotations:
        assert ann.mask.shape == (80, 96)
    held = scenes.load_builtin("scenes", dict(opts, concepts="held_out"))
    assert set(held.concepts) <= set(ds.meta["held_out"])
    assert list((tmp_path / "scenes").iterdir())  # cache=DIR puts data in DIR/scenes


def test_load_dataset_spec(tmp_path):
    from lavise.data import load_dataset

    ds = load_dataset(f"builtin:scenes?size=4&image_size=96x80&split=test&cache={tmp_path}")
    assert len(ds) == 4


@pytest.mark.parametrize(
    "arg,opts",
    [
        ("places", {}),
        ("scenes", {"sizes": "3"}),
        ("scenes", {"size": "many"}),
        ("scenes", {"image_size": "96"}),
        ("scenes", {"split": "val"}),
        ("scenes", {"concepts": "unseen", "size": "2", "image_size": "96x80"}),
    ],
)
def test_loader_rejects_bad_specs(tmp_path, arg, opts):
    with pytest.raises(DatasetError):
        scenes.load_builtin(arg, dict(opts, cache=str(tmp_path)))
