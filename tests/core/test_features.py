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
