import numpy as np
import pytest
import torch

from lavise.embeddings import load_embeddings
from lavise.errors import LaviseError
from lavise.features import FeatureCache
from lavise.options import ExtractOptions, TrainOptions
from lavise.train import small_mask_pooled, train_explainer

X = ExtractOptions(workers=0, show_progress=False)


class _Rows:
    def __init__(self, a):
        self.a = a

    def rows(self, idx):
        return self.a[np.asarray(idx)]


def _identity_cache(masks):
    """3x3 maps whose channel k is 1 on cell k only, so GAP(F ⊙ S) * 9 gives back the cells S."""
    n = len(masks)
    feats = np.broadcast_to(np.eye(9, dtype=np.float16).reshape(1, 9, 3, 3), (n, 9, 3, 3)).copy()
    return FeatureCache(None, {"shape": [n, 9, 3, 3]}, _Rows(feats), None, [], np.arange(n), None, ["a"],
                        np.array([[i, 0] for i in range(n)]), np.asarray(masks, np.float16).reshape(n, 3, 3))


def test_small_masks_are_one_to_three_half_covered_cells():
    m0 = np.zeros(9)
    m0[[0, 1, 2, 4]] = [1.0, 0.5, 0.75, 1.0]
    m0[8] = 0.3  # under half covered: never chosen while other cells are
    m1 = np.zeros(9)
    m1[[3, 7]] = [0.2, 0.4]  # no cell half covered: the most covered one
    m2 = np.zeros(9)
    m2[5] = 0.6
    cache = _identity_cache([m0, m1, m2])
    out = small_mask_pooled(cache, 300, torch.Generator().manual_seed(0))
    assert out.shape == (300, 3, 9)
    cells = out * 9
    assert torch.allclose(cells, cells.round(), atol=1e-5) and set(cells.round().unique().tolist()) <= {0.0, 1.0}
    picked = [[set(np.flatnonzero(c[p].round().numpy())) for c in cells] for p in range(3)]
    assert all(s and s <= {0, 1, 2, 4} and len(s) <= 3 for s in picked[0])
    assert {len(s) for s in picked[0]} == {1, 2, 3} and set().union(*picked[0]) == {0, 1, 2, 4}
    assert all(s == {7} for s in picked[1]) and all(s == {5} for s in picked[2])
    again = small_mask_pooled(cache, 300, torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and not torch.equal(out, small_mask_pooled(cache, 300, torch.Generator().manual_seed(1)))


def test_small_masks_add_training_pairs_only(tmp_path, tiny_model, squares, tiny_glove):
    emb = load_embeddings(f"glove:{tiny_glove}")
    opts = TrainOptions(epochs=2, batch_size=16)
    kw = dict(extract=X, cache_dir=tmp_path / "cache")
    plain = train_explainer(tiny_model, squares, emb, options=opts, **kw)
    small = train_explainer(tiny_model, squares, emb, options=opts.replace(small_masks=2), **kw)
    p, s = plain.config["train"], small.config["train"]
    assert (p["small_masks"], s["small_masks"]) == (0, 2)
    assert s["pairs_train"] == 3 * p["pairs_train"] and s["pairs_val"] == p["pairs_val"]
    assert not torch.equal(plain.head.members[0][2].weight, small.head.members[0][2].weight)
    with pytest.raises(LaviseError, match="small-masks"):
        train_explainer(tiny_model, squares, emb, options=opts.replace(small_masks=-1), **kw)


def _noisy_task(seed: int = 0):
    """Random labels: validation loss soon stops improving, so early stopping has something to do."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(240, 16, generator=g), torch.randint(0, 4, (240,), generator=g)
    cv = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    return x[:200], y[:200], x[200:], y[200:], cv


def test_patience_stops_after_that_many_epochs_without_a_new_best_and_keeps_the_best():
    from lavise.train import evaluate_head, fit_head

    xtr, ytr, xva, yva, cv = _noisy_task()
    kw = TrainOptions(heads=1, epochs=60, lr=1e-2, batch_size=32, seed=0)
    head, hist = fit_head(xtr, ytr, xva, yva, cv, kw.replace(patience=3))
    losses = [r["val_loss"] for r in hist]
    best = int(np.argmin(losses))
    assert len(hist) < 60 and len(hist) == best + 1 + 3  # stopped exactly 3 epochs after the last new best
    assert all(v >= losses[best] for v in losses[best + 1:])
    assert evaluate_head(head, xva, yva, cv)["val_loss"] == pytest.approx(losses[best], rel=1e-6)
    _, full = fit_head(xtr, ytr, xva, yva, cv, kw)  # without patience every epoch runs, the same ones first
    assert len(full) == 60 and [r["val_loss"] for r in full[:len(hist)]] == pytest.approx(losses, rel=1e-6)


def test_epochs_and_patience_are_checked(tmp_path, tiny_model, squares, tiny_glove):
    from lavise.train import fit_head

    xtr, ytr, xva, yva, cv = _noisy_task()
    for bad in (0, -2, 1.5):
        with pytest.raises(LaviseError, match="patience"):
            fit_head(xtr, ytr, xva, yva, cv, TrainOptions(heads=1, epochs=5, patience=bad))
    with pytest.raises(LaviseError, match="epochs"):
        fit_head(xtr, ytr, xva, yva, cv, TrainOptions(heads=1, epochs=0))
    emb = load_embeddings(f"glove:{tiny_glove}")
    res = train_explainer(tiny_model, squares, emb, options=TrainOptions(epochs=40, patience=2, batch_size=16),
                          extract=X, cache_dir=tmp_path / "cache")
    t = res.config["train"]
    assert t["patience"] == 2 and t["epochs_run"] == len(res.history) <= 40
    assert t["epochs_run"] == 40 or t["epochs_run"] == t["best_epoch"] + 2
