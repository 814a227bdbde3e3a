"""``timm:NAME`` model specs: timm's own preprocessing, weights files, clear errors (random init, offline)."""
from __future__ import annotations

import pytest
import torch

from lavise.errors import ModelError
from lavise.features import FeatureExtractor
from lavise.models import load_model

timm = pytest.importorskip("timm")


def test_timm_spec_takes_timms_eval_preprocessing():
    from timm.data import create_transform, resolve_data_config
    from torchvision.transforms import CenterCrop, Resize

    tm = load_model("timm:test_vit")
    cfg = resolve_data_config({}, model=timm.create_model("test_vit"))
    steps = create_transform(**cfg).transforms
    resize = next(t for t in steps if isinstance(t, Resize))
    crop = next(t for t in steps if isinstance(t, CenterCrop))
    p = tm.preprocess
    assert (p.resize, p.crop) == (resize.size, crop.size[0]) and p.interpolation == resize.interpolation.value
    assert p.mean == tuple(cfg["mean"]) and p.std == tuple(cfg["std"])
    assert tm.default_layer == "norm" and tm.spec == "timm:test_vit"
    d, h, w = FeatureExtractor(tm, "blocks.0").feature_shape()
    patch = tm.module.patch_embed.patch_size
    assert (h, w) == (p.crop // patch[0], p.crop // patch[1])


def test_timm_weights_file_loads_and_keys_the_digest(tmp_path):
    from safetensors.torch import save_file

    a = load_model("timm:test_convnext")
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in a.module.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    b = load_model("timm:test_convnext", weights=tmp_path / "w.safetensors")
    assert b.weights_digest != a.weights_digest
    assert all(torch.equal(b.module.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(ModelError, match="do not fit timm:test_vit"):
        load_model("timm:test_vit", weights=tmp_path / "w.safetensors")


@pytest.mark.parametrize("spec,needle", [
    ("timm:vit_tiny_patch16_22", "did you mean vit_tiny_patch16_224"),
    ("timm:test_vit:imagenet", "the only tag after the name is ':pretrained'"),
])
def test_timm_spec_errors(spec, needle):
    with pytest.raises(ModelError, match=needle):
        load_model(spec)
