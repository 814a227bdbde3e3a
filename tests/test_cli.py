"""The command line: output, one-line errors with exit code 2."""

import pytest

from lavise.cli import main


@pytest.fixture
def tiny_spec(monkeypatch):
    # `python:` specs import user code explicitly; the tiny CNN lives in tests/conftest.py
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    return "python:conftest:TinyNet"


def test_layers_lists_dotted_names_with_shapes(tiny_spec, capsys):
    assert main(["layers", tiny_spec, "--size", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split("\t")[0]: line.split("\t")[2] for line in out[1:]}
    assert rows["block1"] == "8x16x16" and rows["block2"] == "16x8x8" and rows["block1.0"] == "8x16x16"
    assert "fc" not in rows  # not a 4-D map unless --all
    assert "default layer: block2" in out[0]


@pytest.mark.parametrize("argv, needle", [
    (["layers", "torchvision:resnt18"], "did you mean resnet18"),
    (["layers", "nosuchmodel"], "unknown model"),
    (["train", "--model", "python:conftest:TinyNet", "--layer", "blok2", "--reference", "folder:/nonexistent", "--out", "x"], "did you mean block2"),
    (["explain", "/nonexistent/run", "--images", "folder:/tmp"], "does not exist"),
    (["layers", "python:conftest:NoSuchFactory"], "cannot import"),
    (["explain", "/nonexistent/run", "--images", "folder:/tmp", "--method", "image", "--smooth", "2"],
     "method 'image' reruns the clean images"),
    (["evaluate", "/nonexistent/run", "--dataset", "folder:/tmp", "--smooth", "-1"], "--smooth must be a whole number"),
])
def test_bad_input_gives_one_line_error_and_exit_code_2(tiny_spec, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lavise: error:") and needle in err[0], err


def test_layer_with_non_4d_output_is_rejected(tiny_model):
    import torch

    from lavise.errors import ModelError
    from lavise.features import FeatureExtractor

    with pytest.raises(ModelError, match="neither a feature map nor a sequence of image tokens"):
        FeatureExtractor(tiny_model, "fc")(torch.zeros(1, 3, 64, 64))


def test_weights_load_safely_and_mismatch_is_reported(tmp_path, tiny_spec, capsys):
    import torch

    torch.save({"state_dict": {"bogus.weight": torch.zeros(2)}}, tmp_path / "w.pt")
    assert main(["layers", tiny_spec, "--weights", str(tmp_path / "w.pt")]) == 2
    assert "missing keys" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["layers", tiny_spec, "--weights", str(tmp_path / "bad.pt")]) == 2
    assert "cannot read weights" in capsys.readouterr().err


def test_help_lists_the_registered_dataset_kinds(capsys):
    """The epilog comes from the dataset registry, so a new loader shows up in --help by registering."""
    from lavise.cli import build_parser
    from lavise.data import list_datasets

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Datasets: " + ", ".join(list_datasets()) in out


def test_layers_marks_token_layers_with_their_map_shape(capsys):
    pytest.importorskip("timm")
    assert main(["layers", "timm:test_vit", "--size", "160"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split("\t")[0]: line.split("\t")[2:] for line in out[1:]}
    assert rows["blocks.0"] == ["64x10x10", "tokens (1 prefix, 10x10 grid)"]
    assert rows["patch_embed.proj"] == ["64x10x10"]  # the patch embedding's own convolution: a plain map
    assert "head" not in rows and "default layer: norm" in out[0]
