import json
import math
from dataclasses import replace

import numpy as np
import pytest

from lavise.errors import RunError
from lavise.explain.confidence import (
    FEATURES,
    Calibrator,
    auroc,
    expected_calibration_error,
    outcomes,
    quartile_precision,
    reliability,
    word_features,
)
from lavise.explain.results import Explanations, FilterExplanation
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions

X = ExtractOptions(workers=0, show_progress=False)


def _filter(unit=0, scores=(0.5, 0.3, 0.1), sims=(0.8, 0.6, 0.5), acts=(6.0, 3.0, 1.0, 0.5), thr=2.0, saturated=False,
            words=("dog", "cats", "tree")):
    return FilterExplanation(unit, thr, [{"word": w, "score": s, "similarity": m} for w, s, m in zip(words, scores, sims)],
                             [{"image_id": i, "max_activation": a} for i, a in enumerate(acts)], saturated)


def test_word_features_by_hand():
    got = word_features(_filter())
    want = np.array([[0.5, 0.8, 0.2, 0.0, 0.0, 0.5, 0.0],          # 2 of 4 top images above T_u = 2
                     [0.3, 0.6, 0.2, math.log(2), 0.0, 0.5, 0.0],
                     [0.1, 0.5, 0.1, math.log(3), 0.0, 0.5, 0.0]])  # the last word's margin is its own share
    assert FEATURES[-1] == "grounding"  # no grounding attached: 0
    np.testing.assert_allclose(got, want, atol=1e-12)
    sat = word_features(_filter(acts=(2.0, 2.0, 1.0, 0.0), saturated=True))
    assert sat[0, FEATURES.index("saturated")] == 1.0 and sat[0, FEATURES.index("qualified")] == 0.5  # >= at the cap
    assert word_features(_filter(scores=(), sims=(), words=())).shape == (0, len(FEATURES))
    # columns by name, the filter's vote stability among them
    f = replace(_filter(), stability=0.7)
    np.testing.assert_allclose(word_features(f, ("stability", "score")), [[0.7, 0.5], [0.7, 0.3], [0.7, 0.1]])
    assert word_features(_filter(), ("stability",)).tolist() == [[0.0], [0.0], [0.0]]  # unknown: 0


def test_calibrator_recovers_known_probabilities():
    rng = np.random.default_rng(0)
    n = 40000
    X_ = rng.normal(size=(n, len(FEATURES)))
    true = 1 / (1 + np.exp(-(1.5 * X_[:, 0] - 0.8 * X_[:, 2] - 1.0)))
    y = rng.random(n) < true
    cal = Calibrator.fit(X_, y)
    grid = rng.normal(size=(2000, len(FEATURES)))
    want = 1 / (1 + np.exp(-(1.5 * grid[:, 0] - 0.8 * grid[:, 2] - 1.0)))
    assert np.abs(cal.predict(grid) - want).max() < 0.03
    # and it is calibrated on fresh draws: ECE of its own predictions is small
    X2 = rng.normal(size=(n, len(FEATURES)))
    p2 = 1 / (1 + np.exp(-(1.5 * X2[:, 0] - 0.8 * X2[:, 2] - 1.0)))
    assert expected_calibration_error(cal.predict(X2), rng.random(n) < p2) < 0.02


def test_calibrator_needs_both_outcomes_and_matching_lengths():
    with pytest.raises(ValueError, match="right and wrong"):
        Calibrator.fit(np.zeros((3, len(FEATURES))), [0, 0, 0])
    with pytest.raises(ValueError, match="outcomes"):
        Calibrator.fit(np.zeros((3, len(FEATURES))), [0, 1])


def test_a_constant_calibrator_gives_every_word_the_smoothed_base_rate():
    X = np.random.default_rng(0).random((5, len(FEATURES)))
    none_right, all_right = Calibrator.constant(3, 0), Calibrator.constant(3, 3)
    assert none_right.predict(X) == pytest.approx(np.full(5, 0.5 / 4))  # (0 + 1/2) / (3 + 1)
    assert all_right.predict(X) == pytest.approx(np.full(5, 3.5 / 4))
    assert none_right.is_constant and not _cal().is_constant
    assert Calibrator.from_dict(json.loads(json.dumps(none_right.to_dict()))).is_constant
    with pytest.raises(ValueError, match="at least one word"):
        Calibrator.constant(0, 0)
    flat = Calibrator.constant(9, 0, {"words": 9, "right": 0}, features=("score",))
    filters = flat.apply([_filter(0), _filter(1)])
    assert [f.confidence for f in filters] == [0.05, 0.05] and not any(f.interpretable for f in filters)  # 0.5 / 10
    ex = Explanations("m", "l", "masked-attention", "d", {"confidence": {
        "available": True, "interpretable_at": 0.5, "fitted_on": flat.fitted_on}}, filters)
    assert ex.verdict().startswith("0 of 2 filters interpretable") and "no word was right" in ex.verdict()


def test_ece_reliability_quartiles_and_auroc_by_hand():
    conf = np.array([0.1, 0.1, 0.9, 0.9])
    right = np.array([0, 1, 1, 1])
    # bin 1: accuracy 0.5 at confidence 0.1 (gap 0.4, 2 items); bin 9: 1.0 at 0.9 (gap 0.1, 2 items)
    assert expected_calibration_error(conf, right) == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    rel = reliability(conf, right)
    assert rel[1]["items"] == 2 and rel[1]["accuracy"] == 0.5 and rel[9]["confidence"] == pytest.approx(0.9)
    assert rel[5]["items"] == 0 and rel[5]["accuracy"] is None
    q = quartile_precision(np.array([0.4, 0.1, 0.3, 0.2, 0.8, 0.7, 0.6, 0.5]), np.array([0, 0, 0, 1, 1, 1, 0, 1]))
    assert [r["precision"] for r in q] == [0.5, 0.0, 0.5, 1.0]  # (0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.7, 0.8)
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_outcomes_match_lemmas_of_the_ground_truth():
    from lavise.evaluate import lemma

    f = _filter(unit=1)
    X_, y = outcomes([f, _filter(unit=0, scores=(), sims=(), words=())], [[], ["cat", "car"]], lemma)
    assert y.tolist() == [0, 1, 0]  # "cats" is "cat"
    assert X_.shape == (3, len(FEATURES))


SIX = ("score", "similarity", "margin", "log_rank", "saturated", "qualified")  # signals of the run alone


def _cal(**fitted_on):
    return Calibrator((0.0,) * 6, (1.0,) * 6, (4.0, 0.0, 0.0, 0.0, 0.0, 0.0), -1.0, SIX,
                      {"method": "masked-attention", "p": ExplainOptions().p, "s": 1, "votes": ExplainOptions().votes,
                       **fitted_on})


def test_apply_sets_word_confidence_and_filter_verdict():
    cal = _cal()
    [f] = cal.apply([_filter()])
    want = [1 / (1 + math.exp(-(4 * s - 1))) for s in (0.5, 0.3, 0.1)]
    assert [w["confidence"] for w in f.words] == pytest.approx(want, abs=1e-6)
    assert f.confidence == pytest.approx(want[0], abs=1e-6) and f.interpretable is True  # 0.73 >= 0.5
    [g] = cal.apply([_filter(scores=(0.2, 0.1, 0.05))])
    assert g.confidence < 0.5 and g.interpretable is False
    [dead] = cal.apply([_filter(scores=(), sims=(), words=())])
    assert dead.confidence == 0.0 and dead.interpretable is False
    assert cal.matches(ExplainOptions()) and not cal.matches(ExplainOptions(p=25, s=5))
    assert not cal.matches(ExplainOptions(method="attention"))


def test_calibrator_round_trips_and_refuses_other_formats():
    cal = _cal(dataset="x")
    assert Calibrator.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(RunError, match="retrain"):
        Calibrator.from_dict({**cal.to_dict(), "features": ["score", "colour"]})
    # a calibrator on another subset of the known signals reads back and applies them by name
    rng = np.random.default_rng(1)
    X_ = rng.normal(size=(400, 2))
    two = Calibrator.fit(X_, X_[:, 0] + rng.normal(size=400) > 0, {}, ("stability", "score"))
    assert Calibrator.from_dict(json.loads(json.dumps(two.to_dict()))) == two
    [f] = two.apply([replace(_filter(), stability=0.9)])
    assert f.confidence == pytest.approx(float(two.predict(np.array([[0.9, 0.5]]))[0]), abs=1e-6)


def test_explanations_csv_and_verdict_carry_the_confidence():
    cal = _cal()
    filters = cal.apply([_filter(0), _filter(1, scores=(0.1, 0.05, 0.02))])
    ex = Explanations("m", "l", "masked-attention", "d", {"confidence": {"available": True, "interpretable_at": 0.5}},
                      filters)
    assert ex.verdict().startswith("1 of 2 filters interpretable")
    assert [f.unit for f in ex.ranked()] == [0, 1]
    rows = ex.csv_text().splitlines()
    assert rows[0].endswith("confidence,filter_confidence,interpretable,filter_stability,reference_iou")
    assert rows[1].split(",")[-3] == "True" and float(rows[1].split(",")[-5]) == pytest.approx(filters[0].confidence)
    assert rows[1].endswith(",")  # no grounding: an empty reference_iou
    old = Explanations("m", "l", "attention", "d", {}, [_filter()])
    assert old.verdict().startswith("confidence unavailable")
    assert old.csv_text().splitlines()[1].endswith(",,,,,")


def test_training_fits_a_calibrator_that_saving_and_loading_keep(tmp_path, tiny_model, squares, tiny_glove):
    from lavise.embeddings import load_embeddings
    from lavise.explain import explain_cache
    from lavise.explain.confidence import fit_on_reference
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer, train_explainer

    emb = load_embeddings(f"glove:{tiny_glove}")
    trained = train_explainer(tiny_model, squares, emb, out=tmp_path / "run", extract=X,
                              options=TrainOptions(epochs=3, batch_size=16, heads=1, calibrate=False))
    assert trained.calibrator is None and not (tmp_path / "run" / "calibration.json").exists()
    cache = extract_features(tiny_model, trained.config["layer"], squares, tmp_path / "run" / "cache",
                             list(trained.concepts), X)
    options = ExplainOptions(vocabulary="concepts", p=5, s=3, x=3)  # every concept name per filter: some are right
    cal = fit_on_reference(trained, cache, emb, squares.spec, 0, X, options)
    assert cal is not None and 0 < cal.fitted_on["right"] < cal.fitted_on["words"]
    # annotations for one concept at a time: each right word is right for exactly one of them
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        each = [fit_on_reference(trained, cache, emb, squares.spec, 0, X, options, concepts=[c])
                for c in trained.concepts]
    assert sum(c.fitted_on["right"] for c in each if c is not None) == cal.fitted_on["right"]
    with pytest.warns(UserWarning, match="no word was right"):  # no annotated concept: every word is wrong
        flat = fit_on_reference(trained, cache, emb, squares.spec, 0, X, options, concepts=[])
    n = flat.fitted_on["words"]
    assert flat.is_constant and flat.fitted_on["right"] == 0 and n == cal.fitted_on["words"]
    fx_flat = flat.apply(explain_cache(trained, cache, emb.vocabulary("concepts", concepts=list(trained.concepts)),
                                       options, None, X))
    assert {w["confidence"] for f in fx_flat for w in f.words} == {round(0.5 / (n + 1), 6)}
    assert not any(f.interpretable for f in fx_flat)
    replace(trained, calibrator=flat).save(tmp_path / "flat")
    assert TrainedExplainer.load(tmp_path / "flat").calibrator.is_constant

    replace(trained, calibrator=cal).save(tmp_path / "run")
    loaded = TrainedExplainer.load(tmp_path / "run")
    assert loaded.calibrator == cal
    vocab = emb.vocabulary("concepts", concepts=list(trained.concepts))
    fx = explain_cache(loaded, cache, vocab, options, None, X)
    assert all(f.confidence is not None for f in fx if f.words)
    assert all(f.confidence == f.words[0]["confidence"] for f in fx if f.words)
    plain = explain_cache(loaded, cache, vocab, options.replace(p=4), None, X)  # fitted for p=5: no confidence
    assert all(f.confidence is None for f in plain)


def test_an_older_run_without_a_calibrator_still_explains_and_says_so(tmp_path, tiny_model, squares, tiny_glove):
    from lavise.explain import explain_filters
    from lavise.train import train_explainer

    train_explainer(tiny_model, squares, f"glove:{tiny_glove}", out=tmp_path / "run", extract=X,
                    options=TrainOptions(epochs=2, batch_size=16, heads=1, calibrate=False))
    ex = explain_filters(tmp_path / "run", squares, ExplainOptions(vocabulary="concepts", p=5), X, target=tiny_model)
    assert all(f.confidence is None and f.interpretable is None for f in ex.filters)
    assert "retrain" in ex.verdict() and ex.settings["confidence"]["available"] is False


def test_confidence_report_by_hand():
    from lavise.evaluate import lemma
    from lavise.evaluate.core import confidence_report

    def f(unit, word, conf):
        base = _filter(unit, scores=(0.5,), sims=(0.7,), words=(word,))
        return replace(base, words=[{**base.words[0], "confidence": conf}], confidence=conf, interpretable=conf >= 0.5)

    filters = [f(0, "dogs", 0.9), f(1, "cat", 0.9), f(2, "car", 0.1), f(3, "tree", 0.1)]
    truth = [["dog"], [], ["car"], ["sky"]]
    r = confidence_report(filters, truth, lemma)
    assert r["ECE"] == pytest.approx(0.4)  # both bins: half right at confidence 0.9 and 0.1
    assert r["interpretable"] == 2 and r["P@1_interpretable"] == 0.5 and r["median_confidence"] == pytest.approx(0.5)
    assert r["AUROC_confidence"] == pytest.approx(0.5) and r["ECE_words"] == pytest.approx(0.4)


def test_grounding_attaches_each_words_reference_iou_by_lemma():
    from lavise.explain.confidence import Grounding

    g = Grounding(("cat", "dog"), np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32))
    f0, f1 = _filter(unit=0), _filter(unit=1, words=("dogs", "tree", "cat"))
    a, b = g.attach([f0, f1])
    assert [w["grounding"] for w in a.words] == [pytest.approx(0.2), pytest.approx(0.1), None]  # dog, cats, tree
    assert [w["grounding"] for w in b.words] == [pytest.approx(0.4), None, pytest.approx(0.3)]
    col = word_features(b, ("grounding", "score"))
    np.testing.assert_allclose(col[:, 0], [0.4, 0.0, 0.3], atol=1e-6)  # no concept named: 0
    dog = g.only(["dog"])  # a reference set annotated for dogs only knows nothing of cats
    assert dog.concepts == ("dog",) and dog.iou.tolist() == [[pytest.approx(0.2)], [pytest.approx(0.4)]]
    assert [w["grounding"] for w in dog.attach([f1])[0].words] == [pytest.approx(0.4), None, None]
    # against the filter's best reference IoU (unit 1: 0.4): dogs 0.4 / 0.4, tree none, cat 0.3 / 0.4
    (b,) = g.attach([f1], best=True)
    assert [w["grounding_best"] for w in b.words] == [pytest.approx(0.4)] * 3
    col = word_features(b, ("grounding_ratio", "grounding_best"))
    np.testing.assert_allclose(col, [[1.0, 0.4], [0.0, 0.4], [0.75, 0.4]], atol=1e-6)
    assert "grounding_best" not in g.attach([f1])[0].words[0]  # only when a calibrator asks for it


def test_grounding_of_two_halves_equals_the_ground_truth_of_all_images(tmp_path, tiny_model, squares):
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate.core import split_rows
    from lavise.explain import compute_thresholds
    from lavise.explain.confidence import Grounding
    from lavise.features import extract_features

    cache = extract_features(tiny_model, "block2", squares, tmp_path / "c", list(squares.concepts), X)
    thr = compute_thresholds(cache)
    a, b = split_rows(len(cache), 3)
    whole = compute_ground_truth(cache, thr)
    g = Grounding.from_counts(compute_ground_truth(cache, thr, rows=a), compute_ground_truth(cache, thr, rows=b))
    np.testing.assert_allclose(g.iou, whole.iou("netdissect"), atol=1e-6)
    assert g.concepts == tuple(whole.concepts) and g.iou.max() > 0.04
    g.save(tmp_path / "g.npz")
    back = Grounding.load(tmp_path / "g.npz")
    assert back.concepts == g.concepts and np.array_equal(back.iou, g.iou)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(RunError, match="retrain the run"):
        Grounding.load(tmp_path / "bad.npz")


def test_a_grounded_calibrator_is_saved_with_its_table_and_applied_with_it(tmp_path, tiny_model, squares, tiny_glove):
    from lavise.embeddings import load_embeddings
    from lavise.explain import explain_cache
    from lavise.explain.confidence import fit_on_reference
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer, train_explainer

    emb = load_embeddings(f"glove:{tiny_glove}")
    trained = train_explainer(tiny_model, squares, emb, out=tmp_path / "run", extract=X,
                              options=TrainOptions(epochs=3, batch_size=16, heads=1, calibrate=False))
    cache = extract_features(tiny_model, trained.config["layer"], squares, tmp_path / "run" / "cache",
                             list(trained.concepts), X)
    options = ExplainOptions(vocabulary="concepts", p=5, s=3, x=3)
    cal = fit_on_reference(trained, cache, emb, squares.spec, 0, X, options, features=FEATURES + ("grounding",))
    assert cal.grounding is not None and cal.grounding.iou.shape == (16, len(trained.concepts))
    replace(trained, calibrator=cal).save(tmp_path / "run")
    assert (tmp_path / "run" / "grounding.npz").is_file()
    loaded = TrainedExplainer.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.calibrator.grounding.iou, cal.grounding.iou)
    vocab = emb.vocabulary("concepts", concepts=list(trained.concepts))
    fx = explain_cache(loaded, cache, vocab, options, None, X)
    for f in fx:
        for w in f.words:  # every word here is a concept name: each carries its filter's IoU with it
            assert w["grounding"] == pytest.approx(float(cal.grounding.iou[f.unit, cal.grounding.concepts.index(w["word"])]),
                                                   abs=1e-6)  # rounded to 6 places
    (tmp_path / "run" / "grounding.npz").unlink()
    with pytest.raises(RunError, match="no grounding.npz"):
        explain_cache(replace(loaded, calibrator=replace(loaded.calibrator, grounding=None)), cache, vocab, options,
                      None, X)
