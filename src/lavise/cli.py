"""Command line: a thin layer over the public functions.

Every ``LaviseError`` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from . import defaults as D
from .errors import LaviseError
from .options import METHODS, VOTES, ExplainOptions, ExtractOptions

# Filled in only when help is shown (``_Parser.format_help``), so that running a command does not import the
# dataset loaders just to describe them.
EPILOG = "Datasets: {datasets} (KIND:PATH[?key=value&...]; e.g. coco:ANN.json?images=DIR, builtin:scenes?size=N&seed=S)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog lists the registered dataset kinds (``lavise.data.list_datasets``)."""

    def format_help(self) -> str:
        if self.epilog and "{datasets}" in self.epilog:
            from .data import list_datasets

            self.epilog = self.epilog.replace("{datasets}", ", ".join(list_datasets()))
        return super().format_help()


def add_common(p: argparse.ArgumentParser) -> None:
    """The flags of ``ExtractOptions`` (how the backbone runs); ``extract_options`` reads them back."""
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default 8 on CPU, 128 with cuda: the fastest in bench/speed.py)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (autocast: float16 on GPUs, bfloat16 on CPUs) for extraction and the explainer head: "
                        "faster on GPUs and on CPUs with AMX/AVX512-BF16; maps differ slightly and are cached apart")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 0 on <= 2 CPU cores, else cores/4 up to 4; cores-1 up to 16 with cuda)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_layer_choice(p: argparse.ArgumentParser) -> None:
    """``--layer`` on the commands that take a run: which layers of a run of several to use."""
    p.add_argument("--layer", help="for a run of several layers (train --layer a,b,...): the layers to use, "
                                   "comma-separated (default all)")


def layered(args) -> bool:
    """Whether ``args.run`` is a run of several layers; a ``--layer`` on a one-layer run must name its layer."""
    from .errors import RunError
    from .multilayer import is_layered
    from .run import Run

    if is_layered(args.run):
        return True
    if getattr(args, "layer", None):
        own = Run.open(args.run).layer
        if args.layer != own:
            raise RunError(f"{args.run} explains layer {own!r} only; --layer names layers of a run trained with "
                           "`lavise train --layer a,b,...`")
    return False


def add_explain_options(p: argparse.ArgumentParser, method: bool = True) -> None:
    """The flags of ``ExplainOptions``; ``explain_options`` reads them back (``method=False``: the command
    chooses methods its own way, as ``evaluate --methods`` does)."""
    if method:
        p.add_argument("--method", default=D.DEFAULT_METHOD, choices=METHODS,
                       help=f"explainer input (default {D.DEFAULT_METHOD}); attention = the paper's filter attention, "
                            "masked-attention = the same inside the filter's activation mask")
    p.add_argument("-p", "--top-images", type=int, default=D.TOP_IMAGES,
                   help=f"top activating images per filter (default {D.TOP_IMAGES}; the paper's code uses {D.PAPER_TOP_IMAGES})")
    p.add_argument("-s", "--words-per-image", type=int, default=D.WORDS_PER_IMAGE,
                   help=f"words kept per image (default {D.WORDS_PER_IMAGE}; the paper's code uses {D.PAPER_WORDS_PER_IMAGE})")
    p.add_argument("-x", "--words", type=int, default=D.WORDS_PER_FILTER,
                   help=f"words reported per filter (default {D.WORDS_PER_FILTER})")
    p.add_argument("--vocabulary", default=D.VOCABULARY,
                   help="nouns (default: frequent singular nouns + concept names), common (frequent words + concept "
                        "names), concepts, or a FILE with one word per line")
    p.add_argument("--vocabulary-size", type=int, default=D.VOCABULARY_SIZE,
                   help=f"frequent words in nouns/common (default {D.VOCABULARY_SIZE})")
    p.add_argument("--hubness", type=float, nargs="?", const=D.HUBNESS, default=0.0, metavar="LAMBDA",
                   help=f"correct for hub words that win votes for many filters (CSLS; default off; the flag alone "
                        f"uses {D.HUBNESS}, 0.5 is CSLS proper); the hub scores come from every filter's outputs, "
                        "also with --units")
    p.add_argument("--votes", default=D.VOTES, choices=VOTES,
                   help=f"how top images vote for words: count (one vote each, the paper) or similarity (each "
                        f"vote weighted by the word's cosine); default {D.VOTES}")
    p.add_argument("--smooth", type=int, default=D.SMOOTH, metavar="K",
                   help=f"average each image's layer maps over K noisy copies (default {D.SMOOTH}: the clean images), "
                        "so that words do not hang on one exact grid of pixel values")
    p.add_argument("--smooth-sigma", type=float, default=D.SMOOTH_SIGMA, metavar="SIGMA",
                   help=f"pixel noise of the --smooth copies, on [0, 1] pixels (default {D.SMOOTH_SIGMA})")
    p.add_argument("--calibration", type=float, default=0.0, metavar="GAMMA",
                   help="calibrated stacking: subtract GAMMA from the similarity of the training concepts, so "
                        "unseen concepts can compete (default 0: off)")


def extract_options(args: argparse.Namespace) -> ExtractOptions:
    """``ExtractOptions`` from the flags of ``add_common``."""
    return ExtractOptions(device=args.device, batch_size=args.batch_size, workers=args.workers, amp=args.amp,
                          strict=args.strict, show_progress=progress(args))


def explain_options(args: argparse.Namespace, method: str | None = None) -> ExplainOptions:
    """``ExplainOptions`` from the flags of ``add_explain_options`` (``method`` overrides ``--method``)."""
    return ExplainOptions(method=method or getattr(args, "method", D.DEFAULT_METHOD), p=args.top_images,
                          s=args.words_per_image, x=args.words, vocabulary=args.vocabulary,
                          vocabulary_size=args.vocabulary_size, hubness=args.hubness, calibration=args.calibration,
                          votes=args.votes, smooth=args.smooth, smooth_sigma=args.smooth_sigma)


def build_parser() -> argparse.ArgumentParser:
    """The ``lavise`` parser; every module in ``lavise.commands`` adds its subcommands."""
    ap = _Parser(prog="lavise", description="Explain, in words, what each filter of a CNN layer learned.", epilog=EPILOG)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
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
        from .runtime import check_device, init_distributed

        if hasattr(args, "device"):
            check_device(args.device)  # before torchrun's process group picks nccl or gloo by it
        init_distributed(getattr(args, "device", "cpu"))
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


if __name__ == "__main__":
    sys.exit(main())
