"""Comparison and report subcommands: compare (image groups), compare-models, report."""
from __future__ import annotations

import re
from pathlib import Path

from ..cli import EPILOG, add_common, add_layer_choice, extract_options, layered
from ..errors import LaviseError
from ..options import CORRECTIONS, RANK_BY, CompareOptions


def register(sub) -> None:
    p = sub.add_parser(
        "compare", epilog=EPILOG,
        help="which filters fire on more images of one group than another (dataset bias, paper §4.6)",
        description="For every filter, the share of each group's images whose max activation exceeds T_u; "
                    "filters ranked by the difference, with a two-proportion z-test (two groups) or a chi-square "
                    "test (more) corrected over all filters. Needs `lavise explain` first.")
    p.add_argument("run", help="run folder with explanations (from `lavise explain`)")
    p.add_argument("--images", required=True, help="dataset whose images are grouped")
    p.add_argument("--groups", help="CSV with columns image,group (image paths relative to the dataset root); "
                                    "default: the dataset's own groups (class subfolders, built-in scene themes)")
    p.add_argument("--only", help="comma-separated groups to keep (default all)")
    p.add_argument("--vs-rest", metavar="GROUP", help="compare GROUP against all other images")
    p.add_argument("--out", help="output folder (default RUN/compare/<groups>)")
    p.add_argument("--top", type=int, default=20, help="filters listed with example images (default 20)")
    p.add_argument("--examples", type=int, default=4, help="example qualified images per group and filter (default 4)")
    p.add_argument("--interpretable-only", action="store_true",
                   help="test only filters whose explanation is interpretable (calibrated confidence of the top word "
                        "at least 0.5); the multiple-testing correction runs over those alone")
    p.add_argument("--correction", default="bh", choices=CORRECTIONS,
                   help="multiple-testing correction over filters: bh = Benjamini-Hochberg (default), holm")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--rank-by", default="difference", choices=RANK_BY,
                   help="rank by percentage-point difference (default) or by the test statistic")
    add_layer_choice(p)
    add_common(p)
    p.set_defaults(func=compare)

    p = sub.add_parser("compare-models", help="concepts two models' filters express: shared and unique",
                       description="Distinct top words of the interpretable filters of two explained runs "
                                   "(any architectures, ideally explained on the same images).")
    p.add_argument("run_a", help="first run folder with explanations")
    p.add_argument("run_b", help="second run folder with explanations")
    p.add_argument("--labels", help="two comma-separated names for the models (default: the folder names)")
    p.add_argument("--top-words", type=int, default=1, help="words per filter counted as its concepts (default 1)")
    p.add_argument("--min-score", type=float, default=0.2,
                   help="a filter is interpretable when its top word got at least this share of votes (default 0.2)")
    p.add_argument("--out", help="output folder (default RUN_A/compare-models/<RUN_B name>)")
    p.set_defaults(func=compare_models)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run (RUN/report.html)")
    p.add_argument("run", help="run folder with explanations")
    p.add_argument("--out", help="HTML file (default RUN/report.html; images go to report_files/ beside it)")
    p.add_argument("--images", type=int, default=4, help="top images per filter card (default 4)")
    p.add_argument("--thumb", type=int, default=112, help="thumbnail size in pixels (default 112)")
    p.add_argument("--embed", action="store_true", help="embed images in the HTML file (one larger file)")
    p.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="also show this comparison result (repeatable; those saved in the run are found)")
    p.add_argument("--title", help="page title")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_layer_choice(p)
    p.set_defaults(func=report)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "groups"


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def compare_options(args) -> CompareOptions:
    """``CompareOptions`` from the flags of ``lavise compare``."""
    return CompareOptions(correction=args.correction, alpha=args.alpha, rank_by=args.rank_by, top=args.top,
                          examples=args.examples, interpretable_only=args.interpretable_only)


def compare(args) -> int:
    from .. import api

    _use_agg()
    options, extract = compare_options(args), extract_options(args)  # bad values fail before any work
    only = [g.strip() for g in args.only.split(",") if g.strip()] if args.only else None
    images = api.load_dataset(args.images)
    name = Path(args.groups).stem if args.groups else "groups"
    name += f"-{args.vs_rest}-vs-rest" if args.vs_rest else (f"-{'-'.join(only)}" if only else "")
    if layered(args):
        from ..multilayer import LayeredRun, folder_name

        lr = LayeredRun(args.run)
        layers = lr.select(args.layer)
        lr.prefetch(images, None, extract, layers)  # every layer's maps of the images in one pass
        for layer in layers:
            out = Path(args.out) / folder_name(layer) if args.out else lr.run(layer).path / "compare" / _slug(name)
            _compare_one(args, lr.run(layer).path, images, only, options, extract, out)
        return 0
    out = Path(args.out) if args.out else Path(args.run) / "compare" / _slug(name)
    _compare_one(args, args.run, images, only, options, extract, out)
    return 0


def _compare_one(args, run, images, only, options, extract, out: Path) -> None:
    from ..compare import compare_groups

    res = compare_groups(run, images, groups=args.groups, only=only, one_vs_rest=args.vs_rest, options=options,
                         extract=extract, out=out)
    sizes = ", ".join(f"{g} {n}" for g, n in res.sizes.items())
    print(f"compared {len(res.filters)} filters of {res.layer} between {len(res.groups)} groups ({sizes}); "
          f"{res.test}, {res.correction} correction: {len(res.significant)} filters with q < {res.alpha}")
    shown = res.groups[:4]
    for f in res.top(min(10, len(res.filters))):
        pcts = "  ".join(f"{g} {f.percentages[g]:5.1f}%" for g in shown)
        print(f"  #{f.rank:<3d} unit {f.unit:4d}  {pcts}  diff {f.difference:+6.1f}  q {f.q_value:.2g}  "
              f"{', '.join(f.words[:4]) or '(no words)'}")
    print(f"wrote {out.resolve() / 'compare.json'}, compare.csv and compare.png")


def compare_models(args) -> int:
    from ..compare import compare_models as run_compare

    _use_agg()
    labels = None
    if args.labels:
        labels = tuple(x.strip() for x in args.labels.split(","))
        if len(labels) != 2 or not all(labels):
            raise LaviseError("--labels needs two comma-separated names, e.g. --labels pretrained,scratch")
    out = Path(args.out) if args.out else Path(args.run_a) / "compare-models" / _slug(Path(args.run_b).resolve().name)
    res = run_compare(args.run_a, args.run_b, labels=labels, top_words=args.top_words, min_score=args.min_score, out=out)
    c = res.counts
    for m, n, only in ((res.a, c["a"], c["only_a"]), (res.b, c["b"], c["only_b"])):
        print(f"{m.label}: {m.model} {m.layer}: {n} concepts from {m.interpretable} of {m.filters} filters "
              f"({only} not in the other model)")
    print(f"shared concepts: {c['shared']}")
    if res.only_a:
        print(f"only {res.a.label}: {', '.join(res.only_a[:15])}{' …' if len(res.only_a) > 15 else ''}")
    if res.only_b:
        print(f"only {res.b.label}: {', '.join(res.only_b[:15])}{' …' if len(res.only_b) > 15 else ''}")
    print(f"wrote {out.resolve() / 'compare_models.json'}, compare_models.csv and compare_models.png")
    return 0


def report(args) -> int:
    from ..report import build_report

    _use_agg()
    if args.images < 0 or args.thumb < 16:
        raise LaviseError("--images must be >= 0 and --thumb at least 16 pixels")
    if layered(args):
        from ..multilayer import LayeredRun

        if args.out or args.compare:
            raise LaviseError("--out and --compare are for a one-layer run; a run of several layers writes each "
                              "layer's report in its folder and RUN/report.html beside them")
        path = LayeredRun(args.run).report(args.layer, images=args.images, thumb=args.thumb, embed=args.embed,
                                           title=args.title, show_progress=not args.quiet)
        print(f"wrote {path.resolve()}, which links every layer's report (open it in a browser; no server needed)")
        return 0
    path = build_report(args.run, out=args.out, images=args.images, thumb=args.thumb, embed=args.embed,
                        comparisons=args.compare, title=args.title, show_progress=not args.quiet)
    print(f"wrote {path.resolve()} (open it in a browser; no server needed)")
    return 0
