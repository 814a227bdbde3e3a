"""Reduced JPEG decoding (``Preprocess.jpeg_draft``) on large photos: what it saves and what it changes.

    python experiments/decode.py [--images 96] [--sizes 640x480,1024x768,4000x3000] [--rounds 2]

For each photo size, a folder of JPEGs (quality 90) cut from the real photos that ship with scikit-image and
scikit-learn: random crops resized to the size, with a little grain so that files weigh about what a
camera's do (reported in bits per pixel). Then, for each setting of ``jpeg_draft``:
  1. load + preprocess on one thread (as in a DataLoader worker), ms per image;
  2. extraction (``extract_features``, lavise's defaults) against the bare forward pass on preloaded tensors
     in its fastest configuration, in paired rounds (a bare pass over as many images just before each
     extraction, timed as one stretch);
  3. how much the features move between the two settings: the cosine of each image's maps, and the overlap
     of each filter's top-``--top`` images; for scale, the same between the photos and copies of them saved
     again at JPEG quality 85 (both decoded in full), a change nobody would call a different dataset.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402  # importing common puts bench/ on sys.path, for speed
from lavise.data.folder import FolderDataset  # noqa: E402
from lavise.explain import top_images  # noqa: E402
from lavise.features import extract_features  # noqa: E402
from lavise.models import load_model  # noqa: E402
from lavise.options import ExtractOptions  # noqa: E402
from speed import bare_forward, bare_pass  # noqa: E402

GRAIN = 4.0  # grey levels (s.d.) of Gaussian grain added after resizing
QUIET = ExtractOptions(show_progress=False)  # lavise's defaults, no progress bar


def source_photos() -> list[np.ndarray]:
    """The RGB photographs shipped with scikit-image and scikit-learn (no download)."""
    import skimage
    import sklearn.datasets

    root = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
             "retina.jpg", "rocket.jpg"]
    photos = [np.asarray(Image.open(root / n).convert("RGB")) for n in names]
    photos += [np.asarray(Image.open(Path(sklearn.datasets.__file__).parent / "images" / n).convert("RGB"))
               for n in ("china.jpg", "flower.jpg")]
    return photos


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> float:
    """``n`` JPEGs of ``size`` (w, h) in ``folder``; returns their mean bits per pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = source_photos()
    w, h = size
    bits = 0.0
    for i in range(n):
        src = photos[i % len(photos)]
        H, W = src.shape[:2]
        scale = rng.uniform(0.5, 1.0)
        ch = int(min(H, W * h / w) * scale)
        cw = int(ch * w / h)
        y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
        crop = Image.fromarray(src[y:y + ch, x:x + cw]).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(crop, dtype=np.float32) + rng.normal(0, GRAIN, (h, w, 1)).astype(np.float32)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        p = folder / f"p{i:04d}.jpg"
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(p, quality=90)
        bits += 8 * p.stat().st_size / (w * h)
    return bits / n


def resaved(folder: Path, out: Path, quality: int = 85) -> FolderDataset:
    """The photos in ``folder`` saved again at ``quality``, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(folder.glob("*.jpg")):
        with Image.open(p) as im:
            im.save(out / p.name, quality=quality)
    return FolderDataset(out)


def agreement(a_cache, b_cache, p: int) -> tuple[np.ndarray, float]:
    """Cosine of each image's maps between two caches of the same images, and the mean overlap of each filter's
    top-``p`` images."""
    n = len(a_cache)
    a = np.asarray(a_cache.features, np.float32).reshape(n, -1)
    b = np.asarray(b_cache.features, np.float32).reshape(n, -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    ta, _ = top_images(a_cache, p)
    tb, _ = top_images(b_cache, p)
    return cos, float(np.mean([len(set(x) & set(y)) / p for x, y in zip(ta.tolist(), tb.tolist())]))


def load_ms(pre, paths: list[Path]) -> float:
    """Best of 2 passes, ms per image, of decoding and preprocessing on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            for p in paths:
                pre(pre.load(p), normalize=False)
            best = min(best, (time.perf_counter() - t) / len(paths))
        return 1000 * best
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96, help="photos per size (default 96)")
    ap.add_argument("--sizes", default="640x480,1024x768,4000x3000", help="photo sizes, w x h, comma-separated")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--rounds", type=int, default=2, help="paired rounds per setting (default 2)")
    ap.add_argument("--top", type=int, default=10, help="top images per filter compared (default 10)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lavise-decode-"))
    os.environ.setdefault("LAVISE_CACHE", str(tmp / "cache-home"))
    try:
        _measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(args, tmp: Path) -> None:
    tm = load_model(args.model)
    layer = tm.default_layer
    on = tm.preprocess
    assert on.jpeg_draft
    off_tm = replace(tm, preprocess=replace(on, jpeg_draft=False))
    print("bare forward: fastest configuration", flush=True)
    _, cfg = bare_forward(tm, layer, args.images)
    rows, data = [], {"bare_config": cfg, "grain": GRAIN, "sizes": {}}
    for spec in args.sizes.split(","):
        w, h = (int(v) for v in spec.lower().split("x"))
        folder = tmp / f"photos-{w}x{h}"
        bpp = make_photos(folder, args.images, (w, h))
        ds = FolderDataset(folder)
        paths = [p for _, p, _ in ds.items]
        decoded = on.load(paths[0]).size
        print(f"{w}x{h}: {bpp:.2f} bits/pixel, decoded at {decoded[0]}x{decoded[1]} with jpeg_draft", flush=True)
        res = {"bits_per_pixel": bpp, "decoded_size": decoded}
        caches = {}
        for name, model in (("full", off_tm), ("draft", tm)):
            ms = load_ms(model.preprocess, paths)
            ratios, ips = [], []
            for r in range(args.rounds):
                t_bare = bare_pass(tm, layer, len(ds), "cpu", False, cfg)
                t = time.perf_counter()
                caches[name] = extract_features(model, layer, ds, tmp / f"c-{spec}-{name}-{r}", options=QUIET)
                t_ext = time.perf_counter() - t
                ratios.append(t_bare / t_ext)
                ips.append(len(ds) / t_ext)
                print(f"  {name} round {r + 1}: load {ms:.1f} ms/img, extraction {ips[-1]:.1f} img/s, "
                      f"bare pass {len(ds) / t_bare:.1f} img/s, ratio {ratios[-1]:.3f}", flush=True)
            res[name] = {"load_ms": ms, "extract_ips": ips, "paired_ratios": ratios}
        p = min(args.top, len(ds))
        cos, overlap = agreement(caches["full"], caches["draft"], p)
        control = extract_features(off_tm, layer, resaved(folder, tmp / f"q85-{spec}"), tmp / f"c-{spec}-q85",
                                   options=QUIET)
        ccos, coverlap = agreement(caches["full"], control, p)
        res.update(cosine_mean=float(cos.mean()), cosine_min=float(cos.min()), top_overlap=overlap, top=p,
                   q85_cosine_mean=float(ccos.mean()), q85_cosine_min=float(ccos.min()), q85_top_overlap=coverlap)
        data["sizes"][spec] = res
        med = {k: float(np.median(res[k]["paired_ratios"])) for k in ("full", "draft")}
        rows.append(f"| {w} × {h} ({bpp:.1f} bits/px) | {decoded[0]} × {decoded[1]} | "
                    f"{res['full']['load_ms']:.1f} / {res['draft']['load_ms']:.1f} "
                    f"({res['full']['load_ms'] / res['draft']['load_ms']:.1f}×) | "
                    f"{max(res['full']['extract_ips']):.1f} / {max(res['draft']['extract_ips']):.1f} | "
                    f"{med['full']:.2f} / {med['draft']:.2f} | {cos.mean():.4f} (min {cos.min():.4f}) | {overlap:.3f} | "
                    f"{ccos.mean():.4f} (min {ccos.min():.4f}) / {coverlap:.3f} |")
    table = ("| photos | decoded with `jpeg_draft` | load + preprocess, ms/image, full / draft | extraction, images/s, "
             "full / draft | extraction / bare forward (paired, median), full / draft | cosine of each image's maps | "
             f"top-{args.top} images per filter in common | control: saved again at quality 85, cosine / top-{args.top} "
             "in common |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    table += (f"\n\nModel {args.model}, layer {layer}; {args.images} photos per size; bare forward {cfg}; "
              f"{args.rounds} paired rounds per setting.")
    print(table)
    print(save("decode", table, data))


if __name__ == "__main__":
    main()
