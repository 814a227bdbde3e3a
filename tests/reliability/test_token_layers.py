"""A transformer's token layer goes through every command like a convolutional layer: train, explain, evaluate,
compare and report on a tiny timm ViT (class and register tokens), killed and resumed byte for byte, and bad
layers refused in one line."""
from __future__ import annotations

import json
import shutil

import pytest
from relutil import Lavise, make_manifest
from test_bad_input import assert_one_error_line
from test_kill_resume import assert_nothing_half_written, assert_same

from lavise.explain import Explanations

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def vit_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit")
    m = make_manifest(root / "data", n=24)
    common = ["--batch-size", "4", "--workers", "0", "--quiet"]
    train = ["train", "--model", "python:relmodels:vit", "--reference", f"manifest:{m}",
             "--embeddings", f"glove:{root / 'data' / 'tiny.txt'}", "--out", "run", "--epochs", "3", "--seed", "1", *common]
    explain = ["explain", "run", "--images", f"manifest:{m}", "--vocabulary", "concepts", "-p", "5", "-s", "2", "-x", "3",
               *common]
    base = root / "base"
    base.mkdir()
    lav = Lavise(base)
    r = lav(train)
    assert r.code == 0, r
    shutil.copytree(base / "run", root / "trained")
    r = lav(explain)
    assert r.code == 0, r
    return {"root": root, "manifest": m, "train": train, "explain": explain, "base": base / "run",
            "trained": root / "trained", "common": common}


def test_a_token_layer_goes_through_every_command(vit_env, tmp_path):
    run = vit_env["base"]
    config = json.loads((run / "config.json").read_text())
    assert config["layer"] == "blocks.1"  # the model's default: a transformer block
    ex = Explanations.load(run)
    assert len(ex.filters) == 16 and all(f.words for f in ex.filters if not f.dead)
    shutil.copytree(run, tmp_path / "run")
    lav = Lavise(tmp_path)
    m, common = vit_env["manifest"], vit_env["common"]
    r = lav(["evaluate", "run", "--dataset", f"manifest:{m}", "--vocabulary", "concepts", "-p", "5", "-s", "2",
             "--stability", "halves,noise", *common])
    assert r.code == 0, r
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert {"halves", "noise"} <= set(ev["stability"]["probes"]) and len(ev["filters"]) == 16
    assert ev["rows"][0]["method"] == "masked-attention" and ev["rows"][0]["grounded_filters"] > 0
    groups = tmp_path / "groups.csv"
    groups.write_text("image,group\n" + "".join(f"{i}.png,{'a' if i < 12 else 'b'}\n" for i in range(24)))
    r = lav(["compare", "run", "--images", f"manifest:{m}", "--groups", str(groups), *common])
    assert r.code == 0, r
    r = lav(["report", "run", "--quiet"])
    assert r.code == 0, r
    assert (tmp_path / "run" / "report.html").stat().st_size > 1000


@pytest.mark.parametrize("command,kill", [("train", ("forward", 4)), ("explain", ("forward", 3))])
def test_a_token_layer_killed_mid_extraction_resumes_to_the_same_bytes(vit_env, tmp_path, command, kill):
    if command == "explain":
        shutil.copytree(vit_env["trained"], tmp_path / "run")
    lav = Lavise(tmp_path)
    r = lav(vit_env[command], kill=kill)
    assert r.killed, f"kill point not reached: {r}"
    done = vit_env["trained"] if command == "train" else vit_env["base"]
    assert_nothing_half_written(tmp_path / "run", done)
    r = lav(vit_env[command])
    assert r.code == 0, r
    assert_same(tmp_path / "run", done)


@pytest.mark.parametrize("layer,needle", [
    ("head", "neither a feature map nor a sequence of image tokens"),
    ("blocks.9", "no layer 'blocks.9'"),
])
def test_layers_that_give_no_map_are_refused_in_one_line(vit_env, tmp_path, layer, needle):
    args = vit_env["train"] + ["--layer", layer]
    assert_one_error_line(Lavise(tmp_path)(args), f"'{layer}'", needle)
