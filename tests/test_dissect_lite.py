"""NetDissect-Lite's mode of `lavise dissect` (``--convention netdissect-lite``), on data made by hand."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lavise.cli import main
from lavise.data import load_dataset
from lavise.data.transforms import Preprocess
from lavise.dissect import Dissection, compute_ground_truth
from lavise.features import EVAL_MASK_SIZE, FeatureCache, cache_key, extract_features
from lavise.netdissect_lite import MEAN, STD, lite_eval_size, lite_preprocess, load_lite_dataset, tally_csv_text
from lavise.options import ExtractOptions
from lavise.stats import ActivationStats, Thresholds

X = ExtractOptions(workers=0, show_progress=False)
S = 4  # maps and masks both 4 x 4: upsampling is the identity, so every count below is a pixel count


def _row(r: int) -> np.ndarray:
    m = np.zeros((S, S), bool)
    m[r] = True
    return m


def _cells(*rc) -> np.ndarray:
    m = np.zeros((S, S), bool)
    for r, c in rc:
        m[r, c] = True
    return m


@pytest.fixture()
def hand():
    """3 images, 3 filters (filter 2 dead); concepts cat, dog (object), red-c (color), street-s (scene).

    filter 0: image 0 row 0 (4 px), image 1 row 3 (4 px), image 2 row 1 cols 0-1 (2 px): |A| = 10
    filter 1: image 0 cell (2, 0) (1 px), image 2 row 2 cols 0-2 (3 px): |A| = 4
    image 0: cat row 0 cols 0-1 (2 px), red-c rows 2-3 (8 px), street-s the whole image (16 px)
    image 1: dog rows 0-1 (8 px), cat row 2 cols 2-3 (2 px), red-c row 3 cols 0-1 (2 px)
    image 2: no label at all
    """
    f = np.zeros((3, 3, S, S), np.float32)
    f[0, 0][_row(0)] = 1
    f[1, 0][_row(3)] = 1
    f[2, 0][_cells((1, 0), (1, 1))] = 1
    f[0, 1][_cells((2, 0))] = 1
    f[2, 1][_cells((2, 0), (2, 1), (2, 2))] = 1
    concepts = ["cat", "dog", "red-c", "street-s"]
    whole = np.ones((S, S), bool)
    pairs = [(0, 0), (0, 2), (0, 3), (1, 1), (1, 0), (1, 2)]
    masks = [_cells((0, 0), (0, 1)), _row(2) | _row(3), whole, _row(0) | _row(1), _cells((2, 2), (2, 3)),
             _cells((3, 0), (3, 1))]
    st = ActivationStats(3, 3 * S * S)
    st.update(torch.from_numpy(f))
    cache = FeatureCache(Path("."), {"shape": list(f.shape), "layer": "L"}, f.astype(np.float16), f.max((2, 3)),
                         ["0", "1", "2"], np.arange(3), st, concepts, np.asarray(pairs, np.int64), None,
                         np.stack(masks))
    thr = Thresholds(np.full(3, 0.5, np.float32), np.zeros(3, bool), np.array([False, False, True]))
    return cache, thr, ["object", "object", "color", "scene"]


def test_union_counts_a_unit_only_where_it_overlaps_a_label_of_the_category(hand):
    cache, thr, cats = hand
    gt = compute_ground_truth(cache, thr, batch_images=2, categories=cats)
    assert gt.categories == ["object", "color", "scene"]
    # filter 0's area counted per category: object only in image 0 (it overlaps cat there; in image 1 it misses
    # dog and cat) = 4; color only in image 1 (it misses red-c in image 0) = 4; scene in image 0 = 4
    np.testing.assert_array_equal(gt.act_area_category[0], [4, 4, 4])
    # filter 1: no object overlap = 0; red-c and street-s at (2, 0) of image 0 = 1 each; image 2 has no label
    np.testing.assert_array_equal(gt.act_area_category[1], [0, 1, 1])
    np.testing.assert_array_equal(gt.act_area_category[2], [0, 0, 0])
    lite, nd, pres = gt.iou("netdissect-lite"), gt.iou("netdissect"), gt.iou("present")
    # cat: I = 2, |M| = 4.  lite: U = 4 + 4 - 2 = 6; netdissect: U = 10 + 4 - 2 = 12; present (images 0, 1): 8 + 4 - 2
    assert (lite[0, 0], nd[0, 0], pres[0, 0]) == pytest.approx((2 / 6, 2 / 12, 2 / 10))
    # red-c: I = 2 (image 1), |M| = 10.  lite: 4 + 10 - 2 = 12; netdissect: 10 + 10 - 2 = 18; present: 8 + 10 - 2 = 16
    assert (lite[0, 2], nd[0, 2], pres[0, 2]) == pytest.approx((2 / 12, 2 / 18, 2 / 16))
    # street-s: I = 4, |M| = 16.  lite and present: 4 + 16 - 4 = 16; netdissect: 10 + 16 - 4 = 22
    assert (lite[0, 3], nd[0, 3], pres[0, 3]) == pytest.approx((4 / 16, 4 / 22, 4 / 16))
    assert lite[0, 1] == nd[0, 1] == pres[0, 1] == 0  # dog never overlaps
    # filter 1, red-c: I = 1, U = 1 + 10 - 1 (netdissect: 4 + 10 - 1); cat: I = 0 over a union of 0 + 4
    assert (lite[1, 2], nd[1, 2]) == pytest.approx((1 / 10, 1 / 13))
    assert lite[1, 0] == 0 and (lite[2] == 0).all()
    # the conventions name different best concepts for filter 0: cat (lite) against street-s (netdissect)
    assert Dissection.from_ground_truth(gt, "L", "netdissect-lite").label(0) == "cat"
    assert Dissection.from_ground_truth(gt, "L", "netdissect").label(0) == "street-s"
    with pytest.raises(ValueError, match="categories="):
        compute_ground_truth(cache, thr).iou("netdissect-lite")


def test_tally_csv_has_netdissect_lites_layout(hand):
    cache, thr, cats = hand
    gt = compute_ground_truth(cache, thr, batch_images=2, categories=cats)
    lines = tally_csv_text(gt, ["object", "color", "scene"]).splitlines()
    assert lines[0] == ("unit,category,label,score,"
                        "object-label,object-truth,object-activation,object-intersect,object-iou,"
                        "color-label,color-truth,color-activation,color-intersect,color-iou,"
                        "scene-label,scene-truth,scene-activation,scene-intersect,scene-iou")
    # 1-based units, best score first; per category the best label, its pixels, the unit's pixels counted in that
    # category's union, the intersection and the IoU (values from the union test above)
    assert lines[1] == ("1,object,cat,0.3333333333333333,cat,4.0,4.0,2.0,0.3333333333333333,"
                        "red-c,10.0,4.0,2.0,0.16666666666666666,street-s,16.0,4.0,4.0,0.25")
    # filter 1: no object IoU -> empty label and zeros; red-c 1/10 beats street-s 1/16
    assert lines[2] == "2,color,red-c,0.1,,0.0,0.0,0.0,0.0,red-c,10.0,1.0,1.0,0.1,street-s,16.0,1.0,1.0,0.0625"
    # the dead filter: every score 0, so the last category (NetDissect-Lite's reversed argsort) and no label
    assert lines[3] == "3,scene,,0.0" + ",,0.0,0.0,0.0,0.0" * 3
    assert len(lines) == 4


def test_whole_image_preprocessing_keeps_the_borders():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :8] = 255  # a white band at the left border
    border = np.zeros((40, 80), bool)
    border[:, :8] = True
    stretch = Preprocess(resize=32, crop=32, fit="stretch")
    x, m = stretch(Image.fromarray(img), [border], normalize=False)
    assert x.shape == (3, 32, 32) and m.shape == (1, 32, 32)
    assert (x[:, :, 0] == 255).all() and m[0, :, :3].all() and not m[0, :, 5:].any()  # 8 of 80 columns -> 3.2 of 32
    _, cropped = Preprocess(resize=32, crop=32)(Image.fromarray(img), [border], normalize=False)
    assert not cropped.any()  # the centre crop loses the band
    # NetDissect-Lite's input: the model's size, whole image, its mean and scale; a 224 px image passes unchanged
    lite = lite_preprocess(Preprocess())
    assert (lite.fit, lite.crop, lite.mean, lite.std) == ("stretch", 224, MEAN, STD)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    raw = lite(Image.fromarray(rgb), normalize=False)
    assert torch.equal(raw, torch.from_numpy(rgb).permute(2, 0, 1))
    y = lite.normalize(raw)  # (R - 124.6901) / (255 * 0.224), as NetDissect-Lite scales its BGR-mean-subtracted input
    assert float(y[0, 0, 0]) == pytest.approx((rgb[0, 0, 0] - 124.6901) / (255 * 0.224), abs=1e-5)
    assert float(y[2, 0, 0]) == pytest.approx((rgb[0, 0, 2] - 109.5388) / (255 * 0.224), abs=1e-5)
    # the default fit stays out of the saved settings, so earlier caches keep their keys
    assert "fit" not in Preprocess().to_dict() and lite.to_dict()["fit"] == "stretch"
    assert Preprocess.from_dict(lite.to_dict()) == lite
    with pytest.raises(ValueError, match="fit"):
        Preprocess(fit="pad")


def _codes(path: Path, codes: np.ndarray) -> None:
    rgb = np.stack([codes % 256, codes // 256, np.zeros_like(codes)], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


@pytest.fixture()
def broden(tmp_path) -> Path:
    """4 images 32 x 32 with 16 x 16 label PNGs in Broden's layout; image 3 has only a material label."""
    root = tmp_path / "broden"
    rng = np.random.default_rng(0)
    for i in range(4):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"i{i}.png")
    obj = np.zeros((16, 16), int)
    obj[:, :8] = 2  # cat: left half
    obj[0, 15] = 4  # wheel (object here)
    _codes(root / "images" / "i0_object.png", obj)
    obj1 = np.zeros((16, 16), int)
    obj1[:4] = 3  # dog
    _codes(root / "images" / "i1_object.png", obj1)
    part = np.zeros((16, 16), int)
    part[10:, 10:] = 4  # wheel (part here)
    _codes(root / "images" / "i1_part.png", part)
    for i in range(3):
        _codes(root / "images" / f"i{i}_color.png", np.full((16, 16), 1))
    _codes(root / "images" / "i3_material.png", np.full((16, 16), 6))
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
        "i0.png,train,32,32,16,16,i0_color.png,i0_object.png,,,5,\n"
        "i1.png,train,32,32,16,16,i1_color.png,i1_object.png,i1_part.png,,,\n"
        "i2.png,train,32,32,16,16,i2_color.png,,,,,\n"
        "i3.png,train,32,32,16,16,,,,i3_material.png,,\n")
    # label.csv's counts favour object for wheel; c_*.csv's coverage (NetDissect-Lite's source) favours part
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        "1,red-c,color(3),3,3.0,\n2,cat,object(1),1,0.5,\n3,dog,object(1),1,0.25,\n"
        "4,wheel,object(5);part(1),2,0.1,\n5,street-s,scene(1),1,1.0,\n6,wood-m,material(1),1,1.0,\n")
    (root / "category.csv").write_text("name,first,last,count,frequency\ncolor,1,1,1,3\nobject,2,4,3,2\n"
                                       "part,4,4,1,1\nmaterial,6,6,1,1\nscene,5,5,1,1\ntexture,0,0,0,0\n")
    (root / "c_color.csv").write_text("code,number,name,frequency,coverage\n1,1,red-c,3,3.0\n")
    (root / "c_object.csv").write_text("code,number,name,frequency,coverage\n1,2,cat,1,0.5\n2,3,dog,1,0.25\n"
                                       "3,4,wheel,1,0.004\n")
    (root / "c_part.csv").write_text("code,number,name,frequency,coverage\n1,4,wheel,1,0.14\n")
    (root / "c_scene.csv").write_text("code,number,name,frequency,coverage\n1,5,street-s,1,1.0\n")
    return root


def test_broden_read_as_netdissect_lite_reads_it(broden):
    lite = load_lite_dataset(f"broden:{broden}")
    assert lite.spec.endswith("style=netdissect-lite")
    # its categories (no material), in category.csv's order; the material-only image dropped; names as written
    assert lite.categories == ["color", "object", "part", "scene", "texture"]
    assert [i for i, _, _ in lite.items] == ["i0.png", "i1.png", "i2.png"]
    assert lite.concepts == ["cat", "dog", "red-c", "street-s", "wheel"]
    assert lite.concept_categories() == {"cat": "object", "dog": "object", "red-c": "color", "street-s": "scene",
                                         "wheel": "part"}  # wheel covers more as a part (c_part.csv)
    assert lite.segmentation_size == 16
    own = load_dataset(f"broden:{broden}")  # lavise's reading: its categories, tags dropped, every image
    assert own.categories == ["object", "part", "material", "scene", "texture"] and len(own) == 4
    assert "red" not in own.concepts and "street" in own.concepts and "wood" in own.concepts


def test_evaluation_masks_stay_at_the_labels_resolution(broden, tiny_model, tmp_path):
    ds = load_lite_dataset(f"broden:{broden}")
    pre = lite_preprocess(tiny_model.preprocess)
    size = lite_eval_size(ds, pre)
    assert size == 16 != EVAL_MASK_SIZE
    import dataclasses

    tm = dataclasses.replace(tiny_model, preprocess=pre)
    cache = extract_features(tm, "block2", ds, tmp_path / "cache", list(ds.concepts), X, eval_size=size)
    assert cache.eval_size == 16 and cache.masks_eval.shape[1:] == (16, 16) and cache.meta["eval_mask"] == 16
    # the 16 x 16 label PNG comes back exactly (32 px image, 64 px input, masks averaged back to 16)
    cat = cache.masks_eval[[i for i, (r, c) in enumerate(cache.pairs) if r == 0 and ds.concepts[c] == "cat"][0]]
    want = np.zeros((16, 16), bool)
    want[:, :8] = True
    np.testing.assert_array_equal(cat, want)
    again = FeatureCache.open(cache.path)
    np.testing.assert_array_equal(again.masks_eval, cache.masks_eval)
    # the mask size is part of the cache key: a 56 x 56 request never gets these masks
    key = cache_key(tm.weights_digest, pre.to_dict(), "block2", ds, list(ds.concepts), False, size)
    assert cache.path.name == key != cache_key(tm.weights_digest, pre.to_dict(), "block2", ds, list(ds.concepts))


def test_cli_dissect_in_netdissect_lite_mode_writes_its_tally(broden, tiny_model, tmp_path, monkeypatch, capsys):
    import lavise.models

    monkeypatch.setattr(lavise.models, "load_model", lambda spec, weights=None: tiny_model)
    out = tmp_path / "run" / "dissection.csv"
    code = main(["dissect", "tiny", "--dataset", f"broden:{broden}", "--convention", "netdissect-lite",
                 "--out", str(out), "--workers", "0", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "netdissect-lite convention" in printed and "tally.csv" in printed
    with open(out.parent / "tally.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["unit", "category", "label", "score"]
    assert [h.rsplit("-", 1)[0] for h in reader.fieldnames[4::5]] == ["color", "object", "part", "scene", "texture"]
    assert sorted(int(r["unit"]) for r in rows) == list(range(1, 17))  # 16 filters, 1-based
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    with open(out) as f:
        own = {int(r["unit"]): r for r in csv.DictReader(f)}
    for r in rows:  # lavise's CSV and the tally name the same best concept at the same IoU
        u = own[int(r["unit"]) - 1]
        assert float(u["iou"]) == pytest.approx(float(r["score"]), abs=1e-6)
        if float(r["score"]) > 0:
            assert u["concept"] == r["label"]
