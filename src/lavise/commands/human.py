"""Human evaluation subcommands: rate (write a rating page), rate-score (score the raters' files)."""
from __future__ import annotations

from pathlib import Path

from ..cli import EPILOG
from ..errors import LaviseError


def register(sub) -> None:
    p = sub.add_parser(
        "rate", epilog=EPILOG, help="write a self-contained rating page of a run's explanations (human evaluation)",
        description="Samples filters (stratified by confidence, seeded) and writes DIR/index.html, a page that works "
                    "offline, and DIR/key.json, its answer key (keep it from raters). Raters judge each word "
                    "(does it describe the highlighted regions?) and pairs of lists (which is better?); the sources "
                    "are blind and shuffled, attention checks mixed in. Score with `lavise rate-score DIR FILES`.")
    p.add_argument("run", help="run folder with explanations (from `lavise explain`)")
    p.add_argument("--out", required=True, help="the study folder to write")
    p.add_argument("--against", action="append", default=[], metavar="[NAME=]CSV",
                   help="another method's labels to compare, a CSV with columns unit and word (or label, "
                        "description, concept: lavise dissect, NetDissect-Lite tally.csv and CLIP-Dissect files "
                        "read as they are); repeatable")
    p.add_argument("--filters", type=int, default=40, help="filters sampled (default 40)")
    p.add_argument("--words", type=int, default=5, help="top words per source shown (default 5, as the paper)")
    p.add_argument("--images", type=int, default=15, help="top images per filter (default 15, as the paper)")
    p.add_argument("--checks", type=int, default=3, help="attention checks per task (default 3)")
    p.add_argument("--no-control", action="store_true",
                   help="leave out the shuffled control (another sampled filter's words)")
    p.add_argument("--seed", type=int, default=0, help="sampling and shuffling seed (default 0)")
    p.add_argument("--thumb", type=int, default=160, help="image size in pixels (default 160)")
    p.add_argument("--layer", help="for a run of several layers: the layer to rate")
    p.add_argument("--title", help="page title")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=rate)

    p = sub.add_parser(
        "rate-score", help="Precision-H and preference from raters' files of a `lavise rate` study",
        description="Precision-H@1 and @k per source (median over raters per word, mean over filters), preference "
                    "shares, 95%% bootstrap intervals over filters, Krippendorff's alpha; raters who fail attention "
                    "checks are excluded and counted. Writes DIR/scores.json, scores.md, scores.png and "
                    "scores-per-filter.csv.")
    p.add_argument("study", help="the study folder (from `lavise rate`)")
    p.add_argument("ratings", nargs="+", help="the raters' downloaded files (JSON or CSV)")
    p.add_argument("--min-pass", type=float, default=0.75,
                   help="share of attention checks a rater must pass to be kept (default 0.75)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", help="where to write the scores (default: the study folder)")
    p.set_defaults(func=rate_score)

    p = sub.add_parser(
        "rate-serve", help="serve a rating study locally; finished raters' answers are saved in DIR/ratings/",
        description="Optional: serves DIR/index.html (never the key) and saves each rater's answers, sent by the "
                    "page when they finish, as DIR/ratings/ratings-<rater>-<n>.json. No authentication: for a lab "
                    "network. Raters open http://HOST:PORT/ (add ?rater=ID to fill in their ID).")
    p.add_argument("study", help="the study folder (from `lavise rate`)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.set_defaults(func=rate_serve)


def rate(args) -> int:
    from ..human import build_study
    from ..multilayer import LayeredRun, is_layered

    run = args.run
    if is_layered(run):
        lr = LayeredRun(run)
        if not args.layer:
            raise LaviseError(f"{run} explains {len(lr.layers)} layers ({', '.join(lr.layers)}); rate one with --layer")
        run = lr.run(args.layer)
    study = build_study(run, args.out, against=args.against, filters=args.filters, words=args.words,
                        images=args.images, checks=args.checks, control=not args.no_control, seed=args.seed,
                        thumb=args.thumb, title=args.title, show_progress=not args.quiet)
    print(f"{study.filters} filters, {study.items} pages ({study.checks} attention checks), sources: "
          f"{', '.join(study.sources)}")
    print(f"wrote {study.page.resolve()} (send it to raters: it works offline; they download their answers)")
    print(f"keep {study.key.resolve()} from raters; then: lavise rate-score {args.out} RATINGS...")
    return 0


def rate_score(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ..human import score_ratings

    scores = score_ratings(args.study, args.ratings, min_pass=args.min_pass, bootstrap=args.bootstrap, seed=args.seed)
    path = scores.save(args.out or args.study)
    print(scores.table())
    print(f"wrote {Path(path).resolve()}, scores.md, scores.png and scores-per-filter.csv")
    return 0


def rate_serve(args) -> int:
    from ..human.serve import RATINGS_DIR, make_server

    try:
        server = make_server(args.study, args.host, args.port)
    except OSError as e:
        raise LaviseError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); choose another --port") from None
    host, port = server.server_address[:2]
    print(f"serving {Path(args.study, 'index.html').resolve()} at http://{host}:{port}/ ; answers go to "
          f"{Path(args.study, RATINGS_DIR).resolve()}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
