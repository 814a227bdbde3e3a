"""Planted bias on the built-in scenes with the real model: the top filters of `compare` speak of food.

Two groups of built-in test scenes that differ in how often a food object (themes food and produce)
appears: 60% of the 'biased' group's images contain one, 10% of the 'control' group's. The explainer is
trained on other built-in scenes; nothing about the groups is given to it.
"""
import numpy as np

from lavise.compare import compare_groups
from lavise.data import load_dataset
from lavise.data.scenes import CATEGORIES
from lavise.explain import explain_filters
from lavise.models import load_model
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
from lavise.train import train_explainer

FAMILY = {c.name for c in CATEGORIES if c.theme in ("food", "produce")}
QUIET = ExtractOptions(workers=0, show_progress=False)


def test_planted_food_bias_on_builtin_scenes(tmp_path):
    model = load_model("efficientnet-lite0")
    ref = load_dataset("builtin:scenes?size=400&seed=11&split=train")
    target = load_dataset("builtin:scenes?size=480&seed=12&split=test")
    run = tmp_path / "run"
    train_explainer(model, ref, "glove-6b-50d", out=run, options=TrainOptions(epochs=15), extract=QUIET)
    # the paper's word selection (the setting this planted-bias check was built with); with a head trained this
    # briefly, one word per image over 50 images lists fewer food words in the top 3 (3 of 5 filters, not 4)
    explain_filters(run, target, ExplainOptions(method="attention", p=25, s=5, vocabulary="concepts"), QUIET,
                    target=model)

    has_food = np.array([any(a.concept in FAMILY for a in target[i].annotations) for i in range(len(target))])
    food, other = np.flatnonzero(has_food), np.flatnonzero(~has_food)
    n_biased_food, n_control_food = min(len(food) * 6 // 7, 60), min(len(food) // 7, 10)
    assert n_biased_food >= 25, "too few food scenes to plant a bias"
    groups = [None] * len(target)
    for i in food[:n_biased_food]:
        groups[i] = "biased"
    for i in food[n_biased_food:n_biased_food + n_control_food]:
        groups[i] = "control"
    n_other_biased = n_biased_food * 4 // 6  # 60% food in the biased group
    n_other_control = n_control_food * 9  # 10% food in the control group
    assert n_other_biased + n_other_control <= len(other)
    for i in other[:n_other_biased]:
        groups[i] = "biased"
    for i in other[n_other_biased:n_other_biased + n_other_control]:
        groups[i] = "control"

    cmp = compare_groups(run, target, groups=groups, out=tmp_path / "cmp", target=model, extract=QUIET)
    up = [f for f in cmp.filters if f.percentages["biased"] > f.percentages["control"]][:5]
    assert up[0].percentages["biased"] - up[0].percentages["control"] > 15
    food_words = [any(w in FAMILY for w in f.words[:3]) for f in up]
    assert sum(food_words) >= 4, [(f.unit, f.words[:3]) for f in up]
