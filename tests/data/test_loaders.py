"""Reference-dataset loaders on tiny datasets built in tmp_path, with hand-computed mask sizes."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from lavise.data import DATASETS, ConceptDataset, parse_spec
from lavise.errors import DatasetError


def load(spec: str) -> ConceptDataset:
    """Parse ``spec`` and call the registered loader, as ``load_dataset`` does (but an empty dataset is no error)."""
    kind, arg, opts = parse_spec(spec)
    return DATASETS.get(kind, spec)(arg, opts)


def save_image(path: Path, w: int, h: int, color=(120, 80, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path)
    return path


def by_concept(ds: ConceptDataset, i: int) -> dict:
    anns = ds.annotations(i)
    assert len({a.concept for a in anns}) == len(anns), "one Annotation per (image, concept)"
    return {a.concept: a.mask for a in anns}


# ---------------------------------------------------------------- COCO


def coco_file(tmp_path: Path, **extra) -> Path:
    """Two 20x30 images; image 1 has a square polygon, an RLE and a bbox-only box."""
    rle_src = np.zeros((20, 30), dtype=np.uint8)
    rle_src[5:10, 15:22] = 1  # 35 px
    rle_src[18, 29] = 1  # +1 px in the corner
    rle = mask_utils.encode(np.asfortranarray(rle_src))
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30, "theme": "kitchen"},
            {"id": 2, "file_name": "b.jpg", "height": 20, "width": 30},
        ],
        "categories": [{"id": 1, "name": "pizza"}, {"id": 2, "name": "plate"}, {"id": 3, "name": "cup"},
                       {"id": 4, "name": "fork"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "bbox": [2, 2, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()}},
            # Uncompressed (list) counts, column-major: rows 0-4 of column 0.
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": [0, 5, 595]}},
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [1, 1, 4, 3]},
            # A second cup in image 2: merged into the first (OR), overlapping by 2 px.
            {"id": 5, "image_id": 2, "category_id": 3, "bbox": [4, 3, 2, 2]},
            {"id": 6, "image_id": 2, "category_id": 4, "bbox": [5, 5, 0, 4]},  # zero area: skipped
            {"id": 7, "image_id": 2, "category_id": 99, "bbox": [0, 0, 3, 3]},  # unknown category
            {"id": 8, "image_id": 42, "category_id": 1, "bbox": [0, 0, 3, 3]},  # unknown image
        ],
        **extra,
    }
    path = tmp_path / "ann" / "instances.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    save_image(tmp_path / "imgs" / "a.jpg", 30, 20)
    save_image(tmp_path / "imgs" / "b.jpg", 30, 20)
    return path


def test_coco_polygon_rle_bbox_masks(tmp_path):
    path = coco_file(tmp_path)
    with pytest.warns(UserWarning, match=r"1 with a category_id not in 'categories'.*1 with an image_id.*1 with no area"):
        ds = load(f"coco:{path}?images={tmp_path / 'imgs'}")
    assert len(ds) == 2
    assert ds.concepts == ["cup", "pizza", "plate"]
    assert ds.skipped == {"unknown_category": 1, "missing_image": 1, "empty": 1}
    s = ds[0]
    assert s.path == tmp_path / "imgs" / "a.jpg" and s.image_id == "a.jpg" and s.group == "kitchen"
    m = by_concept(ds, 0)
    assert sorted(m) == ["pizza", "plate"]
    assert m["pizza"].dtype == bool and m["pizza"].shape == (20, 30)
    assert m["pizza"].sum() == 100  # the 10x10 square polygon
    assert m["pizza"][2:12, 2:12].all()
    expected = np.zeros((20, 30), dtype=bool)
    expected[5:10, 15:22] = True
    expected[18, 29] = True
    assert np.array_equal(m["plate"], expected)  # compressed RLE decodes back exactly

    m2 = by_concept(ds, 1)
    assert sorted(m2) == ["cup", "plate"]
    assert m2["plate"].sum() == 5 and m2["plate"][0:5, 0].all()  # uncompressed RLE
    assert m2["cup"].sum() == 4 * 3 + 2 * 2 - 1  # two boxes OR-ed, sharing pixel (4, 3)
    assert ds[1].group is None
    assert ds._fingerprint_files() == [path]


def test_coco_default_image_folder_and_fingerprint(tmp_path):
    path = coco_file(tmp_path)
    save_image(path.parent / "a.jpg", 30, 20)
    with pytest.warns(UserWarning):
        ds = load(f"coco:{path}")
    assert ds.items[0][1] == path.parent / "a.jpg"
    assert isinstance(ds.fingerprint(), str) and len(ds.fingerprint()) == 16


def test_coco_seen_held_out_split(tmp_path):
    from lavise.data.coco import CocoDataset

    path = coco_file(tmp_path, lavise={"seen": ["pizza", "cup"], "held_out": ["plate"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen = CocoDataset(path, tmp_path / "imgs", concepts="seen")
        held = load(f"coco:{path}?images={tmp_path / 'imgs'}&concepts=held_out")
    assert seen.meta == {"seen": ["pizza", "cup"], "held_out": ["plate"]}
    assert seen.concepts == ["cup", "pizza"]
    assert held.concepts == ["plate"]
    assert [a.concept for a in held.annotations(0)] == ["plate"]


def test_coco_split_option_without_split_errors(tmp_path):
    path = coco_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match="seen/held-out split"):
            load(f"coco:{path}?concepts=seen")
        with pytest.raises(DatasetError, match="concepts='nope'"):
            load(f"coco:{path}?concepts=nope")


def test_coco_mask_outside_image_is_skipped_when_decoded(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 1, "name": "ghost"}, {"id": 2, "name": "pizza"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[100, 100, 110, 100, 110, 110]]},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        ],
    }
    path = tmp_path / "i.json"
    path.write_text(json.dumps(data))
    ds = load(f"coco:{path}")
    with pytest.warns(UserWarning, match="decode to no pixels"):
        m = by_concept(ds, 0)
    assert sorted(m) == ["pizza"] and m["pizza"].sum() == 16
    assert ds.skipped["empty"] == 1


def test_coco_missing_and_malformed_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(f"coco:{tmp_path / 'nope.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        load(f"coco:{bad}")
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        load(f"coco:{wrong}")
    with pytest.raises(DatasetError, match="unknown option.*imgs"):
        load(f"coco:{wrong}?imgs=x")


# ---------------------------------------------------------------- Visual Genome


def vg_file(tmp_path: Path) -> Path:
    save_image(tmp_path / "images" / "1.jpg", 40, 30)
    save_image(tmp_path / "images" / "VG_100K_2" / "2.jpg", 10, 10)
    data = [
        {"image_id": 1, "objects": [
            {"object_id": 1, "x": 2, "y": 3, "w": 5, "h": 4, "names": ["dog"], "synsets": ["dog.n.01"]},
            # Runs past the bottom-right corner: clipped to 10x10.
            {"object_id": 2, "x": 30, "y": 20, "w": 20, "h": 20, "names": ["puppy"], "synsets": ["dog.n.01"]},
            {"object_id": 3, "x": 0, "y": 0, "w": 3, "h": 2, "names": ["Red  Car"], "synsets": []},
            {"object_id": 4, "x": 10, "y": 10, "w": 2, "h": 2, "names": ["frank"], "synsets": ["hot_dog.n.01"]},
            {"object_id": 5, "x": 1, "y": 1, "w": 0, "h": 5, "names": ["line"], "synsets": []},
        ]},
        {"image_id": 2, "image_url": "https://example.org/VG_100K_2/2.jpg", "objects": [
            {"object_id": 6, "x": 0, "y": 0, "w": 4, "h": 5, "names": ["doggy"], "synsets": ["dog.n.01"]},
        ]},
    ]
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(data))
    return path


def test_vg_boxes_synsets_and_clipping(tmp_path):
    path = vg_file(tmp_path)
    with pytest.warns(UserWarning, match="1 with a zero-area box"):
        ds = load(f"vg:{path}?images={tmp_path / 'images'}")
    assert len(ds) == 2
    assert ds.concepts == ["dog", "hot dog", "red car"]
    assert ds.items[1][1] == tmp_path / "images" / "VG_100K_2" / "2.jpg"
    m = by_concept(ds, 0)
    assert sorted(m) == ["dog", "hot dog", "red car"]
    assert m["dog"].shape == (30, 40)
    assert m["dog"].sum() == 5 * 4 + 10 * 10  # merged instances, the second clipped at the border
    assert m["dog"][3:7, 2:7].all() and m["dog"][20:30, 30:40].all()
    assert m["red car"].sum() == 3 * 2
    assert m["hot dog"].sum() == 4
    assert by_concept(ds, 1)["dog"].sum() == 4 * 5
    assert ds._fingerprint_files() == [path]


def test_vg_options(tmp_path):
    path = vg_file(tmp_path)
    images = tmp_path / "images"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frequent = load(f"vg:{path}?images={images}&min_images=2")
        names = load(f"vg:{path}?images={images}&merge_synsets=0")
        split = load(f"vg:{path}?images={images}&merge_instances=0")
    assert frequent.concepts == ["dog"]  # the only category in >= 2 images
    assert [a.concept for a in frequent.annotations(0)] == ["dog"]
    assert names.concepts == ["dog", "doggy", "frank", "puppy", "red car"]
    dogs = [a.mask.sum() for a in split.annotations(0) if a.concept == "dog"]
    assert sorted(dogs) == [20, 100]
    with pytest.raises(DatasetError, match="min_images"):
        load(f"vg:{path}?min_images=many")
    with pytest.raises(DatasetError, match="merge_synsets"):
        load(f"vg:{path}?merge_synsets=maybe")


def test_vg_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(f"vg:{tmp_path / 'objects.json'}")
    bad = tmp_path / "objects.json"
    bad.write_text("[{]")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load(f"vg:{bad}")
    bad.write_text('{"image_id": 1}')
    with pytest.raises(DatasetError, match="not a Visual Genome"):
        load(f"vg:{bad}")


# ---------------------------------------------------------------- Broden


def save_codes(path: Path, codes: np.ndarray) -> None:
    """Write a Broden label PNG: code = R + 256 * G."""
    rgb = np.zeros(codes.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = codes % 256
    rgb[..., 1] = codes // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path)


def broden_dir(tmp_path: Path) -> Path:
    root = tmp_path / "broden"
    save_image(root / "images" / "ade" / "a.jpg", 8, 8)
    save_image(root / "images" / "ade" / "b.jpg", 6, 4)
    obj = np.full((4, 4), 5)  # wall
    obj[:2, :2] = 300  # dog: R=44, G=1
    save_codes(root / "images" / "ade" / "a_object.png", obj)  # 4x4 for an 8x8 image
    part = np.zeros((8, 8), dtype=int)
    part[7, :] = 2  # leg, full resolution
    save_codes(root / "images" / "ade" / "a_part.png", part)
    color = np.full((8, 8), 7)
    save_codes(root / "images" / "ade" / "a_color.png", color)
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
        "ade/a.jpg,train,8,8,4,4,ade/a_color.png,ade/a_object.png,ade/a_part.png,,12,\n"
        "ade/b.jpg,val,4,6,4,6,,,,,12;13,\n"
    )
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        "0,-,,0,0,\n"
        "2,leg,part(1),1,1,\n"
        "5,wall,object(1),1,1,\n"
        "7,black-c,color(1),1,1,\n"
        "12,street-s,scene(2),2,1,\n"
        "13,banded,texture(1),1,1,\n"
        "300,dog,object(1),1,1,\n"
    )
    return root


def test_broden_codes_upsampling_and_scene_labels(tmp_path):
    root = broden_dir(tmp_path)
    ds = load(f"broden:{root}")
    assert len(ds) == 2
    assert ds.items[0][1] == root / "images" / "ade" / "a.jpg"
    assert ds.concepts == ["banded", "dog", "leg", "street", "wall"]  # no color by default
    m = by_concept(ds, 0)
    assert sorted(m) == ["dog", "leg", "street", "wall"]
    assert m["dog"].shape == (8, 8)
    assert m["dog"].sum() == 16 and m["dog"][:4, :4].all()  # 2x2 label pixels -> 4x4 image pixels
    assert m["wall"].sum() == 48
    assert m["leg"].sum() == 8 and m["leg"][7].all()
    assert m["street"] is None
    m1 = by_concept(ds, 1)
    assert m1 == {"banded": None, "street": None}
    assert [str(p.name) for p in ds._fingerprint_files()] == ["index.csv", "label.csv"]


def test_broden_options(tmp_path):
    root = broden_dir(tmp_path)
    colors = load(f"broden:{root}?categories=color")
    assert colors.concepts == ["black"]
    assert by_concept(colors, 0)["black"].sum() == 64
    assert by_concept(colors, 1) == {}
    val = load(f"broden:{root}?split=val")
    assert [i for i, _, _ in val.items] == ["ade/b.jpg"]
    with pytest.raises(DatasetError, match="unknown Broden category shape"):
        load(f"broden:{root}?categories=object,shape")


def test_broden_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(f"broden:{tmp_path / 'nowhere'}")
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match="index.csv"):
        load(f"broden:{tmp_path / 'b'}")


# ---------------------------------------------------------------- manifest


def test_manifest_boxes_masks_and_whole_image(tmp_path):
    save_image(tmp_path / "img" / "1.png", 20, 10)
    save_image(tmp_path / "img" / "2.png", 5, 5)
    mask = np.zeros((10, 20), dtype=np.uint8)
    mask[0, :13] = 255
    Image.fromarray(mask).save(tmp_path / "grass.png")
    lines = [
        {"image": "img/1.png", "concepts": ["dog", "grass", "sky"], "boxes": {"dog": [[2, 3, 7, 6], [18, 8, 25, 20]]},
         "masks": {"grass": "grass.png"}, "group": "park"},
        {"image": str(tmp_path / "img" / "2.png"), "concepts": ["cat"]},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = load(f"manifest:{path}")
    assert len(ds) == 2 and ds.concepts == ["cat", "dog", "grass", "sky"]
    s = ds[0]
    assert s.group == "park" and s.path == tmp_path / "img" / "1.png"
    m = by_concept(ds, 0)
    assert m["dog"].shape == (10, 20)
    assert m["dog"].sum() == 5 * 3 + 2 * 2  # second box clipped at the border
    assert m["grass"].sum() == 13
    assert m["sky"] is None
    assert by_concept(ds, 1) == {"cat": None}
    assert ds[1].group is None


def test_manifest_errors_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.jpg", "concepts": ["x"]}\n\n{"image": "b.jpg", "concepts": [\n')
    with pytest.raises(DatasetError, match="manifest line 3"):
        load(f"manifest:{path}")
    path.write_text('{"image": "a.jpg", "boxes": {"x": [[5, 5, 1, 9]]}}\n')
    with pytest.raises(DatasetError, match="manifest line 1.*x1 <= x0"):
        load(f"manifest:{path}")
    path.write_text('{"image": "a.jpg", "masks": {"x": "missing.png"}}\n')
    with pytest.raises(DatasetError, match="manifest line 1.*mask file"):
        load(f"manifest:{path}")
    path.write_text('{"concepts": ["x"]}\n')
    with pytest.raises(DatasetError, match="manifest line 1.*\"image\""):
        load(f"manifest:{path}")
    with pytest.raises(DatasetError, match="not found"):
        load(f"manifest:{tmp_path / 'none.jsonl'}")


# ---------------------------------------------------------------- folder


def test_folder_with_class_subfolders(tmp_path):
    save_image(tmp_path / "golden_retriever" / "b.jpg", 4, 4)
    save_image(tmp_path / "golden_retriever" / "A.JPG", 4, 4)
    save_image(tmp_path / "red-fox" / "sub" / "c.webp", 4, 4)
    save_image(tmp_path / "red-fox" / ".hidden.png", 4, 4)
    (tmp_path / "red-fox" / "notes.txt").write_text("not an image")
    ds = load(f"folder:{tmp_path}")
    assert ds.has_masks is False
    assert [i for i, _, _ in ds.items] == ["golden_retriever/A.JPG", "golden_retriever/b.jpg", "red-fox/sub/c.webp"]
    assert ds.groups == ["golden_retriever", "golden_retriever", "red-fox"]
    assert ds.concepts == ["golden retriever", "red fox"]
    assert [(a.concept, a.mask) for a in ds.annotations(2)] == [("red fox", None)]


def test_folder_flat_is_unlabeled(tmp_path):
    save_image(tmp_path / "z.png", 4, 4)
    save_image(tmp_path / "a.jpeg", 4, 4)
    ds = load(f"folder:{tmp_path}")
    assert [i for i, _, _ in ds.items] == ["a.jpeg", "z.png"]
    assert ds.concepts == [] and ds.annotations(0) == [] and ds[1].group is None
    with pytest.raises(DatasetError, match="not found"):
        load(f"folder:{tmp_path / 'missing'}")


def test_load_dataset_dispatches_to_these_loaders(tmp_path):
    from lavise.data import load_dataset

    save_image(tmp_path / "cat" / "1.jpg", 4, 4)
    ds = load_dataset(f"folder:{tmp_path}")
    assert type(ds).__name__ == "FolderDataset" and len(ds) == 1
