"""Core subcommands: demo, layers, train, explain."""
from __future__ import annotations

from pathlib import Path

from ..defaults import EPOCHS, HEADS, PATIENCE, SMALL_MASK_CELLS, SMALL_MASKS
from ..cli import EPILOG, add_common, add_explain_options, is_main_process, parse_units, progress


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and explain EfficientNet-Lite0 on the built-in scenes (offline, minutes)")
    p.add_argument("--out", default="lavise-demo", help="run folder (default ./lavise-demo)")
    p.add_argument("--reference-size", type=int, default=4000, help="built-in reference images (default 4000)")
    p.add_argument("--target-size", type=int, default=1000, help="built-in target images (default 1000)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"most training epochs (default {EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    add_common(p)
    p.set_defaults(func=demo)

    p = sub.add_parser("layers", help="list a model's layers with their output shapes")
    p.add_argument("model", nargs="?", default="efficientnet-lite0",
                   help="efficientnet-lite0, torchvision:NAME[:DEFAULT] or python:module:factory")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--all", action="store_true", help="also list layers whose output is not a 4-D map")
    p.set_defaults(func=layers)

    p = sub.add_parser("train", help="train the explainer for one layer", epilog=EPILOG)
    p.add_argument("--model", default="efficientnet-lite0", help="model spec (default efficientnet-lite0)")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--layer", help="dotted layer name (default: the model's last spatial layer)")
    p.add_argument("--reference", default="builtin:scenes", help="reference dataset with concept masks (default builtin:scenes)")
    p.add_argument("--embeddings", default="glove-6b-50d",
                   help="glove-6b-50d (default), glove:PATH, word2vec:PATH, fasttext:PATH or minilm")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"most training epochs (default {EPOCHS})")
    p.add_argument("--patience", type=int, default=PATIENCE, metavar="N",
                   help="stop once N epochs in a row bring no new least validation loss "
                        + (f"(default {PATIENCE})" if PATIENCE else "(default: run every epoch)"))
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--train-batch-size", type=int, default=128, help="pairs per step (default 128)")
    p.add_argument("--heads", type=int, default=HEADS,
                   help=f"members of the explainer head, averaged (default {HEADS}; 1: the paper's single head)")
    p.add_argument("--small-masks", type=int, default=SMALL_MASKS, metavar="K",
                   help=f"also train on K copies of each pair pooled over 1-{SMALL_MASK_CELLS} random cells of the "
                        f"object, the size of the activation masks filters are explained with (default {SMALL_MASKS})")
    p.add_argument("--val-fraction", type=float, default=0.1, help="reference images held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    add_common(p)
    p.set_defaults(func=train)

    p = sub.add_parser("explain", help="explain every filter of a trained run on a target image set", epilog=EPILOG)
    p.add_argument("run", help="run folder written by `lavise train`")
    p.add_argument("--images", required=True, help="target dataset (labels are ignored)")
    p.add_argument("--out", help="where to write explanations.json/.csv (default: the run folder)")
    p.add_argument("--units", help="comma-separated filter indices (default all)")
    add_explain_options(p)
    add_common(p)
    p.set_defaults(func=explain)


def layers(args) -> int:
    from ..models import layer_shapes, load_model

    tm = load_model(args.model, args.weights)
    print(f"# {tm.spec}: layers and output shapes for a {args.size} px input (default layer: {tm.default_layer})")
    for name, kind, shape in layer_shapes(tm.module, args.size):
        if shape is None or (len(shape) != 3 and not args.all):
            continue
        print(f"{name}\t{kind}\t{'x'.join(map(str, shape))}")
    return 0


def train(args) -> int:
    from .. import api

    tm = api.load_model(args.model, args.weights)
    tm.layer(args.layer or tm.default_layer)  # a mistyped layer fails before any data is read
    ref = api.load_dataset(args.reference)
    res = api.train_explainer(tm, ref, args.embeddings, layer=args.layer, out=args.out, epochs=args.epochs,
                              lr=args.lr, batch_size=args.train_batch_size, val_fraction=args.val_fraction,
                              seed=args.seed, heads=args.heads, small_masks=args.small_masks, patience=args.patience,
                              device=args.device,
                              batch_size_features=args.batch_size,
                              num_workers=args.workers, amp=args.amp, strict=args.strict, show_progress=progress(args))
    best = res.config["train"]["best_epoch"]
    kept = res.history[best - 1] if res.history else {}
    if not is_main_process():
        return 0
    print(f"trained explainer for {tm.spec} {res.config['layer']} on {len(res.concepts)} concepts; kept epoch {best} "
          f"of {len(res.history)}: val top-1 {kept.get('val_top1', float('nan')):.3f}, "
          f"top-5 {kept.get('val_top5', float('nan')):.3f}")
    print(f"saved to {Path(args.out).resolve()}")
    return 0


def explain(args) -> int:
    from .. import api

    units = parse_units(args.units)
    images = api.load_dataset(args.images)
    ex = api.explain_filters(args.run, images, method=args.method, p=args.top_images, s=args.words_per_image,
                             x=args.words, vocabulary=args.vocabulary, vocabulary_size=args.vocabulary_size,
                             units=units, out=args.out, device=args.device, batch_size=args.batch_size,
                             num_workers=args.workers, amp=args.amp, strict=args.strict, hubness=args.hubness,
                             show_progress=progress(args))
    out = Path(args.out or args.run).resolve()
    if not is_main_process():
        return 0
    print(f"explained {len(ex.filters)} filters of {ex.layer}; wrote {out / 'explanations.json'} and .csv")
    for f in [f for f in ex.filters if f.words][:8]:
        print(f"  unit {f.unit:4d}: {', '.join(f.top_words[:8])}")
    return 0


def demo(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, reference_size=args.reference_size, target_size=args.target_size, epochs=args.epochs,
             seed=args.seed, device=args.device, batch_size=args.batch_size, num_workers=args.workers, amp=args.amp,
             show_progress=progress(args))
    return 0
