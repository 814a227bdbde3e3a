"""bench/quality.py computes the head's outputs once per method and reuses them for every vocabulary and
word-selection setting; the shortcut must give explain_cache's words exactly (it silently drifted once, when
explain_cache began running a folded head)."""
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(BENCH))
    try:
        import quality
        yield quality
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("method", ["attention", "masked-attention", "activation", "original"])
@pytest.mark.parametrize("p,s", [(5, 1), (3, 2)])
def test_reused_head_outputs_give_explain_cache_words(quality, tmp_path, tiny_model, squares, tiny_glove, method, p, s):
    from lavise.embeddings import load_embeddings
    from lavise.explain import explain_cache
    from lavise.features import extract_features
    from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
    from lavise.train import train_explainer

    emb = load_embeddings(f"glove:{tiny_glove}")
    extract = ExtractOptions(workers=0, show_progress=False)
    trained = train_explainer(tiny_model, squares, emb, out=tmp_path / "run",
                              options=TrainOptions(epochs=2, batch_size=16, heads=2), extract=extract)
    cache = extract_features(tiny_model, trained.config["layer"], squares, tmp_path / "cache",
                             concepts=list(squares.concepts), options=extract)
    vocab = emb.vocabulary("concepts", concepts=list(squares.concepts) + ["tree", "sun", "road"])
    units = list(range(cache.shape[0]))
    want = explain_cache(trained, cache, vocab, ExplainOptions(method=method, p=p, s=s, x=4), units, extract)
    mv = quality.method_vectors(trained, cache, method, p, units)
    got = quality.words_from_vectors(mv, cache, vocab, s, 4)
    assert [f.unit for f in got] == [f.unit for f in want]
    assert [f.words for f in got] == [f.words for f in want]
