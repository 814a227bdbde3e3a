"""Several layers in one run (``lavise.multilayer``): each layer's folder equals a one-layer run byte for byte,
each dataset goes through the model once for all layers, and every command works over the layers."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lavise.cli import main

RELIABILITY = Path(__file__).resolve().parent / "reliability"
COMMON = ["--batch-size", "4", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import sys

    sys.path.insert(0, str(RELIABILITY))  # relmodels (python:relmodels:tiny) and relutil
    from relutil import make_manifest

    root = tmp_path_factory.mktemp("multi")
    m = make_manifest(root / "data", n=24)
    train = ["train", "--model", "python:relmodels:tiny", "--reference", f"manifest:{m}",
             "--embeddings", f"glove:{root / 'data' / 'tiny.txt'}", "--epochs", "3", "--seed", "1", *COMMON]
    explain = ["--images", f"manifest:{m}", "--vocabulary", "concepts", "-p", "5", "-s", "2", *COMMON]
    from lavise.features import extract as extract_mod

    passes = []
    real = extract_mod._extract
    extract_mod._extract = lambda t, layers, *a: passes.append(list(layers)) or real(t, layers, *a)
    try:
        assert main(train + ["--layer", "block1,block2", "--out", str(root / "multi")]) == 0
        assert main(["explain", str(root / "multi"), *explain]) == 0
    finally:
        extract_mod._extract = real
    for layer in ("block1", "block2"):
        assert main(train + ["--layer", layer, "--out", str(root / layer)]) == 0
        assert main(["explain", str(root / layer), *explain]) == 0
    return {"root": root, "manifest": m, "multi": root / "multi", "passes": passes, "explain": explain}


def test_each_layer_of_a_multilayer_run_equals_its_one_layer_run_byte_for_byte(runs):
    for layer in ("block1", "block2"):
        one, sub = runs["root"] / layer, runs["multi"] / "layers" / layer
        names = sorted(p.name for p in one.iterdir() if p.is_file())
        assert names == sorted(p.name for p in sub.iterdir() if p.is_file())
        assert "explainer.safetensors" in names and "explanations.json" in names
        for name in names:
            assert (one / name).read_bytes() == (sub / name).read_bytes(), (layer, name)
    assert not (runs["multi"] / "layers" / "block1" / "cache").exists()  # the caches are shared in RUN/cache


def test_each_dataset_goes_through_the_model_once_for_every_layer(runs):
    # train: the reference set, both layers together; explain: the target images (the same manifest, unlabeled)
    assert runs["passes"] == [["block1", "block2"], ["block1", "block2"]]


def test_multilayer_explanations_name_each_units_layer(runs):
    multi = runs["multi"]
    rows = list(csv.DictReader((multi / "explanations.csv").open()))
    by_layer = {layer: [r for r in rows if r["layer"] == layer] for layer in ("block1", "block2")}
    for layer, mine in by_layer.items():
        one = list(csv.DictReader((runs["root"] / layer / "explanations.csv").open()))
        assert mine == one
    d = json.loads((multi / "explanations.json").read_text())
    assert [x["layer"] for x in d["layers"]] == ["block1", "block2"]
    assert [len(x["filters"]) for x in d["layers"]] == [8, 16]


def test_evaluate_writes_one_row_per_layer_and_report_links_the_layers(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "multi"
    shutil.copytree(runs["multi"], run)
    assert main(["evaluate", str(run), "--dataset", f"manifest:{runs['manifest']}", "--vocabulary", "concepts",
                 "-p", "5", "-s", "2", *COMMON]) == 0
    out = capsys.readouterr().out
    assert "## layer block1" in out and "## layer block2" in out and "the paper's Table 3" in out
    table = (run / "evaluation.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["block1", "block2"]
    rows = json.loads((run / "evaluation.json").read_text())["rows"]
    for r in rows:
        own = json.loads((run / "layers" / r["layer"] / "evaluation.json").read_text())
        assert r["P@1"] == own["rows"][0]["P@1"] and r["filters"] == own["ground_truth"]["netdissect"]["filters"]
    assert main(["report", str(run), "--quiet", "--layer", "block2"]) == 0
    html = (run / "report.html").read_text()
    assert 'href="layers/block2/report.html"' in html and "block1/report.html" not in html
    assert (run / "layers" / "block2" / "report.html").is_file()


def test_compare_goes_over_the_layers(runs, tmp_path):
    import shutil

    run = tmp_path / "multi"
    shutil.copytree(runs["multi"], run)
    groups = tmp_path / "g.csv"
    groups.write_text("image,group\n" + "".join(f"{i}.png,{'a' if i % 2 else 'b'}\n" for i in range(24)))
    assert main(["compare", str(run), "--images", f"manifest:{runs['manifest']}", "--groups", str(groups),
                 *COMMON]) == 0
    for layer in ("block1", "block2"):
        assert (run / "layers" / layer / "compare" / "g" / "compare.json").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["explain", "{multi}", "--layer", "block3"], "this run has no layer 'block3'; its layers are block1, block2"),
    (["explain", "{one}", "--layer", "block2"], "explains layer 'block1' only"),
    (["train", "--layer", "block1,block1"], "names 'block1' twice"),
    (["train", "--layer", "block1,blok2"], "did you mean block2"),
])
def test_layer_choices_that_cannot_work_are_one_line_errors(runs, capsys, argv, needle):
    argv = [a.format(multi=runs["multi"], one=runs["root"] / "block1") for a in argv]
    if argv[0] == "train":
        argv += ["--model", "python:relmodels:tiny", "--reference", f"manifest:{runs['manifest']}", "--out",
                 str(runs["root"] / "never")]
    else:
        argv += runs["explain"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (runs["root"] / "never").exists()


def test_stages_name_each_maps_last_outermost_module():
    import torchvision

    from lavise.models import stage_layers

    r18 = torchvision.models.resnet18()
    assert stage_layers(r18, 224) == ["layer1", "layer2", "layer3", "layer4"]
    mb = torchvision.models.mobilenet_v2()
    assert stage_layers(mb, 224) == ["features.3", "features.6", "features.13", "features"]


def test_dissect_several_layers_in_one_pass_writes_each_layers_csv(runs, tmp_path, capsys):
    m = runs["manifest"]
    base = ["dissect", "python:relmodels:tiny", "--dataset", f"manifest:{m}", *COMMON]
    assert main(base + ["--layer", "block1,block2", "--out", str(tmp_path / "multi" / "d.csv")]) == 0
    for layer in ("block1", "block2"):
        assert main(base + ["--layer", layer, "--out", str(tmp_path / layer / "d.csv")]) == 0
        assert (tmp_path / "multi" / f"d-{layer}.csv").read_text() == (tmp_path / layer / "d.csv").read_text()


def test_the_random_init_control_extracts_every_layer_in_one_pass_too(runs, tmp_path, monkeypatch):
    import shutil

    from lavise.data import load_dataset
    from lavise.features import extract as extract_mod
    from lavise.multilayer import LayeredRun
    from lavise.options import EvalOptions, ExplainOptions, ExtractOptions

    run = tmp_path / "multi"
    shutil.copytree(runs["multi"], run)
    passes, real = [], extract_mod._extract
    monkeypatch.setattr(extract_mod, "_extract", lambda t, layers, *a: passes.append((t.spec, list(layers))) or
                        real(t, layers, *a))
    o = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=2), baselines=(), controls=("random-init",),
                    conventions=("netdissect",))
    evs = LayeredRun(run).evaluate(load_dataset(f"manifest:{runs['manifest']}"), o,
                                   ExtractOptions(batch_size=4, workers=0, show_progress=False))
    assert all(any(r["name"] == "random-init" for r in ev.rows) for ev in evs.values())
    # the trained model's caches exist (training read the same manifest with its masks); the random copy's
    # reference (here the same images and concepts) goes through the copy once for both layers, and no layer's
    # control extracts again on its own
    assert len(passes) == 1 and passes[0][1] == ["block1", "block2"] and "random init" in passes[0][0], passes


def test_a_multilayer_run_opened_as_one_layer_says_what_it_is(runs):
    import lavise
    from lavise.errors import RunError

    with pytest.raises(RunError, match="is a run of several layers"):
        lavise.Run.open(runs["multi"])
    lr = lavise.LayeredRun(runs["multi"])
    assert lr.layers == ["block1", "block2"] and lr.run("block2").layer == "block2"
    assert lr.run("block1").cache_dir == runs["multi"] / "cache"
    with pytest.raises(RunError, match="not a run of several layers"):
        lavise.LayeredRun(runs["root"] / "block1")


def test_rate_one_layer_of_a_multilayer_run_equals_rating_its_one_layer_run(runs, tmp_path, capsys):
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["rate", str(runs["multi"]), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "rate one with --layer" in capsys.readouterr().err
    assert main(["rate", str(runs["multi"]), "--layer", "block2", "--out", str(a), "--images", "3", "--quiet"]) == 0
    assert main(["rate", str(runs["root"] / "block2"), "--out", str(b), "--images", "3", "--quiet"]) == 0
    ka, kb = (json.loads((d / "key.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ka.items() if k != "run"} == {k: v for k, v in kb.items() if k != "run"}
    assert (a / "index.html").read_bytes() == (b / "index.html").read_bytes()
