import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lavise.explain import default_batch_pairs, filter_inputs, pair_products, top_images, top_words
from lavise.stats import ActivationStats, Thresholds


def _thresholds(feats):
    st = ActivationStats(feats.shape[1], feats.shape[0] * feats.shape[2] * feats.shape[3])
    st.update(feats)
    return Thresholds.from_stats(st)


def test_filter_attention_matches_per_filter_loop():
    g = torch.Generator().manual_seed(0)
    feats = torch.relu(torch.randn(6, 5, 3, 4, generator=g))
    feats[2, 3] = 0  # an all-zero map: attention weight 0, not NaN
    units = torch.tensor([0, 3, 4, 1, 3, 2])
    got = filter_inputs("attention", feats, units, _thresholds(feats))
    for b, u in enumerate(units.tolist()):
        fu = feats[b, u].flatten()
        att = torch.stack([F.cosine_similarity(fu, feats[b, k].flatten(), dim=0, eps=1e-12) if feats[b, k].any() and fu.any()
                           else torch.tensor(0.0) for k in range(5)])
        expected = (att[:, None, None] * feats[b]).mean((1, 2))  # GAP(F_att)
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(got).all()


def test_activation_masking_pools_only_cells_above_threshold():
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0] = torch.tensor([[1.0, 5.0], [2.0, 3.0]])
    feats[0, 1] = torch.tensor([[7.0, 11.0], [13.0, 17.0]])
    thr = Thresholds(values=np.array([2.5, 0.0], np.float32), inclusive=np.zeros(2, bool), dead=np.zeros(2, bool))
    got = filter_inputs("activation", feats, torch.tensor([0]), thr)
    # cells of filter 0 above 2.5: (0,1) and (1,1); GAP over all 4 cells
    torch.testing.assert_close(got[0], torch.tensor([(5.0 + 3.0) / 4, (11.0 + 17.0) / 4]))


def test_masked_attention_weights_each_filter_by_cosine_inside_the_mask():
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0] = torch.tensor([[1.0, 5.0], [2.0, 3.0]])
    feats[0, 1] = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    thr = Thresholds(values=np.array([2.5, 0.0], np.float32), inclusive=np.zeros(2, bool), dead=np.zeros(2, bool))
    got = filter_inputs("masked-attention", feats, torch.tensor([0]), thr)
    # unit 0: mask = cells (0,1), (1,1); cos(A0, A1) = (1*3 + 3*4) / (sqrt(39) * 5) = 15 / (5 sqrt 39)
    cos01 = 15.0 / (5.0 * 39 ** 0.5)
    torch.testing.assert_close(got[0], torch.tensor([(5.0 + 3.0) / 4, cos01 * (0.0 + 4.0) / 4]))


@pytest.mark.parametrize("method", ["attention", "masked-attention", "activation", "original"])
def test_pairs_sharing_images_in_any_order_match_one_copy_per_pair(method):
    g = torch.Generator().manual_seed(1)
    feats = torch.relu(torch.randn(3, 6, 2, 3, generator=g))
    image = torch.tensor([2, 0, 2, 1, 0, 2, 1])  # unsorted, several pairs per image
    units = torch.tensor([5, 0, 1, 3, 3, 5, 0])
    thr = _thresholds(feats)
    shared = filter_inputs(method, feats, units, thr, image=image)
    copied = filter_inputs(method, feats[image], units, thr)  # the definition: pair b uses its own copy
    torch.testing.assert_close(shared, copied)


def test_per_image_and_batched_pair_products_agree():
    g = torch.Generator().manual_seed(3)
    flat = torch.randn(4, 6, 5, generator=g)  # (M images, d, hw)
    image = torch.tensor([3, 0, 3, 1, 0, 3, 2, 1])
    rhs = torch.randn(len(image), 5, 2, generator=g)
    want = torch.stack([flat[i] @ rhs[b] for b, i in enumerate(image.tolist())])
    torch.testing.assert_close(pair_products(flat, image, rhs, batched=False), want)
    torch.testing.assert_close(pair_products(flat, image, rhs, batched=True), want)  # the GPU's way


@pytest.mark.parametrize("s,penalised", [(1, False), (3, False), (2, True)])
def test_top_words_in_blocks_match_a_full_topk(s, penalised):
    g = torch.Generator().manual_seed(2)
    v = F.normalize(torch.randn(150, 8, generator=g), dim=1)  # more rows than one block
    vocab = F.normalize(torch.randn(40, 8, generator=g), dim=1)
    penalty = (torch.arange(40) % 3 == 0).float() * 0.2 if penalised else None
    idx, sim = top_words(v, vocab, s, penalty)
    sims = v @ vocab.T
    want = (sims - (0 if penalty is None else penalty)).topk(s, dim=1).indices
    assert torch.equal(idx, want)
    torch.testing.assert_close(sim, sims.gather(1, want))  # the raw cosine, not the penalised score


def test_original_is_global_average():
    feats = torch.arange(16.0).view(1, 4, 2, 2)
    got = filter_inputs("original", feats, torch.tensor([1]), _thresholds(feats))
    torch.testing.assert_close(got[0], feats[0].mean((1, 2)))


def test_unknown_method_is_a_clear_error():
    from lavise.errors import LaviseError

    feats = torch.ones(1, 2, 2, 2)
    with pytest.raises(LaviseError, match="unknown method"):
        filter_inputs("gradcam", feats, torch.tensor([0]), _thresholds(feats))


def test_top_images_are_most_active_first_with_and_without_streaming_stats():
    maps = torch.tensor([[1.0, 9], [5, 2], [3, 7], [5, 0]]).view(4, 2, 1, 1)  # (N, d, 1, 1)
    maps[3, 0, 0, 0] = 5.0

    class C:
        dataset_index = np.array([0, 2, 5, 6])
        shape = (2, 1, 1)

        def __len__(self):
            return 4

        def rows_of(self, idx):
            return np.searchsorted(self.dataset_index, idx)

        def read(self, rows):
            return maps[torch.as_tensor(rows)]

    c = C()
    st = ActivationStats(2, 4, keep_images=1)
    st.update(maps, torch.from_numpy(C.dataset_index))
    c.stats = st
    rows, vals = top_images(c, 1)  # from the streaming statistics
    assert rows.tolist() == [[1], [0]] and vals.tolist() == [[5], [9]]
    rows, vals = top_images(c, 3)  # more than they kept: a pass over the cache; the tie 5 = 5 goes to the lower index
    assert rows.tolist() == [[1, 3, 2], [0, 2, 1]]
    assert vals.tolist() == [[5, 5, 3], [9, 7, 2]]


def test_saturated_ties_prefer_the_broader_response():
    feats = torch.zeros(3, 1, 2, 2)
    feats[0, 0, 0, 0] = 6.0  # capped in one cell
    feats[1, 0] = 6.0  # capped everywhere: the broadest response
    feats[2, 0, :, 0] = 6.0
    st = ActivationStats(1, 12, keep_images=3)
    st.update(feats, torch.arange(3))
    assert st.top_images(3)[0].tolist() == [[1, 2, 0]]


def test_efficientnet_head_activation_is_its_own_hookable_layer():
    import torch

    from lavise.features import FeatureExtractor
    from lavise.models import load_model

    tm = load_model("efficientnet-lite0")
    assert tm.default_layer == "_head_act"
    x = torch.randn(1, 3, 224, 224)
    act = FeatureExtractor(tm, "_head_act")(x)
    pre = FeatureExtractor(tm, "_bn1")(x)
    assert act.shape == (1, 1280, 7, 7)
    torch.testing.assert_close(act, pre.clamp(0, 6))  # the head's map, not the stem's (shared ReLU6 module)


def test_explain_chunks_keep_large_maps_within_the_memory_budget():
    assert default_batch_pairs((1280, 7, 7), "cpu") == 512  # small maps: the usual chunk
    assert default_batch_pairs((1280, 7, 7), "cuda") == 2048
    big = (256, 56, 56)  # an early layer: 3.2 MB per map copy
    n = default_batch_pairs(big, "cuda")
    assert 16 <= n < 2048 and n * 4 * 256 * 56 * 56 <= 512 << 20
    assert default_batch_pairs((2048, 112, 112), "cpu") == 16  # never below 16 pairs


def test_hub_scores_are_mean_cosines_to_the_k_nearest_outputs():
    from lavise.explain import hub_scores

    outputs = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    vocab = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    r = 2 ** -0.5
    # word 0: cosines 1, 0, r -> best two 1 and r; word 1: cosines 0, -1, -r -> best two 0 and -r
    torch.testing.assert_close(hub_scores(outputs, vocab, k=2), torch.tensor([(1 + r) / 2, -r / 2]))
    torch.testing.assert_close(hub_scores(outputs, vocab, k=10), outputs.mul(1).matmul(vocab.T).mean(0))  # k capped at N
    big = F.normalize(torch.randn(9000, 2, generator=torch.Generator().manual_seed(0)), dim=1)  # blocks of 4096
    torch.testing.assert_close(hub_scores(big, vocab, k=5), (big @ vocab.T).topk(5, dim=0).values.mean(0))


def test_vote_stability_matches_the_bootstrap_probabilities_worked_out_by_hand():
    from lavise.explain.words import vote_stability

    # A filter whose images all vote one word is stable. Words 3 and 4 with one vote each, 4 more similar: the
    # top word (4) loses only to a resample that draws word 3 twice, P = 1/4. Words 1, 1, 2: word 1 loses only
    # when a resample of 3 images draws word 2 at least twice, P = 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27.
    # Two images per filter here: filter 0 votes 5, 5 (stable); filter 2 votes 3 (similarity 0.2) and 4 (0.9).
    idx = torch.tensor([[[5], [5]], [[3], [4]]])
    sim = torch.tensor([[[0.5], [0.5]], [[0.2], [0.9]]])
    got = vote_stability(idx, sim, torch.tensor([0, 2]), resamples=20000)
    assert got[0] == 1.0 and got[1] == pytest.approx(0.75, abs=0.01)
    idx3 = torch.tensor([[[1], [1], [2]]])
    got3 = vote_stability(idx3, torch.full((1, 3, 1), 0.5), torch.tensor([7]), resamples=20000)
    assert got3[0] == pytest.approx(20 / 27, abs=0.01)
    # seeded per filter: the same figure alone or beside others
    both = vote_stability(torch.cat([idx3, idx3]), torch.full((2, 3, 1), 0.5), torch.tensor([3, 7]), resamples=50)
    alone = vote_stability(idx3, torch.full((1, 3, 1), 0.5), torch.tensor([7]), resamples=50)
    assert both[1] == alone[0]


def test_similarity_votes_weigh_each_vote_by_its_cosine():
    from types import SimpleNamespace

    from lavise.explain.inputs import TopPairs
    from lavise.explain.words import rank_words
    from lavise.stats import Thresholds

    # one filter, three top images: word 0 once at cosine 0.9, word 1 twice at 0.3 each
    pairs = TopPairs(torch.tensor([0]), torch.tensor([[0, 1, 2]]), torch.tensor([[3.0, 2.0, 1.0]]))
    idx, sim = torch.tensor([[0], [1], [1]]), torch.tensor([[0.9], [0.3], [0.3]])
    vocab = SimpleNamespace(words=["apple", "bread"])
    cache = SimpleNamespace(image_ids=["a", "b", "c"])
    thr = Thresholds(values=np.array([0.5], np.float32), inclusive=np.zeros(1, bool), dead=np.zeros(1, bool))
    [by_count] = rank_words(pairs, idx, sim, vocab, thr, cache, 2)
    [by_sim] = rank_words(pairs, idx, sim, vocab, thr, cache, 2, votes="similarity")
    assert [(w["word"], w["score"]) for w in by_count.words] == [("bread", pytest.approx(2 / 3)),
                                                                  ("apple", pytest.approx(1 / 3))]
    assert [(w["word"], w["score"]) for w in by_sim.words] == [("apple", pytest.approx(0.9 / 3)),
                                                                ("bread", pytest.approx(0.6 / 3))]
    assert [w["similarity"] for w in by_sim.words] == [pytest.approx(0.9), pytest.approx(0.3)]


def test_only_top_images_the_filter_fires_on_vote():
    """Below T_u a masked input is empty and the head's answer to nothing would collect votes: such images are
    listed among the top images but do not vote, and a filter none of whose images fire gets no words."""
    from types import SimpleNamespace

    from lavise.explain.inputs import TopPairs
    from lavise.explain.words import rank_words, vote_stability
    from lavise.stats import Thresholds

    # filter 0 (T_u 0.5): images at 3.0 and 2.0 vote apple, bread; images at 0.4 and 0.1 would vote cherry twice.
    # filter 1 (saturated at 6): only its image at the cap votes. filter 2: no image reaches T_u.
    pairs = TopPairs(torch.tensor([0, 1, 2]), torch.tensor([[0, 1, 2, 3]] * 3),
                     torch.tensor([[3.0, 2.0, 0.4, 0.1], [6.0, 5.9, 5.0, 1.0], [0.2, 0.1, 0.1, 0.0]]))
    idx = torch.tensor([[[0], [1], [2], [2]], [[1], [2], [2], [2]], [[0], [0], [1], [2]]])
    sim = torch.full((3, 4, 1), 0.5)
    vocab = SimpleNamespace(words=["apple", "bread", "cherry"])
    cache = SimpleNamespace(image_ids=["a", "b", "c", "d"])
    thr = Thresholds(values=np.array([0.5, 6.0, 0.5], np.float32), inclusive=np.array([False, True, False]),
                     dead=np.zeros(3, bool))
    f0, f1, f2 = rank_words(pairs, idx, sim, vocab, thr, cache, 3)
    assert [(w["word"], w["score"]) for w in f0.words] == [("apple", 0.25), ("bread", 0.25)]  # shares of all 4
    assert [(w["word"], w["score"]) for w in f1.words] == [("bread", 0.25)]
    assert f2.words == [] and f2.stability is None and not f2.dead and len(f2.images) == 4
    # the bootstrap counts the same voters: filter 1's only voter is drawn in 1 - (3/4)^4 of the resamples
    st = vote_stability(idx, sim, pairs.units, resamples=20000, voting=torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0],
                                                                                       [0, 0, 0, 0]]).bool())
    assert st[1] == pytest.approx(1 - 0.75 ** 4, abs=0.01)
