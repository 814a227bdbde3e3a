"""Bad input gets one clear, actionable line and exit code 2, or a counted warning where skipping is safe."""
from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from relutil import COLOURS, Lavise, make_manifest, write_glove

from lavise.data import load_dataset
from lavise.data.base import load_rgb
from lavise.errors import DatasetError, RunError

COMMON = ["--batch-size", "4", "--workers", "0", "--quiet"]


def assert_one_error_line(r, *needles: str) -> str:
    """The command failed with exit code 2 and exactly one line ``lavise: error: ...`` containing ``needles``."""
    lines = [ln for ln in r.log.splitlines() if ln.strip()]
    assert r.code == 2, r
    assert len(lines) == 1 and lines[0].startswith("lavise: error: "), r.log
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    m = make_manifest(root / "data", n=12)
    return {"root": root, "m": m, "glove": root / "data" / "tiny.txt"}


def train_args(ds, reference=None, out="run", model="python:relmodels:tiny", extra=()):
    return ["train", "--model", model, "--layer", "block2", "--reference", f"manifest:{reference or ds['m']}",
            "--embeddings", f"glove:{ds['glove']}", "--out", out, "--epochs", "2", *COMMON, *extra]


# --- images ---------------------------------------------------------------------------------------

def _odd_images(d: Path) -> list[dict]:
    """Images in every awkward mode, each with a red square at rows 10-29, columns 10-29."""
    rgb = np.full((40, 50, 3), 120, np.uint8)
    rgb[10:30, 10:30] = COLOURS["cat"]
    box = {"cat": [[10, 10, 30, 30]]}
    im = Image.fromarray(rgb)
    im.convert("L").save(d / "gray.png")
    im.convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    im.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257)).save(d / "sixteen.png")
    rgba = im.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "rgba.png")
    # broken ones
    (d / "truncated.png").write_bytes((d / "gray.png").read_bytes()[:60])
    (d / "garbage.jpg").write_bytes(b"this is not an image")
    names = ["gray.png", "palette.png", "cmyk.jpg", "sixteen.png", "rgba.png", "truncated.png", "garbage.jpg", "missing.png"]
    return [{"image": n, "concepts": ["cat"], "boxes": box} for n in names]


@pytest.fixture(scope="module")
def odd(ds):
    d = ds["root"] / "odd"
    d.mkdir()
    m = make_manifest(d, n=10, extra=_odd_images(d))
    return m


def test_unreadable_images_are_skipped_counted_and_listed(ds, odd, tmp_path):
    lav = Lavise(tmp_path)
    r = lav(train_args(ds, odd))
    assert r.code == 0, r
    warn = [ln for ln in r.log.splitlines() if ln.startswith("lavise: warning") and "unreadable" in ln]
    assert len(warn) == 1 and warn[0].startswith("lavise: warning: skipped 3 unreadable image(s)"), r.log
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert sorted(s["image_id"] for s in cfg["skipped_images"]) == ["garbage.jpg", "missing.png", "truncated.png"]
    assert all(s["error"] for s in cfg["skipped_images"])


def test_strict_fails_on_the_first_unreadable_image(ds, odd, tmp_path):
    r = Lavise(tmp_path)(train_args(ds, odd, extra=["--strict"]))
    line = assert_one_error_line(r, "rerun without --strict")
    assert any(n in line for n in ("truncated.png", "garbage.jpg", "missing.png"))
    assert not (tmp_path / "run" / "explainer.safetensors").exists()


def test_odd_image_modes_convert_to_the_same_rgb(tmp_path):
    items = _odd_images(tmp_path)
    ref = np.asarray(Image.open(tmp_path / "gray.png").convert("RGB")).astype(int)
    for name in ("gray.png", "palette.png", "cmyk.jpg", "sixteen.png", "rgba.png"):
        im = load_rgb(tmp_path / name)
        assert im.mode == "RGB" and im.size == (50, 40), name
        a = np.asarray(im).astype(int)
        if name in ("gray.png", "sixteen.png"):
            assert np.array_equal(a, ref), name
        elif name == "rgba.png":  # alpha 200 composited on white
            assert np.allclose(a[20, 20], np.array(COLOURS["cat"]) * 200 / 255 + 255 * 55 / 255, atol=2)
        else:
            assert np.allclose(a[20, 20], COLOURS["cat"], atol=12) and np.allclose(a[2, 2], 120, atol=12), name
    for name in ("truncated.png", "garbage.jpg", "missing.png"):
        with pytest.raises(DatasetError, match=r"cannot read image|image not found"):
            load_rgb(tmp_path / name)
    assert len(items) == 8


def test_very_large_image_loads(tmp_path):
    """Beyond PIL's decompression-bomb limit (89 M pixels): still read and converted, not refused."""
    p = tmp_path / "huge.png"
    im = Image.new("1", (9500, 9500), 0)
    im.paste(1, (9000, 9000, 9500, 9500))
    im.save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        out = load_rgb(p)
    assert out.size == (9500, 9500) and out.mode == "RGB"
    assert out.getpixel((9400, 9400)) == (255, 255, 255) and out.getpixel((10, 10)) == (0, 0, 0)


# --- annotations ----------------------------------------------------------------------------------

def test_coco_annotations_with_missing_images_unknown_categories_and_zero_area(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]},
                           {"image_id": 9, "category_id": 1, "bbox": [2, 2, 10, 10]},  # image not in 'images'
                           {"image_id": 1, "category_id": 7, "bbox": [2, 2, 10, 10]},  # unknown category
                           {"image_id": 1, "category_id": 1, "bbox": [2, 2, 0, 10]},  # zero area
                           {"image_id": 1, "category_id": 1, "bbox": [50, 50, 5, 5]}]}  # outside the image
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="1 with a category_id not in 'categories'; 1 with an image_id not in 'images'; 1 with no area"):
        c = load_dataset(f"coco:{tmp_path / 'c.json'}")
    assert c.skipped == {"unknown_category": 1, "missing_image": 1, "empty": 1}
    assert [a.concept for a in c[0].annotations] == ["cat"]


def test_vg_zero_area_boxes_are_counted(tmp_path):
    doc = [{"image_id": 1, "height": 20, "width": 30, "objects": [
        {"x": 1, "y": 1, "w": 5, "h": 5, "names": ["dog"]}, {"x": 1, "y": 1, "w": 0, "h": 5, "names": ["dog"]},
        {"x": 1, "y": 1, "w": float("nan"), "h": 5, "names": ["cat"]}]}]
    (tmp_path / "o.json").write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="skipped 1 objects without a name or box and 1 with a zero-area box"):
        v = load_dataset(f"vg:{tmp_path / 'o.json'}")
    assert v.skipped == {"malformed": 1, "empty": 1}


def test_manifest_empty_masks_are_counted(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "blank.png")
    lines = [{"image": "a.png", "boxes": {"dog": [[40, 40, 50, 50]], "cat": [[0, 0, 5, 5]]}, "masks": {"sun": "blank.png"}}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = load_dataset(f"manifest:{tmp_path / 'm.jsonl'}")
    with pytest.warns(UserWarning, match="some masks are empty"):
        anns = ds[0].annotations
    assert [a.concept for a in anns] == ["cat"] and ds.skipped["empty"] == 2


def test_manifest_zero_area_box_is_a_clear_error(ds, tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"image": str(ds["root"] / "data" / "0.png"), "boxes": {"cat": [[5, 5, 5, 9]]}}) + "\n")
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, tmp_path / "m.jsonl")), "manifest line 1", "x1 <= x0")


def test_empty_dataset(ds, trained, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, tmp_path / "empty.jsonl")), "has no images")
    (tmp_path / "nothing").mkdir()
    # a trained run: `lavise explain` checks the run folder before it reads the images
    r = Lavise(tmp_path)(["explain", str(trained), "--images", f"folder:{tmp_path / 'nothing'}", *COMMON])
    assert_one_error_line(r, "has no images")


# --- model and layer ------------------------------------------------------------------------------

def test_unknown_layer_suggests_the_closest_names(ds, tmp_path):
    args = train_args(ds)
    args[args.index("block2")] = "blok2"
    line = assert_one_error_line(Lavise(tmp_path)(args), "no layer 'blok2'", "did you mean block2", "lavise layers")
    assert not (tmp_path / "run").exists(), line


def test_layer_without_a_4d_feature_map(ds, tmp_path):
    args = train_args(ds)
    args[args.index("block2")] = "fc"
    assert_one_error_line(Lavise(tmp_path)(args), "'fc'", "neither a feature map nor a sequence of image tokens")


def test_nan_activations(ds, tmp_path):
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, model="python:relmodels:nan")), "NaN or infinite activations")


@pytest.mark.parametrize("model,needle", [("python:relmodels:not_a_module", "not a torch.nn.Module"),
                                          ("python:relmodels:nope", "cannot import relmodels:nope"),
                                          ("resnet50", "unknown model")])
def test_bad_model_specs(ds, tmp_path, model, needle):
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, model=model)), needle)


def test_corrupt_weights_file(ds, tmp_path):
    (tmp_path / "w.pt").write_bytes(b"\x80\x02garbage")
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, extra=["--weights", str(tmp_path / "w.pt")])), "cannot read weights")
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, extra=["--weights", str(tmp_path / "none.pt")])), "weights file not found")


def test_mistyped_dataset_spec(ds, tmp_path):
    assert_one_error_line(Lavise(tmp_path)(train_args(ds, reference="x")), "manifest not found: x")
    r = Lavise(tmp_path)(["train", "--model", "python:relmodels:tiny", "--reference", "cocoo:x.json", "--out", "run", *COMMON])
    assert_one_error_line(r, "unknown dataset kind 'cocoo'")
    r = Lavise(tmp_path)(["train", "--model", "python:relmodels:tiny", "--reference", f"manifest:{ds['m']}?imgs=x", "--out", "run", *COMMON])
    assert_one_error_line(r, "unknown option(s) imgs")


# --- embeddings -----------------------------------------------------------------------------------

def test_concepts_missing_from_the_embeddings_are_counted_and_listed(ds, tmp_path):
    d = tmp_path / "data"
    m = make_manifest(d, n=12, extra=[{"image": "0.png", "concepts": ["zebra"], "boxes": {"zebra": [[1, 1, 20, 20]]}}])
    r = Lavise(tmp_path)(train_args(ds, m))
    assert r.code == 0, r
    warn = [ln for ln in r.log.splitlines() if ln.startswith("lavise: warning") and "zebra" in ln]
    assert len(warn) == 1 and warn[0].startswith("lavise: warning: 1 phrase(s) not in the"), r.log
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["missing_concepts"] == ["zebra"] and "zebra" not in cfg["concepts"]


def test_embeddings_whose_dimension_does_not_match_the_explainer(ds, tmp_path):
    lav = Lavise(tmp_path)
    glove = write_glove(tmp_path / "g.txt")
    args = train_args(ds)
    args[args.index(f"glove:{ds['glove']}")] = f"glove:{glove}"
    assert lav(args).code == 0
    write_glove(glove, {w: v[:3] for w, v in json.loads(json.dumps(__import__("relutil").WORDS)).items()})
    r = lav(["explain", "run", "--images", f"manifest:{ds['m']}", "--vocabulary", "concepts", *COMMON])
    assert_one_error_line(r, "3-d", "4-d")


def test_train_with_no_head_members(ds, tmp_path):
    r = Lavise(tmp_path)(train_args(ds, extra=("--heads", "0")))
    assert_one_error_line(r, "at least one member", "--heads 1")
    assert not (tmp_path / "run" / "cache").exists()  # refused before any extraction


def test_explain_without_a_trained_run(ds, tmp_path):
    r = Lavise(tmp_path)(["explain", "nowhere", "--images", f"manifest:{ds['m']}", *COMMON])
    assert_one_error_line(r, "does not exist", "lavise train")


# --- write errors ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(ds):
    lav = Lavise(ds["root"])
    assert lav(train_args(ds, out="trained")).code == 0
    r = lav(["explain", "trained", "--images", f"manifest:{ds['m']}", "--vocabulary", "concepts", "-p", "3", *COMMON])
    assert r.code == 0, r
    return ds["root"] / "trained"


def _explain(ds, run, x="2"):
    return ["explain", str(run), "--images", f"manifest:{ds['m']}", "--vocabulary", "concepts", "-p", "3", "-x", x, *COMMON]


def test_full_disk_when_writing_results(ds, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = Lavise(tmp_path)(_explain(ds, run, x="1"), kill=("enospc-replace", "explanations.json"))
    assert_one_error_line(r, "cannot write", "explanations.json", "No space left on device", "earlier outputs are untouched")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # same files, same bytes: no temp file left, nothing overwritten


def test_full_disk_during_extraction(ds, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.rmtree(run / "cache")
    before = (run / "explanations.json").read_bytes()
    r = Lavise(tmp_path)(_explain(ds, run), kill=("enospc-append",))
    assert_one_error_line(r, "No space left on device", "rerun the same command")
    assert (run / "explanations.json").read_bytes() == before
    assert Lavise(tmp_path)(_explain(ds, run)).code == 0  # once there is space again, the same command works


def test_write_error_in_the_library_is_a_run_error(trained, tmp_path, monkeypatch):
    from lavise.explain import Explanations

    ex = Explanations.load(trained)
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "explanations.json").read_bytes()
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("explanations.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(RunError, match="No space left on device"):
        ex.save(run)
    monkeypatch.undo()
    assert (run / "explanations.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_unknown_or_missing_device_is_one_clear_line(ds, tmp_path):
    line = assert_one_error_line(Lavise(tmp_path)(train_args(ds, extra=("--device", "cdua"))), "unknown device 'cdua'",
                          "use cpu, cuda or cuda:N")
    assert not (tmp_path / "run").exists(), line
    if not torch.cuda.is_available():  # CI: no GPU, so asking for one must say so, not crash in torch
        assert_one_error_line(Lavise(tmp_path)(train_args(ds, extra=("--device", "cuda"))), "sees no CUDA GPU", "--device cpu")


@pytest.mark.parametrize("units, needles", [("3,x", ("--units takes comma-separated", "'3,x'")),
                                            ("2,99", ("filter 99 is out of range", "block2 has", "0 to")),
                                            ("-1", ("filter -1 is out of range",))])
def test_explain_and_evaluate_refuse_bad_units(ds, trained, tmp_path, units, needles):
    for args in (_explain(ds, trained), ["evaluate", str(trained), "--dataset", f"manifest:{ds['m']}", *COMMON]):
        r = Lavise(tmp_path)([*args, "--units", units])
        assert_one_error_line(r, *needles)
