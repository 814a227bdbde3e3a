"""`lavise rate`: the page in headless Chromium with no network, a scripted rater, and its file into rate-score."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from lavise.cli import main
from lavise.embeddings import load_embeddings
from lavise.explain import Explanations, explain_filters
from lavise.human import StudyError, build_study, load_key, score_ratings
from lavise.human.study import norm
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions
from lavise.train import train_explainer

QUIET = ExtractOptions(workers=0, show_progress=False)
WORDS = ["red", "green", "blue", "square", "noise", "edge", "corner", "plain"]
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory, tiny_model, squares, tiny_glove):
    """A tiny run whose 16 filters carry words of our choosing (the tiny vocabulary has only six)."""
    run = tmp_path_factory.mktemp("rate-run")
    train_explainer(tiny_model, squares, load_embeddings(f"glove:{tiny_glove}"), out=run,
                    options=TrainOptions(epochs=2), extract=QUIET)
    ex = explain_filters(run, squares, ExplainOptions(p=5, s=2, x=3, vocabulary="concepts"), QUIET, target=tiny_model)
    filters = []
    for f in ex.filters:
        ws = [WORDS[f.unit % 8], WORDS[(f.unit + 1) % 8], WORDS[(f.unit + 3) % 8]] + ([EVIL] if f.unit == 5 else [])
        filters.append(replace(f, dead=False, words=[{"word": w, "score": 0.5, "similarity": 0.5} for w in ws],
                               confidence=f.unit / 16))
    ex = replace(ex, filters=filters)
    ex.save(run)
    other = run.parent / "netdissect.csv"
    other.write_text("layer,unit,concept,iou,interpretable\n"
                     + "".join(f"{ex.layer},{u},{WORDS[(u * 3) % 8]},0.05,1\n" for u in range(16)))
    return {"run": run, "ex": Explanations.load(run), "against": other}


def _answer(key_item: dict, word: str | None = None, lists: dict | None = None) -> str:
    """An oracle rater: the run's words are right, every other word wrong; checks answered as expected."""
    if key_item["kind"] == "words":
        if key_item.get("check"):
            return key_item["expect"].get(word, "yes")
        return "yes" if "lavise" in key_item["words"][word] else "no"
    if key_item.get("check"):
        return key_item["expect"]
    return "A" if key_item["A"] == "lavise" else "B"


def _wait_for(folder, suffix, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        done = [p for p in folder.glob(f"*{suffix}") if not p.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {folder}")


def _rate_all(driver, key: dict, keyboard: bool = False) -> None:
    """Start with the rater id from the URL and answer every page as the oracle would (``keyboard``: pairs
    answered with A / S / B and every page left with Enter)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    begin = driver.find_element(By.ID, "begin")
    assert begin.is_enabled()  # the rater id came from the URL
    begin.click()
    order, seen = key["order"], []
    for n in range(len(order)):
        assert driver.find_element(By.ID, "counter").text == f"Page {n + 1} of {len(order)}"
        iid = driver.find_element(By.ID, "item").get_attribute("data-item")
        seen.append(iid)
        k = key["items"][iid]
        nxt = driver.find_element(By.ID, "next")
        assert not nxt.is_enabled()  # nothing answered yet
        imgs = driver.find_elements(By.CSS_SELECTOR, "#images img")
        assert imgs and all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)
        if k["kind"] == "words":
            rows = driver.find_elements(By.CSS_SELECTOR, "#words tr")
            shown = [r.find_element(By.CSS_SELECTOR, "td.word").text for r in rows]
            if k.get("check"):
                assert len(shown) == 4 and set(k["expect"]) <= set(shown)
            else:
                assert sorted(shown) == sorted(k["words"])
            for r in rows:
                word = r.find_element(By.CSS_SELECTOR, "td.word").text
                r.find_element(By.CSS_SELECTOR, f"button.{_answer(k, word)}").click()
        elif keyboard:
            driver.find_element(By.TAG_NAME, "body").send_keys({"A": "a", "B": "b", "same": "s"}[_answer(k)])
        else:
            driver.find_element(By.CSS_SELECTOR, f"button.choice[data-answer='{_answer(k)}']").click()
        assert nxt.is_enabled()
        if n == 1:  # back to page 1: its answers are still there
            driver.find_element(By.ID, "back").click()
            assert driver.find_element(By.ID, "counter").text == f"Page 1 of {len(order)}"
            assert driver.find_element(By.ID, "item").get_attribute("data-item") == seen[0]
            assert driver.find_elements(By.CSS_SELECTOR, "button[aria-pressed=true]")
            driver.find_element(By.ID, "next").click()
        if keyboard:
            driver.switch_to.active_element.send_keys(Keys.ENTER)
        else:
            driver.find_element(By.ID, "next").click()
    # every page once: the words pages first, then the lists, in the rater's own order
    assert sorted(seen) == sorted(order)
    kinds = [key["items"][i]["kind"] for i in seen]
    assert kinds == sorted(kinds, key=lambda x: x != "words")
    return seen


def test_page_offline_scripted_rater_and_round_trip(rated_run, squares, chromium, network_log, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study = build_study(rated_run["run"], tmp_path / "study", against=[f"netdissect={rated_run['against']}"],
                        filters=8, words=3, images=4, checks=2, seed=1, dataset=squares, show_progress=False)
    key = load_key(study.path)
    assert key["sources"] == ["lavise", "netdissect", "shuffled"] and len(key["filters"]) == 8
    html = study.page.read_text()
    assert "netdissect" not in html and '"unit"' not in html  # blind: the page does not say who said what
    assert "http://" not in html and "https://" not in html  # nothing to fetch

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(downloads)
    network_log(driver)  # drop the browser's own start-up pages
    driver.get(study.page.resolve().as_uri() + "?rater=oracle")
    assert driver.execute_script("return document.readyState") == "complete"
    first = _rate_all(driver, key)
    assert driver.find_element(By.ID, "done").is_displayed()
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - the hostile word stayed text
    driver.find_element(By.ID, "download").click()
    got = _wait_for(downloads, ".json")
    driver.find_element(By.ID, "download-csv").click()
    got_csv = _wait_for(downloads, ".csv")
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []
    urls = network_log(driver)
    assert any(u.startswith("file:") for u in urls)  # the log does see the page
    assert [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")] == []

    rows = json.loads(got.read_text())["rows"]
    n_words = sum(len(k["words"]) if not k.get("check") else 4 for k in key["items"].values() if k["kind"] == "words")
    n_pairs = sum(k["kind"] == "pair" for k in key["items"].values())
    assert len(rows) == n_words + n_pairs and {r["rater"] for r in rows} == {"oracle"}
    assert all(r["ms"] >= 0 and r["time"].endswith("Z") for r in rows)
    assert {r["item"]: r["page"] for r in rows} == {i: n for n, i in enumerate(first, 1)}  # where each page came

    scores = score_ratings(study.path, [got], bootstrap=50)
    assert scores.raters == [{"rater": "oracle", "judgements": n_words - 4 * key["checks"]["words"]
                              + n_pairs - key["checks"]["pair"],
                              "checks": sum(key["checks"].values()), "checks_passed": sum(key["checks"].values()),
                              "kept": True}]
    prec = {r["source"]: r for r in scores.precision}
    assert prec["lavise"]["P@1"] == 1.0 and prec["lavise"]["P@k"] == 1.0
    # the oracle says yes to another source's word exactly when the run gave it too
    for s in ("netdissect", "shuffled"):
        tops = []
        for k in key["items"].values():
            if k["kind"] == "words" and not k.get("check"):
                first = next(w for w, by in k["words"].items() if by.get(s) == 1)
                tops.append(1.0 if "lavise" in k["words"][first] else 0.0)
        assert prec[s]["P@1"] == pytest.approx(sum(tops) / len(tops))
    assert all(p["run"] == 1.0 for p in scores.preference)
    assert score_ratings(study.path, [got_csv], bootstrap=50).precision == scores.precision

    # the optional local server: the page sends the answers itself when the rater finishes
    import threading

    from lavise.human.serve import make_server

    server = make_server(study.path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the page opened from its file posts to the server across origins (a harder path than from the server)
        driver.get(study.page.resolve().as_uri() + f"?rater=served&post=http://127.0.0.1:{server.server_address[1]}/ratings")
        second = _rate_all(driver, key, keyboard=True)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "post-status").text == "(sent)")
    finally:
        server.shutdown()
        server.server_close()
    served = json.loads((study.path / "ratings" / "ratings-served-0.json").read_text())
    assert served["rater"] == "served" and len(served["rows"]) == len(rows)
    assert second != first  # another rater, another order (seeded by the rater's ID)
    assert score_ratings(study.path, [study.path / "ratings" / "ratings-served-0.json"], bootstrap=50).precision \
        == scores.precision  # the keyboard gave the same answers


def test_rate_cli_and_errors(rated_run, squares, tmp_path, capsys, monkeypatch):
    run = str(rated_run["run"])
    out = tmp_path / "s"
    # the test's image set has no spec the CLI can load: without it there are no images to show
    assert main(["rate", run, "--out", str(out)]) == 2
    assert "cannot load the images explained" in capsys.readouterr().err
    monkeypatch.setattr("lavise.data.load_dataset", lambda spec: squares)
    assert main(["rate", run, "--out", str(out), "--filters", "6", "--images", "2", "--quiet",
                 "--against", str(rated_run["against"])]) == 0
    text = capsys.readouterr().out
    assert "6 filters" in text and "lavise, netdissect, shuffled" in text and "rate-score" in text
    key = load_key(out)
    assert key["strata_by"] == "confidence"
    # the same seed gives the same study
    assert main(["rate", run, "--out", str(tmp_path / "t"), "--filters", "6", "--images", "2", "--quiet",
                 "--against", str(rated_run["against"])]) == 0
    assert load_key(tmp_path / "t") == key
    assert (tmp_path / "t" / "index.html").read_text() == (out / "index.html").read_text()

    bad = tmp_path / "bad.csv"
    bad.write_text("unit,word\n99,dog\n")
    assert main(["rate", run, "--out", str(tmp_path / "x"), "--against", str(bad)]) == 2
    assert "names unit 99, but layer" in capsys.readouterr().err
    assert main(["rate", run, "--out", str(tmp_path / "x"), "--filters", "1"]) == 2
    assert "filters must be at least 2" in capsys.readouterr().err
    assert main(["rate", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    with pytest.raises(StudyError, match="labels file not found"):
        build_study(run, tmp_path / "y", against=[str(tmp_path / "nope.csv")], dataset=squares)


def test_norm_matches_words_across_sources():
    assert norm(" Table_Tennis  ball") == norm("table tennis ball")
