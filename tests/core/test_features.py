import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lavise.errors import RunError
from lavise.features.loader import collate
from lavise.features.parts import PartWriter
from lavise.runtime import exclusive_lock
from lavise.stats import ActivationStats

TESTS = Path(__file__).resolve().parents[1]


def test_collate_stacks_images_channels_last_in_order_and_lists_errors():
    g = torch.Generator().manual_seed(0)
    hwc = torch.randint(0, 256, (6, 5, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1)  # as PIL decodes
    chw = torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8, generator=g)  # an already contiguous crop
    items = [{"index": 4, "x": hwc}, {"index": 7, "error": "broken.jpg: cannot identify image file"},
             {"index": 9, "x": chw}]
    out = collate(items)
    assert out["x"].shape == (2, 3, 6, 5) and out["x"].dtype == torch.uint8
    assert out["x"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out["x"], torch.stack([hwc, chw]))
    assert out["index"].tolist() == [4, 9] and [e["index"] for e in out["errors"]] == [7]


def test_part_appends_the_exact_bytes_of_non_contiguous_and_empty_arrays(tmp_path):
    part = PartWriter(tmp_path / "rank0", {"n": 2}, d=2, h=1, w=1, stats=ActivationStats(2, 2))
    feats = np.arange(16, dtype=np.float16).reshape(4, 2, 1, 2)[:, :, :, :1]  # a strided view
    part.append("features", feats)
    part.append("pairs", np.zeros((0, 2), np.int64))  # a batch without pairs writes nothing
    part.close()
    assert (tmp_path / "rank0" / "features.f16").read_bytes() == np.ascontiguousarray(feats).tobytes()
    assert (tmp_path / "rank0" / "pairs.i64").read_bytes() == b""


def test_a_part_folder_locked_by_another_writer_is_refused(tmp_path):
    # Fails on the old code: there was no lavise.features.parts.PartWriter (nor runtime.exclusive_lock).
    folder = tmp_path / "rank0"
    folder.mkdir()
    held = exclusive_lock(folder / "lock", "the test's folder")
    try:
        with pytest.raises(RunError, match="another lavise process"):
            PartWriter(folder, {"n": 2}, d=2, h=1, w=1, stats=ActivationStats(2, 2))
    finally:
        held.release()
    part = PartWriter(folder, {"n": 2}, d=2, h=1, w=1, stats=ActivationStats(2, 2))  # free again: it writes
    part.close()


def test_imports_and_extracts_without_fcntl(tmp_path):
    """Windows has no fcntl: the cache lock must not need it (filelock picks what the OS has)."""
    # Fails on the old code: features.py imported fcntl at the top to flock part folders.
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    code = f"""
import sys
sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError, as on Windows
sys.path.insert(0, {str(TESTS)!r})
import lavise.features.parts, lavise.runtime
from conftest import TinyNet
from lavise.data.folder import FolderDataset
from lavise.data.transforms import Preprocess
from lavise.features import extract_features
from lavise.models import wrap_model
from lavise.options import ExtractOptions

tm = wrap_model(TinyNet(), Preprocess(resize=64, crop=64), default_layer="block2", name="tiny")
c = extract_features(tm, "block2", FolderDataset({str(tmp_path)!r}), {str(tmp_path / "cache")!r},
                     options=ExtractOptions(workers=0, show_progress=False))
assert "fcntl" not in sys.modules or sys.modules["fcntl"] is None
print(tuple(c.features.shape))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "(3, 16, 8, 8)"


def _files(folder):
    """Every file of a cache folder by name (``arrays.npz`` by content: zip headers carry a timestamp)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix == ".npz":
            with np.load(p) as z:
                out[p.name] = {k: z[k].tobytes() for k in z.files}
        else:
            out[p.name] = p.read_bytes()
    return out


def test_several_layers_in_one_pass_write_each_layers_own_cache_byte_for_byte(tmp_path, tiny_model, squares):
    from lavise.features import extract_features, extract_layers
    from lavise.options import ExtractOptions

    o = ExtractOptions(batch_size=5, workers=0, show_progress=False)
    concepts = list(squares.concepts)
    multi = extract_layers(tiny_model, ["block2", "block1", "block1.0"], squares, tmp_path / "multi", concepts, o)
    assert list(multi) == ["block2", "block1", "block1.0"]
    for layer, cache in multi.items():
        one = extract_features(tiny_model, layer, squares, tmp_path / f"one-{layer}", concepts, o)
        assert cache.path.name == one.path.name  # the same key
        assert _files(cache.path) == _files(one.path), layer
    assert multi["block1"].shape[1:] == (16, 16) and multi["block2"].shape[1:] == (8, 8)
    # masks at each layer's own size: 16 x 16 for block1, 8 x 8 for block2
    assert multi["block1"].masks_feat.shape[1:] == (16, 16) and multi["block2"].masks_feat.shape[1:] == (8, 8)


def test_several_layers_reuse_a_finished_cache_and_resume_a_layer_left_behind(tmp_path, tiny_model, squares, monkeypatch):
    from lavise.features import extract as extract_mod
    from lavise.features import extract_features, extract_layers
    from lavise.options import ExtractOptions

    monkeypatch.setenv("LAVISE_CHECKPOINT_SECONDS", "0")
    o = ExtractOptions(batch_size=4, workers=0, show_progress=False)
    want = {layer: _files(extract_features(tiny_model, layer, squares, tmp_path / f"want-{layer}", None, o).path)
            for layer in ("block1", "block2")}
    # a kill after block1 committed its third batch but before block2 did: block2's part is one batch behind
    real, calls = extract_mod.PartWriter.commit, {"n": 0}

    def commit(self):
        calls["n"] += 1
        if calls["n"] == 6:  # batches 1-2 committed for both layers, then block1's third
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(extract_mod.PartWriter, "commit", commit)
    with pytest.raises(KeyboardInterrupt):
        extract_layers(tiny_model, ["block1", "block2"], squares, tmp_path / "c", None, o)
    monkeypatch.setattr(extract_mod.PartWriter, "commit", real)
    done = extract_layers(tiny_model, ["block1", "block2"], squares, tmp_path / "c", None, o)
    assert {layer: _files(c.path) for layer, c in done.items()} == want
    # a finished layer is not extracted again: only the missing one goes through the model
    asked, real_extract = [], extract_mod._extract
    monkeypatch.setattr(extract_mod, "_extract", lambda t, layers, *a: asked.append(layers) or real_extract(t, layers, *a))
    again = extract_layers(tiny_model, ["block1", "block2", "block1.0"], squares, tmp_path / "c", None, o)
    assert asked == [["block1.0"]] and again["block2"].path == done["block2"].path
