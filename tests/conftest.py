"""Shared fixtures: a tiny CNN, a tiny reference set with exact masks, tiny embeddings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lavise.data.base import Annotation, ConceptDataset
from lavise.data.transforms import Preprocess

TINY_WORDS = {  # 4-d vectors, far apart so a tiny head can learn them
    "cat": [1, 0, 0, 0], "dog": [0, 1, 0, 0], "car": [0, 0, 1, 0], "tree": [0, 0, 0, 1],
    "sun": [1, 1, 0, 0], "road": [0, 1, 1, 0],
}
COLOURS = {"cat": (230, 30, 30), "dog": (30, 230, 30), "car": (30, 30, 230)}


def bilinear_weights(n_in: int, n_out: int) -> list[list[float]]:
    """1-D bilinear weights (align_corners=False), written out by hand for tests: output i samples
    x = (i + 0.5) n_in / n_out - 0.5, clamped at the borders, and mixes the two nearest input cells."""
    rows = []
    for i in range(n_out):
        x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        lo, w = int(x), [0.0] * n_in
        w[lo] += 1 - (x - lo)
        w[min(lo + 1, n_in - 1)] += x - lo
        rows.append(w)
    return rows


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4, padding=2), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.pool(self.block2(self.block1(x))).flatten(1))


class SquaresDataset(ConceptDataset):
    """Non-square noisy images, each with 1-2 coloured squares whose masks are exact."""

    kind = "squares"

    def __init__(self, root: Path, n: int = 24, seed: int = 0):
        super().__init__(root, f"squares:{root}")
        rng = np.random.default_rng(seed)
        self._anns = []
        root.mkdir(parents=True, exist_ok=True)
        names = list(COLOURS)
        for i in range(n):
            h, w = 60, 80
            img = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
            anns = []
            for c in rng.choice(names, size=rng.integers(1, 3), replace=False):
                s = int(rng.integers(16, 28))
                y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
                m = np.zeros((h, w), bool)
                m[y:y + s, x:x + s] = True
                for a in anns:  # later squares occlude earlier ones
                    a.mask[m] = False
                img[m] = COLOURS[str(c)]
                anns.append(Annotation(str(c), m))
            p = root / f"img{i:03d}.png"
            Image.fromarray(img).save(p)
            self.items.append((p.name, p, "odd" if i % 2 else "even"))
            self._anns.append(anns)
        self.concepts = sorted(names)

    def annotations(self, i):
        return list(self._anns[i])


@pytest.fixture(scope="session")
def tiny_model():
    from lavise.models import wrap_model

    return wrap_model(TinyNet(), Preprocess(resize=64, crop=64), default_layer="block2", name="tiny")


@pytest.fixture(scope="session")
def squares(tmp_path_factory):
    return SquaresDataset(tmp_path_factory.mktemp("squares"), n=24)


@pytest.fixture(scope="session")
def tiny_glove(tmp_path_factory):
    d = tmp_path_factory.mktemp("glove")
    p = d / "tiny.txt"
    p.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in TINY_WORDS.items()))
    return p


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def chromium():
    """A factory of headless Chromium drivers (selenium) that logs the console and every network request and
    saves downloads into the folder it is given; every driver is closed at the end of the module."""
    import shutil
    import tempfile

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    made = []

    def make(downloads: Path | None = None):
        profile = tempfile.mkdtemp(prefix="lavise-chromium-")
        opts = Options()
        opts.binary_location = CHROMIUM
        # no network: the background services off, and any request the page might make goes to a dead proxy
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run",
                     "--disable-sync", "--proxy-server=http://127.0.0.1:9", f"--user-data-dir={profile}",
                     "--window-size=1280,900"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        if downloads is not None:
            opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                   "download.prompt_for_download": False})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        if downloads is not None:
            driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        made.append((driver, profile))
        return driver

    try:
        yield make
    finally:
        for driver, profile in made:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (from Chromium's performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.fixture()
def network_log():
    return requested_urls


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LAVISE_CACHE", str(tmp_path_factory.getbasetemp() / "lavise-cache"))


BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench_module(name: str):
    """A script of bench/ (not a package) imported by name."""
    import importlib
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def quality():
    """bench/quality.py."""
    return _bench_module("quality")


@pytest.fixture(scope="module")
def qdocs():
    """bench/quality_docs.py."""
    return _bench_module("quality_docs")
