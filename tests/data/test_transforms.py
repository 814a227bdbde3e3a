import numpy as np
import pytest
import torch
from PIL import Image

from lavise.data.transforms import Preprocess, downsample_masks


def test_masks_follow_the_image_through_resize_and_crop_on_non_square_images():
    for h, w in [(60, 100), (120, 50)]:
        img = np.full((h, w, 3), 20, np.uint8)
        m = np.zeros((h, w), bool)
        y0, x0 = h // 3, w // 2
        m[y0:y0 + 15, x0:x0 + 12] = True
        img[m] = (255, 0, 0)
        pre = Preprocess(resize=64, crop=64, mean=(0, 0, 0), std=(1, 1, 1))
        x, masks = pre(Image.fromarray(img), [m, None])
        assert x.shape == (3, 64, 64) and masks.shape == (2, 64, 64)
        red = x[0] > 0.5
        inter = (red & masks[0]).sum().item()
        union = (red | masks[0]).sum().item()
        assert inter / union > 0.85, (h, w, inter, union)
        assert masks[1].all()  # whole-image label covers the whole crop


def test_transposed_canvas_would_be_caught():
    # the published code's (W, H) confusion: a mask transposed relative to the image is rejected
    img = Image.fromarray(np.zeros((60, 100, 3), np.uint8))
    try:
        Preprocess()(img, [np.zeros((100, 60), bool)])
    except ValueError as e:
        assert "does not match" in str(e)
    else:
        raise AssertionError("a transposed mask was accepted")


def test_downsample_masks_gives_cell_coverage():
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, :2, :1] = True  # half of the top-left 2x2 cell
    out = downsample_masks(m, (2, 2))
    assert out.tolist() == [[[0.5, 0.0], [0.0, 0.0]]]


def test_downsample_fast_path_equals_adaptive_pooling():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    for shape in [(4, 224, 224), (2, 56, 70)]:
        m = torch.rand(shape, generator=g) > 0.6
        for size in [(7, 7), (56, 56), (5, 9), (8, 14)]:  # divisible (fast path) and not
            fast, ref = downsample_masks(m, size), F.adaptive_avg_pool2d(m[:, None].float(), size)[:, 0]
            torch.testing.assert_close(fast, ref, rtol=0, atol=1e-6)
            if shape[1] % size[0] == 0 and (shape[1] // size[0]) in (4, 8, 32):  # power-of-two blocks: bit-identical
                assert torch.equal(fast, ref), (shape, size)


def test_batched_normalisation_later_equals_normalising_each_image():
    pre = Preprocess(resize=40, crop=32)
    rng = np.random.default_rng(5)
    imgs = [Image.fromarray(rng.integers(0, 256, size=(36 + 3 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    raw = torch.stack([pre(im, normalize=False) for im in imgs])
    assert raw.dtype == torch.uint8 and raw.shape == (3, 3, 32, 32)
    each = torch.stack([pre(im) for im in imgs])
    # (x / 255 - mean) / std by hand, for one pixel
    v = float(raw[1, 2, 5, 7]) / 255.0
    assert abs(float(each[1, 2, 5, 7]) - (v - pre.mean[2]) / pre.std[2]) < 1e-6
    assert torch.equal(pre.normalize(raw), each)
    cl = pre.normalize(raw.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, each)


def test_feature_masks_from_the_eval_masks_equal_pooling_the_full_masks():
    rng = np.random.default_rng(6)
    m = torch.from_numpy(rng.random((4, 224, 224)) > 0.7)
    frac = downsample_masks(m, (112, 112))
    assert torch.equal(downsample_masks(frac, (7, 7)), downsample_masks(m, (7, 7)))
    assert torch.equal(downsample_masks(frac, (14, 14)), downsample_masks(m, (14, 14)))


@pytest.mark.parametrize("hw", [(224, 256), (300, 451), (97, 130), (1000, 700), (150, 120)])
@pytest.mark.parametrize("resize,crop", [(256, 224), (320, 300), (100, 120)])
def test_mask_gather_equals_the_v2_transform(hw, resize, crop):
    from torchvision import tv_tensors

    from lavise.data.transforms import _mask_index

    h, w = hw
    rng = np.random.default_rng(h * w + resize)
    pre = Preprocess(resize=resize, crop=crop)
    masks = [rng.random((h, w)) > 0.5, None, np.asfortranarray(rng.random((h, w)) > 0.9)]
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    first, again = pre(img, masks)[1], pre(img, masks)[1]  # the second meeting of a size uses the gather
    full = np.stack([np.ones((h, w), bool) if m is None else m for m in masks])
    _, want = pre.geometry()(tv_tensors.Image(torch.zeros(3, h, w, dtype=torch.uint8)),
                             tv_tensors.Mask(torch.from_numpy(full).to(torch.uint8)))
    assert torch.equal(first, want.bool()) and torch.equal(again, want.bool())
    # a crop larger than the resized image pads: the transform itself must then be used
    assert (_mask_index(resize, crop, "bilinear", "crop", h, w) is None) == (crop > resize)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with edges (gradients and discs), like a photo more than like noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([180 * xx + 40, 160 * yy + 50, 120 * (1 - xx * yy) + 60], -1)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    for _ in range(6):
        (cy, cx), r = rng.uniform(0, 1, 2) * (h, w), rng.uniform(0.05, 0.2) * min(h, w)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("w, h, expected", [
    (2048, 1100, (512, 275)),  # min(2048 // 256, 1100 // 256) = 4: quarter scale, sides rounded up
    (1000, 600, (500, 300)),   # 600 // 256 = 2: half scale
    (513, 512, (257, 256)),    # half scale leaves the shorter side exactly 256
    (511, 700, (511, 700)),    # half would make it 255.5 < 256: full size
    (300, 300, (300, 300)),
])
def test_load_rgb_decodes_a_jpeg_at_the_smallest_scale_keeping_min_side(tmp_path, w, h, expected):
    from lavise.data.base import load_rgb

    p = tmp_path / "a.jpg"
    Image.fromarray(_photo(h, w)).save(p, quality=90)
    assert load_rgb(p, 256).size == expected
    assert load_rgb(p).size == (w, h)  # no min_side: whole


def test_load_rgb_reduces_only_jpegs_and_keeps_them_rgb(tmp_path):
    from lavise.data.base import load_rgb

    Image.fromarray(_photo(1100, 2048)).save(tmp_path / "a.png")
    Image.fromarray(_photo(1100, 2048)[..., 0]).save(tmp_path / "g.jpg", quality=90)
    assert load_rgb(tmp_path / "a.png", 256).size == (2048, 1100)
    g = load_rgb(tmp_path / "g.jpg", 256)
    assert g.size == (512, 275) and g.mode == "RGB"


def test_preprocess_load_reduces_only_without_masks_and_when_enabled(tmp_path):
    p = tmp_path / "a.jpg"
    Image.fromarray(_photo(400, 512)).save(p, quality=90)
    assert Preprocess(resize=64, crop=64).load(p).size == (128, 100)  # 400 // 64 = 6: quarter scale
    assert Preprocess(resize=64, crop=64).load(p, masks=True).size == (512, 400)
    assert Preprocess(resize=64, crop=64, jpeg_draft=False).load(p).size == (512, 400)
    assert Preprocess(resize=256, crop=224).load(p).size == (512, 400)  # half would go below 256


def test_reduced_decode_gives_nearly_the_same_crop(tmp_path):
    p = tmp_path / "a.jpg"
    Image.fromarray(_photo(1200, 1600, seed=3)).save(p, quality=95)
    on, off = Preprocess(), Preprocess(jpeg_draft=False)
    a, b = on(on.load(p), normalize=False), off(off.load(p), normalize=False)
    assert a.shape == b.shape == (3, 224, 224) and a.dtype == b.dtype == torch.uint8
    diff = (a.float() - b.float()).abs()
    assert 0 < diff.mean() < 1.5, diff.mean()  # really decoded differently, and close
    assert (diff > 16).float().mean() < 0.01  # larger differences only along a few edges


def test_preprocess_dict_round_trip_and_older_runs_decode_in_full():
    pre = Preprocess(resize=64, crop=56, interpolation="bicubic", jpeg_draft=True)
    assert Preprocess.from_dict(pre.to_dict()) == pre
    old = pre.to_dict()
    del old["jpeg_draft"], old["exif_upright"]
    # saved before the options: the full decode of the stored pixels it used
    assert Preprocess.from_dict(old).jpeg_draft is False and Preprocess.from_dict(old).exif_upright is False


def test_exif_orientation_turns_mask_free_images_upright(tmp_path):
    stored = _photo(30, 40, seed=4)  # 40 wide, 30 high as stored
    rgb = np.asarray(Image.fromarray(stored))
    for tag, upright in ((6, np.rot90(rgb, -1)), (8, np.rot90(rgb, 1)), (3, rgb[::-1, ::-1]), (2, rgb[:, ::-1])):
        p = tmp_path / f"o{tag}.png"  # lossless, so pixels can be compared exactly
        exif = Image.Exif()
        exif[0x0112] = tag
        Image.fromarray(stored).save(p, exif=exif)
        pre = Preprocess(resize=16, crop=16)
        np.testing.assert_array_equal(np.asarray(pre.load(p)), upright)
        np.testing.assert_array_equal(np.asarray(pre.load(p, masks=True)), rgb)  # masks are drawn on stored pixels
        np.testing.assert_array_equal(np.asarray(Preprocess(resize=16, crop=16, exif_upright=False).load(p)), rgb)
    j = tmp_path / "phone.jpg"  # a JPEG decoded at a reduced scale is turned too
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(400, 512)).save(j, quality=90, exif=exif)
    assert Preprocess(resize=64, crop=64).load(j).size == (100, 128)
    assert Preprocess().to_dict()["exif_upright"] is True  # part of every cache key
