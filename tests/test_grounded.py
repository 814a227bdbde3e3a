"""Description-grounded AUPRC on hand-made maxima and concept annotations, every value worked out by hand."""
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from lavise.evaluate.grounded import _ap_columns, average_precision, grounded_scores, presence
from lavise.evaluate.metrics import norm
from lavise.features import FeatureCache

# 6 images, 3 filters; cat in images {0, 1}, dog in images {1, 3, 5}
CAT, DOG = [0, 1], [1, 3, 5]
MAXIMA = np.array([
    # filter 0: fires on the cat images   filter 1: "car"   filter 2: "dog", low on the dog images (1 and 3 tie at 2)
    [5, 1, 6],
    [4, 1, 2],
    [1, 1, 5],
    [1, 1, 2],
    [0, 1, 4],
    [0, 1, 0],
], np.float32)
PREDICTIONS = [["cat", "dog"], ["car", "cat"], ["Dog", "cat"]]  # "Dog" matches "dog" under norm

# AP by hand (sklearn: one threshold per distinct score, AP = sum over thresholds of Δrecall * precision)
# filter 0 vs cat: both cat images on top                                               -> 1
# filter 0 vs dog: scores 5|4|1,1|0,0 -> tp 0/1, 1/2 (R 1/3), 2/4 (R 2/3), 3/6 (R 1)     -> (1/2 + 2/4 + 3/6)/3 = 1/2
# filter 2 vs cat: scores 6|5|4|2,2|0 -> tp 1/1 (R 1/2), 1/2, 1/3, 2/5 (R 1), 2/6         -> 1/2 * 1 + 1/2 * 2/5 = 7/10
# filter 2 vs dog: scores 6|5|4|2,2|0 -> tp 0/1, 0/2, 0/3, 2/5 (R 2/3), 3/6 (R 1)         -> 2/3 * 2/5 + 1/3 * 1/2 = 13/30
AP = {(0, "cat"): 1.0, (0, "dog"): 0.5, (2, "cat"): 0.7, (2, "dog"): 13 / 30}


def _cache(maxima, concepts, present):
    """A real FeatureCache with only what the grounded score reads: maxima, pairs, concepts."""
    n, d = maxima.shape
    pairs = [(r, c) for c, rows in enumerate(present) for r in rows]
    pairs = np.asarray(sorted(pairs), np.int64).reshape(-1, 2)
    return FeatureCache(Path("."), {"shape": [n, d, 1, 1]}, None, maxima, [str(i) for i in range(n)], np.arange(n), None,
                        list(concepts), pairs)


def _random_by_hand(units, usable_names, seed, draws):
    """Mean AP of the seeded draws, looked up in the hand table (same draw order as the documented one)."""
    idx = np.random.default_rng(seed).integers(len(usable_names), size=(len(units), draws))
    vals = [AP[(u, usable_names[j])] for i, u in enumerate(units) for j in idx[i]]
    return sum(vals) / len(vals)


def test_average_precision_hand_case():
    # ranks 1..4: hit, miss, hit, miss -> precision at the hits 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 0])) == 1.0
    assert np.isnan(average_precision(np.array([0.9, 0.8]), np.array([0, 0])))


def test_ap_columns_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 200).astype(np.float64)  # many ties, like ReLU maxima at 0
    labels = rng.random((200, 6)) < [0.01, 0.1, 0.3, 0.5, 0.9, 0.0]
    labels[0, 0] = True
    got = _ap_columns(scores, labels)
    want = [average_precision_score(labels[:, k], scores) for k in range(5)]
    assert got[:5] == pytest.approx(want)
    assert np.isnan(got[5])


def test_presence_and_rows():
    cache = _cache(MAXIMA, ["cat", "dog"], [CAT, DOG])
    want = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [0, 0], [0, 1]], bool)
    assert (presence(cache) == want).all()
    assert (presence(cache, np.array([0, 1, 2, 3])) == want[:4]).all()
    assert (presence(cache, np.array([1, 5])) == want[[1, 5]]).all()


def test_grounded_scores_by_hand():
    cache = _cache(MAXIMA, ["cat", "dog"], [CAT, DOG])
    out = grounded_scores(PREDICTIONS, cache, norm, seed=7, draws=20)
    # filters 0 ("cat") and 2 ("dog") are grounded; filter 1's "car" is no concept of the dataset
    assert out["grounded_filters"] == 2
    assert out["AUPRC"] == pytest.approx((1.0 + 13 / 30) / 2)
    # prevalence: cat 2/6, dog 3/6
    assert out["AUPRC_prevalence"] == pytest.approx((2 / 6 + 3 / 6) / 2)
    rand = _random_by_hand([0, 2], ["cat", "dog"], seed=7, draws=20)
    assert out["AUPRC_random"] == pytest.approx(rand)
    assert out["AUPRC_ratio"] == pytest.approx(out["AUPRC"] / rand)
    # another seed, other draws: still the mean of the hand values of its own draws
    assert grounded_scores(PREDICTIONS, cache, norm, seed=8)["AUPRC_random"] == pytest.approx(
        _random_by_hand([0, 2], ["cat", "dog"], seed=8, draws=20))


def test_grounded_scores_rows_restriction():
    cache = _cache(MAXIMA, ["cat", "dog"], [CAT, DOG])
    rows = np.array([0, 1, 2, 3])
    # first 4 images: cat {0, 1}, dog {1, 3}
    # filter 0 scores 5|4|1,1 vs cat -> 1; filter 2 scores 6|5|2,2 vs dog -> tp 0/1, 0/2, 2/4 (R 1) -> 1/2
    out = grounded_scores(PREDICTIONS, cache, norm, rows=rows, draws=0)
    assert out["grounded_filters"] == 2
    assert out["AUPRC"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["AUPRC_prevalence"] == pytest.approx((2 / 4 + 2 / 4) / 2)
    assert out["AUPRC_random"] == 0.0 and out["AUPRC_ratio"] == 0.0  # no draws: the control is undefined
    assert average_precision(MAXIMA[rows, 2], presence(cache, rows)[:, 1]) == pytest.approx(0.5)


def test_concept_in_every_image_or_none_is_skipped():
    # sky is in all 6 images, unicorn in none: neither can be scored nor drawn
    cache = _cache(MAXIMA, ["cat", "dog", "sky", "unicorn"], [CAT, DOG, range(6), []])
    out = grounded_scores([["sky"], ["unicorn"], ["dog"]], cache, norm, seed=1, draws=20)
    assert out["grounded_filters"] == 1
    assert out["AUPRC"] == pytest.approx(13 / 30)
    assert out["AUPRC_prevalence"] == pytest.approx(3 / 6)
    assert out["AUPRC_random"] == pytest.approx(_random_by_hand([2], ["cat", "dog"], seed=1, draws=20))

    none = grounded_scores([["sky"], ["unicorn"], []], cache, norm)
    assert none == {"grounded_filters": 0, "AUPRC": 0.0, "AUPRC_random": 0.0, "AUPRC_prevalence": 0.0, "AUPRC_ratio": 0.0}


def test_concepts_sharing_a_match_key_count_as_one():
    # "Cat" and "cat" share the key "cat": present where either is, so filter 0's ranking is judged on images {0, 1}
    cache = _cache(MAXIMA, ["Cat", "cat", "dog"], [[0], [1], DOG])
    out = grounded_scores([["cat"], [], ["dog"]], cache, norm, draws=0)
    assert out["grounded_filters"] == 2
    assert out["AUPRC"] == pytest.approx((1.0 + 13 / 30) / 2)
