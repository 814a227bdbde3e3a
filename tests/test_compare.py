"""Group comparison (bias analysis, paper §4.6) and model comparison.

The planted-bias test trains and explains a real tiny CNN with the pipeline on
synthetic scenes with two concept families (warm-coloured "food" objects and
cool-coloured "other" objects), then compares two groups of target images that
differ only in how often one family appears. The top-ranked filters must be
explained by words of the planted family, and planting the other family must
move the ranking to the other family's words.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch import nn

matplotlib.use("Agg")

from conftest import TinyNet  # noqa: E402
from lavise.cli import main  # noqa: E402
from lavise.compare import (  # noqa: E402
    GroupComparison,
    ModelComparison,
    adjust_pvalues,
    chi_square,
    compare_groups,
    compare_models,
    read_groups_csv,
    two_proportion_z,
)
from lavise.data import load_dataset  # noqa: E402
from lavise.data.base import Annotation, ConceptDataset  # noqa: E402
from lavise.data.transforms import Preprocess  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.errors import DatasetError, RunError  # noqa: E402
from lavise.explain import explain_filters  # noqa: E402
from lavise.models import wrap_model  # noqa: E402
from lavise.options import CompareOptions, ExplainOptions, ExtractOptions, TrainOptions  # noqa: E402
from lavise.plots import plot_group_comparison, plot_model_comparison  # noqa: E402
from lavise.run import Run  # noqa: E402
from lavise.train import train_explainer  # noqa: E402

FOOD = {"pizza": (225, 40, 35), "bread": (240, 150, 25), "banana": (235, 225, 40)}
OTHER = {"car": (35, 60, 225), "tree": (35, 185, 60), "boat": (150, 50, 205)}
COLOURS = {**FOOD, **OTHER}
QUIET = ExtractOptions(workers=0, show_progress=False)


# ---------------------------------------------------------------------------- statistics

def test_two_proportion_z_matches_the_textbook_formula():
    k = np.array([[30, 10, 0, 100], [10, 10, 0, 50]])
    n = np.array([100, 50])
    z, p = two_proportion_z(k, n)
    p1, p2, pp = 0.3, 0.2, 40 / 150
    expect = (p1 - p2) / np.sqrt(pp * (1 - pp) * (1 / 100 + 1 / 50))
    assert z[0] == pytest.approx(expect)
    assert p[0] == pytest.approx(2 * stats.norm.sf(abs(expect)))
    assert z[1] < 0  # 10% vs 20%
    assert z[2] == 0 and p[2] == 1  # never qualified: no evidence either way
    assert z[3] == 0 and p[3] == 1  # always qualified


def test_chi_square_matches_scipy_for_every_filter():
    rng = np.random.default_rng(0)
    n = np.array([40, 55, 70])
    k = np.stack([rng.integers(0, m + 1, size=6) for m in n])
    stat, p, dof = chi_square(k, n)
    assert dof == 2
    for u in range(6):
        ref = stats.chi2_contingency(np.stack([k[:, u], n - k[:, u]], 1), correction=False)
        assert stat[u] == pytest.approx(ref.statistic)
        assert p[u] == pytest.approx(ref.pvalue)
    # two groups: chi-square without continuity correction is z squared
    z, pz = two_proportion_z(k[:2], n[:2])
    s2, p2, _ = chi_square(k[:2], n[:2])
    assert np.allclose(s2, z ** 2) and np.allclose(p2, pz)


def test_multiple_testing_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    bh = adjust_pvalues(p, "bh")
    # sorted: .005 .01 .03 .04 .5 -> *5/rank: .025 .025 .05 .05 .5
    assert np.allclose(bh, [0.025, 0.05, 0.05, 0.025, 0.5])
    holm = adjust_pvalues(p, "holm")
    # sorted *(5,4,3,2,1): .025 .04 .09 .09(max) .5
    assert np.allclose(holm, [0.04, 0.09, 0.09, 0.025, 0.5])
    assert np.array_equal(adjust_pvalues(p, "none"), p)
    assert (bh >= p).all() and (holm >= bh).all()


# ---------------------------------------------------------------------------- planted bias

def _draw(rng, names, h=64, w=80):
    img = rng.integers(90, 150, size=(h, w, 3), dtype=np.uint8)
    anns = []
    for c in names:
        s = int(rng.integers(14, 24))
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        m = np.zeros((h, w), bool)
        m[y:y + s, x:x + s] = True
        for a in anns:  # later objects occlude earlier ones
            a.mask[m] = False
        img[m] = COLOURS[c]
        anns.append(Annotation(c, m))
    return img, anns


class ObjectsDataset(ConceptDataset):
    """Reference scenes with 1-2 objects of either family and exact masks."""

    kind = "objects"

    def __init__(self, root, n, seed):
        super().__init__(root, f"objects:{root}")
        rng = np.random.default_rng(seed)
        root.mkdir(parents=True, exist_ok=True)
        self._anns = []
        for i in range(n):
            names = [str(c) for c in rng.choice(list(COLOURS), size=int(rng.integers(1, 3)), replace=False)]
            img, anns = _draw(rng, names)
            p = root / f"r{i:03d}.png"
            Image.fromarray(img).save(p)
            self.items.append((p.name, p, None))
            self._anns.append(anns)
        self.concepts = sorted(COLOURS)

    def annotations(self, i):
        return list(self._anns[i])


def _planted_folder(root, planted, filler, seed, n=100, rates=(0.6, 0.1)):
    """Two groups (class subfolders) alike except how often a ``planted`` object is added to a ``filler`` object."""
    rng = np.random.default_rng(seed)
    for group, rate in zip(("biased", "control"), rates):
        (root / group).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            names = [str(rng.choice(list(filler)))]
            if rng.random() < rate:
                names.append(str(rng.choice(list(planted))))
            Image.fromarray(_draw(rng, names)[0]).save(root / group / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("planted")
    words = list(COLOURS)  # one-hot vectors: the families are not close in embedding space
    glove = base / "glove.txt"
    glove.write_text("".join(f"{w} {' '.join('1' if j == i else '0' for j in range(len(words)))}\n"
                             for i, w in enumerate(words)))
    torch.manual_seed(0)
    model = wrap_model(TinyNet(), Preprocess(resize=64, crop=64), default_layer="block2", name="tiny")
    run = base / "run"
    # 300 reference images: with 150 the head reached only 0.3-0.6 validation top-1 among 6 concepts, so which
    # family won depended on the initialisation
    train_explainer(model, ObjectsDataset(base / "ref", 300, 0), load_embeddings(f"glove:{glove}"), out=run,
                    options=TrainOptions(epochs=30), extract=QUIET)
    return {"base": base, "run": run, "model": model,
            "food": _planted_folder(base / "food", FOOD, OTHER, seed=1),
            "other": _planted_folder(base / "other", OTHER, FOOD, seed=2)}


def _explain(planted, folder):
    ds = load_dataset(f"folder:{folder}")
    explain_filters(planted["run"], ds, ExplainOptions(p=10, s=2, x=3, vocabulary="concepts"), QUIET,
                    target=planted["model"])
    return ds


@pytest.mark.parametrize("family", ["food", "other"])
def test_planted_bias_top_filters_are_explained_by_the_planted_family(planted, family, tmp_path):
    words = set(FOOD if family == "food" else OTHER)
    ds = _explain(planted, planted[family])
    res = compare_groups(planted["run"], ds, out=tmp_path, extract=QUIET)
    assert res.groups == ["biased", "control"] and res.sizes == {"biased": 100, "control": 100}
    top = res.top(3)
    # the filter with the largest difference fires far more often on the biased group, significantly
    assert top[0].difference > 10 and top[0].q_value < 0.01
    assert top[0].top_word in words, [(f.unit, f.words) for f in top]
    # and the top-ranked filters are explained by words of the planted family
    assert sum(f.top_word in words for f in top) >= 2, [(f.unit, f.words) for f in top]
    # ranking: by |difference|, every filter listed once
    diffs = [abs(f.difference) for f in res.filters]
    assert diffs == sorted(diffs, reverse=True)
    assert sorted(f.unit for f in res.filters) == list(range(16))
    # examples are qualified images of the right group
    for g in res.groups:
        assert all(i.startswith(f"{g}/") for i in top[0].examples[g])
    assert len(top[0].examples["biased"]) == 4


def test_compare_cli_writes_ranked_json_csv_and_figure(planted, tmp_path, capsys):
    _explain(planted, planted["food"])
    groups = tmp_path / "groups.csv"
    files = sorted((planted["food"]).glob("*/*.png"))
    with groups.open("w", newline="") as fh:  # the same groups, as a CSV, under other names, one image left out
        w = csv.writer(fh)
        w.writerow(["image", "group"])
        for p in files[1:]:
            w.writerow([p.relative_to(planted["food"]).as_posix(), "with food" if p.parent.name == "biased" else "without"])
    # The CLI loads the model from the run's config, but the tiny model is in memory: the cache from
    # `explain` must be reused, so no model is needed.
    out = tmp_path / "cmp"
    assert main(["compare", str(planted["run"]), "--images", f"folder:{planted['food']}", "--groups", str(groups),
                 "--out", str(out), "--top", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "two-proportion z-test" in printed and "unit" in printed
    data = json.loads((out / "compare.json").read_text())
    assert data["groups"] == ["with food", "without"] and data["sizes"] == {"with food": 99, "without": 100}
    ranks = [f["rank"] for f in data["filters"]]
    assert ranks == list(range(1, 17))
    f0 = data["filters"][0]
    assert {"unit", "percentages", "statistic", "p_value", "q_value", "words"} <= set(f0)
    assert f0["words"][0] in FOOD
    assert sum(bool(f["examples"]) for f in data["filters"]) == 5
    rows = list(csv.DictReader((out / "compare.csv").read_text().splitlines()))
    assert [int(r["unit"]) for r in rows] == [f["unit"] for f in data["filters"]]
    assert {"pct_with food", "pct_without", "statistic", "q_value", "words"} <= set(rows[0])
    assert (out / "compare.png").stat().st_size > 5000
    again = GroupComparison.load(out)
    assert again.to_dict() == data


def test_more_than_two_groups_use_chi_square(planted):
    ds = _explain(planted, planted["food"])
    thirds = [("a", "b", "c")[i % 3] for i in range(len(ds))]
    res = compare_groups(planted["run"], ds, groups=thirds, extract=QUIET)
    assert res.groups == ["a", "b", "c"] and res.test.startswith("chi-square")
    assert all(f.statistic >= 0 for f in res.filters)
    only = compare_groups(planted["run"], ds, groups=thirds, only=["a", "c"], extract=QUIET)
    assert only.groups == ["a", "c"] and only.test.startswith("two-proportion")
    rest = compare_groups(planted["run"], ds, groups=thirds, one_vs_rest="b", extract=QUIET)
    assert rest.groups == ["b", "rest"] and rest.sizes["rest"] == len(ds) - rest.sizes["b"]


def test_compare_reuses_the_cache_explain_made_and_checks_the_model(planted):
    ds = _explain(planted, planted["food"])
    caches = planted["run"] / "cache"
    before = sorted(p.name for p in caches.iterdir())
    # no model given, and the tiny model cannot be loaded from the run's config: only the cache of `explain` works
    res = compare_groups(planted["run"], ds, extract=QUIET)
    assert res.settings["cache"] in before
    same = compare_groups(planted["run"], ds, extract=QUIET, target=planted["model"])
    assert same.settings["cache"] == res.settings["cache"]
    via_run = Run.open(planted["run"]).compare(ds, extract=QUIET)
    assert [asdict(f) for f in via_run.filters] == [asdict(f) for f in res.filters]
    assert sorted(p.name for p in caches.iterdir()) == before  # nothing was extracted a second time
    net = TinyNet()
    with torch.no_grad():
        net.block2[0].weight.mul_(2)
    other = wrap_model(net, Preprocess(resize=64, crop=64), default_layer="block2", name="tiny")
    with pytest.raises(RunError, match="weights"):
        compare_groups(planted["run"], ds, extract=QUIET, target=other)
    assert sorted(p.name for p in caches.iterdir()) == before


def test_compare_options_rank_correct_and_limit_examples(planted):
    ds = _explain(planted, planted["food"])
    opts = CompareOptions(correction="holm", alpha=0.01, rank_by="statistic", top=2, examples=1)
    res = compare_groups(planted["run"], ds, options=opts, extract=QUIET)
    assert res.correction == "holm" and res.alpha == 0.01 and res.settings["rank_by"] == "statistic"
    stat = [abs(f.statistic) for f in res.filters]
    assert stat == sorted(stat, reverse=True)
    assert [f.rank for f in res.filters if f.examples] == [1, 2]
    assert all(len(ids) <= 1 for f in res.filters for ids in f.examples.values())
    p = np.array([f.p_value for f in sorted(res.filters, key=lambda f: f.unit)])
    assert np.allclose([f.q_value for f in sorted(res.filters, key=lambda f: f.unit)], adjust_pvalues(p, "holm"))


def test_interpretable_only_tests_and_corrects_over_interpretable_filters(planted):
    from dataclasses import replace

    from lavise.errors import RunError
    from lavise.explain import Explanations
    from lavise.explain.confidence import FEATURES, Calibrator

    ds = _explain(planted, planted["food"])
    with pytest.raises(RunError, match="calibrated confidence"):  # these explanations carry none
        compare_groups(planted["run"], ds, options=CompareOptions(interpretable_only=True), extract=QUIET)
    ex = Explanations.load(planted["run"])
    shares = sorted(f.words[0]["score"] for f in ex.filters if f.words)
    cut = float(np.median(shares))  # half the filters above, whatever the votes
    cal = Calibrator((0.0,) * 6, (1.0,) * 6, (8.0, 0, 0, 0, 0, 0), -8.0 * cut, FEATURES[:6], {})  # 0.5 at the median share
    rated = replace(ex, filters=cal.apply(ex.filters))
    keep = sorted(f.unit for f in rated.filters if f.interpretable)
    assert 0 < len(keep) < len(rated.filters)
    rated.save(planted["run"])
    full = compare_groups(planted["run"], ds, options=CompareOptions(correction="holm"), extract=QUIET)
    res = compare_groups(planted["run"], ds, options=CompareOptions(correction="holm", interpretable_only=True),
                         extract=QUIET)
    assert sorted(f.unit for f in res.filters) == keep and res.settings["filters_tested"] == len(keep)
    p = np.array([next(g.p_value for g in full.filters if g.unit == u) for u in keep])
    assert np.allclose([next(f.q_value for f in res.filters if f.unit == u) for u in keep], adjust_pvalues(p, "holm"))
    ex.save(planted["run"])  # leave the module's run as it was


def test_cli_flags_become_options(monkeypatch):
    from lavise.cli import extract_options
    from lavise.commands.compare import compare_options

    monkeypatch.delenv("RANK", raising=False)
    args = argparse.Namespace(device="cpu", batch_size=4, workers=0, amp=True, strict=True, quiet=False,
                              correction="none", alpha=0.1, rank_by="statistic", top=3, examples=2,
                              interpretable_only=False)
    assert extract_options(args) == ExtractOptions("cpu", 4, 0, amp=True, strict=True, show_progress=True)
    assert compare_options(args) == CompareOptions("none", 0.1, "statistic", 3, 2)
    assert extract_options(argparse.Namespace(**{**vars(args), "quiet": True})).show_progress is False
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 draws progress bars
    assert extract_options(args).show_progress is False


def test_group_errors_are_clear(planted, tmp_path):
    ds = _explain(planted, planted["food"])
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.png,a\n")
    with pytest.raises(DatasetError, match="image,group"):
        read_groups_csv(bad, ds)
    bad.write_text("image,group\nnope/x.png,a\n")
    with pytest.raises(DatasetError, match="relative to the dataset root"):
        read_groups_csv(bad, ds)
    with pytest.raises(DatasetError, match="two groups"):
        compare_groups(planted["run"], ds, groups=["a"] * len(ds), extract=QUIET)
    with pytest.raises(DatasetError, match="no image is in group"):
        compare_groups(planted["run"], ds, one_vs_rest="zzz", extract=QUIET)


def test_compare_needs_explanations(tmp_path, tiny_model, squares, tiny_glove, capsys):
    run = tmp_path / "run"
    train_explainer(tiny_model, squares, load_embeddings(f"glove:{tiny_glove}"), out=run,
                    options=TrainOptions(epochs=1), extract=QUIET)
    with pytest.raises(RunError, match="lavise explain"):
        compare_groups(run, squares, extract=QUIET)
    assert main(["compare", str(run), "--images", "folder:" + str(squares.root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lavise explain" in err
    assert main(["compare", str(run), "--images", "folder:" + str(squares.root), "--top", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--top" in err


# ---------------------------------------------------------------------------- model comparison

class OtherNet(nn.Module):
    """A different architecture: 3 convolutions, 24 filters at the explained layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(12, 24, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(24, 24, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_compare_models_of_different_architectures(planted, tmp_path, capsys):
    base = planted["base"]
    glove = base / "glove.txt"
    other = wrap_model(OtherNet(), Preprocess(resize=64, crop=64), default_layer="features.5", name="other")
    run_b = tmp_path / "other-run"
    train_explainer(other, ObjectsDataset(base / "ref", 150, 0), load_embeddings(f"glove:{glove}"), out=run_b,
                    options=TrainOptions(epochs=30), extract=QUIET)
    ds = _explain(planted, planted["food"])
    explain_filters(run_b, ds, ExplainOptions(p=10, s=2, x=3, vocabulary="concepts"), QUIET, target=other)
    res = compare_models(planted["run"], run_b, labels=("tiny", "other"), min_score=0.0)
    assert res.a.filters == 16 and res.b.filters == 24
    c = res.counts
    assert c["a"] == c["shared"] + c["only_a"] and c["b"] == c["shared"] + c["only_b"]
    assert set(res.a.concepts) <= set(COLOURS) and c["a"] >= 1 and c["b"] >= 1
    assert sum(len(v) for v in res.a.concepts.values()) == res.a.interpretable  # top-1 word per filter
    strict = compare_models(planted["run"], run_b, min_score=1.01)
    assert strict.counts["a"] == 0 and strict.a.interpretable == 0
    out = tmp_path / "cm"
    assert main(["compare-models", str(planted["run"]), str(run_b), "--labels", "tiny,other", "--min-score", "0",
                 "--out", str(out)]) == 0
    assert "shared concepts" in capsys.readouterr().out
    assert ModelComparison.load(out).to_dict()["counts"] == json.loads((out / "compare_models.json").read_text())["counts"]
    assert (out / "compare_models.png").is_file() and (out / "compare_models.csv").is_file()


def test_figures_take_an_axes_and_return_fig_ax(planted):
    import matplotlib.pyplot as plt

    ds = _explain(planted, planted["food"])
    res = compare_groups(planted["run"], ds, extract=QUIET)
    fig, ax = plot_group_comparison(res, top=5)
    assert len(ax.get_yticklabels()) == 5 and "#" in ax.get_yticklabels()[0].get_text()
    plt.close(fig)
    fig2, axes = plt.subplots(1, 2)
    f, a = plot_group_comparison(res, top=3, ax=axes[0])
    assert f is fig2 and a is axes[0]
    mc = compare_models(planted["run"], planted["run"], min_score=0.0)
    f, a = plot_model_comparison(mc, ax=axes[1])
    assert f is fig2 and a is axes[1] and mc.counts["only_a"] == 0
    plt.close(fig2)
