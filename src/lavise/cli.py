"""Command line: a thin layer over the public functions.

Every ``LaviseError`` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from .defaults import DEFAULT_METHOD, HUBNESS, PAPER_TOP_IMAGES, PAPER_WORDS_PER_IMAGE, TOP_IMAGES, WORDS_PER_IMAGE
from .errors import LaviseError

EPILOG = "Datasets: coco:ANN.json[?images=DIR] vg:OBJECTS.json broden:DIR folder:DIR manifest:FILE.jsonl builtin:scenes[?size=N&seed=S&split=train|test]"


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default 8 on CPU, 128 with cuda: the fastest in bench/speed.py)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (autocast: float16 on GPUs, bfloat16 on CPUs) for extraction and the explainer head: "
                        "faster on GPUs and on CPUs with AMX/AVX512-BF16; maps differ slightly and are cached apart")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 0 on <= 2 CPU cores, else cores/4 up to 4; cores-1 up to 16 with cuda)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=DEFAULT_METHOD, choices=["attention", "masked-attention", "activation", "image", "original"],
                   help=f"explainer input (default {DEFAULT_METHOD}); attention = the paper's filter attention, "
                        "masked-attention = the same inside the filter's activation mask")
    p.add_argument("-p", "--top-images", type=int, default=TOP_IMAGES,
                   help=f"top activating images per filter (default {TOP_IMAGES}; the paper's code uses {PAPER_TOP_IMAGES})")
    p.add_argument("-s", "--words-per-image", type=int, default=WORDS_PER_IMAGE,
                   help=f"words kept per image (default {WORDS_PER_IMAGE}; the paper's code uses {PAPER_WORDS_PER_IMAGE})")
    p.add_argument("-x", "--words", type=int, default=10, help="words reported per filter (default 10)")
    p.add_argument("--vocabulary", default="nouns",
                   help="nouns (default: frequent singular nouns + concept names), common (frequent words + concept "
                        "names), concepts, or a FILE with one word per line")
    p.add_argument("--vocabulary-size", type=int, default=10000, help="frequent words in nouns/common (default 10000)")
    add_hubness_option(p)


def add_hubness_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hubness", type=float, nargs="?", const=HUBNESS, default=0.0, metavar="LAMBDA",
                   help=f"correct for hub words that win votes for many filters (CSLS; default off; the flag alone "
                        f"uses {HUBNESS}, 0.5 is CSLS proper); the hub scores come from every filter's outputs, "
                        "also with --units")


def build_parser() -> argparse.ArgumentParser:
    """The ``lavise`` parser; every module in ``lavise.commands`` adds its subcommands."""
    ap = argparse.ArgumentParser(prog="lavise", description="Explain, in words, what each filter of a CNN layer learned.",
                                 epilog=EPILOG)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _command_modules():
        mod.register(sub)
    return ap


def _command_modules():
    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    # core commands first in --help
    names.sort(key=lambda n: (n != "core", n))
    return [importlib.import_module(f"{commands.__name__}.{n}") for n in names]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"lavise: warning: {msg}\n"
    try:
        if hasattr(args, "device"):
            from .features import check_device

            check_device(args.device)  # before torchrun's process group picks nccl or gloo by it
        _init_distributed(getattr(args, "device", "cpu"))
        return int(args.func(args) or 0)
    except LaviseError as e:
        print(f"lavise: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lavise: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as e:  # full disk, read-only or unwritable folder: the environment, not a bug
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG):
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"lavise: error: cannot write{where}: {e.strerror} (free disk space or fix permissions, "
              "then rerun the same command to resume)", file=sys.stderr)
        return 2


def parse_units(text: str | None) -> list[int] | None:
    """``--units 3,17,40`` as a list of filter indices (None: all filters)."""
    if not text:
        return None
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise LaviseError(f"--units takes comma-separated filter indices such as 3,17,40, not {text!r}") from None


def progress(args) -> bool:
    """Progress bars unless --quiet; only rank 0 shows them under torchrun."""
    import os

    return not getattr(args, "quiet", False) and os.environ.get("RANK", "0") == "0"


def is_main_process() -> bool:
    from .features import distributed

    return distributed()[1] == 0


def _init_distributed(device: str) -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


if __name__ == "__main__":
    sys.exit(main())
