"""Two CPU processes under torchrun (gloo) give the same results as one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COLOURS, TINY_WORDS

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    rng = np.random.default_rng(3)
    lines = []
    for i in range(14):
        img = rng.integers(90, 140, size=(70, 90, 3), dtype=np.uint8)
        boxes = {}
        for j, c in enumerate(rng.choice(list(COLOURS), size=2, replace=False)):
            x0 = 5 + 45 * j
            y0 = int(rng.integers(0, 30))
            img[y0:y0 + 30, x0:x0 + 30] = COLOURS[str(c)]
            boxes[str(c)] = [[x0, y0, x0 + 30, y0 + 30]]
        Image.fromarray(img).save(root / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "concepts": list(boxes), "boxes": boxes}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    glove = root / "tiny.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in TINY_WORDS.items()))
    return root


def _lavise(args, run, nproc=1, env_extra=None):
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))  # keep a source checkout's path
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    launcher = [sys.executable, "-m", "lavise.cli"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "lavise.cli"]
    res = subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_processes_match_one(manifest_set, tmp_path):
    m = manifest_set
    outs = {}
    for nproc in (1, 2):
        run = tmp_path / f"run{nproc}"
        common = ["--batch-size", "4", "--workers", "0", "--quiet"]
        _lavise(["train", "--model", "python:conftest:TinyNet", "--layer", "block2", "--reference", f"manifest:{m / 'm.jsonl'}",
                 "--embeddings", f"glove:{m / 'tiny.txt'}", "--out", str(run), "--epochs", "3", *common], run, nproc)
        _lavise(["explain", str(run), "--images", f"manifest:{m / 'm.jsonl'}", "--vocabulary", "concepts",
                 "-p", "4", "-s", "1", "-x", "2", *common], run, nproc)
        outs[nproc] = run
    a, b = outs[1], outs[2]
    assert (a / "explanations.json").read_bytes() == (b / "explanations.json").read_bytes()
    assert (a / "explainer.safetensors").read_bytes() == (b / "explainer.safetensors").read_bytes()
    caches_a = sorted(p.name for p in (a / "cache").iterdir())
    caches_b = sorted(p.name for p in (b / "cache").iterdir())
    assert caches_a == caches_b and len(caches_a) == 2  # no leftover partial folders
    for key in caches_a:
        assert (a / "cache" / key / "features.f16").read_bytes() == (b / "cache" / key / "features.f16").read_bytes()
        za, zb = np.load(a / "cache" / key / "arrays.npz"), np.load(b / "cache" / key / "arrays.npz")
        assert za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)
