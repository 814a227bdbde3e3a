"""Quality subcommands: evaluate (explanations vs IoU ground truth) and dissect (NetDissect baseline)."""
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
from ..options import (
    BASELINES,
    CONTROLS,
    CONVENTIONS,
    DISSECT_CONVENTIONS,
    MATCHING,
    METHODS,
    SPLITS,
    STABILITY_PROBES,
    EvalOptions,
)

# one table: methods, baselines, controls and ceilings (each row's kind), headline and exact match, grounded AUPRC
TABLE_COLUMNS = ("kind", "filters", "P@1", "P@5", "R@1", "R@5", "R@10", "R@20", "F1@10", "exact_P@1", "exact_R@10",
                 "AUPRC", "AUPRC_random")


def register(sub) -> None:
    p = sub.add_parser("evaluate", epilog=EPILOG,
                       help="score a run's explanations against IoU ground truth on a dataset with masks")
    p.add_argument("run", help="run folder written by `lavise train`")
    p.add_argument("--dataset", required=True, help="evaluated dataset with concept masks")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated explainer inputs to compute and compare ({','.join(METHODS)} or 'all'); "
                        f"default: the run's explanations.json if present, else {D.DEFAULT_METHOD}")
    p.add_argument("--baselines", default="netdissect,random",
                   help="comma-separated baselines: netdissect (labels from the run's reference set), random, "
                        "netdissect-lite (NetDissect-Lite's definitions on the reference set: its union rule, input "
                        "and mask size; one more extraction); 'none' for none (default netdissect,random)")
    p.add_argument("--controls", default=",".join(EvalOptions().controls),
                   help=f"comma-separated controls ({','.join(CONTROLS)}; 'none' for none; default "
                        f"{','.join(EvalOptions().controls)}; random-init trains and explains a randomly initialised "
                        "copy of the model: slow)")
    p.add_argument("--split", default=EvalOptions().split, choices=SPLITS,
                   help="halves (default): explain on one seeded half of the images, score on the other; "
                        "none: all images on both sides (the paper's protocol, optimistic)")
    p.add_argument("--stability", default=",".join(EvalOptions().stability),
                   help=f"comma-separated stability probes of the first method ({','.join(STABILITY_PROBES)}; 'none' "
                        "for none; default halves): halves explains from the score half too; noise from copies of "
                        "the images with Gaussian pixel noise (one more extraction per draw)")
    p.add_argument("--noise-sigma", type=float, default=D.NOISE_SIGMA,
                   help=f"the noise probe's standard deviation on [0, 1] pixels (default {D.NOISE_SIGMA})")
    p.add_argument("--noise-draws", type=int, default=1, help="the noise probe's draws (default 1)")
    p.add_argument("--match", default=EvalOptions().match, choices=MATCHING,
                   help="how words match concepts: lemma (default: 'cherries' matches 'cherry'; exact matches are "
                        "reported beside it) or exact")
    p.add_argument("--reference", help="dataset for the NetDissect baseline and the constant control "
                                       "(default: the run's reference set)")
    add_explain_options(p, method=False)
    p.add_argument("--no-dataset-concepts", action="store_true",
                   help="do not add the evaluated dataset's concept names to the vocabulary")
    p.add_argument("--iou-threshold", type=float, default=D.IOU_THRESHOLD,
                   help=f"ground-truth IoU threshold (default {D.IOU_THRESHOLD})")
    p.add_argument("--convention", default="netdissect", choices=[*CONVENTIONS, "both"],
                   help="ground truth accumulated over all images (netdissect, default) or over the images that "
                        "contain the concept (present); both reports both, labelled")
    p.add_argument("--synonyms", type=float, default=None, metavar="SIM",
                   help="also report a synonym-aware match (embedding cosine >= SIM), separately")
    p.add_argument("--image-units", type=int, default=None,
                   help="score the slow 'image' method on a random sample of this many filters")
    p.add_argument("--units", help="comma-separated filter indices (default all)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the halves, the random baseline and the controls (default 0)")
    add_layer_choice(p)
    add_common(p)
    p.set_defaults(func=evaluate)

    p = sub.add_parser("dissect", epilog=EPILOG,
                       help="NetDissect baseline: label each filter by its best-IoU concept, write a CSV")
    p.add_argument("model", help="model spec (efficientnet-lite0, torchvision:NAME, python:module:factory)")
    p.add_argument("--weights", help="state_dict / checkpoint / .safetensors file")
    p.add_argument("--layer", help="dotted layer name (default: the model's default layer); several, comma-separated, "
                                   "or 'stages': one pass over the dataset, one CSV per layer (OUT-<layer>.csv)")
    p.add_argument("--dataset", required=True, help="dataset with concept masks (e.g. broden:DIR, coco:ANN.json)")
    p.add_argument("--out", default="dissection.csv", help="CSV to write (default dissection.csv)")
    p.add_argument("--cache-dir", help="feature cache folder (default: beside the CSV, in .lavise-cache)")
    p.add_argument("--iou-threshold", type=float, default=D.IOU_THRESHOLD,
                   help=f"interpretable when IoU > this (default {D.IOU_THRESHOLD})")
    p.add_argument("--convention", default="netdissect", choices=DISSECT_CONVENTIONS,
                   help="lavise's IoU over all images (netdissect, default) or over images with the concept "
                        "(present); netdissect-lite: NetDissect-Lite's definitions as a drop-in (a unit's area counts "
                        "in a category's union only in images where it overlaps a label of that category; the whole "
                        "image with its mean and scale, no crop; IoU at the labels' resolution, 112 for Broden; "
                        "categories object,part,scene,texture,color; also writes its tally.csv beside --out)")
    add_common(p)
    p.set_defaults(func=dissect_cmd)


def _csv_list(text: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["none"]:
        return []
    if items == ["all"]:
        return list(allowed)
    bad = [t for t in items if t not in allowed]
    if bad:
        raise LaviseError(f"unknown {what} {', '.join(bad)}; use any of {', '.join(allowed)}")
    return items


def evaluate(args) -> int:
    from ..data import load_dataset
    from ..run import Run

    units = parse_units(args.units)
    conventions = CONVENTIONS if args.convention == "both" else (args.convention,)
    options = EvalOptions(explain=explain_options(args), methods=tuple(_csv_list(args.methods, METHODS, "method")),
                          baselines=tuple(_csv_list(args.baselines, BASELINES, "baseline")), conventions=conventions,
                          iou_threshold=args.iou_threshold, dataset_concepts_in_vocabulary=not args.no_dataset_concepts,
                          synonym_threshold=args.synonyms, image_units=args.image_units, seed=args.seed,
                          controls=tuple(_csv_list(args.controls, CONTROLS, "control")), split=args.split,
                          match=args.match, stability=tuple(_csv_list(args.stability, STABILITY_PROBES, "probe")),
                          noise_sigma=args.noise_sigma, noise_draws=args.noise_draws)
    extract = extract_options(args)
    ds = load_dataset(args.dataset)
    ref = load_dataset(args.reference) if args.reference else None
    if layered(args):
        from ..multilayer import LayeredRun, layer_row, layer_table

        lr = LayeredRun(args.run)
        evs = lr.evaluate(ds, options, extract, units, reference=ref, layers=args.layer)
        for layer, ev in evs.items():
            print(f"## layer {layer}")
            _print_evaluation(args, ev, conventions, lr.run(layer).path)
        print(f"# one row per layer (the paper's Table 3), {ev.settings.get('match', 'lemma')} match:")
        print(layer_table([layer_row(layer, ev) for layer, ev in evs.items()]))
        print(f"wrote {lr.path.resolve() / 'evaluation.json'} and evaluation.md")
        return 0
    run = Run.open(args.run)
    ev = run.evaluate(ds, options, extract, units, reference=ref)
    _print_evaluation(args, ev, conventions, Path(args.run))
    return 0


def _print_evaluation(args, ev, conventions, run_path: Path) -> None:
    for conv in conventions:
        g = ev.ground_truth[conv]
        halves = (f"explanations from {ev.settings['explain_images']} images, ground truth from the other "
                  f"{ev.settings['score_images']}" if ev.settings["split"] == "halves" else
                  "explanations and ground truth from the same images")
        print(f"# ground truth ({conv} convention, IoU > {g['iou_threshold']}): {g['filters_with_ground_truth']} of "
              f"{g['filters']} filters, {g['concepts_per_filter']} concepts each, {g['distinct_concepts']} distinct "
              f"concepts; {halves} of {args.dataset}; {ev.settings['match']} match")
        print(ev.table(conv, TABLE_COLUMNS))
        novel = [r for r in ev.rows if r["convention"] == conv and "novel_discovered" in r]
        if novel:
            print(f"# novel concepts ({len(ev.settings['novel_concepts'])} not seen in training; naming none of them, "
                  f"an explainer reaches at most R@k {novel[0]['ceiling_R']:.3f} and P@1 {novel[0]['ceiling_P@1']:.3f}):")
            print(ev.table(conv, ["novel_available", "novel_discovered", "novel_filters", "novel_R@10", "novel_R@20"]))
        if args.synonyms is not None:
            print(f"# synonym-aware match (cosine >= {args.synonyms}; not part of the exact metric):")
            print(ev.table(conv, ["syn_P@1", "syn_P@5", "syn_R@5", "syn_R@10", "syn_F1@10"]))
        print()
    for name, c in ev.confidence.items():
        quart = ", ".join(f"{q['precision']:.2f}" for q in c["quartiles"])
        print(f"# confidence of {name} (top word, {c['filters']} filters, score half): ECE {c['ECE']:.3f}, "
              f"AUROC {c['AUROC_confidence']:.3f}; share right by confidence quartile (low to high) {quart}; "
              f"{c['interpretable']} interpretable, P@1 there {c['P@1_interpretable']:.3f}")
        import matplotlib

        matplotlib.use("Agg")
        from ..plots import plot_reliability, save_figure

        fig, _ = plot_reliability(c, label=name)
        fig_path = save_figure(fig, run_path / f"reliability-{name.split()[0]}.png")
        print(f"wrote the reliability diagram {fig_path.resolve()}")
    for line in stability_lines(ev.stability):
        print(line)
    print(f"wrote {run_path.resolve() / 'evaluation.json'}")


def stability_lines(stability: dict) -> list[str]:
    """The stability summary as printed lines."""
    if not stability:
        return []
    if "skipped" in stability:
        return [f"# stability of {stability['method']}: {stability['skipped']}"]
    out = []
    for probe, r in stability["probes"].items():
        what = ("explained from the score half instead" if probe == "halves" else
                f"the explain half with pixel noise sigma {stability['noise_sigma']:g} "
                f"({stability['noise_draws']} draw{'s' if stability['noise_draws'] > 1 else ''})")
        line = (f"# stability of {stability['method']}, {what}: top word unchanged for {r['top1_unchanged']:.3f} of "
                f"{r['filters']} filters, top-10 overlap (Jaccard) {r['top10_jaccard']:.3f}")
        if "top1_unchanged_interpretable" in r:
            line += f"; {r['top1_unchanged_interpretable']:.3f} of the {r['interpretable_filters']} interpretable"
        if "AUROC_vote_stability" in r:
            line += f"; the filters' own stability predicts it with AUROC {r['AUROC_vote_stability']:.3f}"
        out.append(line)
    return out


def dissect_cmd(args) -> int:
    from ..data import load_dataset
    from ..dissect import dissect_layers
    from ..io import write_text
    from ..models import load_model
    from ..multilayer import folder_name, resolve_layers, several

    lite = args.convention == "netdissect-lite"
    tm = load_model(args.model, args.weights)
    layers = resolve_layers(tm, args.layer)
    if lite:
        from ..netdissect_lite import load_lite_dataset

        ds = load_lite_dataset(args.dataset)
    else:
        ds = load_dataset(args.dataset)
    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out.resolve().parent / ".lavise-cache"
    results = dissect_layers(tm, layers, ds, cache_dir, args.iou_threshold, args.convention, extract_options(args))
    for layer, (dis, gt) in results.items():
        tag = f"-{folder_name(layer)}" if several(args.layer) else ""
        path = out.with_name(f"{out.stem}{tag}{out.suffix}")
        write_text(path, dis.csv_text())
        s = dis.summary()
        print(f"{s['interpretable']} of {s['units']} units of {dis.layer} interpretable (IoU > {s['iou_threshold']}, "
              f"{s['convention']} convention), {s['distinct_concepts']} distinct concepts; wrote {path.resolve()}")
        if lite:
            from ..netdissect_lite import category_order, tally_csv_text

            tally = out.resolve().parent / f"tally{tag}.csv"  # NetDissect-Lite's name, which its tools read
            write_text(tally, tally_csv_text(gt, category_order(ds, gt)))
            print(f"wrote NetDissect-Lite's tally at {tally}")
        for r in sorted(dis.rows(), key=lambda r: -r["iou"])[:8]:
            print(f"  unit {r['unit']:4d}: {r['concept']} (IoU {r['iou']:.3f})")
    return 0
