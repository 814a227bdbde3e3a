"""Shared helpers of the reliability suite: a small manifest dataset and a fast CLI runner."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
COLOURS = {"cat": (230, 30, 30), "dog": (30, 230, 30), "car": (30, 30, 230)}
WORDS = {"cat": [1, 0, 0, 0], "dog": [0, 1, 0, 0], "car": [0, 0, 1, 0], "tree": [0, 0, 0, 1],
         "sun": [1, 1, 0, 0], "road": [0, 1, 1, 0]}


def make_manifest(root: Path, n: int = 24, seed: int = 3, extra: list[dict] | None = None) -> Path:
    """``n`` noisy images with two coloured squares each (boxes in a JSON-lines manifest) + tiny GloVe."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        img = rng.integers(90, 140, size=(70, 90, 3), dtype=np.uint8)
        boxes = {}
        for j, c in enumerate(rng.choice(list(COLOURS), size=2, replace=False)):
            x0, y0 = 5 + 45 * j, int(rng.integers(0, 30))
            img[y0:y0 + 30, x0:x0 + 30] = COLOURS[str(c)]
            boxes[str(c)] = [[x0, y0, x0 + 30, y0 + 30]]
        Image.fromarray(img).save(root / f"{i}.png")
        lines.append({"image": f"{i}.png", "concepts": list(boxes), "boxes": boxes})
    lines += extra or []
    (root / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_glove(root / "tiny.txt")
    return root / "m.jsonl"


def write_glove(path: Path, words: dict | None = None) -> Path:
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in (words or WORDS).items()))
    return path


class Result:
    def __init__(self, code: int | None, log: str):
        self.code, self.log = code, log

    @property
    def killed(self) -> bool:
        return self.code == -9

    def __repr__(self) -> str:
        return f"Result(code={self.code}, log={self.log[-2000:]!r})"


class Lavise:
    """Runs ``lavise`` commands in forked processes (see relchild.py); ``kill`` makes them SIGKILL themselves."""

    _ctx = None

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.n = 0
        if Lavise._ctx is None:
            from multiprocessing import forkserver

            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["relchild"])
            # the forkserver ignores the parent's sys.path (CPython 3.11): pass this folder by PYTHONPATH
            saved = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([saved] if saved else []))
            try:
                forkserver.ensure_running()
            finally:
                if saved is None:
                    del os.environ["PYTHONPATH"]
                else:
                    os.environ["PYTHONPATH"] = saved
            Lavise._ctx = ctx

    def start(self, args: list[str], kill: tuple | None = None, env: dict | None = None):
        import relchild

        self.n += 1
        log = self.workdir / f"cmd{self.n}.log"
        env = {"LAVISE_CHECKPOINT_SECONDS": "0", **(env or {})}
        p = Lavise._ctx.Process(target=relchild.run, args=([str(a) for a in args], str(self.workdir), env, kill, str(log)))
        p.start()
        p.log = log
        return p

    def __call__(self, args: list[str], kill: tuple | None = None, env: dict | None = None, timeout: float = 240) -> Result:
        p = self.start(args, kill, env)
        p.join(timeout)
        if p.exitcode is None:
            p.kill()
            p.join()
            raise AssertionError(f"lavise {args} timed out")
        return Result(p.exitcode, p.log.read_text(errors="replace") if p.log.exists() else "")


def wait_for(cond, timeout: float = 60, every: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return False


def visible_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` whose path has no hidden (dot) component, by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = p.read_bytes()
    return out


def npz_equal(a: Path, b: Path) -> bool:
    with np.load(a) as za, np.load(b) as zb:
        return za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)
