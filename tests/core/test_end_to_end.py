import json

import numpy as np
import pytest
import torch

from lavise.embeddings import load_embeddings
from lavise.explain import Explanations, explain_filters
from lavise.features import extract_features
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
from lavise.train import TrainedExplainer, train_explainer

X = ExtractOptions(workers=0, show_progress=False)  # the tests' extraction: inline decoding, no progress bars


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model, squares, tiny_glove):
    run = tmp_path_factory.mktemp("run")
    emb = load_embeddings(f"glove:{tiny_glove}")
    res = train_explainer(tiny_model, squares, emb, out=run, options=TrainOptions(epochs=5, batch_size=16), extract=X)
    return run, res


def test_training_writes_a_complete_run(trained_run):
    run, res = trained_run
    for f in ["explainer.safetensors", "config.json", "train_log.csv", "manifest.json"]:
        assert (run / f).is_file()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["layer"] == "block2" and cfg["concepts"] == ["car", "cat", "dog"]
    assert cfg["feature_shape"] == [16, 8, 8]
    assert {"torch", "numpy", "lavise"} <= set(cfg["versions"])
    assert len(res.history) == 5 and "val_top1" in res.history[0]
    again = TrainedExplainer.load(run)
    for k, v in res.head.state_dict().items():
        assert np.array_equal(again.head.state_dict()[k].numpy(), v.numpy())


def test_explain_every_filter_end_to_end(trained_run, tiny_model, squares):
    run, res = trained_run
    ex = explain_filters(res, squares, ExplainOptions(p=5, s=2, x=3, vocabulary="concepts"), X, target=tiny_model,
                         out=run)
    assert len(ex.filters) == 16
    assert [f.unit for f in ex.filters] == list(range(16))
    vocab = {"car", "cat", "dog"}
    for f in ex.filters:
        if f.dead:
            assert f.words == []
            continue
        assert 1 <= len(f.words) <= 3 and {w["word"] for w in f.words} <= vocab
        scores = [w["score"] for w in f.words]
        assert scores == sorted(scores, reverse=True)
        assert len(f.images) == 5
        acts = [i["max_activation"] for i in f.images]
        assert acts == sorted(acts, reverse=True)
    # frequencies: each of the p images votes for s words, so scores of one filter sum to at most s
    assert all(sum(w["score"] for w in f.words) <= 2 + 1e-6 for f in ex.filters)
    loaded = Explanations.load(run)
    assert loaded.to_dict() == ex.to_dict()
    rows = (run / "explanations.csv").read_text().splitlines()
    assert rows[0] == "layer,unit,rank,word,score,similarity,confidence,filter_confidence,interpretable,filter_stability,reference_iou"
    assert len(rows) == 1 + sum(len(f.words) for f in ex.filters)


def test_all_methods_run_and_image_method_reruns_the_network(trained_run, tiny_model, squares):
    run, res = trained_run
    outs = {m: explain_filters(res, squares, ExplainOptions(method=m, p=3, s=1, x=2, vocabulary="concepts"), X,
                               units=[0, 5], target=tiny_model, cache_dir=run / "cache")
            for m in ["attention", "activation", "image", "original"]}
    assert all(len(e.filters) == 2 for e in outs.values())
    assert [f.unit for f in outs["image"].filters] == [0, 5]


def test_explanations_are_indexed_by_filter_number(trained_run, tiny_model, squares):
    # Fails on the old code: Explanations[i] was list position, so ex[3] raised IndexError (two filters held).
    run, res = trained_run
    ex = explain_filters(res, squares, ExplainOptions(method="activation", p=3, s=1, x=2, vocabulary="concepts"), X,
                         units=[3, 1], target=tiny_model, cache_dir=run / "cache")
    assert [f.unit for f in ex] == [3, 1] and len(ex) == 2  # kept in the order asked for
    assert ex[3].unit == 3 and ex[1].unit == 1
    assert ex[3] is ex.filters[0]
    with pytest.raises(KeyError, match="filter 0 was not explained"):
        ex[0]
    with pytest.raises(KeyError):
        ex[16]


def test_mixed_precision_head_gives_close_similarities(trained_run, tiny_model, squares):
    run, res = trained_run
    from lavise.embeddings import load_embeddings as _load
    from lavise.explain import explain_cache

    cache = extract_features(tiny_model, "block2", squares, run / "cache", None, X)
    vocab = _load(res.config["embeddings"]).vocabulary("concepts", concepts=res.concepts)
    full, half = (explain_cache(res, cache, vocab, ExplainOptions(p=5, s=1, x=3), extract=X.replace(amp=a))
                  for a in (False, True))
    assert res.head.training is False and len(res.head.members) == 3  # the default head
    for a, b in zip(full, half):
        assert a.unit == b.unit
        sims = {w["word"]: w["similarity"] for w in a.words}
        for w in b.words:  # bfloat16 keeps about 3 significant digits
            if w["word"] in sims:
                assert abs(w["similarity"] - sims[w["word"]]) < 0.02


def test_hubness_correction_demotes_the_penalised_word(trained_run, tiny_model, squares, monkeypatch):
    run, res = trained_run
    import lavise.explain as E
    from lavise.embeddings import load_embeddings as _load
    from lavise.explain import core

    cache = extract_features(tiny_model, "block2", squares, run / "cache", None, X)
    vocab = _load(res.config["embeddings"]).vocabulary("concepts", concepts=res.concepts)
    plain = E.explain_cache(res, cache, vocab, ExplainOptions(p=5, s=1, x=3), extract=X)
    top = max(vocab.words, key=lambda w: sum(f.words[0]["word"] == w for f in plain if f.words))
    seen = []

    def fake(outputs, vocab_t, k=E.HUB_NEIGHBOURS):
        seen.append(len(outputs))
        return torch.tensor([10.0 if w == top else 0.0 for w in vocab.words])  # a hub far beyond any cosine

    monkeypatch.setattr(core, "hub_scores", fake)  # where explain_cache looks it up
    fixed = E.explain_cache(res, cache, vocab, ExplainOptions(p=5, s=1, x=3, hubness=0.5), extract=X)
    assert seen == [16 * 5]  # one r_w from every explained pair
    assert all(w["word"] != top for f in fixed for w in f.words)
    assert all(-1 <= w["similarity"] <= 1 for f in fixed for w in f.words)  # raw cosines, not penalised scores
    with pytest.raises(Exception, match="--hubness"):
        E.explain_cache(res, cache, vocab, ExplainOptions(p=5, s=1, hubness=-1.0), extract=X)


def test_reference_cache_is_reused_and_masks_are_stored(trained_run, tiny_model, squares):
    run, _ = trained_run
    cache = extract_features(tiny_model, "block2", squares, run / "cache", concepts=["car", "cat", "dog"], options=X)
    assert len(list((run / "cache").iterdir())) == 2  # reference + target, no duplicate
    n_anns = sum(len(squares.annotations(i)) for i in range(len(squares)))
    assert len(cache.pairs) == n_anns
    assert cache.masks_feat.shape[1:] == (8, 8) and cache.masks_eval.shape[1:] == (56, 56)
    assert float(cache.masks_feat.max()) <= 1.0 and cache.masks_eval.any()


def test_workers_and_batch_sizes_give_the_same_cache(tmp_path, tiny_model, squares):
    concepts = ["car", "cat", "dog"]
    a = extract_features(tiny_model, "block2", squares, tmp_path / "a", concepts, X.replace(batch_size=8))
    b = extract_features(tiny_model, "block2", squares, tmp_path / "b", concepts, X.replace(workers=2, batch_size=5))
    # the forward pass may block a batch of 5 differently from one of 8: equal to float16 rounding
    np.testing.assert_allclose(np.asarray(b.features, np.float32), np.asarray(a.features, np.float32), rtol=2e-3, atol=1e-3)
    np.testing.assert_array_equal(a.pairs, b.pairs)
    np.testing.assert_array_equal(np.asarray(a.masks_feat), np.asarray(b.masks_feat))
    np.testing.assert_array_equal(np.asarray(a.masks_eval), np.asarray(b.masks_eval))
    # pairs follow dataset order, each image's annotations in order
    expected = [(i, concepts.index(x.concept)) for i in range(len(squares)) for x in squares.annotations(i)]
    assert [tuple(p) for p in a.pairs.tolist()] == expected


def test_mixed_precision_features_are_cached_apart_and_close(tmp_path, tiny_model, squares):
    full = extract_features(tiny_model, "block2", squares, tmp_path, options=X)
    mixed = extract_features(tiny_model, "block2", squares, tmp_path, options=X.replace(amp=True))
    assert full.path != mixed.path and len(list(tmp_path.iterdir())) == 2  # neither served for the other
    a, b = np.asarray(full.features, dtype=np.float32), np.asarray(mixed.features, dtype=np.float32)
    assert not np.array_equal(a, b)  # autocast really ran in bfloat16
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05 * float(np.abs(a).max()))


def test_rowfile_reads_like_an_array(tmp_path):
    from lavise.features import RowFile

    a = np.arange(5 * 3 * 2, dtype=np.float16).reshape(5, 3, 2)
    (tmp_path / "a.f16").write_bytes(a.tobytes())
    r = RowFile(tmp_path / "a.f16", np.float16, a.shape)
    np.testing.assert_array_equal(r[3], a[3])
    np.testing.assert_array_equal(r[1:4], a[1:4])
    np.testing.assert_array_equal(r[np.array([4, 0, 1, 2])], a[[4, 0, 1, 2]])
    np.testing.assert_array_equal(r[np.array([1, 3]), np.array([2, 0])], a[[1, 3], [2, 0]])
    np.testing.assert_array_equal(r[2, 1], a[2, 1])
    np.testing.assert_array_equal(np.asarray(r), a)


def test_hubness_words_of_a_filter_do_not_depend_on_the_units_asked_for(trained_run, tiny_model, squares, monkeypatch):
    run, res = trained_run
    import lavise.explain as E
    from lavise.embeddings import load_embeddings as _load
    from lavise.explain import core

    cache = extract_features(tiny_model, "block2", squares, run / "cache", None, X)
    vocab = _load(res.config["embeddings"]).vocabulary("concepts", concepts=res.concepts)
    sizes = []
    real = E.hub_scores

    def counted(outputs, vocab_t, k=E.HUB_NEIGHBOURS):
        sizes.append(len(outputs))
        return real(outputs, vocab_t, k)

    monkeypatch.setattr(core, "hub_scores", counted)  # where explain_cache looks it up
    # a large λ, so that r_w decides the ranking and a r_w from other outputs would show
    hub = ExplainOptions(p=5, s=2, x=3, hubness=5.0)
    full = E.explain_cache(res, cache, vocab, hub, extract=X)
    some = E.explain_cache(res, cache, vocab, hub, units=[7, 2], extract=X)
    assert sizes == [16 * 5, 16 * 5]  # r_w from every filter's pairs both times
    assert [f.unit for f in some] == [7, 2]
    assert [f.words for f in some] == [full[7].words, full[2].words]
    plain_opts = hub.replace(hubness=0.0)
    plain = E.explain_cache(res, cache, vocab, plain_opts, extract=X)
    assert [f.words for f in full] != [f.words for f in plain]  # the correction did act
    assert [f.words for f in E.explain_cache(res, cache, vocab, plain_opts, units=[7, 2], extract=X)] == \
        [plain[7].words, plain[2].words]


def test_large_jpegs_decode_reduced_in_target_sets_and_whole_under_masks(tmp_path, tiny_model):
    """Target images (no masks to align) go through ``Preprocess.load``'s reduced JPEG decode; reference images
    with masks at their own resolution load whole; the setting is part of the cache key."""
    import dataclasses

    from PIL import Image

    from lavise.data.base import Annotation, ConceptDataset, load_rgb
    from lavise.data.folder import FolderDataset
    from lavise.features import FeatureExtractor

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):  # 512 x 400: a quarter-scale decode for resize 64
        img = np.kron(rng.integers(0, 255, (25, 32, 3)), np.ones((16, 16, 1))).astype(np.uint8)
        Image.fromarray(img).save(photos / f"p{k}.jpg", quality=90)
    folder = FolderDataset(photos)
    pre = tiny_model.preprocess
    assert pre.jpeg_draft
    cache = extract_features(tiny_model, "block2", folder, tmp_path / "c", options=X)
    ex = FeatureExtractor(tiny_model, "block2")
    got = np.asarray(cache.features, np.float32)
    reduced = ex(torch.stack([pre(load_rgb(p, 64)) for _, p, _ in folder.items])).numpy()
    whole = ex(torch.stack([pre(load_rgb(p)) for _, p, _ in folder.items])).numpy()
    tol = 2e-3 * float(np.abs(reduced).max())
    assert np.abs(whole - reduced).max() > 10 * tol  # the two decodes are told apart
    np.testing.assert_allclose(got, reduced, atol=tol)

    full = dataclasses.replace(tiny_model, preprocess=dataclasses.replace(pre, jpeg_draft=False))
    off = extract_features(full, "block2", folder, tmp_path / "c", options=X)
    assert off.path != cache.path  # never served for each other
    np.testing.assert_allclose(np.asarray(off.features, np.float32), whole, atol=tol)

    class Masked(ConceptDataset):
        kind = "masked"

        def __init__(self):
            super().__init__(photos, f"masked:{photos}")
            self.items, self.concepts = list(folder.items), ["cat"]

        def annotations(self, i):
            m = np.zeros((400, 512), bool)
            m[100:300, 128:384] = True
            return [Annotation("cat", m)]

    ref = extract_features(tiny_model, "block2", Masked(), tmp_path / "c", concepts=["cat"],
                           options=X.replace(strict=True))  # a reduced image would not match its mask
    assert len(ref.pairs) == 3
    np.testing.assert_allclose(np.asarray(ref.features, np.float32), whole, atol=tol)
