"""bench/quality_docs.py writes the README's and docs/quality.md's quality figures from the recorded results:
they must be in step, and its pooling of reliability bins must be right."""
import pytest


def test_readme_and_docs_carry_the_recorded_results(qdocs):
    assert qdocs.main(["--check"]) == 0, "run python bench/quality_docs.py after bench/quality.py"


def test_reliability_bins_pool_by_items(qdocs):
    def seed(bins):
        return {"seed": 0, "confidence": {"reliability": [
            {"low": lo, "high": lo + 0.5, "items": n, "confidence": c, "accuracy": a} for lo, n, c, a in bins]}}

    # seed A: 2 items at confidence 0.2, 1 right; 0 in the upper bin. seed B: 2 at 0.1 none right; 4 at 0.8, 3 right
    R = qdocs.Results([seed([(0.0, 2, 0.2, 0.5), (0.5, 0, None, None)]),
                       seed([(0.0, 2, 0.1, 0.0), (0.5, 4, 0.8, 0.75)])])
    pooled = qdocs.pooled_reliability(R)
    low, high = pooled["reliability"]
    assert low["items"] == 4 and low["confidence"] == pytest.approx(0.15) and low["accuracy"] == pytest.approx(0.25)
    assert high["items"] == 4 and high["confidence"] == pytest.approx(0.8) and high["accuracy"] == pytest.approx(0.75)
    # |1 - 0.6| + |3 - 3.2| over 8 items
    assert pooled["ECE"] == pytest.approx((0.4 + 0.2) / 8)
