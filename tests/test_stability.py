"""Stability of explanations: the measures by hand, the noisy copies of a dataset, and the probes of evaluate."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from lavise.data.perturb import NoisyImages
from lavise.data.transforms import Preprocess
from lavise.evaluate import evaluate_run
from lavise.evaluate.metrics import lemma
from lavise.evaluate.stability import jaccard, per_filter, summarise, top1_unchanged
from lavise.options import EvalOptions, ExplainOptions, ExtractOptions, TrainOptions

X = ExtractOptions(workers=0, show_progress=False)


def test_top1_and_jaccard_by_hand():
    assert top1_unchanged(["cats", "dog"], ["cat"], lemma) is True  # lemmas: cats = cat
    assert top1_unchanged(["cat"], ["dog", "cat"], lemma) is False
    assert top1_unchanged([], ["cat"], lemma) is None
    # {cat, dog, car} against {dog, car, tree, sun}: 2 shared of 5
    assert jaccard(["cat", "dog", "car"], ["dogs", "car", "tree", "sun"], 10, lemma) == pytest.approx(2 / 5)
    assert jaccard(["cat", "dog", "car"], ["cat", "tree", "dog"], 2, lemma) == pytest.approx(1 / 3)  # {cat,dog} {cat,tree}


def test_per_filter_and_summary_by_hand():
    base = [["cat", "dog"], ["car"], ["sun", "road"], []]
    draws = [[["cat", "car"], ["tree"], ["sun", "road"], ["cat"]],
             [["dog", "cat"], ["car"], ["sun"], ["cat"]]]
    pf = per_filter(base, draws, [0, 1, 2, 3], lemma, k=10)
    assert set(pf) == {0, 1, 2}  # filter 3 has no words of its own
    # filter 0: top word kept in draw 1 only; Jaccard 1/3 and 2/2
    assert pf[0] == {"top1_unchanged": 0.5, "top10_jaccard": pytest.approx((1 / 3 + 1) / 2)}
    assert pf[1] == {"top1_unchanged": 0.5, "top10_jaccard": pytest.approx(0.5)}
    assert pf[2] == {"top1_unchanged": 1.0, "top10_jaccard": pytest.approx(0.75)}
    s = summarise(pf, vote_stability={0: 0.3, 1: 0.6, 2: 0.9}, interpretable={0: False, 1: True, 2: True})
    assert s["filters"] == 3 and s["top1_unchanged"] == pytest.approx(2 / 3)
    assert s["top10_jaccard"] == pytest.approx(((1 / 3 + 1) / 2 + 0.5 + 0.75) / 3)
    assert s["interpretable_filters"] == 2 and s["top1_unchanged_interpretable"] == pytest.approx(0.75)
    # kept by most draws: filter 2 only (0.5 is not a majority); it has the highest vote stability: AUROC 1
    assert s["AUROC_vote_stability"] == 1.0
    assert [b["filters"] for b in s["by_vote_stability"]] == [1, 1, 1]
    assert [b["top1_unchanged"] for b in s["by_vote_stability"]] == [0.5, 0.5, 1.0]


def test_noisy_images_are_seeded_per_image_and_cached_apart(squares):
    x = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    a, b = NoisyImages(squares, 0.02, seed=1), NoisyImages(squares, 0.02, seed=2)
    assert torch.equal(a.perturb(5, x), a.perturb(5, x)) and not torch.equal(a.perturb(5, x), a.perturb(6, x))
    assert not torch.equal(a.perturb(5, x), b.perturb(5, x))
    diff = a.perturb(5, torch.full((3, 64, 64), 128, dtype=torch.uint8)).float() - 128
    assert diff.std().item() == pytest.approx(0.02 * 255, rel=0.1)  # about 5 grey levels
    assert a.perturb(0, torch.full((3, 8, 8), 255, dtype=torch.uint8)).max() == 255  # clipped, not wrapped
    fps = {squares.fingerprint(), a.fingerprint(), b.fingerprint(), NoisyImages(squares, 0.05, 1).fingerprint()}
    assert len(fps) == 4
    assert len(a) == len(squares) and a.annotations(3) == squares.annotations(3) and a.concepts == squares.concepts
    with pytest.raises(ValueError, match="positive"):
        NoisyImages(squares, 0.0)


def test_several_draws_are_distinct_copies_and_nest_on_the_inner_copy(squares):
    x = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    one, three = NoisyImages(squares, 0.02, seed=1), NoisyImages(squares, 0.02, seed=1, draws=3)
    k = three.perturb(5, x)
    assert k.shape == (3, 3, 8, 8) and k.dtype == torch.uint8
    assert not torch.equal(k[0], k[1]) and not torch.equal(k[1], k[2])
    # draw 0 of three is the single copy: the generator seeded by (seed, image) runs on
    assert torch.equal(k[0], one.perturb(5, x))
    assert one.fingerprint() == NoisyImages(squares, 0.02, seed=1, draws=1).fingerprint() != three.fingerprint()
    # a copy of a copy adds its noise to the inner copy's pixels
    inner = NoisyImages(squares, 0.05, seed=7)
    nested = NoisyImages(inner, 0.02, seed=1)
    g = torch.Generator().manual_seed(1 * 1_000_003 + 5)
    want = (inner.perturb(5, x).float() + torch.randn(x.shape, generator=g) * (0.02 * 255)).round().clamp(0, 255)
    assert torch.equal(nested.perturb(5, x), want.to(torch.uint8))
    with pytest.raises(ValueError, match="at least 1"):
        NoisyImages(squares, 0.02, draws=0)


def test_extraction_averages_the_features_of_the_draws(tmp_path, squares):
    """A linear layer's map of the average of K copies is the average of its maps: the cache must hold exactly
    that, worked out here from the copies themselves."""
    from lavise.features import extract_features
    from lavise.features.loader import ImageLoader
    from lavise.models import wrap_model

    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AvgPool2d(8))
    torch.manual_seed(0)
    pre = Preprocess(resize=32, crop=32)
    model = wrap_model(net, pre, default_layer="1", name="linear")
    smooth = NoisyImages(squares, 0.05, seed=3, draws=4)
    cache = extract_features(model, "1", smooth, tmp_path, None, X)
    plain = extract_features(model, "1", squares, tmp_path, None, X)
    loader = ImageLoader(smooth, pre, None, (4, 4))
    for i in (0, 7):
        copies = loader[i]["x"]
        assert copies.shape == (4, 3, 32, 32)
        with torch.no_grad():
            want = net(pre.normalize(copies)).mean(0)
        got = cache.read(np.array([cache.rows_of(np.array([i]))[0]]))[0]
        assert torch.allclose(got, want, atol=2e-3)  # the cache keeps float16 maps
    assert not torch.allclose(cache.read(np.arange(4)), plain.read(np.arange(4)), atol=1e-3)


class ColourNet(nn.Module):
    """Filters 0, 1, 2 respond to red, green and blue, capped like ReLU6 (inside a square far above the cap): the
    squares' 'cat', 'dog' and 'car' are planted in them."""

    def __init__(self):
        super().__init__()
        self.colour = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.colour.weight.zero_()
            self.colour.bias.zero_()
            for c in range(3):
                self.colour.weight[c, :, 0, 0] = -2.0
                self.colour.weight[c, c, 0, 0] = 4.0
            self.colour.weight[3, :, 0, 0] = 1 / 3  # brightness
        self.features = nn.Sequential(self.colour, nn.ReLU6(), nn.AvgPool2d(4))

    def forward(self, x):
        return self.features(x).mean((2, 3))


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory, squares, tiny_glove):
    from lavise.embeddings import load_embeddings
    from lavise.models import wrap_model
    from lavise.train import train_explainer

    model = wrap_model(ColourNet(), Preprocess(resize=64, crop=64), default_layer="features.1", name="colour")
    out = tmp_path_factory.mktemp("colour-run")
    train_explainer(model, squares, load_embeddings(f"glove:{tiny_glove}"), out=out, extract=X,
                    options=TrainOptions(epochs=60, lr=0.01, batch_size=16, heads=1, seed=0))
    return out, model


def test_a_planted_concept_keeps_its_word_under_noise(colour_run, squares):
    run, model = colour_run
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=4, s=1, x=3), methods=("masked-attention",),
                          baselines=(), controls=(), stability=("halves", "noise"), noise_sigma=0.02, noise_draws=2)
    ev = evaluate_run(run, squares, options, X, reference=squares, target=model)
    per = {f["unit"]: f for f in ev.filters}
    assert [per[u]["words"]["masked-attention"][0] for u in (0, 1, 2)] == ["cat", "dog", "car"]
    for u in (0, 1, 2):
        assert per[u]["stability"]["noise"]["top1_unchanged"] == 1.0
        assert per[u]["stability"]["halves"]["top1_unchanged"] == 1.0
    probes = ev.stability["probes"]
    assert set(probes) == {"halves", "noise"} and ev.stability["noise_draws"] == 2
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["stability"]["probes"]["noise"]["filters"] == probes["noise"]["filters"]


def test_noise_that_rounds_away_changes_nothing(colour_run, squares):
    """σ = 1e-4 is 0.03 grey levels: every noisy pixel rounds back to the clean one, so the noisy copy's features,
    thresholds and words are the clean ones and every filter keeps all its words."""
    run, model = colour_run
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=6, s=2, x=3), methods=("attention",),
                          baselines=(), controls=(), stability=("noise",), noise_sigma=1e-4)
    ev = evaluate_run(run, squares, options, X, reference=squares, target=model, save=False)
    r = ev.stability["probes"]["noise"]
    assert r["filters"] > 0 and r["top1_unchanged"] == 1.0 and r["top10_jaccard"] == 1.0


def test_the_halves_probe_compares_the_words_of_the_two_halves(colour_run, squares):
    from lavise.evaluate import split_rows
    from lavise.explain import compute_thresholds, explain_cache
    from lavise.run import Run

    run, model = colour_run
    eo = ExplainOptions(vocabulary="concepts", p=4, s=2, x=3)
    options = EvalOptions(explain=eo, methods=("attention",), baselines=(), controls=(), seed=3)
    ev = evaluate_run(run, squares, options, X, reference=squares, target=model, save=False)
    r = Run.open(run, target=model)
    cache = r.cache(squares, list(squares.concepts), X)
    thr = compute_thresholds(cache)
    ex, sc = split_rows(len(cache), 3)
    vocab = r.vocabulary(eo, list(squares.concepts))
    a = {f.unit: f.top_words for f in explain_cache(r.explainer, cache, vocab, eo.replace(method="attention", x=20),
                                                    None, X, None, thr, ex)}
    b = {f.unit: f.top_words for f in explain_cache(r.explainer, cache, vocab, eo.replace(method="attention", x=20),
                                                    None, X, None, thr, sc)}
    want = [a[u][0] == b[u][0] for u in a if a[u] and b[u]]
    assert ev.stability["probes"]["halves"]["filters"] == len(want)
    assert ev.stability["probes"]["halves"]["top1_unchanged"] == pytest.approx(np.mean(want))


def test_bad_stability_options_are_one_line_errors():
    from lavise.errors import LaviseError

    with pytest.raises(LaviseError, match="unknown probe 'jitter'"):
        EvalOptions(stability=("jitter",))
    with pytest.raises(LaviseError, match="noise-sigma"):
        EvalOptions(noise_sigma=0)
    with pytest.raises(LaviseError, match="noise-draws"):
        EvalOptions(noise_draws=0)
    with pytest.raises(LaviseError, match="--smooth must be a whole number 0 or more"):
        ExplainOptions(smooth=-1)
    with pytest.raises(LaviseError, match="smooth-sigma"):
        ExplainOptions(smooth=2, smooth_sigma=0)
    with pytest.raises(LaviseError, match="method 'image' reruns the clean images"):
        ExplainOptions(method="image", smooth=2)


def test_smoothed_explanations_come_from_the_averaged_copies(colour_run, squares, tmp_path):
    """``explain --smooth K`` explains from the cache of K averaged noisy copies with that cache's own thresholds;
    the words are the ones explain_cache gives on that cache, and the settings say how they were drawn."""
    from lavise.data.perturb import smoothed
    from lavise.explain import compute_thresholds, explain_cache
    from lavise.run import Run

    run, model = colour_run
    eo = ExplainOptions(vocabulary="concepts", p=4, s=1, x=3, smooth=2, smooth_sigma=0.05)
    r = Run.open(run, target=model, cache_dir=tmp_path)
    ex = r.explain(squares, eo, X, out=tmp_path / "out")
    copies = r.cache(smoothed(squares, 2, 0.05), None, X)
    want = explain_cache(r.explainer, copies, r.vocabulary(eo), eo, None, X, None, compute_thresholds(copies))
    assert [f.top_words for f in ex.filters] == [f.top_words for f in want]
    assert ex.settings["smooth"] == 2 and ex.settings["smooth_sigma"] == 0.05
    assert ex.settings["dataset_fingerprint"] == smoothed(squares, 2, 0.05).fingerprint() != squares.fingerprint()
    assert [f.top_words[0] for f in ex.filters[:3]] == ["cat", "dog", "car"]  # the planted concepts survive


def test_a_smoothed_runs_noise_probe_smooths_the_noisy_copy(colour_run, squares, tmp_path):
    """Evaluate with --smooth: words from the smoothed copy, ground truth from the clean images, and the noise
    probe explains a smoothed copy of the noisy copy (a rerun on noisy images with the same settings)."""
    from lavise.run import Run

    run, model = colour_run
    eo = ExplainOptions(vocabulary="concepts", p=4, s=1, x=3, smooth=2)
    options = EvalOptions(explain=eo, methods=("masked-attention",), baselines=(), controls=(), stability=("noise",))
    r = Run.open(run, target=model, cache_dir=tmp_path)
    ev = r.evaluate(squares, options, X, reference=squares, save=False)
    specs = sorted(json.loads(m.read_text()).get("dataset", "") for m in tmp_path.glob("*/meta.json"))
    assert any(s.endswith("noise(sigma=0.02, seed=1048576, draws=2)") and "noise(sigma=0.02, seed=0)" in s
               for s in specs), specs
    assert any(s.endswith("noise(sigma=0.02, seed=1048576, draws=2)") and "seed=0)" not in s for s in specs), specs
    per = {f["unit"]: f for f in ev.filters}
    assert [per[u]["words"]["masked-attention"][0] for u in (0, 1, 2)] == ["cat", "dog", "car"]
    assert ev.settings["smooth"] == 2 and ev.stability["probes"]["noise"]["filters"] > 0
