"""bench/layers.py's tables on per-seed results built here."""
from __future__ import annotations

from conftest import _bench_module


def _seed(seed, lav, nd, ctrl, gt):
    rows = {"masked-attention": {"kind": "method", "P@1": lav, "R@10": lav + 0.3, "F1@10": 0.1},
            "netdissect": {"kind": "baseline", "P@1": nd, "R@10": nd, "F1@10": 0.1},
            "shuffled": {"kind": "control", "P@1": ctrl, "R@10": ctrl, "F1@10": 0.0},
            "constant": {"kind": "control", "P@1": 0.0, "R@10": 0.05, "F1@10": 0.0}}
    return {"seed": seed, "layers": {"L": {"rows": rows, "ground_truth": {"filters": 8, "filters_with_ground_truth": gt},
                                            "interpretable": None, "P@1_interpretable": None, "ECE": None,
                                            "AUROC_confidence": None}}}


def test_summary_gives_mean_sd_and_the_every_seed_verdict():
    layers = _bench_module("layers")
    per = [_seed(0, 0.5, 0.4, 0.1, 6), _seed(1, 0.3, 0.4, 0.0, 7)]
    text = layers.summary(per)
    row = next(line for line in text.splitlines() if line.startswith("| L |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # P@1 0.5, 0.3: mean 0.4, SD (n-1) 0.141; R@10 0.8, 0.6; best control R@10 max(0.1, 0.05), max(0.0, 0.05)
    assert cells == ["L", "8", "- / -", "6 / 7", "0.400 ± 0.141", "0.400 ± 0.000", "0.050 ± 0.071", "0.700 ± 0.141",
                     "0.400 ± 0.000", "0.075 ± 0.035", "yes, yes"]
    per[0]["val_top1"], per[1]["val_top1"] = {"L": 0.391}, {"L": 0.4}
    assert "| L | 8 | 0.39 / 0.40 | 6 / 7 |" in layers.summary(per)
    per[1]["layers"]["L"]["rows"]["shuffled"]["P@1"] = 0.3  # a tie is not "above"
    assert layers.summary(per).splitlines()[-1].endswith("| no, yes |")
    assert "not above netdissect" in layers.table(per)
