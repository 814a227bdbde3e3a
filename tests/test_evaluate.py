"""Metric code on hand-made activation maps and masks whose IoU, precision and recall are computed by hand."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import bilinear_weights
from lavise.cli import main
from lavise.dissect import Dissection, GroundTruth, compute_ground_truth
from lavise.errors import LaviseError
from lavise.evaluate import evaluate_run, format_table, novel_scores, random_words, score_lists, synonym_scores
from lavise.evaluate.baselines import constant_words, names_random_words, shuffled_lists
from lavise.evaluate.metrics import MATCHES, lemma, score_row
from lavise.features import FeatureCache
from lavise.options import MATCHING, EvalOptions, ExplainOptions, ExtractOptions, TrainOptions
from lavise.stats import ActivationStats, Thresholds

X = ExtractOptions(workers=0, show_progress=False)

S = 56


def _cache(features, pairs, masks, concepts):
    n, d = features.shape[:2]
    st = ActivationStats(d, features[0, 0].size * n)
    st.update(torch.from_numpy(features.astype(np.float32)))
    return FeatureCache(Path("."), {"shape": list(features.shape), "layer": "L"}, features.astype(np.float16), features.max((2, 3)), [str(i) for i in range(n)],
                        np.arange(n), st, concepts, np.asarray(pairs, np.int64).reshape(-1, 2), None,
                        np.asarray(masks, bool).reshape(-1, S, S))


def _box(r0, r1, c0, c1):
    m = np.zeros((S, S), bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture()
def hand():
    """3 images, 3 filters (filter 2 dead), concepts cat/dog; maps at 56x56 so upsampling is the identity.

    filter 0: image 0 rows 0-9 x cols 0-9 (100 px), image 1 rows 20-24 x cols 0-9 (50 px)
    filter 1: all of image 2 (3136 px)
    cat: image 0 rows 0-9 x cols 0-19 (200 px), image 2 rows 40-49 x cols 40-49 (100 px)
    dog: image 1 rows 20-29 x cols 0-9 (100 px)
    """
    f = np.zeros((3, 3, S, S), np.float32)
    f[0, 0][_box(0, 10, 0, 10)] = 1
    f[1, 0][_box(20, 25, 0, 10)] = 1
    f[2, 1] = 1
    pairs = [(0, 0), (1, 1), (2, 0)]
    masks = [_box(0, 10, 0, 20), _box(20, 30, 0, 10), _box(40, 50, 40, 50)]
    cache = _cache(f, pairs, masks, ["cat", "dog"])
    thr = Thresholds(np.array([0.5, 0.5, 0.5], np.float32), np.zeros(3, bool), np.array([False, False, True]))
    return cache, thr


def test_iou_by_hand_netdissect_and_present(hand):
    cache, thr = hand
    gt = compute_ground_truth(cache, thr, batch_images=2)
    iou = gt.iou("netdissect")
    # filter 0: |A|=150; cat: I=100, |M|=300, U=150+300-100=350; dog: I=50, |M|=100, U=150+100-50=200
    assert iou[0, 0] == pytest.approx(100 / 350)
    assert iou[0, 1] == pytest.approx(50 / 200)
    # filter 1: |A|=3136; cat: I=100, U=3136+300-100; dog: I=0
    assert iou[1, 0] == pytest.approx(100 / 3336)
    assert iou[1, 1] == 0
    assert (iou[2] == 0).all()  # dead
    pres = gt.iou("present")
    # present-only: filter 0 area in images with cat (0, 2) = 100 -> U=100+300-100; with dog (1) = 50 -> U=50+100-50
    assert pres[0, 0] == pytest.approx(100 / 300)
    assert pres[0, 1] == pytest.approx(50 / 100)
    assert gt.labels("netdissect") == [["cat", "dog"], [], []]  # 100/3336 = 0.030 < 0.04
    assert gt.labels("present") == [["dog", "cat"], [], []]
    s = gt.summary()
    assert s["filters_with_ground_truth"] == 1 and s["concepts_per_filter"] == 2.0
    dis = Dissection.from_ground_truth(gt, "L")
    assert dis.label(0) == "cat" and dis.label(1) is None and dis.label(2) is None
    rows = dis.csv_text().splitlines()
    assert rows[0] == "layer,unit,concept,iou,interpretable"
    assert rows[1] == f"L,0,cat,{100 / 350:.6f},1"
    assert dis.summary()["interpretable"] == 1


def test_iou_matches_brute_force_with_upsampling_and_duplicate_pairs():
    rng = np.random.default_rng(0)
    n, d, h = 5, 4, 7
    f = rng.normal(size=(n, d, h, h)).astype(np.float16).astype(np.float32)
    pairs, masks = [], []
    for r in range(n):
        for c in rng.choice(3, size=rng.integers(0, 3), replace=False):
            pairs.append((r, int(c)))
            masks.append(rng.random((S, S)) < 0.3)
    pairs.append(pairs[0])  # a second instance of the same concept in the same image: OR-ed
    masks.append(rng.random((S, S)) < 0.2)
    cache = _cache(f, pairs, masks, ["a", "b", "c"])
    thr = Thresholds.from_stats(cache.stats)
    gt = compute_ground_truth(cache, batch_images=2)
    up = F.interpolate(torch.from_numpy(f), size=(S, S), mode="bilinear", align_corners=False).numpy()
    act = up > thr.values[None, :, None, None]
    full = np.zeros((n, 3, S, S), bool)
    for (r, c), m in zip(pairs, masks):
        full[r, c] |= m
    for u in range(d):
        for c in range(3):
            inter = (act[:, u] & full[:, c]).sum()
            union = (act[:, u] | full[:, c]).sum()
            assert gt.iou()[u, c] == pytest.approx(inter / union if union else 0.0)
            has = full[:, c].reshape(n, -1).any(1)
            union_p = (act[has, u] | full[has, c]).sum()
            assert gt.iou("present")[u, c] == pytest.approx(inter / union_p if union_p else 0.0)


def test_precision_recall_f1_by_hand():
    preds = [["cat", "tree", "dog"], ["tree"], ["car"]]
    truth = [["cat", "dog"], ["car"], []]  # filter 2 has no ground truth: not scored
    r = score_lists(preds, truth, ks=(1, 2, 5))
    assert r["filters"] == 2
    # filter 0: P@1 1, P@2 1/2, P@5 2/5; R@1 1/2, R@2 1/2, R@5 1; F1@1 2/3, F1@2 1/2, F1@5 2*2/(3+2)
    # filter 1: all 0
    assert r["P@1"] == pytest.approx(0.5) and r["P@2"] == pytest.approx(0.25) and r["P@5"] == pytest.approx(0.2)
    assert r["R@1"] == pytest.approx(0.25) and r["R@2"] == pytest.approx(0.25) and r["R@5"] == pytest.approx(0.5)
    assert r["F1@1"] == pytest.approx(1 / 3) and r["F1@2"] == pytest.approx(0.25) and r["F1@5"] == pytest.approx(0.4)
    # exact matching is case/space-insensitive, and duplicates count once
    assert score_lists([["Traffic_Light", "traffic light"]], [["traffic light"]], ks=(2,))["P@2"] == pytest.approx(0.5)


def test_f1_cannot_be_gamed_by_long_or_short_lists():
    vocab = [f"w{i}" for i in range(100)]
    truth = [["w1", "w2", "w3"]] * 10
    long = [vocab] * 10
    short = [["w1"]] * 10
    honest = [["w1", "w2", "w3"]] * 10
    k = (100,)
    rl, rs, rh = score_lists(long, truth, k), score_lists(short, truth, k), score_lists(honest, truth, k)
    assert rl["R@100"] == 1.0 and rl["F1@100"] == pytest.approx(6 / 103)
    assert score_lists(short, truth, (1,))["P@1"] == 1.0 and rs["F1@100"] == pytest.approx(0.5)
    assert rh["F1@100"] == 1.0 > rs["F1@100"] > rl["F1@100"]


def test_synonym_match_is_separate_and_by_hand(tiny_glove):
    from lavise.embeddings import load_embeddings

    emb = load_embeddings(f"glove:{tiny_glove}")
    preds, truth = [["sun", "tree"]], [["cat"]]
    assert score_lists(preds, truth, (1, 2))["P@1"] == 0
    # cos(sun, cat) = 1/sqrt(2) = 0.707; cos(tree, cat) = 0
    r = synonym_scores(preds, truth, emb, 0.7, ks=(1, 2))
    assert r["syn_P@1"] == 1.0 and r["syn_R@1"] == 1.0 and r["syn_P@2"] == 0.5
    assert synonym_scores(preds, truth, emb, 0.75, ks=(1,))["syn_P@1"] == 0.0
    assert "P@1" not in r  # never mixed into the exact fields


def test_novel_concepts_by_hand():
    preds = [["cat", "zebra"], ["zebra"], ["owl", "cat"], []]
    truth = [["zebra", "cat"], ["dog"], ["owl"], ["yak"]]
    r = novel_scores(preds, truth, novel=["zebra", "owl", "yak", "emu"], x=1, ks=(1, 2))
    # top-1 words: cat, zebra, owl, -; novel ground truth: f0 zebra, f2 owl, f3 yak
    assert r["novel_available"] == 3 and r["novel_filters"] == 3
    assert r["novel_discovered"] == 1 and r["novel_discovered_names"] == ["owl"]  # f1 says zebra but its truth is dog
    assert r["novel_R@1"] == pytest.approx(1 / 3) and r["novel_R@2"] == pytest.approx(2 / 3)
    # not novel: f0 cat (1 of 2), f1 dog (1 of 1), f2 none, f3 none -> recall ceiling 1.5 / 4; P@1 ceiling 2 / 4
    assert r["ceiling_R"] == pytest.approx(1.5 / 4) and r["ceiling_P@1"] == 0.5


def test_no_explainer_that_names_no_novel_concept_passes_the_ceilings():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    novel = words[:4]
    truth = [list(rng.choice(words, size=rng.integers(0, 4), replace=False)) for _ in range(40)]
    ceil = novel_scores([[]] * 40, truth, novel)
    for _ in range(20):
        preds = [list(rng.permutation(words[4:])) for _ in range(40)]  # never a novel word
        r = score_lists(preds, truth, ks=(1, 8))
        assert r["R@8"] <= ceil["ceiling_R"] + 1e-12 and r["P@1"] <= ceil["ceiling_P@1"] + 1e-12
    oracle = [[c for c in t if c not in novel] + words[4:] for t in truth]  # every seen concept first
    r = score_lists(oracle, truth, ks=(1, 8))
    assert r["R@8"] == pytest.approx(ceil["ceiling_R"]) and r["P@1"] == pytest.approx(ceil["ceiling_P@1"])


def test_random_words_and_table():
    w = random_words(list("abcdefghij"), 3, 4, seed=1)
    assert len(w) == 3 and all(len(set(x)) == 4 for x in w)
    assert w == random_words(list("abcdefghij"), 3, 4, seed=1)
    t = format_table([{"name": "a", "filters": 2, "P@1": 0.5, "R@10": (0.25, 0.01)}])
    assert "0.250±0.010" in t and t.splitlines()[0].split()[0] == "method"


# Lemmatised matching (issue 19): "cherries" is "cherry", "Traffic_Lights" is "traffic light". Every test below
# fails on the code before it: matching was exact only and these names did not exist.
PLURALS = [["cherries", "Traffic_Lights", "dog"], []]
SINGULARS = [["cherry", "traffic light"], []]


def test_lemma_key_folds_case_underscores_and_plural_nouns():
    assert lemma("Traffic_Lights") == "traffic light" and lemma("  cherries ") == "cherry"
    assert lemma("geese") == "goose" and lemma("grass") == "grass" and lemma("") == ""
    assert MATCHES["exact"]("Traffic_Lights") == "traffic lights"
    assert tuple(MATCHES) == MATCHING  # the option's choices are the metric's keys


def test_lemmatised_match_by_hand():
    # filter 0, top 2 under lemma: cherry, traffic light -> 2 hits of 2 words, 2 of 2 concepts;
    # exact: "cherries", "traffic lights" -> 0 hits. Filter 1 has no ground truth: not scored.
    lem = score_lists(PLURALS, SINGULARS, ks=(1, 2))
    assert lem["filters"] == 1
    assert lem["P@2"] == 1.0 and lem["R@2"] == 1.0 and lem["F1@2"] == 1.0  # F1 = 2*2/(2+2)
    assert lem["P@1"] == 1.0 and lem["R@1"] == 0.5  # top 1: cherry, 1 of 2 concepts
    ex = score_lists(PLURALS, SINGULARS, ks=(1, 2), match="exact")
    assert ex["filters"] == 1 and ex["P@2"] == 0 and ex["R@2"] == 0 and ex["P@1"] == 0
    # two surface forms of one lemma count once: "cherry", "cherries" is 1 hit in a top 2 (P@2 = 1/2)
    assert score_lists([["cherry", "cherries"]], [["cherry"]], ks=(2,))["P@2"] == 0.5
    with pytest.raises(ValueError, match="unknown match 'stem'"):
        score_lists(PLURALS, SINGULARS, match="stem")


def _tiny_gt():
    """2 filters, concepts cherry / traffic light / dog (netdissect IoU = I / (A + M - I)).

    filter 0: A = 100; cherry and traffic light I = 50, M = 100 -> IoU 50/150 = 1/3 > 0.04; dog I = 0.
    filter 1: A = 100, no intersection: no ground truth.
    """
    inter = np.array([[50, 50, 0], [0, 0, 0]], float)
    act = np.array([100, 100], float)
    return GroundTruth(["cherry", "traffic light", "dog"], inter, act, np.array([100, 100, 100], float),
                       np.repeat(act[:, None], 3, 1), images=4, images_with=np.array([2, 2, 2]))


class _OrthogonalEmbeddings:
    """Every phrase its own unit vector: cosine 0 between different phrases, so only equal keys match."""

    def encode(self, phrases):
        return np.eye(len(phrases)), list(phrases), []


def test_score_row_reports_lemma_headline_and_exact_columns():
    gt = _tiny_gt()
    assert gt.labels() == [["cherry", "traffic light"], []]
    row = score_row("m", PLURALS, gt, "netdissect", ks=(1, 2), synonyms=(_OrthogonalEmbeddings(), 0.99))
    assert row["match"] == "lemma" and row["filters"] == 1
    assert row["P@2"] == 1.0 and row["R@2"] == 1.0 and row["F1@2"] == 1.0  # as in test_lemmatised_match_by_hand
    assert row["exact_P@2"] == 0 and row["exact_R@2"] == 0 and row["exact_F1@2"] == 0
    assert row["P@1"] == 1.0 and row["exact_P@1"] == 0 and "exact_filters" not in row
    # synonym columns: equality under the lemma key (cosine 0 otherwise): same values as the headline
    assert row["syn_P@2"] == 1.0 and row["syn_R@2"] == 1.0
    strict = score_row("m", PLURALS, gt, "netdissect", ks=(1, 2), match="exact")
    assert strict["match"] == "exact" and strict["P@2"] == 0 and strict["R@2"] == 0
    assert not [k for k in strict if k.startswith("exact_")]  # the headline is already exact
    with pytest.raises(ValueError, match="unknown match"):
        score_row("m", PLURALS, gt, "netdissect", (1, 2), None, None, 10, None, 0.9)  # a threshold is no match


def test_novel_concepts_are_counted_under_the_lemma_key():
    preds = [["cherries", "dog"], ["owls"]]
    truth = [["cherry", "dog"], ["owl"]]
    r = novel_scores(preds, truth, novel=["cherry", "owl"], x=1, ks=(1,))
    # top-1 keys: cherry (f0), owl (f1), both novel and in their filter's truth
    assert r["novel_discovered"] == 2 and r["novel_discoveries"] == 2
    assert r["novel_discovered_names"] == ["cherry", "owl"]
    assert r["novel_R@1"] == 1.0 and r["novel_P@1"] == 1.0
    # not novel: f0 dog (1 of 2), f1 none -> ceiling R (0.5 + 0) / 2, P@1 ceiling 1 / 2
    assert r["ceiling_R"] == 0.25 and r["ceiling_P@1"] == 0.5
    ex = novel_scores(preds, truth, novel=["cherry", "owl"], x=1, ks=(1,), match="exact")
    assert ex["novel_discovered"] == 0 and ex["novel_R@1"] == 0 and ex["novel_available"] == 2
    # the novel set is keyed too: a plural novel name meets a singular ground-truth concept
    assert novel_scores(preds, truth, novel=["Cherries"], x=1, ks=(1,))["novel_discovered_names"] == ["cherries"]


def test_constant_words_are_the_most_frequent_concepts_ties_by_name():
    # counts b 3, a 3, c 1: a and b tie at 3 -> by name a, b; c is third and cut by n = 2
    w = constant_words({"b": 3, "a": 3, "c": 1}, 4, 2)
    assert w == [["a", "b"]] * 4
    w[0].append("x")
    assert w[1] == ["a", "b"]  # separate lists
    assert constant_words({"b": 3, "a": 3, "c": 1}, 2, 10) == [["a", "b", "c"]] * 2
    assert constant_words({"a": 1}, 0, 2) == []


def test_names_random_words_draw_only_concept_names():
    names = ["cat", "dog", "owl", "yak", "emu", "cat"]  # a repeated name counts once
    w = names_random_words(names, 30, 3, seed=1)
    assert len(w) == 30 and all(len(x) == 3 and len(set(x)) == 3 and set(x) <= set(names) for x in w)
    assert w == names_random_words(names, 30, 3, seed=1)
    assert w != names_random_words(names, 30, 3, seed=2)
    assert {c for x in w for c in x} == set(names)  # 90 draws over 5 names: each one drawn
    assert all(sorted(x) == ["cat", "dog", "emu", "owl", "yak"] for x in names_random_words(names, 3, 9))


def test_shuffled_lists_are_a_derangement_of_the_listed_filters():
    preds = [[f"w{u}", f"v{u}"] for u in range(6)]
    units = [0, 2, 3, 4, 5]  # filter 1 is not listed
    seen = set()
    for seed in range(20):
        out = shuffled_lists(preds, units, seed)
        assert len(out) == 6 and out[1] == []
        assert sorted(map(tuple, (out[u] for u in units))) == sorted(map(tuple, (preds[u] for u in units)))
        assert all(out[u] != preds[u] for u in units)  # no fixed point
        seen.add(tuple(out[u][0] for u in units))
    assert len(seen) > 1 and shuffled_lists(preds, units, 7) == shuffled_lists(preds, units, 7)
    assert shuffled_lists(preds, [1, 4], 0) == [[], preds[4], [], [], preds[1], []]  # two filters: swapped
    assert shuffled_lists(preds, [3], 0) == [[], [], [], preds[3], [], []]  # one filter keeps its own
    assert shuffled_lists(preds, [], 0) == [[]] * 6


@pytest.mark.parametrize("kw, flag", [({"match": "stem"}, "--match"), ({"controls": ("nope",)}, "--controls"),
                                      ({"controls": "constant"}, "--controls")])
def test_eval_options_check_match_and_controls(kw, flag):
    with pytest.raises(LaviseError) as e:
        EvalOptions(**kw)
    assert flag in str(e.value) and "\n" not in str(e.value)
    o = EvalOptions()
    assert o.match == "lemma" and o.controls == ("constant", "names", "shuffled")
    assert EvalOptions(match="exact", controls=("random-init",)).controls == ("random-init",)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model, squares, tiny_glove):
    from lavise.embeddings import load_embeddings
    from lavise.train import train_explainer

    out = tmp_path_factory.mktemp("evalrun")
    train_explainer(tiny_model, squares, load_embeddings(f"glove:{tiny_glove}"), out=out,
                    options=TrainOptions(epochs=3, batch_size=16), extract=X)
    cfg = json.loads((out / "config.json").read_text())
    cfg["embeddings"] = f"glove:{tiny_glove}"
    (out / "config.json").write_text(json.dumps(cfg))
    from lavise.run import RunFolder
    RunFolder(out).record("explainer", ["explainer.safetensors", "config.json", "train_log.csv"])
    return out


def test_evaluate_run_compares_methods_and_baselines(run, tiny_model, squares):
    # every image on both sides, no controls: the paper's protocol, where NetDissect on its own data is its own truth
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=2, x=3),
                          methods=("attention", "activation", "original", "image"), image_units=3,
                          synonym_threshold=0.9, split="none", controls=())
    ev = evaluate_run(run, squares, options, X, reference=squares, target=tiny_model)
    names = [r["name"] for r in ev.rows if r["convention"] == "netdissect"]
    assert names == ["attention", "activation", "original", "image", "netdissect", "random"]
    for r in ev.rows:
        for k in (1, 5, 10, 20):
            assert 0 <= r[f"P@{k}"] <= 1 and 0 <= r[f"R@{k}"] <= 1 and 0 <= r[f"F1@{k}"] <= 1
        assert "syn_P@1" in r
    img = next(r for r in ev.rows if r["name"] == "image")
    assert img["filters"] <= 3
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(ev.rows))
    assert saved["ground_truth"]["netdissect"]["filters"] == 16
    # NetDissect evaluated on its own data is its own ground truth: P@1 = 1 on filters it labels
    nd = next(r for r in ev.rows if r["name"] == "netdissect" and r["convention"] == "netdissect")
    labelled = [f for f in saved["filters"] if f["ground_truth"]]
    assert nd["R@20"] == pytest.approx(1.0) and len(labelled) == nd["filters"]


def test_calibration_changes_only_seen_scores(run, tiny_model, squares):
    from lavise.embeddings import load_embeddings
    from lavise.explain import explain_cache
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer

    ex = TrainedExplainer.load(run)
    vocab = load_embeddings(ex.config["embeddings"]).vocabulary("common", concepts=ex.concepts, size=10)
    cache = extract_features(tiny_model, "block2", squares, run / "cache", options=X)
    opts = ExplainOptions(p=5, s=1, x=3)
    plain = explain_cache(ex, cache, vocab, opts, extract=X)
    same = explain_cache(ex, cache, vocab, opts.replace(calibration=0.0), extract=X)
    assert [f.words for f in plain] == [f.words for f in same]
    big = explain_cache(ex, cache, vocab, opts.replace(calibration=10.0), extract=X)
    for f in big:
        assert not set(f.top_words) & set(ex.concepts)  # every seen concept pushed below the unseen words


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope"), "--dataset", "builtin:scenes?size=2"]) == 2
    assert "lavise: error:" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--dataset", "folder:x", "--methods", "bogus"]) == 2
    assert "unknown method bogus" in capsys.readouterr().err


def test_dissect_function_writes_netdissect_labels(tmp_path, tiny_model, squares):
    from lavise.dissect import dissect

    dis, gt = dissect(tiny_model, None, squares, tmp_path / "cache", extract=X)
    rows = dis.rows()
    assert len(rows) == 16 and {r["unit"] for r in rows} == set(range(16))
    iou = gt.iou()
    for r in rows:
        assert r["iou"] == pytest.approx(iou[r["unit"]].max(), abs=1e-6)
        assert r["interpretable"] == (iou[r["unit"]].max() > 0.04)
    lines = dis.csv_text().splitlines()
    assert len(lines) == 17 and lines[1].startswith("block2,0,")


def test_cli_evaluate_prints_table_and_writes_json(run, tiny_model, squares, monkeypatch, capsys):
    import lavise.data
    import lavise.models

    monkeypatch.setattr(lavise.data, "load_dataset", lambda spec, **kw: squares)
    monkeypatch.setattr(lavise.models, "load_model", lambda spec, weights=None: tiny_model)
    (run / "evaluation.json").unlink(missing_ok=True)
    code = main(["evaluate", str(run), "--dataset", "squares", "--methods", "attention,activation", "--baselines",
                 "random", "--vocabulary", "concepts", "-p", "5", "--convention", "both", "--synonyms", "0.9",
                 "--workers", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ground truth (netdissect convention" in out and "ground truth (present convention" in out
    assert "attention" in out and "random" in out and "syn_P@1" in out
    ev = json.loads((run / "evaluation.json").read_text())
    assert {r["convention"] for r in ev["rows"]} == {"netdissect", "present"}


def test_cli_evaluate_reports_novel_concepts_and_the_ceiling_without_them(tmp_path, tiny_model, squares, tiny_glove,
                                                                         monkeypatch, capsys):
    import copy

    import lavise.data
    import lavise.models
    from lavise.embeddings import load_embeddings
    from lavise.run import RunFolder
    from lavise.train import train_explainer

    held = squares.concepts[0]
    seen = copy.copy(squares)  # the same images, one concept never annotated
    seen.concepts = [c for c in squares.concepts if c != held]
    seen.annotations = lambda i: [a for a in squares.annotations(i) if a.concept != held]
    run = tmp_path / "run"
    train_explainer(tiny_model, seen, load_embeddings(f"glove:{tiny_glove}"), out=run,
                    options=TrainOptions(epochs=2, batch_size=16), extract=X)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "embeddings": f"glove:{tiny_glove}"}))
    RunFolder(run).record("explainer", ["explainer.safetensors", "config.json", "train_log.csv"])
    monkeypatch.setattr(lavise.data, "load_dataset", lambda spec, **kw: squares)
    monkeypatch.setattr(lavise.models, "load_model", lambda spec, weights=None: tiny_model)
    assert main(["evaluate", str(run), "--dataset", "squares", "--methods", "activation", "--baselines", "random",
                 "--vocabulary", "concepts", "-p", "5", "--convention", "present", "--iou-threshold", "0.001",
                 "--workers", "0", "--quiet"]) == 0  # a low threshold: filters whose truth mixes both kinds
    out = capsys.readouterr().out
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["settings"]["novel_concepts"] == [held]
    truth = [f["ground_truth_present"] for f in ev["filters"] if f["ground_truth_present"]]
    share = np.array([sum(c != held for c in t) / len(t) for t in truth])
    assert 0 < share.mean() < 1 and 0 < (share > 0).mean() < 1  # the tiny run has filters of every kind
    row = next(r for r in ev["rows"] if r["name"] == "activation")
    assert row["ceiling_R"] == pytest.approx(share.mean()) and row["ceiling_P@1"] == pytest.approx((share > 0).mean())
    assert f"at most R@k {share.mean():.3f} and P@1 {(share > 0).mean():.3f}" in out


@pytest.fixture(scope="module")
def other_weights():
    """The tiny CNN with weights other than those the run was trained with (same layers, same preprocessing)."""
    from conftest import TinyNet
    from lavise.data.transforms import Preprocess
    from lavise.models import wrap_model

    net = TinyNet()
    with torch.no_grad():
        net.block1[0].weight.mul_(-1)
    return wrap_model(net, Preprocess(resize=64, crop=64), default_layer="block2", name="tiny")


def test_evaluating_with_other_weights_is_refused(run, tiny_model, other_weights, squares, tmp_path, monkeypatch,
                                                  capsys):
    # Fails on the old code: evaluate never compared the model with the run's model_digest, so it scored the
    # explainer on features of weights it was not trained on.
    import shutil

    import lavise.data
    import lavise.models
    from lavise.errors import RunError

    assert other_weights.weights_digest != tiny_model.weights_digest
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5), methods=("activation",),
                          baselines=("random",))
    with pytest.raises(RunError, match="differ from those the explainer was trained on"):
        # a fresh cache folder, so that the features must be extracted with the model given
        evaluate_run(run, squares, options, X, target=other_weights, cache_dir=tmp_path / "cache", save=False)
    assert not list((tmp_path / "cache").glob("*/meta.json"))  # refused before any cache was written
    # the command line: the model its config names no longer has the trained weights
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "explainer.safetensors", "train_log.csv", "manifest.json"):  # no caches
        shutil.copy(run / name, copy / name)
    monkeypatch.setattr(lavise.data, "load_dataset", lambda spec, **kw: squares)
    monkeypatch.setattr(lavise.models, "load_model", lambda spec, weights=None: other_weights)
    assert main(["evaluate", str(copy), "--dataset", "squares", "--methods", "activation", "--baselines", "random",
                 "--vocabulary", "concepts", "-p", "5", "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lavise: error:") and "differ from those" in err[0], err
    assert not (copy / "evaluation.json").exists()


def test_a_filter_capped_on_one_cell_finds_the_concept_under_it():
    """ReLU6-like filter 0 reaches its cap (6) on one interior cell per image, exactly over a planted 'ball';
    T_u is then its maximum (saturated). Thresholding the upsampled map gave it an empty mask and no ground
    truth; upsampling its binary mask gives the cell, and IoU with the ball computed by hand from the bilinear
    weights. Filter 1, ordinary, keeps NetDissect's rule."""
    rng = np.random.default_rng(0)
    n, h = 6, 7
    f = rng.uniform(0, 2, size=(n, 2, h, h)).astype(np.float32)
    cells = [(3, 3), (2, 4), (4, 2), (3, 1), (1, 3), (5, 5)]
    pairs, masks = [], []
    for r, (i, j) in enumerate(cells):
        f[r, 0, i, j] = 6.0
        pairs.append((r, 0))
        masks.append(_box(8 * i, 8 * i + 8, 8 * j, 8 * j + 8))
    cache = _cache(f, pairs, masks, ["ball"])
    thr = Thresholds.from_stats(cache.stats)
    assert thr.inclusive[0] and thr.values[0] == 6.0 and not thr.inclusive[1]
    gt = compute_ground_truth(cache, batch_images=4)
    W = bilinear_weights(7, S)
    inter = union = 0
    for (i, j) in cells:
        act = np.array([[W[a][i] * W[b][j] >= 0.5 for b in range(S)] for a in range(S)])
        ball = _box(8 * i, 8 * i + 8, 8 * j, 8 * j + 8)
        inter += (act & ball).sum()
        union += (act | ball).sum()
    assert gt.iou()[0, 0] == pytest.approx(inter / union)
    assert inter / union > 0.5 and gt.labels()[0] == ["ball"]



def test_split_rows_are_two_disjoint_seeded_halves():
    from lavise.evaluate.core import split_rows

    a, b = split_rows(7, seed=3)
    assert len(a) == 4 and len(b) == 3  # the explain half takes the odd row
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(7)) and not set(a) & set(b)
    assert (np.diff(a) > 0).all() and (np.diff(b) > 0).all()
    assert [x.tolist() for x in split_rows(7, 3)] == [a.tolist(), b.tolist()]
    assert [x.tolist() for x in split_rows(7, 4)] != [a.tolist(), b.tolist()]


def test_ground_truth_of_some_rows_equals_that_of_a_cache_of_those_rows(hand):
    """Rows 0 and 2 of the hand fixture: the same counts as a cache holding only those two images."""
    cache, thr = hand
    part = compute_ground_truth(cache, thr, rows=np.array([0, 2]))
    f = np.asarray(cache.features, dtype=np.float32)[[0, 2]]
    masks = [_box(0, 10, 0, 20), _box(40, 50, 40, 50)]
    alone = compute_ground_truth(_cache(f, [(0, 0), (1, 0)], masks, ["cat", "dog"]), thr)
    assert part.images == alone.images == 2
    np.testing.assert_allclose(part.iou(), alone.iou())
    np.testing.assert_allclose(part.iou("present"), alone.iou("present"))
    # filter 0 on images 0 and 2: |A|=100, cat I=100, |M|=300 -> 100/300; dog absent from both images
    assert part.iou()[0, 0] == pytest.approx(100 / 300) and part.iou()[0, 1] == 0


def test_ranked_by_iou_lists_concepts_with_positive_iou_best_first(hand):
    from lavise.evaluate.core import ranked_by_iou

    cache, thr = hand
    gt = compute_ground_truth(cache, thr)
    # filter 0: cat 100/350 > dog 50/200; filter 1: cat only (dog 0); filter 2 dead
    assert ranked_by_iou(gt, 5) == [["cat", "dog"], ["cat"], []]
    assert ranked_by_iou(gt, 1) == [["cat"], ["cat"], []]


def test_explanations_on_the_explain_half_use_only_its_images(run, tiny_model, squares):
    from lavise.embeddings import load_embeddings
    from lavise.evaluate.core import split_rows
    from lavise.explain import explain_cache
    from lavise.features import extract_features
    from lavise.train import TrainedExplainer

    ex = TrainedExplainer.load(run)
    vocab = load_embeddings(ex.config["embeddings"]).vocabulary("concepts", concepts=ex.concepts)
    cache = extract_features(tiny_model, "block2", squares, run / "cache", list(squares.concepts), X)
    half, other = split_rows(len(cache), 0)
    fx = explain_cache(ex, cache, vocab, ExplainOptions(p=5, s=1, x=3), extract=X, rows=half)
    allowed = {cache.image_ids[int(r)] for r in half}
    used = {i["image_id"] for f in fx for i in f.images}
    assert used and used <= allowed
    assert all(len(f.images) == 5 for f in fx)


def test_held_out_evaluation_has_controls_and_ceilings(run, tiny_model, squares):
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=2, x=3), methods=("attention",))
    ev = evaluate_run(run, squares, options, X, reference=squares, target=tiny_model, save=False)
    rows = [r for r in ev.rows if r["convention"] == "netdissect"]
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("attention", "method"), ("netdissect", "baseline"), ("random", "baseline"), ("constant", "control"),
        ("names", "control"), ("shuffled", "control"), ("ceiling: ground truth of the explain half", "ceiling"),
        ("ceiling: NetDissect on the explain half", "ceiling")]
    s = ev.settings
    assert s["split"] == "halves" and s["explain_images"] + s["score_images"] == len(squares) == 24
    assert not set(s["explain_image_ids"]) & set(s["score_image_ids"])
    assert ev.ground_truth["netdissect"]["images"] == s["score_images"]
    for r in rows:
        assert 0 <= r["AUPRC"] <= 1 and "exact_P@1" in r and r["match"] == "lemma"
    constant = next(r for r in rows if r["name"] == "constant")
    per = {f["unit"]: f["words"]["constant"] for f in ev.filters}
    assert len({tuple(w) for w in per.values()}) == 1  # the same list for every filter
    assert constant["filters"] == rows[0]["filters"]


def test_random_init_control_runs_the_pipeline_on_a_reinitialised_copy(run, tiny_model, squares):
    from lavise.evaluate.core import random_init_copy
    from lavise.run import Run

    r = Run.open(run, target=tiny_model)
    rnd = random_init_copy(r.target, r.layer, seed=0)
    assert rnd.weights_digest != tiny_model.weights_digest and rnd.default_layer == r.layer
    assert random_init_copy(r.target, r.layer, seed=0).weights_digest == rnd.weights_digest  # seeded
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=1, x=3), methods=("attention",),
                          baselines=(), controls=("random-init",), conventions=("netdissect",))
    ev = evaluate_run(run, squares, options, X, reference=squares, target=tiny_model, save=False)
    row = next(x for x in ev.rows if x["name"] == "random-init")
    assert row["kind"] == "control" and "random init" in row["source"] and 0 <= row["R@10"] <= 1
    assert tiny_model.weights_digest == r.target.weights_digest  # the run's own model is untouched


def test_netdissect_lite_baseline_scores_dissect_lite_labels(run, tiny_model, squares, tmp_path):
    from lavise.dissect import dissect
    from lavise.run import Run

    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=1, x=3), methods=("attention",),
                          baselines=("netdissect-lite",), controls=(), conventions=("netdissect",))
    ev = evaluate_run(run, squares, options, X, reference=squares, target=tiny_model, save=False)
    row = next(x for x in ev.rows if x["name"] == "netdissect-lite")
    assert row["kind"] == "baseline" and "NetDissect-Lite" in row["source"]
    layer = Run.open(run, target=tiny_model).layer
    _, gt = dissect(tiny_model, layer, squares, tmp_path / "c", 0.04, "netdissect-lite", X)
    want = gt.labels("netdissect-lite")
    assert any(want)  # the tiny model has lite labels to compare
    assert all(f["words"]["netdissect-lite"] == want[f["unit"]][:20] for f in ev.filters)
    assert EvalOptions().baselines == ("netdissect", "random")  # one more extraction: opt-in


def test_evaluate_reports_calibration_of_a_calibrated_run(tmp_path, tiny_model, squares, tiny_glove):
    from dataclasses import replace

    from lavise.evaluate.core import confidence_report
    from lavise.explain.confidence import FEATURES, Calibrator
    from lavise.run import Run
    from lavise.train import train_explainer

    trained = train_explainer(tiny_model, squares, f"glove:{tiny_glove}", out=tmp_path / "run", extract=X,
                              options=TrainOptions(epochs=2, batch_size=16, heads=1, calibrate=False))
    # a hand-made calibrator: confidence grows with the vote share, fitted for p=5, s=3
    cal = Calibrator((0.0,) * 6, (1.0,) * 6, (3.0, 0, 0, 0, 0, 0), -1.0, FEATURES[:6],
                     {"method": "attention", "p": 5, "s": 3, "votes": ExplainOptions().votes})
    replace(trained, calibrator=cal).save(tmp_path / "run")
    options = EvalOptions(explain=ExplainOptions(vocabulary="concepts", p=5, s=3, x=3), methods=("attention",),
                          baselines=(), controls=(), conventions=("netdissect",))
    ev = evaluate_run(tmp_path / "run", squares, options, X, target=tiny_model, save=False)
    c = ev.confidence["attention"]
    row = next(r for r in ev.rows if r["name"] == "attention")
    assert row["ECE"] == c["ECE"] and 0 <= c["ECE"] <= 1 and sum(b["items"] for b in c["reliability"]) == c["filters"]
    assert sum(q["items"] for q in c["quartiles"]) == c["filters"]
    # the same numbers from the definition, on the filters' own confidences
    from lavise.dissect import compute_ground_truth
    from lavise.evaluate import lemma, split_rows
    from lavise.explain import explain_cache

    run = Run.open(tmp_path / "run", target=tiny_model)
    cache = run.cache(squares, list(squares.concepts), X)
    ex, sc = split_rows(len(cache), 0)
    fx = explain_cache(run.explainer, cache, run.vocabulary(options.explain, list(squares.concepts)),
                       options.explain.replace(method="attention", x=20), None, X, rows=ex)
    truth = compute_ground_truth(cache, rows=sc).labels("netdissect")
    want = confidence_report([f for f in fx if f.confidence is not None], truth, lemma)
    assert want["ECE"] == pytest.approx(c["ECE"]) and want["interpretable"] == c["interpretable"]
    from lavise.plots import plot_reliability

    fig, ax = plot_reliability(c, label="attention")
    assert ax.get_xlabel().startswith("calibrated confidence")
