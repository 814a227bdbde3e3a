"""Fuzzed loaders: malformed COCO, Visual Genome, Broden and manifest files raise ``DatasetError`` and nothing else.

Hypothesis builds files that are almost right (the structure of the real format with keys dropped,
values of the wrong type, negative, huge or out-of-image boxes, invalid RLE, bad UTF-8) and files that
are plainly wrong. Loading the dataset and decoding every image's annotations must either work (masks
are bool arrays of the image's size) or raise the documented ``DatasetError``; warnings are allowed.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lavise.data import load_dataset
from lavise.errors import DatasetError

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=6), st.lists(st.integers(-5, 50), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
num = st.one_of(st.integers(-50, 200), st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([float("nan"), float("inf"), 1e300, -0.0]))
maybe = lambda s: st.one_of(s, s, s, junk)  # noqa: E731 - mostly a well-typed value, sometimes junk
box4 = st.lists(maybe(num), min_size=0, max_size=5)


def _paths(doc, prefix=()):
    """Every (container, key) location in a JSON document."""
    out = []
    if isinstance(doc, dict):
        items = list(doc.items())
    elif isinstance(doc, list):
        items = list(enumerate(doc))
    else:
        return out
    for k, v in items:
        out.append((doc, k))
        out += _paths(v)
    return out


@st.composite
def mutated(draw, valid):
    """A valid document with 1-3 locations deleted or replaced by junk, odd numbers or odd strings."""
    import copy

    doc = copy.deepcopy(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        locs = _paths(doc)
        if not locs:
            break
        container, key = draw(st.sampled_from(locs))
        action = draw(st.sampled_from(["delete", "junk", "num", "text"]))
        if action == "delete" and isinstance(container, dict):
            del container[key]
        elif action == "num":
            container[key] = draw(num)
        elif action == "text":
            container[key] = draw(st.sampled_from(["", " ", "\x00", "a" * 300, "\u202e", "<script>", "NaN", "-1"]))
        else:
            container[key] = draw(junk)
    return doc


def exercise(spec: str) -> None:
    """Load ``spec`` and decode everything; only DatasetError may come out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = load_dataset(spec)
            for i in range(len(ds)):
                sample = ds[i]
                for a in sample.annotations:
                    assert isinstance(a.concept, str)
                    if a.mask is not None:
                        assert a.mask.dtype == bool and a.mask.ndim == 2
        except DatasetError as e:
            msg = str(e)
            assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"


def write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content, allow_nan=True))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzimg")
    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(d / "a.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(d / "blank.png")
    return d


# --- COCO -----------------------------------------------------------------------------------------

rle = st.fixed_dictionaries({"size": st.one_of(st.just([12, 16]), maybe(st.lists(maybe(st.integers(-3, 20)), max_size=3))),
                             "counts": st.one_of(st.text(max_size=12), st.lists(maybe(st.integers(-5, 300)), max_size=6), st.just([0, 192]),
                                                 st.just("04Q3"), st.just([10**12, 5]),
                                                 st.binary(max_size=6), junk)})
polygon = st.lists(st.one_of(st.lists(maybe(num), min_size=5, max_size=9), maybe(num)), max_size=3)
coco_ann = st.fixed_dictionaries({"image_id": st.integers(0, 3), "category_id": st.integers(0, 3)}, optional={
    "id": maybe(st.integers(0, 5)), "bbox": maybe(box4), "segmentation": st.one_of(rle, polygon, junk), "area": junk, "iscrowd": junk})
coco_img = st.fixed_dictionaries({"id": st.integers(0, 3), "file_name": st.just("a.png")}, optional={
    "height": st.one_of(st.just(12), maybe(st.integers(-2, 20))), "width": st.one_of(st.just(16), maybe(st.integers(-2, 20))),
    "group": junk}) | st.fixed_dictionaries({}, optional={
    "id": maybe(st.integers(0, 3)), "file_name": maybe(st.sampled_from(["a.png", "missing.png", "broken.png", "", "../a.png"])),
    "height": maybe(st.integers(-2, 20)), "width": maybe(st.integers(-2, 20))})
coco_cat = st.fixed_dictionaries({"id": maybe(st.integers(0, 3)), "name": maybe(st.sampled_from(["cat", "dog", " ", ""]))})
coco_valid = st.fixed_dictionaries({
    "images": st.just([{"id": 1, "file_name": "a.png", "height": 12, "width": 16}, {"id": 2, "file_name": "a.png"},
                       {"id": 3, "file_name": "broken.png", "height": 12, "width": 16}]),
    "categories": st.just([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]),
    "annotations": st.lists(st.fixed_dictionaries({
        "image_id": st.sampled_from([1, 2, 3]), "category_id": st.sampled_from([1, 2]),
        "bbox": st.lists(st.integers(-5, 20), min_size=4, max_size=4),
        "segmentation": st.one_of(st.lists(st.lists(st.integers(-5, 20), min_size=6, max_size=8), min_size=1, max_size=2),
                                  st.just({"size": [12, 16], "counts": [0, 100, 92]}), st.just({"size": [12, 16], "counts": "04Q3"}),
                                  st.just({"size": [12, 16], "counts": [5, 10]}), st.just([]))}), min_size=1, max_size=4),
    "lavise": st.just({"seen": ["cat"], "held_out": ["dog"]})})
coco_doc = st.one_of(mutated(coco_valid), mutated(coco_valid), mutated(coco_valid),
    st.fixed_dictionaries({}, optional={"images": maybe(st.lists(maybe(coco_img), max_size=3)),
                                        "annotations": maybe(st.lists(maybe(coco_ann), max_size=5)),
                                        "categories": maybe(st.lists(maybe(coco_cat), max_size=3)),
                                        "lavise": junk}),
    junk, st.binary(max_size=40), st.just(b'{"images": [{"id": 1, "file_name": "\xff\xfe.png"}]}'))


@SETTINGS
@given(doc=coco_doc, concepts=st.sampled_from(["all", "seen"]))
def test_coco_loader_raises_only_dataset_error(tmp_path_factory, image_dir, doc, concepts):
    f = tmp_path_factory.mktemp("coco") / "instances.json"
    write(f, doc)
    exercise(f"coco:{f}?images={image_dir}&concepts={concepts}")


# --- Visual Genome --------------------------------------------------------------------------------

vg_obj = st.fixed_dictionaries({"x": maybe(num), "y": maybe(num), "w": maybe(num), "h": maybe(num)}, optional={ "names": maybe(st.lists(maybe(st.text(max_size=5)), max_size=2)),
    "name": junk, "synsets": maybe(st.lists(maybe(st.sampled_from(["dog.n.01", "x", "", "..."])), max_size=2))})
vg_entry = st.fixed_dictionaries({"image_id": maybe(st.integers(0, 3))}, optional={"id": junk, "objects": maybe(st.lists(maybe(vg_obj), max_size=4)),
    "file_name": maybe(st.sampled_from(["a.png", "missing.png", "broken.png"])), "image_url": junk,
    "height": maybe(st.integers(-2, 20)), "width": maybe(st.integers(-2, 20))})
vg_valid = st.lists(st.fixed_dictionaries({
    "objects": st.lists(st.fixed_dictionaries({"x": st.integers(-5, 20), "y": st.integers(-5, 20), "w": st.integers(0, 20),
                                               "h": st.integers(0, 20), "names": st.just(["dog"]),
                                               "synsets": st.just(["dog.n.01"])}), max_size=3),
    "file_name": st.sampled_from(["a.png", "missing.png", "broken.png"]), "height": st.just(12), "width": st.just(16)}),
    min_size=1, max_size=3).map(lambda es: [{**e, "image_id": n} for n, e in enumerate(es)])
vg_doc = st.one_of(mutated(vg_valid), mutated(vg_valid), mutated(vg_valid), st.lists(maybe(vg_entry), max_size=4), junk,
                   st.binary(max_size=30))


@SETTINGS
@given(doc=vg_doc, options=st.sampled_from(["", "", "&merge_instances=0", "&merge_synsets=0&min_images=1", "&min_images=x"]))
def test_vg_loader_raises_only_dataset_error(tmp_path_factory, image_dir, doc, options):
    f = tmp_path_factory.mktemp("vg") / "objects.json"
    write(f, doc)
    exercise(f"vg:{f}?images={image_dir}{options}")


# --- Broden ---------------------------------------------------------------------------------------

cell = st.one_of(st.sampled_from(["", "a.png", "lab.png", "missing.png", "broken.png", "1", "2;3", "x", "-1", "1.5", "99999"]),
                 st.text(alphabet="ab;.,\"\n12", max_size=6))
csv_text = lambda header: st.lists(st.lists(cell, min_size=0, max_size=len(header) + 1), max_size=4).map(  # noqa: E731
    lambda rows: ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
index_csv = st.one_of(csv_text(["image", "split", "ih", "iw", "object", "scene"]), csv_text(["image", "texture"]),
                      st.text(max_size=30), st.binary(max_size=30))
label_csv = st.one_of(csv_text(["number", "name", "category"]), csv_text(["name"]), st.just(b"number,name\n1,\xff\xfe\n"),
                      st.just("number,name,category\n1,dog,object(3)\n2,grass-s,scene\n3,red-c,color\n"))


@SETTINGS
@given(index=index_csv, labels=label_csv, options=st.sampled_from(["", "?categories=object,scene", "?split=train", "?categories=nope"]))
def test_broden_loader_raises_only_dataset_error(tmp_path_factory, index, labels, options):
    root = tmp_path_factory.mktemp("broden")
    (root / "images").mkdir()
    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(root / "images" / "a.png")
    lab = np.zeros((6, 8, 3), np.uint8)
    lab[:3, :4, 0] = 1
    lab[3:, 4:, 0] = 7  # a code not in label.csv
    Image.fromarray(lab).save(root / "images" / "lab.png")
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for name, content in (("index.csv", index), ("label.csv", labels)):
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    exercise(f"broden:{root}{options}")


# --- JSON-lines manifest --------------------------------------------------------------------------

m_line = st.fixed_dictionaries({"image": maybe(st.sampled_from(["a.png", "missing.png", "broken.png", " ", "/abs/missing.png"]))}, optional={
    "concepts": maybe(st.lists(maybe(st.sampled_from(["dog", "cat", " ", ""])), max_size=3)),
    "boxes": maybe(st.dictionaries(st.sampled_from(["dog", "cat"]), maybe(st.lists(maybe(box4), max_size=2)), max_size=2)),
    "masks": maybe(st.dictionaries(st.sampled_from(["dog", "cat"]), maybe(st.sampled_from(["a.png", "broken.png", "nope.png"])), max_size=2)),
    "group": junk, "id": junk})
m_valid = st.lists(st.fixed_dictionaries({
    "image": st.sampled_from(["a.png", "missing.png", "broken.png"]), "concepts": st.just(["dog", "cat"]),
    "boxes": st.fixed_dictionaries({"dog": st.lists(st.lists(st.integers(-5, 25), min_size=4, max_size=4).map(
        lambda b: [b[0], b[1], b[0] + abs(b[2]) + 1, b[1] + abs(b[3]) + 1]), min_size=1, max_size=2)}),
    "masks": st.fixed_dictionaries({"cat": st.sampled_from(["a.png", "blank.png", "broken.png"])})}), min_size=1, max_size=3)
m_file = st.one_of(mutated(m_valid).map(lambda ls: "\n".join(json.dumps(x, allow_nan=True) for x in ls).encode()
                                        if isinstance(ls, list) else json.dumps(ls).encode()),
                   mutated(m_valid).map(lambda ls: "\n".join(json.dumps(x, allow_nan=True) for x in ls).encode()
                                        if isinstance(ls, list) else json.dumps(ls).encode()),
                   st.lists(st.one_of(m_line.map(lambda d: json.dumps(d, allow_nan=True)), st.text(max_size=10)), max_size=4)
                   .map(lambda lines: "\n".join(lines).encode()),
                   st.binary(max_size=40), st.just(b'{"image": "a.png", "concepts": ["\xff"]}\n'))


@SETTINGS
@given(content=m_file)
def test_manifest_loader_raises_only_dataset_error(tmp_path_factory, image_dir, content):
    d = tmp_path_factory.mktemp("manifest")
    for name in ("a.png", "broken.png", "blank.png"):
        (d / name).write_bytes((image_dir / name).read_bytes())
    (d / "m.jsonl").write_bytes(content)
    exercise(f"manifest:{d / 'm.jsonl'}")
