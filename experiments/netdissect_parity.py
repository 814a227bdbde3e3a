"""Does ``lavise dissect --convention netdissect-lite`` agree with NetDissect-Lite's own code?

Builds a small dataset in Broden's layout (224 px JPEGs, 112 px label PNGs, index.csv, category.csv, label.csv,
c_*.csv as NetDissect-Lite's loader reads them) from the photos shipped with scikit-image and scikit-learn, with
synthetic objects, parts, textures and colour labels; saves a seeded, randomly initialised torchvision ResNet-18;
runs NetDissect-Lite's own feature extraction, threshold and tally on ``layer4`` (a copy taken from its git
history and patched only for modern Python, NumPy, SciPy and a CPU, in a temporary folder outside the
repository); runs ``lavise dissect`` in the new mode and, for contrast, in lavise's own convention; and compares
the tallies unit by unit.

    python experiments/netdissect_parity.py [--images 150] [--seed 0] [--work /tmp/ndl-parity]

Single-threaded, a few minutes on a CPU. Writes experiments/results/netdissect-parity-<time>.md and .json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

NDL_GIT = Path("/work/.mirror/CSAILVision+NetDissect-Lite/repo/.git")
NDL_FILES = ("settings.py", "feature_operation.py", "loader/__init__.py", "loader/data_loader.py",
             "loader/model_loader.py", "util/__init__.py", "util/vecquantile.py", "util/upsample.py")
COLOURS = {"black": (20, 20, 20), "white": (240, 240, 240), "grey": (128, 128, 128), "red": (200, 30, 30),
           "green": (40, 160, 50), "blue": (40, 60, 200), "yellow": (230, 210, 40), "orange": (240, 140, 30),
           "brown": (120, 70, 30), "pink": (240, 150, 190), "purple": (130, 50, 160)}
OBJECTS = ("ball", "box", "sign", "pole", "wheel", "cart")  # "wheel" is an object alone and a part of a cart
PARTS = ("spot", "lid", "wheel")
TEXTURES = ("brick", "grass", "gravel")
MATERIALS = ("wood",)


# ----------------------------------------------------------------------------- the dataset

def _photos() -> dict[str, np.ndarray]:
    """Colour photos shipped with scikit-image and scikit-learn (no download), as scenes."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    out = {n: getattr(sd, n)() for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                                         "hubble_deep_field", "retina", "colorwheel")}
    for name, img in zip(("china", "flower"), load_sample_images().images):
        out[name] = img
    return {k: np.ascontiguousarray(v[..., :3]) for k, v in out.items()}


def _textures() -> dict[str, np.ndarray]:
    import skimage.data as sd

    return {n: getattr(sd, n)() for n in TEXTURES}


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def _crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    s = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return img[y:y + s, x:x + s]


def _shape_mask(kind: str, cy: int, cx: int, r: int, n: int = 112) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    if kind in ("ball", "spot"):
        return (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    if kind == "wheel":
        d = (y - cy) ** 2 + (x - cx) ** 2
        return (d <= r * r) & (d >= (r * 0.45) ** 2)
    if kind in ("box", "cart"):
        return (abs(y - cy) <= r) & (abs(x - cx) <= r * (1.4 if kind == "cart" else 1))
    if kind == "sign":
        return (y >= cy - r) & (y <= cy + r) & (abs(x - cx) <= (y - (cy - r)) / 2)
    if kind == "pole":
        return (abs(y - cy) <= r * 1.8) & (abs(x - cx) <= max(1, r // 4))
    raise ValueError(kind)


def _colour_codes(img224: np.ndarray) -> np.ndarray:
    """Each 2x2 block's nearest named colour (Broden names every pixel's colour), as indices into COLOURS."""
    small = img224.reshape(112, 2, 112, 2, 3).mean((1, 3))
    ref = np.array(list(COLOURS.values()), float)
    return ((small[:, :, None, :] - ref[None, None]) ** 2).sum(-1).argmin(-1)


def build_dataset(root: Path, n: int, seed: int) -> dict:
    """Write a Broden-layout folder at ``root`` (index.csv, category.csv, label.csv, c_*.csv, images/)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    photos, textures = _photos(), _textures()
    # label numbers: Broden tags scene, texture, colour and material names with -s, -t, -c, -m
    names = ([f"{c}-c" for c in COLOURS] + list(dict.fromkeys(OBJECTS + PARTS)) + [f"{p}-s" for p in photos]
             + [f"{t}-t" for t in TEXTURES] + [f"{m}-m" for m in MATERIALS])
    number = {name: i + 1 for i, name in enumerate(names)}
    cats = ("color", "object", "part", "material", "scene", "texture")
    freq = {c: {} for c in cats}  # category -> number -> images
    cover = {c: {} for c in cats}  # category -> number -> pixel coverage in whole images
    rows = []

    def tally(cat: str, num: int, frac: float) -> None:
        freq[cat][num] = freq[cat].get(num, 0) + 1
        cover[cat][num] = cover[cat].get(num, 0.0) + frac

    def save_png(codes: np.ndarray, name: str) -> str:
        rgb = np.stack([codes % 256, codes // 256, np.zeros_like(codes)], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / name)
        return name

    for i in range(n):
        stem = f"img{i:04d}"
        row = {"image": f"{stem}.jpg", "split": "train", "ih": 224, "iw": 224, "sh": 112, "sw": 112,
               "color": "", "object": "", "part": "", "material": "", "scene": "", "texture": ""}
        kind = "material" if i % 21 == 20 else ("texture" if rng.random() < 0.3 else "scene")
        if kind == "texture":  # a tinted texture photo, whole frame: texture and colour labels only
            t = TEXTURES[int(rng.integers(len(TEXTURES)))]
            g = _resize(_crop(textures[t], rng), 224).astype(float)[..., None] / 255
            tint = np.array(list(COLOURS.values())[int(rng.integers(len(COLOURS)))], float)
            img = (g * (0.4 * tint + 150)).clip(0, 255).astype(np.uint8)
            row["texture"] = str(number[f"{t}-t"])
            tally("texture", number[f"{t}-t"], 1.0)
        else:
            s = list(photos)[int(rng.integers(len(photos)))]
            img = _resize(_crop(photos[s], rng), 224).copy()
            obj = np.zeros((112, 112), np.int64)
            part = np.zeros((112, 112), np.int64)
            for _ in range(int(rng.integers(1, 4)) if kind == "scene" else 0):
                o = OBJECTS[int(rng.integers(len(OBJECTS)))]
                r = int(rng.integers(8, 26))
                cy, cx = (int(v) for v in rng.integers(r, 112 - r, 2))
                m = _shape_mask(o, cy, cx, r)
                colour = np.array(list(COLOURS.values())[int(rng.integers(len(COLOURS)))])
                obj[m] = number[o]
                part[m] = 0  # a later object hides the parts under it
                big = np.kron(m, np.ones((2, 2), bool))
                img[big] = (colour + rng.normal(0, 12, (int(big.sum()), 3))).clip(0, 255).astype(np.uint8)
                sub = None
                if o == "ball" and rng.random() < 0.6:
                    sub = ("spot", _shape_mask("spot", cy, cx, max(2, r // 3)) & m)
                elif o == "box" and rng.random() < 0.6:
                    sub = ("lid", m & (np.mgrid[0:112, 0:112][0] <= cy - r // 2))
                elif o == "cart":
                    wheels = _shape_mask("wheel", min(111, cy + r), cx - r, max(3, r // 2))
                    wheels |= _shape_mask("wheel", min(111, cy + r), cx + r, max(3, r // 2))
                    obj[wheels & ~m] = number["cart"]
                    sub = ("wheel", wheels)
                    img[np.kron(wheels, np.ones((2, 2), bool))] = COLOURS["black"]
                if sub is not None:
                    part[sub[1]] = number[sub[0]]
                    img[np.kron(sub[1], np.ones((2, 2), bool))] = np.array(list(COLOURS.values())[
                        int(rng.integers(len(COLOURS)))])
            if kind == "material":  # only a material label (and no colour): NetDissect-Lite's loader drops it
                mat = np.zeros((112, 112), np.int64)
                mat[20:90, 20:90] = number["wood-m"]
                row["material"] = save_png(mat, f"{stem}_material.png")
                tally("material", number["wood-m"], float((mat > 0).mean()))
            else:
                row["scene"] = str(number[f"{s}-s"])
                tally("scene", number[f"{s}-s"], 1.0)
                if obj.any():
                    row["object"] = save_png(obj, f"{stem}_object.png")
                    for v in np.unique(obj[obj > 0]):
                        tally("object", int(v), float((obj == v).mean()))
                if part.any():
                    row["part"] = save_png(part, f"{stem}_part.png")
                    for v in np.unique(part[part > 0]):
                        tally("part", int(v), float((part == v).mean()))
        Image.fromarray(img).save(root / "images" / row["image"], quality=92)
        if kind != "material":
            colour = np.array([number[f"{c}-c"] for c in COLOURS])[_colour_codes(img.astype(float))]
            row["color"] = save_png(colour, f"{stem}_color.png")
            for v in np.unique(colour):
                tally("color", int(v), float((colour == v).mean()))
        rows.append(row)

    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "split", "ih", "iw", "sh", "sw", *cats])
        w.writeheader()
        w.writerows(rows)
    with open(root / "category.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for c in cats:
            nums = sorted(freq[c])
            w.writerow([c, nums[0] if nums else 0, nums[-1] if nums else 0, len(nums),
                        sum(1 for r in rows if r[c])])
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for name in names:
            num = number[name]
            where = [c for c in cats if num in freq[c]]
            if not where:
                continue
            w.writerow([num, name, ";".join(f"{c}({freq[c][num]})" for c in where),
                        sum(freq[c][num] for c in where), f"{sum(cover[c][num] for c in where):.6f}", ""])
    for c in cats:
        with open(root / f"c_{c}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, num in enumerate(sorted(freq[c]), 1):
                w.writerow([code, num, names[num - 1], freq[c][num], f"{cover[c][num]:.6f}"])
    return {"images": n, "labels": len(names), "images_per_category": {c: sum(1 for r in rows if r[c]) for c in cats}}


def save_model(path: Path, seed: int) -> None:
    """A randomly initialised torchvision ResNet-18 (seeded), as a state_dict both tools load."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)


# ----------------------------------------------------------------------------- NetDissect-Lite, patched in /tmp

# Each patch: (file, old text, new text). Only what modern Python 3 / NumPy 2 / SciPy / a CPU need.
PATCHES = (
    # scipy.misc.imresize is gone; it was PIL's bilinear resize of a mode-F (float32) image, size given as (h, w)
    ("feature_operation.py", "from scipy.misc import imresize",
     "from PIL import Image as _Image\n"
     "def imresize(arr, size, mode=None):\n"
     "    return np.asarray(_Image.fromarray(np.asarray(arr, np.float32)).resize((size[1], size[0]), _Image.BILINEAR))"),
    ("feature_operation.py", "input_var = V(input,volatile=True)", "input_var = input  # volatile= is gone: no_grad"),
    # scipy.misc.imread is gone; PIL reads the same pixels (as ints, so that R + 256 * G cannot overflow uint8)
    ("loader/data_loader.py", "from scipy.misc import imread",
     "from PIL import Image as _Image\ndef imread(fn):\n    return numpy.asarray(_Image.open(fn), dtype=numpy.int64)"),
    ("loader/data_loader.py", "from scipy.ndimage.interpolation import zoom", "from scipy.ndimage import zoom"),
    # PEP 479: StopIteration inside a generator is an error now
    ("loader/data_loader.py", "raise StopIteration", "return"),
    # NumPy no longer indexes with a list of arrays as with a tuple
    ("loader/data_loader.py", "result[list(np.indices(arr.shape)) + [arr]] = 1",
     "result[tuple(list(np.indices(arr.shape)) + [arr])] = 1"),
    # one prefetch process: this machine's cores are shared (the results do not depend on it)
    ("loader/data_loader.py", "n_procs = cpu_count()", "n_procs = 1"),
    ("util/vecquantile.py", "self.extremes.fill(numpy.NaN)", "self.extremes.fill(numpy.nan)"),
)


def prepare_ndl(git_dir: Path, dest: Path, data: Path, model: Path, out: Path) -> None:
    """Copy NetDissect-Lite's files from its git history into ``dest`` and patch them (see ``PATCHES``)."""
    shutil.rmtree(dest, ignore_errors=True)
    for name in NDL_FILES:
        text = subprocess.run(["git", "-C", str(git_dir), "show", f"HEAD:{name}"], check=True, capture_output=True,
                              text=True).stdout
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    for name, old, new in PATCHES:
        text = (dest / name).read_text()
        if old not in text:
            raise SystemExit(f"patch target not found in {name}: {old[:60]!r}")
        (dest / name).write_text(text.replace(old, new))
    with open(dest / "settings.py", "a") as f:  # this run's settings (the file's own defaults are above)
        f.write(textwrap.dedent(f"""
            GPU = False
            MODEL = 'resnet18'
            FEATURE_NAMES = ['layer4']
            DATA_DIRECTORY = {str(data)!r}
            IMG_SIZE = 224
            MODEL_FILE = {str(model)!r}
            MODEL_PARALLEL = False
            NUM_CLASSES = 1000
            OUTPUT_FOLDER = {str(out)!r}
            WORKERS = 1
            BATCH_SIZE = 16
            TALLY_BATCH_SIZE = 16
            TALLY_AHEAD = 2
            PARALLEL = 1
            INDEX_FILE = 'index.csv'
        """))
    # steps 1-3 of its main.py (the HTML report of step 4 is not needed)
    (dest / "run_tally.py").write_text(textwrap.dedent("""
        import torch
        torch.set_num_threads(1)
        torch.set_grad_enabled(False)
        import settings
        from loader.model_loader import loadmodel
        from feature_operation import hook_feature, FeatureOperator
        fo = FeatureOperator()
        model = loadmodel(hook_feature)
        features, maxfeature = fo.feature_extraction(model=model)
        thresholds = fo.quantile_threshold(features[0], savepath="quantile.npy")
        fo.tally(features[0], thresholds, savepath="tally.csv")
        import os
        os._exit(0)  # its prefetch pools are never closed
    """))


def run_ndl(dest: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "run_tally.py"], cwd=dest, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"NetDissect-Lite failed:\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------- lavise and the comparison

def run_lavise(data: Path, model: Path, out: Path, convention: str) -> None:
    """``lavise dissect`` as a user runs it (in this process)."""
    from lavise.cli import main

    args = ["dissect", "torchvision:resnet18", "--weights", str(model), "--layer", "layer4", "--dataset",
            f"broden:{data}", "--convention", convention, "--out", str(out / "dissection.csv"), "--cache-dir",
            str(out / "cache"), "--workers", "0", "--batch-size", "16", "--quiet"]
    if main(args) != 0:
        raise SystemExit(f"lavise dissect --convention {convention} failed")


def lite_cache(data: Path, model: Path, cache_dir: Path):
    """The netdissect-lite run's feature cache (already written by ``run_lavise``) and its dataset."""
    from dataclasses import replace

    from lavise.features import extract_features
    from lavise.models import load_model
    from lavise.netdissect_lite import lite_eval_size, lite_preprocess, load_lite_dataset
    from lavise.options import ExtractOptions

    tm = load_model("torchvision:resnet18", str(model))
    tm = replace(tm, preprocess=lite_preprocess(tm.preprocess))
    ds = load_lite_dataset(f"broden:{data}")
    cache = extract_features(tm, "layer4", ds, cache_dir, list(ds.concepts),
                             ExtractOptions(workers=0, batch_size=16, show_progress=False),
                             eval_size=lite_eval_size(ds, tm.preprocess))
    return cache, ds


def with_ndl_thresholds(cache, ds, quantile: np.ndarray) -> dict[int, dict]:
    """lavise's tally on its own features but with NetDissect-Lite's T_u (and its strict ``>`` for every unit):
    what remains once the thresholds agree."""
    from lavise.dissect import compute_ground_truth
    from lavise.netdissect_lite import category_order, concept_categories, tally_rows
    from lavise.stats import Thresholds

    d = len(quantile)
    thr = Thresholds(quantile.astype(np.float32), np.zeros(d, bool), np.zeros(d, bool))
    gt = compute_ground_truth(cache, thr, categories=concept_categories(ds, list(cache.concepts)))
    return {r["unit"] - 1: r for r in tally_rows(gt, category_order(ds, gt))}


def read_tally(path: Path) -> dict[int, dict]:
    with open(path) as f:
        return {int(r["unit"]) - 1: r for r in csv.DictReader(f)}


def read_lavise_csv(path: Path) -> dict[int, dict]:
    with open(path) as f:
        return {int(r["unit"]): {"label": r["concept"], "score": r["iou"]} for r in csv.DictReader(f)}


def _plain(name: str) -> str:
    """Broden's name without its category tag, to compare lavise's own convention (which drops the tags)."""
    from lavise.data.broden import broden_name

    return broden_name(name)


def compare(ndl: dict[int, dict], other: dict[int, dict], skip: np.ndarray, categories: list[str] | None,
            plain: bool = False) -> dict:
    """Agreement of ``other``'s units with NetDissect-Lite's: best label, IoU, interpretable counts."""
    units = sorted(ndl)
    keep = [u for u in units if not skip[u]]
    name = _plain if plain else (lambda s: s)
    same = [u for u in keep if name(ndl[u]["label"]) == name(other[u]["label"])]
    diff = np.array([abs(float(ndl[u]["score"]) - float(other[u]["score"])) for u in keep])
    same_diff = np.array([abs(float(ndl[u]["score"]) - float(other[u]["score"])) for u in same])
    out = {"units": len(units), "unsaturated": len(keep), "same_best": len(same),
           "same_best_share": round(len(same) / max(1, len(keep)), 4),
           "interpretable_ndl": sum(float(ndl[u]["score"]) > 0.04 for u in units),
           "interpretable_lavise": sum(float(other[u]["score"]) > 0.04 for u in units),
           "interpretable_both_same_label": sum(float(ndl[u]["score"]) > 0.04 and float(other[u]["score"]) > 0.04
                                                for u in same),
           "best_iou_abs_diff_max": round(float(diff.max()), 6) if len(diff) else 0.0,
           "best_iou_abs_diff_mean": round(float(diff.mean()), 6) if len(diff) else 0.0,
           "same_label_iou_abs_diff_max": round(float(same_diff.max()), 6) if len(same_diff) else 0.0,
           "disagreements": [{"unit": u + 1, "ndl": [ndl[u]["label"], round(float(ndl[u]["score"]), 5)],
                              "lavise": [other[u]["label"], round(float(other[u]["score"]), 5)]}
                             for u in keep if u not in set(same)][:20]}
    if categories:  # the tally's per-category best labels and IoUs
        per = {}
        for c in categories:
            agree = [u for u in keep if ndl[u][f"{c}-label"] == other[u][f"{c}-label"]
                     or float(ndl[u][f"{c}-iou"]) == float(other[u][f"{c}-iou"]) == 0]
            d = [abs(float(ndl[u][f"{c}-iou"]) - float(other[u][f"{c}-iou"])) for u in keep]
            per[c] = {"same_label_share": round(len(agree) / max(1, len(keep)), 4),
                      "iou_abs_diff_max": round(float(max(d)), 6), "iou_abs_diff_mean": round(float(np.mean(d)), 6)}
        out["per_category"] = per
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ndl-parity"))
    ap.add_argument("--ndl-git", type=Path, default=NDL_GIT, help="NetDissect-Lite's git directory")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, model = work / "broden", work / "resnet18-random.pth"
    info = build_dataset(data, args.images, args.seed)
    save_model(model, args.seed)
    ndl_dir, ndl_out = work / "NetDissect-Lite", work / "ndl-out"
    shutil.rmtree(ndl_out, ignore_errors=True)
    prepare_ndl(args.ndl_git, ndl_dir, data, model, ndl_out)
    run_ndl(ndl_dir)
    for conv in ("netdissect-lite", "netdissect"):
        shutil.rmtree(work / conv, ignore_errors=True)
        run_lavise(data, model, work / conv, conv)
    from lavise.stats import Thresholds

    cache, ds = lite_cache(data, model, work / "netdissect-lite" / "cache")
    thr = Thresholds.from_stats(cache.stats)
    skip = np.asarray(thr.inclusive | thr.dead)  # saturated or dead in lavise's run
    quantile = np.load(ndl_out / "quantile.npy")
    rel = np.abs(quantile - thr.values) / np.maximum(np.abs(quantile), 1e-12)
    ndl = read_tally(ndl_out / "tally.csv")
    with open(ndl_out / "tally.csv") as f:
        header = next(csv.reader(f))
    cats = [h[:-len("-label")] for h in header if h.endswith("-label")]
    lite_tally = work / "netdissect-lite" / "tally.csv"
    with open(lite_tally) as f:
        same_header = next(csv.reader(f)) == header
    lite = compare(ndl, read_tally(lite_tally), skip, cats)
    own = compare(ndl, read_lavise_csv(work / "netdissect" / "dissection.csv"), skip, None, plain=True)
    same_t = compare(ndl, with_ndl_thresholds(cache, ds, quantile), skip, cats)
    rows = [("`--convention netdissect-lite` (this mode)", lite),
            ("this mode with NetDissect-Lite's T_u (diagnostic, not an option)", same_t),
            ("`--convention netdissect` (lavise's default)", own)]
    table = ["| lavise run | unsaturated units | same best concept | interpretable (NetDissect-Lite / lavise) | "
             "best-IoU difference, max / mean |", "|---|---|---|---|---|"]
    for label, r in rows:
        table.append(f"| {label} | {r['unsaturated']} of {r['units']} | {r['same_best']} ({100 * r['same_best_share']:.1f}%) "
                     f"| {r['interpretable_ndl']} / {r['interpretable_lavise']} | {r['best_iou_abs_diff_max']:.4f} / "
                     f"{r['best_iou_abs_diff_mean']:.5f} |")
    per = ["| category | same best label | IoU difference, max / mean |", "|---|---|---|"]
    for c, v in lite["per_category"].items():
        per.append(f"| {c} | {100 * v['same_label_share']:.1f}% | {v['iou_abs_diff_max']:.4f} / {v['iou_abs_diff_mean']:.5f} |")
    md = "\n".join([
        f"Dataset: {info['images']} images in Broden's layout (224 px JPEGs, 112 px label PNGs; photos from scikit-image "
        f"and scikit-learn with synthetic objects, parts, textures and per-pixel colour names), images per category "
        f"{json.dumps(info['images_per_category'])}; a randomly initialised torchvision ResNet-18 (seed {args.seed}), "
        "`layer4` (512 units). NetDissect-Lite: its own code (git HEAD of CSAILVision/NetDissect-Lite), patched only for "
        "Python 3 / NumPy 2 / SciPy / CPU (`PATCHES` in the script), steps 1-3 of its main.py. Saturated units "
        f"(T_u equal to the maximum, {int(skip.sum())} here) are left out of the agreement, since NetDissect-Lite "
        "gives them IoU 0 by design. The default convention is compared by name without Broden's -c/-s/-t tags.",
        "", *table, "", f"tally.csv header identical to NetDissect-Lite's: {same_header}. T_u: lavise's numpy 0.995 "
        f"quantile against NetDissect-Lite's sketch, relative difference max {rel.max():.4f}, median "
        f"{np.median(rel):.5f}; identical (to 1e-4) for {int((rel < 1e-4).sum())} of {len(rel)} units.", "",
        "Per category (netdissect-lite mode, the tally's `<category>-label` and `-iou` columns; a category where both "
        "give IoU 0 counts as agreeing):", "", *per])
    path = save("netdissect-parity", md, {"dataset": info, "lite": lite, "lite_ndl_thresholds": same_t, "netdissect": own,
                                          "same_header": same_header, "saturated": int(skip.sum()),
                                          "threshold_rel_diff": {"max": float(rel.max()), "median": float(np.median(rel))}})
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
