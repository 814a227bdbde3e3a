"""The option dataclasses: round trips through dicts (and JSON), checks with one clear message naming the flag,
no torch at import, and the CLI's defaults are the dataclasses' defaults.

Every test here fails on the code before the options refactor: ``lavise.options`` did not exist.
"""
import json
import subprocess
import sys

import pytest

from lavise.errors import LaviseError
from lavise.options import CompareOptions, EvalOptions, ExplainOptions, ExtractOptions, TrainOptions

NON_DEFAULT = [
    ExtractOptions(device="cuda:1", batch_size=5, workers=0, amp=True, strict=True, show_progress=False),
    TrainOptions(epochs=7, patience=2, lr=0.01, batch_size=16, val_fraction=0.25, seed=3, heads=1, small_masks=2),
    ExplainOptions(method="activation", p=7, s=2, x=4, vocabulary="concepts", vocabulary_size=50, hubness=0.25,
                   calibration=0.5),
    EvalOptions(explain=ExplainOptions(method="original", p=3, vocabulary="common", hubness=0.5),
                methods=("attention", "image"), baselines=("random",), conventions=("present",), iou_threshold=0.1,
                ks=(1, 3), dataset_concepts_in_vocabulary=False, synonym_threshold=0.8, image_units=4, seed=2,
                match="exact", controls=("shuffled", "random-init")),
    CompareOptions(correction="holm", alpha=0.01, rank_by="statistic", top=3, examples=0),
]


@pytest.mark.parametrize("opts", NON_DEFAULT + [cls() for cls in (ExtractOptions, TrainOptions, ExplainOptions,
                                                                 EvalOptions, CompareOptions)],
                         ids=lambda o: type(o).__name__)
def test_round_trip_through_dicts_and_json(opts):
    cls = type(opts)
    d = opts.to_dict()
    assert cls.from_dict(d) == opts
    assert cls.from_dict(json.loads(json.dumps(d))) == opts  # as config.json stores them: tuples become lists
    assert cls.from_dict({**d, "from_a_newer_version": 1}) == opts  # unknown keys are ignored
    assert cls.from_dict({}) == cls() and cls.from_dict(None) == cls()


def test_eval_options_nest_the_explain_options():
    ev = NON_DEFAULT[3]
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["explain"] == ev.explain.to_dict() and d["methods"] == ["attention", "image"]
    back = EvalOptions.from_dict(d)
    assert isinstance(back.explain, ExplainOptions) and back.explain == ev.explain
    assert back.ks == (1, 3) and back.methods == ("attention", "image")
    assert EvalOptions.from_dict({"explain": {"p": 9}}).explain == ExplainOptions(p=9)


def test_replace_checks_again():
    o = ExplainOptions()
    assert o.replace(p=3) == ExplainOptions(p=3) and o == ExplainOptions()  # frozen: a new object
    with pytest.raises(LaviseError, match="-p/--top-images"):
        o.replace(p=0)


@pytest.mark.parametrize("make, needle", [
    (lambda: ExplainOptions(method="nope"), "unknown method 'nope'"),
    (lambda: ExplainOptions(p=0), "-p/--top-images"),
    (lambda: ExplainOptions(s=-1), "-s/--words-per-image"),
    (lambda: ExplainOptions(x=1.5), "-x/--words"),
    (lambda: ExplainOptions(vocabulary_size=0), "--vocabulary-size"),
    (lambda: ExplainOptions(hubness=-0.1), "--hubness"),
    (lambda: ExplainOptions(calibration=-1.0), "--calibration"),
    (lambda: TrainOptions(epochs=0), "--epochs"),
    (lambda: TrainOptions(patience=0), "--patience"),
    (lambda: TrainOptions(heads=0), "--heads 1"),
    (lambda: TrainOptions(small_masks=-1), "--small-masks"),
    (lambda: TrainOptions(batch_size=0), "--train-batch-size"),
    (lambda: TrainOptions(val_fraction=1.0), "--val-fraction"),
    (lambda: TrainOptions(lr=0.0), "--lr"),
    (lambda: ExtractOptions(workers=-1), "--workers"),
    (lambda: ExtractOptions(batch_size=0), "--batch-size"),
    (lambda: EvalOptions(baselines=("x",)), "unknown baseline 'x'"),
    (lambda: EvalOptions(methods=("gradcam",)), "unknown method 'gradcam'"),
    (lambda: EvalOptions(conventions=("both",)), "unknown convention 'both'"),
    (lambda: EvalOptions(conventions=()), "ground-truth convention"),
    (lambda: EvalOptions(ks=(0, 5)), "cut-offs"),
    (lambda: EvalOptions(iou_threshold=1.0), "--iou-threshold"),
    (lambda: EvalOptions(image_units=0), "--image-units"),
    (lambda: CompareOptions(alpha=2), "--alpha"),
    (lambda: CompareOptions(correction="bonferroni"), "unknown correction 'bonferroni'"),
    (lambda: CompareOptions(rank_by="p"), "unknown ranking 'p'"),
    (lambda: CompareOptions(top=-1), "--top"),
    # wrong types get the same one-line error, not a TypeError from a comparison
    (lambda: ExplainOptions(hubness=None), "--hubness"),
    (lambda: TrainOptions(lr="x"), "--lr"),
    (lambda: TrainOptions(epochs=True), "--epochs"),
    (lambda: EvalOptions(iou_threshold=None), "--iou-threshold"),
    (lambda: CompareOptions(alpha="0.05"), "--alpha"),
    (lambda: ExtractOptions(device=0), "--device"),
])
def test_bad_values_name_the_flag(make, needle):
    with pytest.raises(LaviseError) as e:
        make()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_importing_the_options_does_not_import_torch():
    code = "import sys, lavise.options, lavise.defaults; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_cli_defaults_are_the_options_defaults(capsys):
    from lavise import defaults as D
    from lavise.cli import build_parser, explain_options, extract_options

    ap = build_parser()
    args = ap.parse_args(["explain", "RUN", "--images", "X"])
    assert explain_options(args) == ExplainOptions()
    assert extract_options(args).replace(show_progress=True) == ExtractOptions()
    ev = ap.parse_args(["evaluate", "RUN", "--dataset", "X"])
    assert explain_options(ev).replace(method=ExplainOptions().method) == ExplainOptions()
    assert ev.iou_threshold == EvalOptions().iou_threshold
    tr = ap.parse_args(["train", "--out", "RUN"])
    t = TrainOptions()
    assert (tr.epochs, tr.patience, tr.lr, tr.train_batch_size, tr.heads, tr.small_masks, tr.val_fraction, tr.seed) == \
        (t.epochs, t.patience, t.lr, t.batch_size, t.heads, t.small_masks, t.val_fraction, t.seed)
    # flags given are read back into the options
    args = ap.parse_args(["explain", "RUN", "--images", "X", "--method", "activation", "-p", "7", "--calibration",
                          "0.5", "--hubness", "--workers", "0", "--batch-size", "3", "--quiet"])
    assert explain_options(args) == ExplainOptions(method="activation", p=7, calibration=0.5, hubness=0.25)
    assert extract_options(args) == ExtractOptions(batch_size=3, workers=0, show_progress=False)
    with pytest.raises(SystemExit):
        ap.parse_args(["explain", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # the help, unwrapped
    assert f"(default {D.TOP_IMAGES};" in shown and f"(default {D.DEFAULT_METHOD})" in shown
    assert ExplainOptions().p == D.TOP_IMAGES and ExplainOptions().method == D.DEFAULT_METHOD


def test_the_package_exports_every_public_name_of_the_api_lazily():
    import lavise
    import lavise.api

    assert lavise._API == set(lavise.api.__all__)
    for name in lavise.api.__all__:
        assert getattr(lavise, name) is getattr(lavise.api, name)
