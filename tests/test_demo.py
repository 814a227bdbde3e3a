"""The demo's whole path (real EfficientNet-Lite0, real GloVe, built-in scenes) at a very small size."""
import json

from lavise.demo import run_demo
from lavise.embeddings import load_embeddings
from lavise.options import ExtractOptions


def test_demo_explains_every_filter_with_real_words(tmp_path, capsys):
    out = tmp_path / "demo"
    lines = []
    ex = run_demo(out, reference_size=48, target_size=32, epochs=2, extract=ExtractOptions(workers=0, show_progress=False),
                  echo=lines.append)
    assert len(ex.filters) == 1280 and ex.layer == "_head_act"
    vocab = set(load_embeddings("glove-6b-50d").vocabulary("nouns", concepts=json.loads((out / "config.json").read_text())["concepts"],
                                                          size=10000).words)
    for f in ex.filters:
        assert not f.dead
        assert 1 <= len(f.words) <= 10, (f.unit, f.words)  # one vote per top image: a filter may agree on few words
        assert {w["word"] for w in f.words} <= vocab
    for name in ["explanations.json", "explanations.csv", "config.json", "explainer.safetensors", "report.html"]:
        assert (out / name).is_file(), name
    assert any("done in" in line for line in lines)
    assert "builtin:scenes" not in capsys.readouterr().err  # no progress bar of the scene generator under --quiet
