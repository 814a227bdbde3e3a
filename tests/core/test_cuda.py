"""The GPU path (`device="cuda"`, with and without mixed precision) gives the CPU's results.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``pytest tests/core/test_cuda.py``.
"""
import numpy as np
import pytest
import torch

from lavise.embeddings import load_embeddings
from lavise.explain import compute_thresholds, explain_cache
from lavise.features import cache_key, extract_features
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
from lavise.train import train_explainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def caches(tmp_path_factory, tiny_model, squares):
    root = tmp_path_factory.mktemp("cuda-caches")
    concepts = ["car", "cat", "dog"]
    opts = ExtractOptions(workers=2, show_progress=False)
    cpu = extract_features(tiny_model, "block2", squares, root / "cpu", concepts, opts.replace(device="cpu"))
    gpu = extract_features(tiny_model, "block2", squares, root / "gpu", concepts, opts.replace(device="cuda"))
    amp = extract_features(tiny_model, "block2", squares, root / "amp", concepts, opts.replace(device="cuda", amp=True))
    tiny_model.module.cpu()
    return cpu, gpu, amp


def test_gpu_features_match_the_cpu(caches):
    cpu, gpu, _ = caches
    a, b = cpu.read(np.arange(len(cpu))), gpu.read(np.arange(len(gpu)))
    assert a.shape == b.shape and a.abs().max() > 0
    # float16 storage: equal within its rounding, relative to the largest activation
    assert (a - b).abs().max() <= 2e-3 * a.abs().max()
    assert np.array_equal(cpu.pairs, gpu.pairs)
    assert np.array_equal(np.asarray(cpu.masks_feat), np.asarray(gpu.masks_feat))
    ta, tb = compute_thresholds(cpu), compute_thresholds(gpu)
    assert np.allclose(np.asarray(ta.values), np.asarray(tb.values), rtol=2e-3, atol=1e-4)


def test_mixed_precision_is_close_and_cached_apart(caches, tiny_model, squares):
    cpu, _, amp = caches
    a, b = cpu.read(np.arange(len(cpu))), amp.read(np.arange(len(amp)))
    assert (a - b).abs().max() <= 5e-2 * a.abs().max()  # bfloat16/float16 autocast: about 3 significant digits
    concepts = ["car", "cat", "dog"]
    key = (tiny_model.weights_digest, tiny_model.preprocess.to_dict(), "block2", squares, concepts)
    assert cache_key(*key, True) != cache_key(*key, False)


def test_training_and_explaining_on_gpu(caches, tmp_path, tiny_model, squares, tiny_glove):
    cpu, gpu, _ = caches
    emb = load_embeddings(f"glove:{tiny_glove}")
    res = train_explainer(tiny_model, squares, emb, out=tmp_path / "run", options=TrainOptions(epochs=5, batch_size=16),
                          extract=ExtractOptions(device="cuda", workers=0, show_progress=False))
    tiny_model.module.cpu()
    assert all(v.device.type == "cpu" for v in res.head.state_dict().values())  # saved and loadable anywhere
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    vocab = emb.vocabulary("concepts", concepts=res.concepts)
    opts = ExplainOptions(p=5, s=1)
    on_cpu = explain_cache(res, gpu, vocab, opts, extract=ExtractOptions(show_progress=False))
    on_gpu = explain_cache(res, gpu, vocab, opts, extract=ExtractOptions(device="cuda", show_progress=False))
    assert len(on_gpu) == 16
    for c, g in zip(on_cpu, on_gpu):
        assert [w["word"] for w in c.words] == [w["word"] for w in g.words]
        assert np.allclose([w["similarity"] for w in c.words], [w["similarity"] for w in g.words], atol=1e-4)
        assert c.images == g.images
