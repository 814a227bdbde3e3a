"""``lavise demo``: the whole method on built-in, offline data in a few minutes."""
from __future__ import annotations

import time
from pathlib import Path

from .compare import compare_groups
from .data import load_dataset
from .defaults import DEFAULT_METHOD, EPOCHS
from .explain import Explanations, explain_filters
from .models import load_model
from .options import ExtractOptions, TrainOptions
from .train import train_explainer

DEMO_MODEL = "efficientnet-lite0"
DEMO_EMBEDDINGS = "glove-6b-50d"
DEMO_GROUP = "food"  # the demo's bias analysis: food scenes against all other scenes


def run_demo(out: str | Path = "lavise-demo", reference_size: int = 4000, target_size: int = 1000, epochs: int = EPOCHS,
             seed: int = 0, extract: ExtractOptions = ExtractOptions(), echo=print) -> Explanations:
    """Train an explainer for EfficientNet-Lite0 on built-in scenes, explain every filter of its head,
    compare food scenes with the other scenes (bias analysis) and write the HTML report.

    Args:
        out: run folder.
        reference_size, target_size: number of built-in scenes for training and for explaining.
        epochs, seed: training settings.
        extract: how the backbone runs (device, batches, workers, precision, progress bars).
        echo: where progress messages go.

    Returns:
        The ``Explanations`` (also written to ``out``, with ``compare/`` and ``report.html``).
    """
    t0 = time.time()
    out = Path(out)
    echo(f"[1/6] loading {DEMO_MODEL} (ImageNet weights, offline) and the built-in scenes")
    model = load_model(DEMO_MODEL)
    from .data.scenes import generate_scenes

    for split, size in (("train", reference_size), ("test", target_size)):  # generated once, with --quiet honoured
        generate_scenes(size=size, seed=seed, split=split, show_progress=extract.show_progress)
    reference = load_dataset(f"builtin:scenes?size={reference_size}&seed={seed}&split=train")
    target = load_dataset(f"builtin:scenes?size={target_size}&seed={seed}&split=test")
    echo(f"[2/6] training the explainer for layer {model.default_layer} on {len(reference)} reference scenes")
    trained = train_explainer(model, reference, DEMO_EMBEDDINGS, out=out,
                              options=TrainOptions(epochs=epochs, seed=seed), extract=extract)
    last = trained.history[-1]
    echo(f"      validation top-1 {last.get('val_top1', float('nan')):.3f}, top-5 {last.get('val_top5', float('nan')):.3f} "
         f"among {len(trained.concepts)} concepts")
    echo(f"[3/6] explaining every filter on {len(target)} target scenes ({DEFAULT_METHOD})")
    ex = explain_filters(out, target, extract=extract, target=model)
    themes = [g for g in target.groups if g and g != "mixed"]
    group = DEMO_GROUP if DEMO_GROUP in themes else (max(set(themes), key=lambda g: (themes.count(g), g)) if themes else None)
    if group is not None:
        echo(f"[4/6] comparing {group} scenes with all other scenes: which filters fire on more of them")
        cmp = compare_groups(out, target, one_vs_rest=group, out=out / "compare" / f"{group}-vs-rest", target=model,
                             extract=extract)
        for f in cmp.top(5):
            echo(f"      unit {f.unit:4d}: {group} {f.percentages[group]:5.1f}% vs rest {f.percentages['rest']:5.1f}%  "
                 f"q {f.q_value:.2g}  {', '.join(f.words[:4])}")
    echo("[5/6] writing the HTML report")
    from .report import build_report

    html = build_report(out, dataset=target, show_progress=extract.show_progress)
    echo(f"[6/6] done in {time.time() - t0:.0f} s. Results in {out.resolve()}:")
    echo("      explanations.json, explanations.csv, config.json, train_log.csv, explainer.safetensors, compare/")
    echo(f"      {ex.verdict()}")
    for f in ex.ranked()[:8]:
        echo(f"      {f.line()}")
    echo(f"      open {html.resolve()} in a browser")
    return ex
