"""Token and channels-last layers read as (B, C, H, W) maps (``lavise.features.layout``), checked by hand and
against the models' own spatial outputs (timm's ``forward_intermediates``, a patch embedding's own map)."""
from __future__ import annotations

import pytest
import torch

from lavise.data.transforms import Preprocess
from lavise.errors import ModelError
from lavise.features import FeatureExtractor
from lavise.features.layout import Layout, detect, map_shape, patch_size
from lavise.models import wrap_model

timm = pytest.importorskip("timm")


def tiny_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    args = dict(img_size=64, patch_size=8, embed_dim=16, depth=3, num_heads=2, reg_tokens=3, num_classes=3)
    return VisionTransformer(**{**args, **kw}).eval()


def test_tokens_are_laid_out_row_by_row_after_the_prefix():
    out = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)  # 2 prefix tokens + a 2 x 3 grid
    m = Layout("tokens", 2, (2, 3)).to_map(out)
    assert m.shape == (2, 3, 2, 3)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(3):
                    assert m[b, c, i, j] == out[b, 2 + 3 * i + j, c]


def test_channels_last_is_permuted():
    out = torch.randn(2, 4, 5, 7)  # (B, H, W, C)
    m = Layout("nhwc").to_map(out)
    assert m.shape == (2, 7, 4, 5) and torch.equal(m[1, 6, 3, 4], out[1, 3, 4, 6])


@pytest.mark.parametrize("shape,hw,patch,want", [
    ((1, 192, 14, 14), (224, 224), None, Layout("nchw")),
    ((1, 28, 28, 96), (224, 224), None, Layout("nhwc")),
    ((1, 10, 8, 192), (160, 128), None, Layout("nhwc")),  # non-square, channels last
    ((1, 192, 10, 8), (160, 128), None, Layout("nchw")),
    ((1, 197, 768), (224, 224), (16, 16), Layout("tokens", 1, (14, 14))),  # class token
    ((1, 201, 192), (224, 224), (16, 16), Layout("tokens", 5, (14, 14))),  # class + 4 registers
    ((1, 80 + 1, 8), (160, 128), (16, 16), Layout("tokens", 1, (10, 8))),
    ((1, 36 + 2, 8), (90, 90), (16, 16), Layout("tokens", 2, (6, 6))),  # a padding patch embedding rounds up
    ((1, 25 + 13, 8), (90, 90), (16, 16), Layout("tokens", 2, (6, 6))),  # 5 x 5 + 13 fits too: fewer in front wins
    ((1, 50, 64), (224, 224), None, None),  # tokens, but no patch size
    ((1, 64), (224, 224), (16, 16), None),  # pooled
    ((1, 3, 197, 64), (224, 224), (16, 16), Layout("nchw")),  # any other 4-D output reads as a map...
])
def test_detect(shape, hw, patch, want):
    assert detect(shape, hw, patch) == want


def test_the_models_own_prefix_count_settles_an_ambiguous_grid():
    assert detect((1, 38, 8), (90, 90), (16, 16), prefix=13) == Layout("tokens", 13, (5, 5))
    assert detect((1, 38, 8), (90, 90), (16, 16), prefix=4) == Layout("tokens", 2, (6, 6))  # no fit: fewer wins
    assert detect((1, 38, 8), (90, 90), (16, 16), prefix=None) == Layout("tokens", 2, (6, 6))


def test_strict_detect_refuses_4d_outputs_without_the_input_proportions():
    assert detect((1, 3, 197, 64), (224, 224), (16, 16), strict=True) is None  # ...except when choosing a default
    assert map_shape((1, 201, 192), Layout("tokens", 5, (14, 14))) == (192, 14, 14)
    assert map_shape((1, 28, 28, 96), Layout("nhwc")) == (96, 28, 28)


def test_patch_size_of_timm_torchvision_and_a_plain_patchify_stem():
    import torchvision

    assert patch_size(tiny_vit()) == (8, 8)
    tv = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8,
                                              mlp_dim=8)
    assert patch_size(tv) == (8, 8)
    assert patch_size(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 4, stride=4))) == (4, 4)
    assert patch_size(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2))) is None


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_vit_block_maps_equal_timm_forward_intermediates(size):
    vit = tiny_vit(dynamic_img_size=True)
    tm = wrap_model(vit, Preprocess(resize=64, crop=64), default_layer="blocks.1")
    x = torch.randn(2, 3, *size)
    want = vit.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
    got = FeatureExtractor(tm, "blocks.1")(x)
    assert got.shape == (2, 16, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_convnext_and_swin_stages_equal_timm_forward_intermediates():
    torch.manual_seed(0)
    convnext = timm.create_model("convnext_atto", dims=(8, 16, 24, 32), depths=(1, 1, 1, 1)).eval()
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=56, window_size=7, embed_dim=8,
                             depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 3, 56, 56)
    for net, layer in ((convnext, "stages.1"), (swin, "layers.1")):
        want = net.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
        got = FeatureExtractor(wrap_model(net, Preprocess(resize=56, crop=56), default_layer=layer), layer)(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    captured = []
    h = swin.layers[1].register_forward_hook(lambda _m, _i, o: captured.append(o))
    swin(x)
    h.remove()
    assert captured[0].shape == (2, 7, 7, 16)  # Swin's stage really is channels last


def test_torchvision_vit_tokens_land_where_its_patch_embedding_put_them():
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8,
                                               mlp_dim=8).eval()
    with torch.no_grad():
        vit.encoder.pos_embedding.zero_()  # the tokens after the (zero) position embedding are the patch map's
    tm = wrap_model(vit, Preprocess(resize=32, crop=32))
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(FeatureExtractor(tm, "encoder.dropout")(x), FeatureExtractor(tm, "conv_proj")(x))
    assert tm.default_layer == "encoder"  # the last module that gives tokens (its final LayerNorm inside)


def test_default_layer_of_a_vit_and_layers_that_are_no_map():
    tm = wrap_model(tiny_vit(), Preprocess(resize=64, crop=64))
    assert tm.default_layer == "norm"
    assert FeatureExtractor(tm, tm.default_layer).feature_shape() == (16, 8, 8)
    with pytest.raises(ModelError, match="'head'.*neither a feature map nor a sequence of image tokens"):
        FeatureExtractor(tm, "head")(torch.zeros(1, 3, 64, 64))


def test_tokens_without_a_patch_embedding_are_a_clear_error():
    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.seq = torch.nn.Identity()

        def forward(self, x):
            return self.seq(self.conv(x).flatten(2).transpose(1, 2))

    tm = wrap_model(Tokens(), Preprocess(resize=16, crop=16), default_layer="conv")
    with pytest.raises(ModelError, match="tokens, but the model has no patch embedding"):
        FeatureExtractor(tm, "seq")(torch.zeros(1, 3, 16, 16))
