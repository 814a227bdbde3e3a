import numpy as np
import pytest
import torch

from conftest import bilinear_weights
from lavise import stats as S
from lavise.stats import ActivationStats, Thresholds


def test_thresholds_equal_numpy_quantile_streamed_in_batches():
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.normal(size=(37, 6, 5, 4)).astype(np.float32))
    st = ActivationStats(6, 37 * 5 * 4)
    for i in range(0, 37, 5):
        st.update(feats[i:i + 5])
    expected = np.quantile(feats.numpy().transpose(1, 0, 2, 3).reshape(6, -1), 0.995, axis=1)
    np.testing.assert_allclose(st.thresholds(), expected, rtol=1e-6)


def test_merged_shards_equal_single_pass():
    rng = np.random.default_rng(1)
    feats = torch.from_numpy(rng.gamma(2.0, size=(40, 3, 7, 7)).astype(np.float32))
    a, b, whole = (ActivationStats(3, 40 * 49) for _ in range(3))
    a.update(feats[:13])
    b.update(feats[13:])
    whole.update(feats)
    a.merge(b)
    np.testing.assert_array_equal(a.thresholds(), whole.thresholds())


def test_saturated_filter_keeps_its_capped_cells_and_dead_filter_selects_nothing():
    acts = torch.zeros(10, 3, 4, 4)
    acts[:, 0] = torch.linspace(0, 1, 16).view(4, 4) + torch.arange(10.0).view(10, 1, 1)  # unique maximum
    acts[:, 1] = 6.0  # saturated everywhere but one cell
    acts[:, 1, 0, 0] = 1.0
    acts[:, 2] = 0.5  # constant: dead
    st = ActivationStats(3, 10 * 16)
    st.update(acts)
    thr = Thresholds.from_stats(st)
    m = thr.masks(acts[9])
    assert thr.inclusive.tolist() == [False, True, False]
    assert thr.dead.tolist() == [False, False, True]
    assert int(m[0].sum()) == 1 and bool(m[0, 3, 3])  # only the maximum exceeds the 99.5% quantile
    assert int(m[1].sum()) == 15  # all capped cells, although a > T would select none
    assert int(m[2].sum()) == 0


def test_sampled_mode_estimates_the_quantile_within_the_stated_rank_error(monkeypatch):
    import lavise.stats as S

    monkeypatch.setattr(S, "EXACT_LIMIT", 10)
    monkeypatch.setattr(S, "SAMPLE_SIZE", 4096)
    rng = np.random.default_rng(2)
    feats = torch.from_numpy(rng.normal(size=(400, 2, 6, 6)).astype(np.float32))
    st = S.ActivationStats(2, 400 * 36)
    assert not st.exact
    for i in range(0, 400, 64):
        st.update(feats[i:i + 64], torch.arange(i, min(i + 64, 400)))
    values = np.sort(feats.numpy().transpose(1, 0, 2, 3).reshape(2, -1), axis=1)
    t = st.thresholds()
    n = values.shape[1]
    bound = 3 * np.sqrt(0.995 * 0.005 / 4096) * n
    for u in range(2):
        rank = np.searchsorted(values[u], t[u])
        assert abs(rank - 0.995 * n) <= bound + 1
    # merging shards in any order gives the same sample
    a, b = S.ActivationStats(2, 400 * 36), S.ActivationStats(2, 400 * 36)
    a.update(feats[200:], torch.arange(200, 400))
    b.update(feats[:200], torch.arange(200))
    a.merge(b)
    np.testing.assert_array_equal(a.thresholds(), t)


def test_top_images_stream_with_ties_broken_by_index():
    feats = torch.zeros(6, 2, 1, 1)
    feats[:, 0, 0, 0] = torch.tensor([3.0, 5.0, 5.0, 1.0, 5.0, 0.0])
    feats[:, 1, 0, 0] = torch.arange(6.0)
    st = ActivationStats(2, 6, keep_images=3)
    st.update(feats[3:], torch.arange(3, 6))
    st.update(feats[:3], torch.arange(3))
    idx, val = st.top_images(3)
    assert idx.tolist() == [[1, 2, 4], [5, 4, 3]]
    assert val.tolist() == [[5, 5, 5], [5, 4, 3]]


def test_state_round_trip():
    feats = torch.randn(5, 3, 2, 2)
    st = ActivationStats(3, 20)
    st.update(feats)
    again = ActivationStats.from_state(st.state())
    np.testing.assert_array_equal(again.thresholds(), st.thresholds())
    assert again.top_images(5)[0].tolist() == st.top_images(5)[0].tolist()


def test_buffered_folds_give_the_same_statistics_as_folding_every_batch(monkeypatch):
    import lavise.stats as S

    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.normal(size=(60, 4, 3, 3)).astype(np.float32))
    feats[::7] = 2.0  # ties in max and mean, resolved by dataset index
    states = []
    for pending in (1, 50, 10**9):  # fold every batch, every few batches, only at the end
        monkeypatch.setattr(S, "PENDING_VALUES", pending)
        st = S.ActivationStats(4, 60 * 9, keep_images=10)
        for i in range(0, 60, 4):
            st.update(feats[i:i + 4], torch.arange(i, i + 4))
        states.append((st.thresholds(), st.top_images(10), st.state()))
    for thr, (idx, val), state in states[1:]:
        np.testing.assert_array_equal(thr, states[0][0])
        np.testing.assert_array_equal(idx, states[0][1][0])
        np.testing.assert_array_equal(val, states[0][1][1])
        for k in state:
            np.testing.assert_array_equal(state[k], states[0][2][k])


def test_caller_supplied_maxima_and_means_and_channels_last_maps_change_nothing():
    rng = np.random.default_rng(4)
    feats = torch.from_numpy(rng.normal(size=(24, 5, 4, 3)).astype(np.float32))
    plain, given = ActivationStats(5, 24 * 12, keep_images=8), ActivationStats(5, 24 * 12, keep_images=8)
    for i in range(0, 24, 6):
        f, ix = feats[i:i + 6], torch.arange(i, i + 6)
        plain.update(f, ix)
        cl = f.contiguous(memory_format=torch.channels_last)  # as the extractor's maps arrive
        given.update(cl, ix, maxima=f.amax((2, 3)), means=f.mean((2, 3)))
    np.testing.assert_array_equal(given.thresholds(), plain.thresholds())
    a, b = given.state(), plain.state()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_qualified_images_by_hand_inclusive_thresholds_and_dead_filters():
    # filter 0: strict (max must exceed 1.0); filter 1: saturated, inclusive (max may equal 2.0);
    # filter 2: dead (never qualifies, even far above its threshold); filter 3: strict at a negative threshold
    thr = Thresholds(values=np.array([1.0, 2.0, 0.0, -0.5], np.float32),
                     inclusive=np.array([False, True, False, False]), dead=np.array([False, False, True, False]))
    maxima = np.array([[1.0, 2.0, 5.0, -0.5],   # at the threshold: only the inclusive filter qualifies
                       [1.5, 1.9, 5.0, -0.4],   # above: strict filters qualify, below: the inclusive one does not
                       [0.5, 2.5, 0.0, -1.0]], np.float32)
    q = thr.qualified(maxima)
    assert q.dtype == bool and q.shape == (3, 4)
    assert q.tolist() == [[False, True, False, False],
                          [True, False, False, True],
                          [False, True, False, False]]
    # the same rule as the activation masks: an image qualifies exactly when its mask at its max is non-empty
    masks = thr.masks(torch.from_numpy(maxima)[:, :, None, None])[:, :, 0, 0]
    assert masks.numpy().tolist() == q.tolist()
    # float64 maxima (and a RowFile-like array) are read as float32, like the cached maxima
    assert thr.qualified(maxima.astype(np.float64)).tolist() == q.tolist()



@pytest.mark.parametrize("cell", [(3, 3), (0, 4), (6, 6)])  # interior, edge, corner
def test_one_capped_cell_gives_a_mask_about_one_cell_large(cell):
    """A saturated filter (T_u = its maximum, 6) capped on one cell of a 7x7 map: thresholding the bilinear
    upsampled map keeps nothing (no pixel samples the cell with weight 1), so the mask comes from upsampling the
    binary cell indicator and keeping weights >= 1/2. Expected pixels counted by hand from the weights."""
    import torch.nn.functional as F

    maps = torch.ones(1, 7, 7)
    maps[0, cell[0], cell[1]] = 6.0
    thr = S.Thresholds(np.array([6.0], np.float32), np.array([True]), np.array([False]))
    up = lambda x: F.interpolate(x[:, None], size=(56, 56), mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
    W = bilinear_weights(7, 56)
    # the defect: the upsampled map reaches the cap only where a pixel samples the cell alone, i.e. in the clamped
    # border strips: nowhere for an interior or edge cell, a 4x4 patch for a corner cell
    old = sum(W[i][cell[0]] * W[j][cell[1]] == 1.0 for i in range(56) for j in range(56))
    assert int(thr.masks(up(maps), units=torch.tensor([0])).sum()) == old == (16 if cell == (6, 6) else 0)
    want = sum(W[i][cell[0]] * W[j][cell[1]] >= 0.5 for i in range(56) for j in range(56))
    got = thr.upsampled_masks(maps, torch.tensor([0]), up)
    assert int(got.sum()) == want and want >= 40  # about one 8x8 cell
    ii, jj = got[0].nonzero(as_tuple=True)
    assert ii.float().mean().item() == pytest.approx(cell[0] * 8 + 3.5, abs=2.5)  # centred on the cell
    assert jj.float().mean().item() == pytest.approx(cell[1] * 8 + 3.5, abs=2.5)


def test_unsaturated_filters_still_threshold_the_upsampled_map():
    """NetDissect's rule for ordinary filters: the upsampled map against T_u, unchanged."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 7, 7, generator=g) * 5
    thr = S.Thresholds(np.array([3.0, 4.0, 2.5], np.float32), np.array([False, False, True]), np.array([False] * 3))
    up = lambda x: F.interpolate(x[:, None], size=(56, 56), mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
    units = torch.tensor([0, 1, 0])
    got = thr.upsampled_masks(maps, units, up)
    assert torch.equal(got, thr.masks(up(maps), units=units))  # no saturated filter among units 0 and 1


def test_a_cap_that_float16_rounds_down_still_counts_as_reached():
    """A saturated filter's T_u is its full-precision maximum; the cache keeps float16 maps. A plateau at 3.4337614
    is stored as 3.43359375 (rounded down): a plain >= T_u would leave the filter with no mask and no words."""
    cap = np.float32(3.4337614)
    stored = np.float32(np.float16(cap))
    assert stored < cap  # the case: rounding went down
    relu6 = np.float32(6.0)
    below6 = np.float32(np.nextafter(np.float16(6.0), np.float16(0)))  # 5.99609375, the float16 value under 6
    thr = Thresholds(values=np.array([cap, relu6, 1.0], np.float32), inclusive=np.array([True, True, False]),
                     dead=np.zeros(3, bool))
    maps = torch.tensor([[[stored, 0.0]], [[relu6, below6]], [[1.0, 1.0005]]])  # (d=3, h=1, w=2)
    m = thr.masks(maps)
    assert m[0].tolist() == [[True, False]]
    assert m[1].tolist() == [[True, False]]  # 5.996 is not ReLU6's cap
    assert m[2].tolist() == [[False, True]]  # unsaturated: strictly above T_u, no tolerance
    assert thr.qualified(np.array([[stored, 6.0, 1.0], [cap, below6, 1.0005]])).tolist() == \
        [[True, True, False], [True, False, True]]
    # the same in float16 maps
    assert thr.masks(maps.half())[0].tolist() == [[True, False]]
