"""``lavise demo``: the whole method on built-in, offline data in a few minutes."""
from __future__ import annotations

import time
from pathlib import Path

from .data import load_dataset
from .explain import Explanations, explain_filters
from .models import load_model
from .train import train_explainer

DEMO_MODEL = "efficientnet-lite0"
DEMO_EMBEDDINGS = "glove-6b-50d"


def run_demo(out: str | Path = "lavise-demo", reference_size: int = 1500, target_size: int = 500, epochs: int = 30,
             seed: int = 0, device: str = "cpu", batch_size: int = 16, num_workers: int | None = None,
             show_progress: bool = True, echo=print) -> Explanations:
    """Train an explainer for EfficientNet-Lite0 on built-in scenes and explain every filter of its head.

    Args:
        out: run folder.
        reference_size, target_size: number of built-in scenes for training and for explaining.
        epochs, seed: training settings.
        device, batch_size, num_workers: extraction settings.
        show_progress: progress bars.
        echo: where progress messages go.

    Returns:
        The ``Explanations`` (also written to ``out``).
    """
    t0 = time.time()
    out = Path(out)
    echo(f"[1/4] loading {DEMO_MODEL} (ImageNet weights, offline) and the built-in scenes")
    model = load_model(DEMO_MODEL)
    reference = load_dataset(f"builtin:scenes?size={reference_size}&seed={seed}&split=train")
    target = load_dataset(f"builtin:scenes?size={target_size}&seed={seed}&split=test")
    echo(f"[2/4] training the explainer for layer {model.default_layer} on {len(reference)} reference scenes")
    trained = train_explainer(model, reference, DEMO_EMBEDDINGS, out=out, epochs=epochs, seed=seed, device=device,
                              batch_size_features=batch_size, num_workers=num_workers, show_progress=show_progress)
    last = trained.history[-1]
    echo(f"      validation top-1 {last.get('val_top1', float('nan')):.3f}, top-5 {last.get('val_top5', float('nan')):.3f} "
         f"among {len(trained.concepts)} concepts")
    echo(f"[3/4] explaining every filter on {len(target)} target scenes (filter attention)")
    ex = explain_filters(out, target, target=model, device=device, batch_size=batch_size, num_workers=num_workers,
                         show_progress=show_progress)
    echo(f"[4/4] done in {time.time() - t0:.0f} s. Results in {out.resolve()}:")
    echo("      explanations.json, explanations.csv, config.json, train_log.csv, explainer.safetensors")
    for f in [f for f in ex.filters if f.words][:8]:
        echo(f"      unit {f.unit:4d}: {', '.join(f.top_words[:8])}")
    return ex
