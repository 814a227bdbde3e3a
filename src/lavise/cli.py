"""Command line: a thin layer over the public functions.

Every ``LaviseError`` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .errors import LaviseError

EPILOG = "Datasets: coco:ANN.json[?images=DIR] vg:OBJECTS.json broden:DIR folder:DIR manifest:FILE.jsonl builtin:scenes[?size=N&seed=S&split=train|test]"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 1, at most 4)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _explain_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="attention", choices=["attention", "activation", "image", "original"],
                   help="explainer input (default attention = filter attention)")
    p.add_argument("-p", "--top-images", type=int, default=25, help="top activating images per filter (default 25)")
    p.add_argument("-s", "--words-per-image", type=int, default=5, help="words kept per image (default 5)")
    p.add_argument("-x", "--words", type=int, default=10, help="words reported per filter (default 10)")
    p.add_argument("--vocabulary", default="common",
                   help="common (frequent words + concept names), concepts, or a FILE with one word per line")
    p.add_argument("--vocabulary-size", type=int, default=20000, help="frequent words in 'common' (default 20000)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lavise", description="Explain, in words, what each filter of a CNN layer learned.",
                                 epilog=EPILOG)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and explain EfficientNet-Lite0 on the built-in scenes (offline, minutes)")
    p.add_argument("--out", default="lavise-demo", help="run folder (default ./lavise-demo)")
    p.add_argument("--reference-size", type=int, default=1500, help="built-in reference images (default 1500)")
    p.add_argument("--target-size", type=int, default=500, help="built-in target images (default 500)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _common(p)

    p = sub.add_parser("layers", help="list a model's layers with their output shapes")
    p.add_argument("model", nargs="?", default="efficientnet-lite0",
                   help="efficientnet-lite0, torchvision:NAME[:DEFAULT] or python:module:factory")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--all", action="store_true", help="also list layers whose output is not a 4-D map")

    p = sub.add_parser("train", help="train the explainer for one layer", epilog=EPILOG)
    p.add_argument("--model", default="efficientnet-lite0", help="model spec (default efficientnet-lite0)")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--layer", help="dotted layer name (default: the model's last spatial layer)")
    p.add_argument("--reference", default="builtin:scenes", help="reference dataset with concept masks")
    p.add_argument("--embeddings", default="glove-6b-50d",
                   help="glove-6b-50d, glove:PATH, word2vec:PATH, fasttext:PATH or minilm")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-batch-size", type=int, default=128)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser("explain", help="explain every filter of a trained run on a target image set", epilog=EPILOG)
    p.add_argument("run", help="run folder written by `lavise train`")
    p.add_argument("--images", required=True, help="target dataset (labels are ignored)")
    p.add_argument("--out", help="where to write explanations.json/.csv (default: the run folder)")
    p.add_argument("--units", help="comma-separated filter indices (default all)")
    _explain_opts(p)
    _common(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"lavise: warning: {msg}\n"
    try:
        return _dispatch(args)
    except LaviseError as e:
        print(f"lavise: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lavise: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from . import api

    progress = not getattr(args, "quiet", False)
    if args.command == "layers":
        from .models import layer_shapes

        tm = api.load_model(args.model, args.weights)
        print(f"# {tm.spec}: layers and output shapes for a {args.size} px input (default layer: {tm.default_layer})")
        for name, kind, shape in layer_shapes(tm.module, args.size):
            if shape is None or (len(shape) != 3 and not args.all):
                continue
            print(f"{name}\t{kind}\t{'x'.join(map(str, shape))}")
        return 0
    if args.command == "train":
        tm = api.load_model(args.model, args.weights)
        ref = api.load_dataset(args.reference)
        res = api.train_explainer(tm, ref, args.embeddings, layer=args.layer, out=args.out, epochs=args.epochs,
                                  lr=args.lr, batch_size=args.train_batch_size, val_fraction=args.val_fraction,
                                  seed=args.seed, device=args.device, batch_size_features=args.batch_size,
                                  num_workers=args.workers, strict=args.strict, show_progress=progress)
        last = res.history[-1] if res.history else {}
        print(f"trained explainer for {tm.spec} {res.config['layer']} on {len(res.concepts)} concepts; "
              f"val top-1 {last.get('val_top1', float('nan')):.3f}, top-5 {last.get('val_top5', float('nan')):.3f}")
        print(f"saved to {Path(args.out).resolve()}")
        return 0
    if args.command == "explain":
        units = [int(u) for u in args.units.split(",")] if args.units else None
        images = api.load_dataset(args.images)
        ex = api.explain_filters(args.run, images, method=args.method, p=args.top_images, s=args.words_per_image,
                                 x=args.words, vocabulary=args.vocabulary, vocabulary_size=args.vocabulary_size,
                                 units=units, out=args.out, device=args.device, batch_size=args.batch_size,
                                 num_workers=args.workers, strict=args.strict, show_progress=progress)
        out = Path(args.out or args.run).resolve()
        print(f"explained {len(ex.filters)} filters of {ex.layer}; wrote {out / 'explanations.json'} and .csv")
        _print_examples(ex)
        return 0
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, reference_size=args.reference_size, target_size=args.target_size, epochs=args.epochs,
                 seed=args.seed, device=args.device, batch_size=args.batch_size, num_workers=args.workers,
                 show_progress=progress)
        return 0
    raise AssertionError(args.command)


def _print_examples(ex, n: int = 8) -> None:
    shown = [f for f in ex.filters if f.words][:n]
    for f in shown:
        print(f"  unit {f.unit:4d}: {', '.join(f.top_words[:8])}")


if __name__ == "__main__":
    sys.exit(main())
