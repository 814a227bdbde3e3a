"""bench/quality.py computes the head's outputs once per method and reuses them for every vocabulary and
word-selection setting; the shortcut must give explain_cache's words exactly (it silently drifted once, when
explain_cache began running a folded head)."""
import pytest


def _tiny(tmp_path, tiny_model, squares, tiny_glove, heads):
    """A tiny trained head, its target cache, a vocabulary and the extract options."""
    from lavise.embeddings import load_embeddings
    from lavise.features import extract_features
    from lavise.options import ExtractOptions, TrainOptions
    from lavise.train import train_explainer

    emb = load_embeddings(f"glove:{tiny_glove}")
    extract = ExtractOptions(workers=0, show_progress=False)
    trained = train_explainer(tiny_model, squares, emb, out=tmp_path / "run",
                              options=TrainOptions(epochs=2, batch_size=16, heads=heads), extract=extract)
    cache = extract_features(tiny_model, trained.config["layer"], squares, tmp_path / "cache",
                             concepts=list(squares.concepts), options=extract)
    vocab = emb.vocabulary("concepts", concepts=list(squares.concepts) + ["tree", "sun", "road"])
    return trained, cache, vocab, extract


@pytest.mark.parametrize("method", ["attention", "masked-attention", "activation", "original"])
@pytest.mark.parametrize("p,s,votes", [(5, 1, "count"), (3, 2, "count"), (4, 2, "similarity")])
def test_reused_head_outputs_give_explain_cache_words(quality, tmp_path, tiny_model, squares, tiny_glove, method, p, s,
                                                      votes):
    from lavise.explain import explain_cache
    from lavise.options import ExplainOptions

    trained, cache, vocab, extract = _tiny(tmp_path, tiny_model, squares, tiny_glove, heads=2)
    units = list(range(cache.shape[0]))
    want = explain_cache(trained, cache, vocab, ExplainOptions(method=method, p=p, s=s, x=4, votes=votes), units,
                         extract)
    mv = quality.method_vectors(trained, cache, method, p, units)
    got = quality.words_from_vectors(mv, cache, vocab, s, 4, votes=votes)
    assert [f.unit for f in got] == [f.unit for f in want]
    assert [f.words for f in got] == [f.words for f in want]


def test_hubness_shortcut_gives_explain_cache_words(quality, tmp_path, tiny_model, squares, tiny_glove):
    from lavise.explain import explain_cache
    from lavise.options import ExplainOptions

    trained, cache, vocab, extract = _tiny(tmp_path, tiny_model, squares, tiny_glove, heads=1)
    units = list(range(cache.shape[0]))
    options = ExplainOptions(method="masked-attention", p=4, s=2, x=4, hubness=2.0)
    want = explain_cache(trained, cache, vocab, options, units[:3], extract)  # r_w from every filter's outputs
    got = quality.words_from_vectors(quality.method_vectors(trained, cache, options.method, 4, units), cache, vocab,
                                     2, 4, trained, hubness=2.0)
    assert [f.words for f in want] == [f.words for f in got[:3]]
    plain = explain_cache(trained, cache, vocab, options.replace(hubness=0.0), units[:3], extract)
    assert [f.words for f in plain] != [f.words for f in want]  # the case tells the correction apart


def test_roles_never_share_a_seed(quality):
    with pytest.raises(SystemExit, match="other role"):
        quality.main(["--role", "validation", "--seeds", "0"])
    with pytest.raises(SystemExit, match="other role"):
        quality.main(["--seeds", "1", "100"])


def test_variant_labels_and_grid(quality):
    assert quality.Variant().label() == "defaults"
    assert quality.Variant(heads=1, p=25).label() == "p=25, heads=1"
    grid = quality.validation_grid()
    for field, variants in grid.items():
        assert quality.Variant() in variants, field  # the current default competes in every factor
        assert all(v.label() == "defaults" or v.label().startswith(field + "=") for v in variants)
        assert len(set(variants)) == len(variants) >= 2
    assert {v.train_tag for v in grid["heads"]} == {"h1-e30", "h3-e30", "h5-e30"}


def test_grid_specs_are_typed_like_the_defaults(quality):
    grid = quality.parse_grid(["p=50,150", "patience=None,5", "hubness=0,0.5", "method=attention"])
    assert grid == {"p": [50, 150], "patience": [None, 5], "hubness": [0.0, 0.5], "method": ["attention"]}
    with pytest.raises(SystemExit, match="FIELD=V1,V2"):
        quality.parse_grid(["q=1"])
    assert {v.p for v in quality.validation_grid(grid)["p"]} == {quality.Variant().p, 50, 150}


def test_a_default_changes_only_to_an_alternative_better_on_every_seed(quality):
    def row(name, *per_seed):
        return {"name": name, "decision": (sum(per_seed) / len(per_seed), 0.0), "per_seed": {"decision": list(per_seed)}}

    current = row("defaults", 0.40, 0.50, 0.45)
    noisy = row("p=100", 0.60, 0.49, 0.46)  # higher mean, but worse on one seed
    steady = row("p=25", 0.41, 0.51, 0.46)
    assert quality.decide([current, noisy])["name"] == "defaults"
    assert quality.decide([current, noisy, steady])["name"] == "p=25"
    assert quality.decide([current, steady, row("p=10", 0.42, 0.52, 0.47)])["name"] == "p=10"
