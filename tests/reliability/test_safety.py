"""Safe by default: weights load without unpickling code, nothing from a dataset or run folder is
unpickled or executed, report text is escaped, and only an explicit ``python:`` model spec runs user code."""
from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from relutil import Lavise, make_manifest

from lavise.errors import ModelError
from lavise.models import load_state_dict
from lavise.run import RunFolder

SRC = Path(__import__("lavise").__file__).parent
COMMON = ["--batch-size", "4", "--workers", "0", "--quiet"]


class Payload:
    """Unpickling this creates the file ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_torch_pickle_weights_are_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"conv.weight": torch.zeros(1), "evil": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    # a plain pickle with a .pth name, too
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_cli_refuses_pickled_weights(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"block1.0.weight": Payload(marker)}, tmp_path / "evil.pt")
    m = make_manifest(tmp_path / "data", n=4)
    r = Lavise(tmp_path)(["train", "--model", "python:relmodels:tiny", "--weights", str(tmp_path / "evil.pt"), "--reference",
                          f"manifest:{m}", "--embeddings", f"glove:{tmp_path / 'data' / 'tiny.txt'}", "--out", "run", *COMMON])
    assert r.code == 2 and r.log.startswith("lavise: error: cannot read weights"), r
    assert not marker.exists()


def test_safetensors_and_plain_state_dicts_load(tmp_path):
    from safetensors.torch import save_file

    sd = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        assert torch.equal(load_state_dict(tmp_path / name)["a.weight"], sd["a.weight"])


def test_a_run_folder_cache_with_pickled_objects_is_not_unpickled(tmp_path):
    """A tampered cache (object arrays whose unpickling would run code) is reported as damaged, never loaded."""
    m = make_manifest(tmp_path / "data", n=6)
    lav = Lavise(tmp_path)
    train = ["train", "--model", "python:relmodels:tiny", "--reference", f"manifest:{m}", "--embeddings",
             f"glove:{tmp_path / 'data' / 'tiny.txt'}", "--out", "run", "--epochs", "1", *COMMON]
    assert lav(train).code == 0
    marker = tmp_path / "pwned"
    (cache,) = (tmp_path / "run" / "cache").iterdir()
    with np.load(cache / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["dataset_index"] = np.array([Payload(marker)], dtype=object)
    np.savez(cache / "arrays.npz", **arrays)
    r = lav(train)
    assert r.code == 2 and "is damaged" in r.log and "delete that folder" in r.log, r
    assert len(r.log.strip().splitlines()) == 1
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            yield name, node


def test_source_never_unpickles_or_evaluates():
    """No pickle/marshal/eval/exec anywhere; every torch.load has weights_only=True, every np.load keeps allow_pickle off."""
    banned_modules = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
    imports_user_code = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not banned_modules & {n.split(".")[0] for n in names}, f"{path}: imports {names}"
        for name, call in _calls(tree):
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(SRC)}:{call.lineno}"
            if isinstance(call.func, ast.Name):  # the builtins (re.compile etc. are fine)
                assert name not in ("eval", "exec", "compile", "__import__"), f"{where}: {name}()"
            if name == "load" and isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") == "torch":
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
            if name == "load" and isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") in ("np", "numpy"):
                assert "allow_pickle" not in kw or (isinstance(kw["allow_pickle"], ast.Constant) and not kw["allow_pickle"].value), where
            if name in ("trust_remote_code",) or ("trust_remote_code" in kw and getattr(kw["trust_remote_code"], "value", False)):
                raise AssertionError(f"{where}: trust_remote_code")
            if name == "import_module":
                imports_user_code.append(str(path.relative_to(SRC)))
    # user modules are imported only for an explicit python: model spec (models.py); cli.py imports lavise.commands.*,
    # registry.py the loader modules each Registry names when it is built
    assert set(imports_user_code) <= {"models.py", "cli.py", "registry.py"}, imports_user_code


def test_only_python_specs_import_user_code(tmp_path, monkeypatch):
    """Dataset and embedding specs never import modules, even ones that look like python: specs."""
    import sys

    from lavise.data import load_dataset
    from lavise.embeddings import load_embeddings
    from lavise.errors import LaviseError

    (tmp_path / "sneaky.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("python:sneaky:x", "sneaky:x", "module:sneaky"):
        with pytest.raises(LaviseError):
            load_dataset(spec)
        with pytest.raises(LaviseError):
            load_embeddings(spec)
    assert not (tmp_path / "pwned").exists() and "sneaky" not in sys.modules


def test_html_report_escapes_all_text(tmp_path):
    from lavise import report

    m = make_manifest(tmp_path / "data", n=6)
    lav = Lavise(tmp_path)
    assert lav(["train", "--model", "python:relmodels:tiny", "--reference", f"manifest:{m}", "--embeddings",
                f"glove:{tmp_path / 'data' / 'tiny.txt'}", "--out", "run", "--epochs", "1", *COMMON]).code == 0
    assert lav(["explain", "run", "--images", f"manifest:{m}", "--vocabulary", "concepts", "-p", "2", *COMMON]).code == 0
    run = tmp_path / "run"
    evil = "<script>alert(1)</script>"
    evil_attr = '"><img src=x onerror=alert(2)>'
    d = json.loads((run / "explanations.json").read_text())
    d["filters"][0]["words"][0]["word"] = evil
    d["filters"][0]["images"][0]["image_id"] = evil_attr
    d["layer"] = evil
    (run / "explanations.json").write_text(json.dumps(d))
    RunFolder(run).record("explanations", ["explanations.json", "explanations.csv"], method=d["method"])
    html = report.build_report(run, images=0, embed=True, show_progress=False).read_text()
    assert evil not in html and evil_attr not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "\\u003cscript\\u003ealert(1)" in html
