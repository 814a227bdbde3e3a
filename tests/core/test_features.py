import numpy as np
import torch

from lavise.features import _collate, _Part
from lavise.stats import ActivationStats


def test_collate_stacks_images_channels_last_in_order_and_lists_errors():
    g = torch.Generator().manual_seed(0)
    hwc = torch.randint(0, 256, (6, 5, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1)  # as PIL decodes
    chw = torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8, generator=g)  # an already contiguous crop
    items = [{"index": 4, "x": hwc}, {"index": 7, "error": "broken.jpg: cannot identify image file"},
             {"index": 9, "x": chw}]
    out = _collate(items)
    assert out["x"].shape == (2, 3, 6, 5) and out["x"].dtype == torch.uint8
    assert out["x"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out["x"], torch.stack([hwc, chw]))
    assert out["index"].tolist() == [4, 9] and [e["index"] for e in out["errors"]] == [7]


def test_part_appends_the_exact_bytes_of_non_contiguous_and_empty_arrays(tmp_path):
    part = _Part(tmp_path / "rank0", {"n": 2}, d=2, h=1, w=1, stats=ActivationStats(2, 2))
    feats = np.arange(16, dtype=np.float16).reshape(4, 2, 1, 2)[:, :, :, :1]  # a strided view
    part.append("features", feats)
    part.append("pairs", np.zeros((0, 2), np.int64))  # a batch without pairs writes nothing
    part.close()
    assert (tmp_path / "rank0" / "features.f16").read_bytes() == np.ascontiguousarray(feats).tobytes()
    assert (tmp_path / "rank0" / "pairs.i64").read_bytes() == b""
