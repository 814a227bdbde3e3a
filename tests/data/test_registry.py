"""The dataset and model registries list what they hold, and their errors list it too; one JSON reader serves all."""
from __future__ import annotations

import re

import pytest

from lavise.data import list_datasets, load_dataset, register_dataset
from lavise.errors import DatasetError, ModelError, RunError
from lavise.io import read_json
from lavise.models import list_models, load_model, register_model

DATASET_KINDS = {"coco", "vg", "broden", "folder", "manifest", "builtin"}
MODEL_PREFIXES = {"efficientnet-lite0", "torchvision", "timm", "python"}


def test_list_datasets_names_every_loader():
    kinds = list_datasets()
    assert kinds == sorted(kinds) and DATASET_KINDS <= set(kinds)
    assert callable(register_dataset)


@pytest.mark.parametrize("spec", ["cocoo:x.json", "nokind"])
def test_dataset_spec_errors_list_every_kind(spec):
    with pytest.raises(DatasetError) as e:
        load_dataset(spec)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    listed = msg.rsplit("one of ", 1)[1].split(", ")
    assert listed == list_datasets(), msg


def test_list_models_names_every_spec_prefix():
    prefixes = list_models()
    assert prefixes == sorted(prefixes) and MODEL_PREFIXES <= set(prefixes)
    assert callable(register_model)


@pytest.mark.parametrize("spec", ["resnet50", "keras:resnet50"])
def test_unknown_model_error_shows_how_to_write_every_spec(spec):
    with pytest.raises(ModelError, match="unknown model") as e:
        load_model(spec)
    msg = str(e.value)
    forms = re.split(r", | or ", msg.split("; use ", 1)[1])
    assert {f.split(":")[0] for f in forms} == set(list_models()), msg
    assert "torchvision:NAME" in msg and "python:" in msg


# ---------------------------------------------------------------- read_json


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "truncated.json").write_text('{"images": [')
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    (tmp_path / "folder.json").mkdir()
    return tmp_path


def test_read_json_run_files_raise_run_errors(bad_files):
    with pytest.raises(RunError, match=r"truncated.json is not valid JSON \(.*\); delete it and rerun"):
        read_json(bad_files / "truncated.json")
    with pytest.raises(RunError, match="latin1.json is not valid JSON"):
        read_json(bad_files / "latin1.json")
    with pytest.raises(RunError, match="missing file .*none.json"):
        read_json(bad_files / "none.json")
    with pytest.raises(RunError, match="is a directory"):
        read_json(bad_files / "folder.json")


def test_read_json_dataset_files_raise_dataset_errors(bad_files):
    what = "COCO annotation file"
    with pytest.raises(DatasetError, match=r"COCO annotation file .*truncated.json is not valid JSON \(line 1, column"):
        read_json(bad_files / "truncated.json", DatasetError, what)
    with pytest.raises(DatasetError, match="latin1.json is not UTF-8 JSON"):
        read_json(bad_files / "latin1.json", DatasetError, what)
    with pytest.raises(DatasetError, match=r"COCO annotation file not found: .*none.json \(check the path"):
        read_json(bad_files / "none.json", DatasetError, what)
    with pytest.raises(DatasetError, match="is a directory; give the path of the .json file"):
        read_json(bad_files / "folder.json", DatasetError, what)
    # the JSON loaders read through it
    for kind, what in [("coco", "COCO annotation file"), ("vg", "Visual Genome objects file")]:
        with pytest.raises(DatasetError, match=f"{what} .*truncated.json is not valid JSON"):
            load_dataset(f"{kind}:{bad_files / 'truncated.json'}")
