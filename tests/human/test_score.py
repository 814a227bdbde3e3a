"""rate-score on ratings files built here, with every figure worked out by hand."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lavise.cli import main
from lavise.human import StudyError, krippendorff_alpha, score_ratings
from lavise.human.study import KEY_FORMAT

STUDY = "abc123def456"
KEY = {
    "format": KEY_FORMAT, "version": 1, "study": STUDY, "sources": ["lavise", "nd", "shuffled"],
    "control": ["shuffled"], "run_source": "lavise", "words": 2,
    "items": {
        "w0": {"kind": "words", "unit": 0, "stratum": 0, "words": {"dog": {"lavise": 1, "nd": 1}, "grass": {"lavise": 2},
                                                     "car": {"shuffled": 1}, "sky": {"shuffled": 2}}},
        "w1": {"kind": "words", "unit": 1, "stratum": 1, "words": {"cat": {"lavise": 1}, "bed": {"nd": 1, "lavise": 2},
                                                     "tree": {"shuffled": 1}}},
        "p0_1": {"kind": "pair", "unit": 0, "A": "lavise", "B": "nd"},
        "p1_1": {"kind": "pair", "unit": 1, "A": "nd", "B": "lavise"},
        "p0_2": {"kind": "pair", "unit": 0, "A": "shuffled", "B": "lavise"},
        "cw0": {"kind": "words", "unit": 0, "check": True, "other": 1, "expect": {"boat": "no"}},
        "cp0": {"kind": "pair", "unit": 1, "check": True, "other": 0, "expect": "A"},
    },
}
# rater -> {(item, option): answer}; r4 fails both checks
ANSWERS = {
    "r1": {("w0", "dog"): "yes", ("w0", "grass"): "yes", ("w0", "car"): "no", ("w0", "sky"): "no",
           ("w1", "cat"): "yes", ("w1", "bed"): "no", ("w1", "tree"): "no",
           ("p0_1", ""): "A", ("p1_1", ""): "B", ("p0_2", ""): "B", ("cw0", "boat"): "no", ("cp0", ""): "A"},
    "r2": {("w0", "dog"): "yes", ("w0", "grass"): "no", ("w0", "car"): "no", ("w0", "sky"): "no",
           ("w1", "cat"): "no", ("w1", "bed"): "no", ("w1", "tree"): "no",
           ("p0_1", ""): "A", ("p1_1", ""): "same", ("p0_2", ""): "B", ("cw0", "boat"): "no", ("cp0", ""): "A"},
    "r3": {("w0", "dog"): "yes", ("w0", "grass"): "no", ("w0", "car"): "yes", ("w0", "sky"): "no",
           ("w1", "cat"): "yes", ("w1", "bed"): "yes", ("w1", "tree"): "no",
           ("p0_1", ""): "B", ("p1_1", ""): "B", ("p0_2", ""): "B", ("cw0", "boat"): "no", ("cp0", ""): "A"},
    "r4": {("w0", "dog"): "yes", ("w0", "grass"): "yes", ("w0", "car"): "yes", ("w0", "sky"): "yes",
           ("w1", "cat"): "yes", ("w1", "bed"): "yes", ("w1", "tree"): "yes",
           ("p0_1", ""): "B", ("p1_1", ""): "A", ("p0_2", ""): "A", ("cw0", "boat"): "yes", ("cp0", ""): "B"},
}


def _rows(rater, answers, t0=0):
    return [{"study": STUDY, "rater": rater, "item": i, "option": o, "answer": a,
             "time": f"2026-12-05T10:00:{t0 + n:02d}.000Z", "ms": 900} for n, ((i, o), a) in enumerate(answers.items())]


@pytest.fixture()
def study(tmp_path):
    d = tmp_path / "study"
    d.mkdir()
    (d / "key.json").write_text(json.dumps(KEY))
    files = []
    for rater, answers in ANSWERS.items():
        p = tmp_path / f"ratings-{rater}.json"
        p.write_text(json.dumps({"format": "lavise-ratings", "study": STUDY, "rater": rater, "rows": _rows(rater, answers)}))
        files.append(p)
    return d, files


def _by(rows, key, name):
    return next(r for r in rows if r[key] == name)


def test_precision_preference_agreement_and_exclusion_by_hand(study):
    d, files = study
    s = score_ratings(d, files, bootstrap=200)
    # medians over r1-r3: dog 1, grass 0, car 0, sky 0, cat 1, bed 0, tree 0
    lav, nd, sh = (_by(s.precision, "source", n) for n in ("lavise", "nd", "shuffled"))
    assert (lav["P@1"], lav["P@k"]) == (1.0, 0.5)      # dog, cat; (dog+grass)/2, (cat+bed)/2
    assert (nd["P@1"], nd["P@k"]) == (0.5, 0.5)        # dog 1, bed 0
    assert (sh["P@1"], sh["P@k"]) == (0.0, 0.0)
    assert lav["P@1_ci"] == [1.0, 1.0]
    assert nd["P@1_ci"][0] <= 0.5 <= nd["P@1_ci"][1]
    assert lav["filters"] == nd["filters"] == 2 and lav["words"] == 4 and nd["words"] == 2
    # preference against nd: p0_1 (lavise = A): A, A, B; p1_1 (lavise = B): B, same, B
    pn = _by(s.preference, "other", "nd")
    assert pn["run"] == pytest.approx(4 / 6) and pn["same"] == pytest.approx(1 / 6)
    assert pn["other_share"] == pytest.approx(1 / 6) and pn["judgements"] == 6 and pn["filters"] == 2
    assert _by(s.preference, "other", "shuffled")["run"] == 1.0
    # Krippendorff's alpha, nominal, by hand: words 1 - 20 * 8 / (21^2 - 8^2 - 13^2) = 3/13;
    # pairs 1 - 8 * 4 / (9^2 - 2^2 - 6^2 - 1^2) = 0.2
    assert s.agreement["words"] == pytest.approx(3 / 13)
    assert s.agreement["pairs"] == pytest.approx(0.2)
    assert (s.agreement["word_units"], s.agreement["pair_units"]) == (7, 3)
    r4 = _by(s.raters, "rater", "r4")
    assert not r4["kept"] and (r4["checks"], r4["checks_passed"]) == (2, 0)
    assert sum(r["kept"] for r in s.raters) == 3
    assert "3 kept of 4" in s.table() and "r4 (0 of 2)" in s.table()
    assert "by the sampling stratum, weakest to strongest (confidence): 1.000 (1) / 1.000 (1)" in s.table()


def test_a_failed_rater_counts_when_the_bar_is_zero(study):
    d, files = study
    s = score_ratings(d, files, min_pass=0.0, bootstrap=0)
    assert all(r["kept"] for r in s.raters)
    # grass now [1, 0, 0, 1] -> median 0.5; lavise P@k (dog 1 + grass 0.5)/2, (cat 1 + bed 0.5)/2
    assert _by(s.precision, "source", "lavise")["P@k"] == pytest.approx(0.75)


def test_alpha_of_two_raters_by_hand():
    # r1 y y n n, r2 y n n n: o_yn = 2, n_y = 3, n_n = 5, n = 8 -> 1 - 7 * 2 / (64 - 9 - 25)
    assert krippendorff_alpha([["y", "y"], ["y", "n"], ["n", "n"], ["n", "n"]]) == pytest.approx(1 - 14 / 30)
    assert krippendorff_alpha([["y", "y"], ["n", "n"]]) == 1.0
    assert np.isnan(krippendorff_alpha([["y"], ["n", "n"]]))  # one pairable unit, one value


def test_csv_ratings_score_as_json_does_and_the_latest_answer_counts(study, tmp_path):
    d, files = study
    cols = ["study", "rater", "item", "option", "answer", "time", "ms"]
    csvs = []
    for rater, answers in ANSWERS.items():
        p = tmp_path / f"{rater}.csv"
        rows = _rows(rater, answers)
        if rater == "r1":  # a changed mind: an earlier "no" for dog, overridden by the later "yes"
            rows.insert(0, {**rows[0], "answer": "no", "time": "2026-12-05T09:00:00.000Z"})
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            w.writerows(rows)
        csvs.append(p)
    a, b = score_ratings(d, files, bootstrap=50), score_ratings(d, csvs, bootstrap=50)
    assert a.precision == b.precision and a.preference == b.preference and a.agreement == b.agreement


def test_cli_writes_table_json_and_figure(study, capsys):
    d, files = study
    assert main(["rate-score", str(d), *map(str, files), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "Precision-H@1" in out and "shuffled (control)" in out
    saved = json.loads((d / "scores.json").read_text())
    assert saved["study"] == STUDY and len(saved["precision"]) == 3
    from PIL import Image

    with Image.open(d / "scores.png") as im:
        assert im.size[0] > 300
    assert (d / "scores.md").read_text().startswith("# Human ratings")
    per = list(csv.DictReader((d / "scores-per-filter.csv").open()))
    got = {(r["unit"], r["source"]): (r["precision_h_at_1"], r["precision_h_at_2"]) for r in per}
    # by hand (medians in the first test): unit 0 lavise dog 1, (dog + grass) / 2; unit 1 nd bed 0
    assert got[("0", "lavise")] == ("1", "0.5") and got[("1", "nd")] == ("0", "0") and len(per) == 6


def test_bad_ratings_files_fail_in_one_line(study, tmp_path, capsys):
    d, files = study
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"study": "ffffffffffff", "rows": _rows("r9", ANSWERS["r1"])}))
    with pytest.raises(StudyError, match="study ffffffffffff, not of this study"):
        score_ratings(d, [other])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"study": STUDY, "rows": [{"rater": "x", "item": "w9", "option": "", "answer": "A"}]}))
    with pytest.raises(StudyError, match="item 'w9' is not in this study"):
        score_ratings(d, [bad])
    bad.write_text(json.dumps({"study": STUDY, "rows": [{"rater": "x", "item": "w0", "option": "dog", "answer": "maybe"}]}))
    with pytest.raises(StudyError, match="answer 'maybe'"):
        score_ratings(d, [bad])
    bad.write_text("{not json")
    with pytest.raises(StudyError, match="not a ratings file"):
        score_ratings(d, [bad])
    assert main(["rate-score", str(tmp_path / "nowhere"), str(files[0])]) == 2
    assert "no rating study" in capsys.readouterr().err
    assert main(["rate-score", str(d), str(tmp_path / "missing.json")]) == 2
    assert "ratings file not found" in capsys.readouterr().err


def test_local_server_serves_the_page_not_the_key_and_saves_answers(study, tmp_path):
    import threading
    import urllib.error
    import urllib.request

    from lavise.human.serve import make_server

    d, files = study
    (d / "index.html").write_text("<html>page</html>")
    server = make_server(d, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPHandler)
        with opener.open(f"{base}/?rater=r1") as r:  # redirected to the page, told where to post
            assert r.url.endswith("/index.html?post=ratings&rater=r1") and r.read() == b"<html>page</html>"
        for path in ("/key.json", "/../key.json", "/ratings"):
            with pytest.raises(urllib.error.HTTPError) as e:
                opener.open(base + path)
            assert e.value.code == 404
        for f in files:
            req = urllib.request.Request(f"{base}/ratings", data=f.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with opener.open(req) as r:
                assert json.loads(r.read())["saved"].startswith("ratings-r")
        pre = urllib.request.Request(f"{base}/ratings", method="OPTIONS")  # a page from a file posts cross-origin
        with opener.open(pre) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
            assert r.headers["Access-Control-Allow-Headers"] == "Content-Type"
        wrong = urllib.request.Request(f"{base}/ratings", data=json.dumps({"study": "x", "rows": []}).encode(),
                                       method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(wrong)
        assert e.value.code == 400
    finally:
        server.shutdown()
        server.server_close()
    saved = sorted((d / "ratings").glob("*.json"))
    assert [p.name for p in saved] == [f"ratings-r{i}-0.json" for i in range(1, 5)]
    assert score_ratings(d, saved, bootstrap=0).precision == score_ratings(d, files, bootstrap=0).precision
