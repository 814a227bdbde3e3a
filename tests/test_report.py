"""The HTML report: content, escaping, highlighted thumbnails, and a real headless browser."""
from __future__ import annotations

import re
import shutil
from dataclasses import replace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")

from lavise.cli import main  # noqa: E402
from lavise.compare import compare_groups  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.explain import Explanations, explain_filters  # noqa: E402
from lavise.options import ExplainOptions, ExtractOptions, TrainOptions  # noqa: E402
from lavise.report import build_report, highlight, region_masks  # noqa: E402
from lavise.run import Run  # noqa: E402
from lavise.stats import Thresholds  # noqa: E402
from lavise.train import train_explainer  # noqa: E402

EVIL = "<script>alert(1)</script>"
QUIET = ExtractOptions(workers=0, show_progress=False)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, tiny_model, squares, tiny_glove):
    run = tmp_path_factory.mktemp("report-run")
    train_explainer(tiny_model, squares, load_embeddings(f"glove:{tiny_glove}"), out=run,
                    options=TrainOptions(epochs=3), extract=QUIET)
    ex = explain_filters(run, squares, ExplainOptions(p=5, s=2, x=3, vocabulary="concepts"), QUIET, target=tiny_model)
    # a hostile concept name must stay inert text
    live = next(f for f in ex.filters if f.words)
    evil = replace(live, words=[{"word": EVIL, "score": 1.0, "similarity": 0.9}] + live.words[1:])
    ex = replace(ex, filters=[evil if f.unit == live.unit else f for f in ex.filters])
    ex.save(run)
    compare_groups(run, squares, out=run / "compare" / "odd-even", extract=QUIET)  # odd/even
    html = build_report(run, dataset=squares, show_progress=False)
    return {"run": run, "html": html, "ex": Explanations.load(run), "evil_unit": live.unit}


def test_report_has_one_card_per_filter_and_thumbnails_beside_it(report_run):
    html = report_run["html"].read_text()
    ex = report_run["ex"]
    assert html.count('class="card') == len(ex.filters) == 16
    for f in ex.filters:
        assert f'id="u{f.unit}"' in html
    srcs = re.findall(r'src="(report_files/[^"]+)"', html)
    assert srcs and all((report_run["run"] / s).is_file() for s in srcs)
    live = [f for f in ex.filters if not f.dead]
    assert len({s for s in srcs if s.startswith("report_files/f")}) == sum(min(4, len(f.images)) for f in live) + \
        sum(min(4, len(f.images)) for f in ex.filters if f.dead)
    thumb = Image.open(report_run["run"] / srcs[0])
    assert thumb.size == (112, 112)
    assert "http://" not in html and "https://" not in html  # nothing from the network
    assert "Group comparisons" in html and "odd vs even" in html.replace("even vs odd", "odd vs even")
    assert "two-proportion z-test" in html


def test_hostile_words_are_escaped(report_run):
    html = report_run["html"].read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # only the page's own script


def test_embedded_report_is_one_file(report_run, tmp_path, squares):
    out = tmp_path / "one.html"
    build_report(report_run["run"], out=out, embed=True, dataset=squares, show_progress=False)
    html = out.read_text()
    assert "data:image/jpeg;base64," in html and "report_files/" not in html
    assert not (tmp_path / "report_files").exists()


def test_report_of_a_run_object_finds_the_explained_cache_by_its_key(report_run, tmp_path, squares):
    run = Run.open(report_run["run"])
    before = sorted(p.name for p in run.cache_dir.iterdir())
    html = run.report(out=tmp_path / "r.html", images=1, dataset=squares, show_progress=False)
    srcs = re.findall(r'src="(report_files/f[^"]+)"', html.read_text())
    assert len(srcs) == sum(min(1, len(f.images)) for f in report_run["ex"].filters)
    assert all((tmp_path / s).is_file() for s in srcs)
    assert sorted(p.name for p in run.cache_dir.iterdir()) == before  # found, not extracted


def test_report_cli_and_missing_explanations(report_run, tmp_path, tiny_model, squares, tiny_glove, capsys):
    assert main(["report", str(report_run["run"]), "--images", "2", "--quiet"]) == 0
    assert "report.html" in capsys.readouterr().out
    bare = tmp_path / "bare"
    train_explainer(tiny_model, squares, load_embeddings(f"glove:{tiny_glove}"), out=bare,
                    options=TrainOptions(epochs=1), extract=QUIET)
    assert main(["report", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "lavise explain" in err and err.count("\n") == 1


def test_region_is_the_upsampled_map_above_threshold():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 5.0  # one hot cell
    thr = Thresholds(values=np.array([1.0], np.float32), inclusive=np.array([False]), dead=np.array([False]))
    m = region_masks(maps, torch.tensor([0]), thr, crop=64, size=32)[0]
    ys, xs = np.nonzero(m.numpy())
    assert m.any() and 8 <= ys.mean() <= 16 and 16 <= xs.mean() <= 24  # cell (1, 2) of a 4x4 grid on 32 px
    img = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    out = highlight(img, m[None])[0]
    assert out[:, 0, 0].tolist() == [70, 70, 70]  # darkened outside
    inner = out[:, int(ys.mean()), int(xs.mean())].tolist()
    assert inner == [200, 200, 200]  # untouched inside
    assert (out == torch.tensor([255, 214, 0]).view(3, 1, 1)).all(0).any()  # outlined
    dead = Thresholds(values=np.array([1.0], np.float32), inclusive=np.array([False]), dead=np.array([True]))
    assert not region_masks(maps, torch.tensor([0]), dead, crop=64, size=32).any()


# ---------------------------------------------------------------------------- real browser

@pytest.fixture(scope="module")
def browser(chromium):
    return chromium()


def test_report_in_a_headless_browser(report_run, browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    ex = report_run["ex"]
    browser.get(report_run["html"].resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - the hostile word did not run
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) == len(ex.filters)
    # every thumbnail loaded (scroll them into view: they are lazy)
    browser.execute_script("document.querySelectorAll('img').forEach(function (i) { i.loading = 'eager'; });")
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    broken = browser.execute_script(
        "return Array.from(document.images).filter(function (i) { return i.complete && i.naturalWidth === 0; }).length")
    assert broken == 0

    counts = {}
    for f in ex.filters:
        for w in {w["word"] for w in f.words} - {EVIL}:
            counts[w] = counts.get(w, 0) + 1
    word = min((w for w, n in counts.items() if n < len(ex.filters)), key=lambda w: (-counts[w], w))
    expect = {f.unit for f in ex.filters if any(word in w["word"] for w in f.words)}
    assert 0 < len(expect) < len(ex.filters)
    box = browser.find_element(By.ID, "filter")
    box.send_keys(word)
    visible = {int(c.get_attribute("data-unit")) for c in cards if c.is_displayed()}
    assert visible == expect
    assert browser.find_element(By.ID, "count").text.startswith(f"{len(expect)} of {len(ex.filters)}")
    box.clear()
    box.send_keys("<script")  # searching for the hostile word finds its card as text
    visible = [int(c.get_attribute("data-unit")) for c in cards if c.is_displayed()]
    assert visible == [report_run["evil_unit"]]
    box.clear()
    box.send_keys(" ")
    assert all(c.is_displayed() for c in cards)

    browser.find_element(By.CSS_SELECTOR, "#sort option[value=score]").click()
    order = browser.execute_script(
        "return Array.from(document.querySelectorAll('#cards .card')).map(function (c) { return +c.dataset.score; })")
    assert order == sorted(order, reverse=True)
    browser.find_element(By.CSS_SELECTOR, "#sort option[value=unit]").click()
    units = browser.execute_script(
        "return Array.from(document.querySelectorAll('#cards .card')).map(function (c) { return +c.dataset.unit; })")
    assert units == sorted(units)

    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 300 and pixels.std() > 10  # not blank


def test_report_sorts_and_filters_by_confidence(tmp_path, report_run):
    from lavise.explain.confidence import FEATURES, Calibrator

    ex = report_run["ex"]
    cal = Calibrator((0.0,) * 6, (1.0,) * 6, (6.0, 0, 0, 0, 0, 0), -3.0, FEATURES[:6], {})  # 0.5 at a vote share of 0.5
    rated = replace(ex, filters=cal.apply(ex.filters),
                    settings={**ex.settings, "confidence": {"available": True, "interpretable_at": 0.5}})
    run = tmp_path / "run"
    shutil.copytree(report_run["run"], run, ignore=shutil.ignore_patterns("report*", "cache"))
    rated.save(run)
    html = build_report(run, dataset=None, images=0, show_progress=False).read_text()
    assert 'value="confidence"' in html and 'id="only-reliable"' in html
    n = sum(bool(f.interpretable) for f in rated.filters)
    assert html.count('data-reliable="1"') == n and f"{n} of {len(rated.filters)} filters interpretable" in html
    low = [f for f in rated.filters if f.words and not f.interpretable]
    assert (html.count("no reliable description") == len(low)) and (low or n)
    plain = build_report(report_run["run"], dataset=None, images=0, out=tmp_path / "plain.html", show_progress=False)
    assert 'value="confidence"' not in plain.read_text() and "confidence unavailable" in plain.read_text()


def test_report_shows_and_sorts_by_each_filters_stability(report_run):
    html = report_run["html"].read_text()
    live = [f for f in report_run["ex"].filters if f.stability is not None]
    assert live and 'value="stability"' in html
    for f in live:
        card = re.search(rf'id="u{f.unit}"[^>]*data-stability="([0-9.]*)"', html)
        assert card and float(card.group(1)) == pytest.approx(f.stability, abs=1e-6)
    assert html.count("resamples of the top images that elect the same top word") == len(live)
