"""Core subcommands: demo, layers, train, explain."""
from __future__ import annotations

from pathlib import Path

from .. import defaults as D
from ..cli import (
    EPILOG,
    add_common,
    add_explain_options,
    add_layer_choice,
    explain_options,
    extract_options,
    layered,
    parse_units,
)
from ..errors import LaviseError
from ..options import TrainOptions


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and explain EfficientNet-Lite0 on the built-in scenes (offline, minutes)")
    p.add_argument("--out", default="lavise-demo", help="run folder (default ./lavise-demo)")
    p.add_argument("--reference-size", type=int, default=4000, help="built-in reference images (default 4000)")
    p.add_argument("--target-size", type=int, default=1000, help="built-in target images (default 1000)")
    p.add_argument("--epochs", type=int, default=D.EPOCHS, help=f"most training epochs (default {D.EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    add_common(p)
    p.set_defaults(func=demo)

    p = sub.add_parser("layers", help="list a model's layers with their output shapes")
    p.add_argument("model", nargs="?", default="efficientnet-lite0",
                   help="efficientnet-lite0, torchvision:NAME[:DEFAULT], timm:NAME[:pretrained] or python:module:factory")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--all", action="store_true", help="also list layers whose output is not a map")
    p.set_defaults(func=layers)

    p = sub.add_parser("train", help="train the explainer for one layer, or several in one run", epilog=EPILOG)
    p.add_argument("--model", default="efficientnet-lite0", help="model spec (default efficientnet-lite0)")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--layer", help="dotted layer name (default: the model's last spatial layer); several, "
                                   "comma-separated, or 'stages' (the model's stage outputs) train a run of several "
                                   "layers, each dataset extracted in one pass for all of them")
    p.add_argument("--reference", default="builtin:scenes", help="reference dataset with concept masks (default builtin:scenes)")
    p.add_argument("--embeddings", default="glove-6b-50d",
                   help="glove-6b-50d (default), glove:PATH, word2vec:PATH, fasttext:PATH or minilm")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=D.EPOCHS, help=f"most training epochs (default {D.EPOCHS})")
    p.add_argument("--patience", type=int, default=D.PATIENCE, metavar="N",
                   help="stop once N epochs in a row bring no new least validation loss "
                        + (f"(default {D.PATIENCE})" if D.PATIENCE else "(default: run every epoch)"))
    p.add_argument("--lr", type=float, default=D.LR, help=f"Adam learning rate (default {D.LR})")
    p.add_argument("--train-batch-size", type=int, default=D.TRAIN_BATCH_SIZE,
                   help=f"pairs per step (default {D.TRAIN_BATCH_SIZE})")
    p.add_argument("--heads", type=int, default=D.HEADS,
                   help=f"members of the explainer head, averaged (default {D.HEADS}; 1: the paper's single head)")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="do not fit the confidence calibrator (explanations then carry no confidence)")
    p.add_argument("--small-masks", type=int, default=D.SMALL_MASKS, metavar="K",
                   help=f"also train on K copies of each pair pooled over 1-{D.SMALL_MASK_CELLS} random cells of the "
                        f"object, the size of the activation masks filters are explained with (default {D.SMALL_MASKS})")
    p.add_argument("--val-fraction", type=float, default=D.VAL_FRACTION,
                   help=f"reference images held out (default {D.VAL_FRACTION})")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    add_common(p)
    p.set_defaults(func=train)

    p = sub.add_parser("explain", help="explain every filter of a trained run on a target image set", epilog=EPILOG)
    p.add_argument("run", help="run folder written by `lavise train`")
    p.add_argument("--images", required=True, help="target dataset (labels are ignored)")
    p.add_argument("--out", help="where to write explanations.json/.csv (default: the run folder)")
    p.add_argument("--units", help="comma-separated filter indices (default all)")
    add_layer_choice(p)
    add_explain_options(p)
    add_common(p)
    p.set_defaults(func=explain)


def layers(args) -> int:
    from ..features.layout import detect, map_shape, patch_size, prefix_tokens
    from ..models import layer_shapes, load_model

    tm = load_model(args.model, args.weights)
    patch, prefix = patch_size(tm.module), prefix_tokens(tm.module)
    print(f"# {tm.spec}: layers and the maps they give for a {args.size} px input, as channels x height x width "
          f"(default layer: {tm.default_layer})")
    for name, kind, shape in layer_shapes(tm.module, args.size):
        layout = detect((1, *shape), (args.size, args.size), patch, True, prefix) if shape is not None else None
        if layout is None:
            if args.all and shape is not None:
                print(f"{name}\t{kind}\t{'x'.join(map(str, shape))}\t(not a map)")
            continue
        mark = "" if layout.kind == "nchw" else f"\t{layout.describe()}"
        print(f"{name}\t{kind}\t{'x'.join(map(str, map_shape((1, *shape), layout)))}{mark}")
    return 0


def train(args) -> int:
    from .. import api
    from ..multilayer import resolve_layers, several, train_layers
    from ..runtime import is_main_process

    tm = api.load_model(args.model, args.weights)
    layers = resolve_layers(tm, args.layer)  # a mistyped layer fails before any data is read
    extract_options(args)  # and a bad setting too
    ref = api.load_dataset(args.reference)
    options = TrainOptions(epochs=args.epochs, patience=args.patience, lr=args.lr, batch_size=args.train_batch_size,
                           val_fraction=args.val_fraction, seed=args.seed, heads=args.heads,
                           small_masks=args.small_masks, calibrate=args.calibrate)
    if several(args.layer):
        results = train_layers(tm, ref, args.embeddings, layers, args.out, options, extract_options(args))
    else:
        results = {layers[0]: api.train_explainer(tm, ref, args.embeddings, layer=layers[0], out=args.out,
                                                  options=options, extract=extract_options(args))}
    if not is_main_process():
        return 0
    for res in results.values():
        _train_summary(tm, res)
    print(f"saved to {Path(args.out).resolve()}" + (f" ({len(results)} layers, one folder each under layers/)"
                                                     if several(args.layer) else ""))
    return 0


def _train_summary(tm, res) -> None:
    best = res.config["train"]["best_epoch"]
    kept = res.history[best - 1] if res.history else {}
    print(f"trained explainer for {tm.spec} {res.config['layer']} on {len(res.concepts)} concepts; kept epoch {best} "
          f"of {len(res.history)}: val top-1 {kept.get('val_top1', float('nan')):.3f}, "
          f"top-5 {kept.get('val_top5', float('nan')):.3f}")
    cal = res.calibrator
    if cal is not None and cal.is_constant:
        from ..explain.confidence import constant_note

        print(f"confidence: {constant_note(cal.fitted_on)}")
    elif cal is not None:
        fit = cal.fitted_on
        print(f"confidence calibrated on the reference set: {fit['words']} words of every filter, explained from "
              f"{fit['explain_images']} images and checked against the ground truth of the other "
              f"{fit['truth_images']} ({fit['right']} right)")
    else:
        print("confidence unavailable: the reference set gave no word to calibrate on")


def explain(args) -> int:
    from .. import api
    from ..runtime import is_main_process

    units = parse_units(args.units)
    options, extract = explain_options(args), extract_options(args)  # bad settings fail before any work
    if layered(args):
        from ..multilayer import LayeredRun

        if args.out:
            raise LaviseError("--out is for a one-layer run; a run of several layers keeps each layer's "
                              "explanations in its own folder")
        lr = LayeredRun(args.run)
        results = lr.explain(api.load_dataset(args.images), options, extract, units, layers=args.layer)
        where = lr.path.resolve()
    else:
        run = api.Run.open(args.run, cache_dir=Path(args.out) / "cache" if args.out else None)
        ex = run.explain(api.load_dataset(args.images), options, extract, units, out=args.out)
        results, where = {ex.layer: ex}, Path(args.out or args.run).resolve()
    if not is_main_process():
        return 0
    for ex in results.values():
        print(f"explained {len(ex.filters)} filters of {ex.layer}" + ("" if len(results) > 1 else
              f"; wrote {where / 'explanations.json'} and .csv"))
        print(ex.verdict())
        for f in ex.ranked()[:8]:
            print(f"  {f.line()}")
    if len(results) > 1:
        print(f"wrote each layer's explanations under {where / 'layers'} and all of them in "
              f"{where / 'explanations.json'} and .csv")
    return 0


def demo(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, reference_size=args.reference_size, target_size=args.target_size, epochs=args.epochs,
             seed=args.seed, extract=extract_options(args))
    return 0
