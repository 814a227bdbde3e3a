"""Speed and memory of lavise, as ratios measured in one run (issue 5).

    python bench/speed.py [--images 256] [--model efficientnet-lite0] [--skip-distributed]
    python bench/speed.py --device cuda [--amp] [--batch-size 128] --skip-distributed --skip-rss

Measures, on built-in scenes:
  1. feature extraction (decode + preprocess + forward + cache; best of --repeats runs) vs the bare
     forward pass on preloaded tensors in its fastest configuration found here (memory format x batch
     size; best of 3 bursts, before and after); and the same in paired rounds, each extraction right
     after a bare pass over as many images timed as one stretch (median ratio of the rounds);
     1b. lavise's own work per image: extraction with a stand-in network of the layer's output shape
     that costs almost nothing, minus that network's bare forward pass (the ceiling it sets on 1.);
  2. an explainer epoch over the cache vs an epoch that recomputes the features;
  3. explaining every filter (filter attention) vs extracting the target set;
  4. peak RSS of `lavise explain` on N vs 4N target images (separate processes);
  5. extraction with one process vs two processes under torchrun (gloo);
  6. four layers in one pass (``extract_layers``) vs the deepest layer alone and vs four one-layer extractions
     (``--layers``, default the model's stage outputs; ``--multilayer-only`` runs this section alone).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lavise.data import load_dataset  # noqa: E402
from lavise.data.base import load_rgb  # noqa: E402
from lavise.defaults import DEFAULT_METHOD, HEADS, HUBNESS, PAPER_TOP_IMAGES, PAPER_WORDS_PER_IMAGE, TOP_IMAGES, WORDS_PER_IMAGE  # noqa: E402
from lavise.embeddings import load_embeddings  # noqa: E402
from lavise.explain import explain_cache  # noqa: E402
from lavise.explainer import ExplainerHead, hinge_rank_loss  # noqa: E402
from lavise.features import FeatureExtractor, extract_features, extract_layers  # noqa: E402
from lavise.models import TargetModel, load_model, stage_layers  # noqa: E402
from lavise.options import ExplainOptions, ExtractOptions  # noqa: E402
from lavise.train import TrainedExplainer  # noqa: E402
from record import save  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _prepared_forward(tm, ex, device: str, amp: bool, cfg: dict, n_inputs: int = 1):
    """The model in ``cfg``'s memory format on ``device``, ``n_inputs`` preloaded random batches, and a
    forward function under the same autocast setting as the extraction it is compared with."""
    fmt = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    tm.module.to(device).to(memory_format=fmt)
    crop = tm.preprocess.crop
    inputs = [torch.randn(cfg["batch_size"], 3, crop, crop, device=device).contiguous(memory_format=fmt)
              for _ in range(n_inputs)]

    def forward(x):
        with torch.autocast(device_type=device.split(":")[0], enabled=amp):
            ex(x)

    forward(inputs[0])  # warm-up (cuDNN picks its kernels here)
    forward(inputs[-1])
    _sync(device)
    return forward, inputs


def bare_forward(tm, layer, n_images: int, device: str = "cpu", amp: bool = False,
                 configs: list[dict] | None = None) -> tuple[float, dict]:
    """Fastest images/s of the forward pass to `layer` on preloaded tensors; and the config that gave it.

    Tries both memory formats and several batch sizes (larger ones on a GPU), or only ``configs``.
    """
    ex = FeatureExtractor(tm, layer)
    best = (0.0, {})
    sizes = (32, 64, 128, 256) if device.startswith("cuda") else (8, 16, 32)
    configs = configs or [{"channels_last": cl, "batch_size": bs} for cl in (False, True) for bs in sizes]
    for c in configs:
        cl, bs = c["channels_last"], c["batch_size"]
        forward, (x,) = _prepared_forward(tm, ex, device, amp, c)
        reps = max(2, n_images // bs // 4)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                forward(x)
            _sync(device)
            times.append((time.perf_counter() - t) / (reps * bs))
        ips = 1 / min(times)
        print(f"  bare forward channels_last={cl} batch={bs}: {ips:.1f} img/s", flush=True)
        if ips > best[0]:
            best = (ips, {"channels_last": cl, "batch_size": bs})
    tm.module.to(memory_format=torch.contiguous_format).cpu()
    return best


def peak_rss_explain(run: Path, size: int, seed: int) -> float:
    """Peak RSS (MiB) of a separate `lavise explain` process on `size` target scenes.

    Read as VmHWM, the high-water mark of the child's own address space: ``ru_maxrss`` survives exec on Linux,
    so it would report the RSS of this (large) benchmark process at fork instead whenever that is larger.
    """
    code = (
        "import resource, sys; from lavise.cli import main; "
        f"rc = main(['explain', {str(run)!r}, '--images', 'builtin:scenes?size={size}&seed={seed}&split=test', "
        f"'--out', {str(run / f'rss{size}')!r}, '--quiet']); "
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')]; "
        "print('PEAK', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return int(res.stdout.split("PEAK")[-1].split()[0]) / 1024


def bare_pass(tm, layer, n_images: int, device: str, amp: bool, cfg: dict) -> float:
    """Seconds of the bare forward pass over ``n_images`` preloaded images in configuration ``cfg``, timed as one
    stretch like an extraction (best-of-3 bursts catch a noisy machine's fastest moments; a long extraction can't)."""
    forward, pool = _prepared_forward(tm, FeatureExtractor(tm, layer), device, amp, cfg, n_inputs=4)
    t = time.perf_counter()
    for i in range(-(-n_images // cfg["batch_size"])):
        forward(pool[i % 4])
    _sync(device)
    elapsed = time.perf_counter() - t
    tm.module.to(memory_format=torch.contiguous_format).cpu()
    return elapsed


class _StandIn(torch.nn.Module):
    """A layer output of the target's shape (d, h', w') at almost no cost: what remains is lavise's own work."""

    def __init__(self, d: int, h: int, w: int):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d((h, w))
        self.feat = torch.nn.Conv2d(3, d, 1)

    def forward(self, x):
        return self.feat(self.pool(x))


def stand_in(tm, layer) -> TargetModel:
    """``tm`` with its network replaced by ``_StandIn`` (same preprocessing, same feature shape, layer ``feat``)."""
    d, h, w = FeatureExtractor(tm, layer).feature_shape()
    torch.manual_seed(0)
    return TargetModel(f"stand-in:{tm.spec}", _StandIn(d, h, w).eval(), tm.preprocess, "feat",
                       f"stand-in-{d}x{h}x{w}-{tm.weights_digest}")


def own_work(tm, layer, ref, concepts, tmp: Path, n: int, dev: str, amp: bool, ext_opts: ExtractOptions) -> dict:
    """Milliseconds per image of extraction with the stand-in network, minus its own bare forward pass.

    That difference is what extraction adds to any forward pass (loading, decoding, masks, normalising,
    statistics, writing the cache), so ``1 / (1 + own / forward)`` is the best extraction / bare forward
    ratio the pipeline allows on this machine. Extraction best of 3 runs; the forward pass its fastest
    configuration, as in ``bare_forward``.
    """
    si = stand_in(tm, layer)
    t_fwd = 1 / bare_forward(si, "feat", n, dev, amp)[0]
    t_ext = float("inf")
    for rep in range(3):
        t = time.perf_counter()
        c = extract_features(si, "feat", ref, tmp / f"standin{rep}", concepts, ext_opts)
        t_ext = min(t_ext, (time.perf_counter() - t) / len(c))
        shutil.rmtree(tmp / f"standin{rep}", ignore_errors=True)
    return {"standin_extract_ms": t_ext * 1e3, "standin_forward_ms": t_fwd * 1e3, "own_ms": (t_ext - t_fwd) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256, help="images per measured set (default 256)")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--layer", default=None)
    ap.add_argument("--skip-distributed", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--amp", action="store_true", help="mixed precision, in extraction and bare forward alike")
    ap.add_argument("--batch-size", type=int, default=None, help="extraction batch size (default: lavise's for the device)")
    ap.add_argument("--workers", type=int, default=None, help="extraction DataLoader workers (default: lavise's)")
    ap.add_argument("--repeats", type=int, default=3, help="extraction runs; the fastest counts (default 3)")
    ap.add_argument("--layers", default=None, help="section 6's layers, comma-separated (default: the model's stages)")
    ap.add_argument("--multilayer-only", action="store_true", help="run section 6 alone")
    args = ap.parse_args()
    dev = args.device
    tmp = Path(tempfile.mkdtemp(prefix="lavise-speed-"))
    os.environ.setdefault("LAVISE_CACHE", str(tmp / "cache-home"))
    try:
        _measure(args, dev, tmp)
    finally:  # caches of several thousand images: gigabytes per run
        shutil.rmtree(tmp, ignore_errors=True)


def multilayer(tm, layers: list[str], n: int, ext_opts: ExtractOptions, tmp: Path, repeats: int) -> tuple[list, dict]:
    """Section 6: the layers in one pass against the deepest alone and against one extraction per layer, in
    rounds (each round: all three, fresh caches), the fastest of each counting."""
    ds = load_dataset(f"builtin:scenes?size={n}&seed=0&split=test")
    deepest = layers[-1]
    best = {"one": float("inf"), "separate": float("inf"), "together": float("inf")}
    rounds = []
    for rep in range(repeats):
        t = time.perf_counter()
        extract_features(tm, deepest, ds, tmp / f"ml{rep}-one", None, ext_opts)
        one = time.perf_counter() - t
        t = time.perf_counter()
        for k, layer in enumerate(layers):
            extract_features(tm, layer, ds, tmp / f"ml{rep}-sep{k}", None, ext_opts)
        separate = time.perf_counter() - t
        t = time.perf_counter()
        extract_layers(tm, layers, ds, tmp / f"ml{rep}-together", None, ext_opts)
        together = time.perf_counter() - t
        for k, v in (("one", one), ("separate", separate), ("together", together)):
            best[k] = min(best[k], v)
        rounds.append({"one_s": one, "separate_s": separate, "together_s": together})
        print(f"  round {rep + 1}: {deepest} alone {one:.1f} s, {len(layers)} one-layer runs {separate:.1f} s, "
              f"{len(layers)} layers in one pass {together:.1f} s", flush=True)
        for p in tmp.glob(f"ml{rep}-*"):
            shutil.rmtree(p, ignore_errors=True)
    rows = [(f"{len(layers)} layers in one pass / {deepest} alone (s)", f"{best['together']:.1f} / {best['one']:.1f}",
             best["together"] / best["one"], "<= 1.3"),
            (f"{len(layers)} one-layer runs / {deepest} alone (s)", f"{best['separate']:.1f} / {best['one']:.1f}",
             best["separate"] / best["one"], "(before: one run per layer)")]
    return rows, {"layers": layers, "images": n, "best": best, "rounds": rounds}


def _measure(args, dev: str, tmp: Path) -> None:
    tm = load_model(args.model)
    layer = args.layer or tm.default_layer
    n = args.images
    rows = []
    data = {}
    layers = args.layers.split(",") if args.layers else stage_layers(tm.module, tm.preprocess.crop)
    if args.multilayer_only:
        print(f"6. {len(layers)} layers in one pass ({', '.join(layers)})", flush=True)
        ext_opts = ExtractOptions(device=dev, amp=args.amp, batch_size=args.batch_size, workers=args.workers,
                                  show_progress=False)
        rows, data["multilayer"] = multilayer(tm, layers, n, ext_opts, tmp, args.repeats)
        table = "| measure | values | ratio | target |\n|---|---|---|---|\n" + "\n".join(
            f"| {a} | {b} | {c:.3f} | {d} |" for a, b, c, d in rows)
        print(table)
        name = "speed-multilayer" if dev == "cpu" else f"speed-multilayer-{dev.split(':')[0]}"
        print("saved", save(name, table, {"rows": rows, "images": n, "model": tm.spec, **data}))
        return

    print("1. extraction vs bare forward", flush=True)
    bare, cfg = bare_forward(tm, layer, n, dev, args.amp)
    ref = load_dataset(f"builtin:scenes?size={n}&seed=0&split=train")
    emb = load_embeddings("glove-6b-50d")
    _, concepts, _ = emb.encode(ref.concepts)
    ext_opts = ExtractOptions(device=dev, amp=args.amp, batch_size=args.batch_size, workers=args.workers, show_progress=False)
    # best of --repeats full extractions into fresh caches, as the bare forward pass is timed best of 3
    # each run is paired with a bare pass over as many images just before it, timed the same way, so that
    # a machine whose speed drifts (shared CPUs) compares like with like within a round
    t_extract, paired = float("inf"), []
    for rep in range(args.repeats):
        t_bare = bare_pass(tm, layer, n, dev, args.amp, cfg)
        t = time.perf_counter()
        c = extract_features(tm, layer, ref, tmp / f"c{rep}", concepts, ext_opts)
        t_run = time.perf_counter() - t
        t_extract = min(t_extract, t_run)
        paired.append(t_bare / t_run)
        print(f"  round {rep + 1}: bare pass {n / t_bare:.1f} img/s, extraction {len(c) / t_run:.1f} img/s, "
              f"ratio {paired[-1]:.3f}", flush=True)
        if rep == 0:
            cache = c
    # the reference again, after the extractions: a machine that sped up meanwhile must not flatter the ratio
    first, (again, _) = bare, bare_forward(tm, layer, n, dev, args.amp, configs=[cfg])
    bare = max(first, again)
    ext = len(cache) / t_extract
    rows.append(("extraction / bare forward (images/s)", f"{ext:.1f} / {bare:.1f}", ext / bare, ">= 0.8"))
    rows.append(("the same in paired rounds: bare pass over the same images just before each extraction (median)",
                 ", ".join(f"{r:.3f}" for r in paired), float(sorted(paired)[len(paired) // 2]), ">= 0.8"))
    data["extraction"] = {"extract_ips": ext, "bare_ips": bare, "paired_ratios": paired, "bare_ips_before_after": [first, again], "bare_config": cfg, "batch_size": args.batch_size,
                          "device": dev, "amp": args.amp}

    print("1b. lavise's own work per image (a stand-in network of the layer's shape)", flush=True)
    own = own_work(tm, layer, ref, concepts, tmp, n, dev, args.amp, ext_opts)
    fwd_ms = 1e3 / bare
    rows.append(("lavise's own work per image: stand-in extraction minus stand-in forward / bare forward (ms)",
                 f"{own['standin_extract_ms']:.2f} - {own['standin_forward_ms']:.2f} / {fwd_ms:.2f} "
                 f"(best extraction / bare forward this allows: {1 / (1 + own['own_ms'] / fwd_ms):.2f})",
                 own["own_ms"] / fwd_ms, "(diagnostic)"))
    data["own_work"] = {**own, "bare_forward_ms": fwd_ms}

    print("2. cached vs recomputing epochs", flush=True)
    x = cache.masked_pooled().to(dev)
    y = torch.from_numpy(cache.pairs[:, 1]).to(dev)
    cv = torch.nn.functional.normalize(torch.randn(len(concepts), emb.dim), dim=1).to(dev)
    head = ExplainerHead(cache.shape[0], emb.dim, members=HEADS).to(dev)  # lavise's default head
    opt = torch.optim.Adam(head.parameters(), 1e-3)

    def epoch(inputs):
        head.train()
        for i in range(0, len(inputs), 128):
            if len(inputs[i:i + 128]) < 2:  # BatchNorm needs two samples (as lavise.train skips such a batch)
                continue
            loss = hinge_rank_loss(head(inputs[i:i + 128]), y[i:i + 128], cv)
            opt.zero_grad()
            loss.backward()
            opt.step()

    epoch(x[:256])  # warm-up
    _sync(dev)
    t = time.perf_counter()
    epoch(x)
    _sync(dev)
    t_cached = time.perf_counter() - t
    # the alternative: every epoch runs the backbone again on every reference image (no cache)
    ex = FeatureExtractor(tm, layer)
    tm.module.to(dev)
    t = time.perf_counter()
    feats = []
    for i in range(0, len(ref), cfg["batch_size"]):
        imgs = torch.stack([tm.preprocess(load_rgb(ref[j].path)) for j in range(i, min(i + cfg["batch_size"], len(ref)))])
        with torch.autocast(device_type=dev.split(":")[0], enabled=args.amp):
            feats.append(ex(imgs.to(dev)).float())
    f = torch.cat(feats)
    m = torch.from_numpy(cache.masks_feat.astype("float32")).to(dev)
    x2 = (f[torch.from_numpy(cache.pairs[:, 0]).to(dev)] * m[:, None]).mean((2, 3))
    epoch(x2)
    _sync(dev)
    t_recompute = time.perf_counter() - t
    tm.module.cpu()
    rows.append(("epoch recomputing features / epoch on cache (s)", f"{t_recompute:.2f} / {t_cached:.3f}",
                 t_recompute / t_cached, ">= 20"))
    data["epochs"] = {"cached_s": t_cached, "recompute_s": t_recompute, "pairs": len(x)}

    print("3. explain all filters vs target extraction", flush=True)
    target = load_dataset(f"builtin:scenes?size={n}&seed=0&split=test")
    t = time.perf_counter()
    tcache = extract_features(tm, layer, target, tmp / "c0", None, ext_opts)
    t_textract = time.perf_counter() - t
    cfg_head = head.config()
    head, cv = head.cpu(), cv.cpu()
    trained = TrainedExplainer(head.eval(), concepts, cv, {"layer": layer, "head": cfg_head})
    vocab = emb.vocabulary("nouns", concepts=concepts, size=10000)
    data["explain"] = {"target_extract_s": t_textract, "filters": cache.shape[0]}
    for method, p, s, hub in ((DEFAULT_METHOD, TOP_IMAGES, WORDS_PER_IMAGE, 0.0),
                              ("attention", PAPER_TOP_IMAGES, PAPER_WORDS_PER_IMAGE, 0.0),
                              (DEFAULT_METHOD, TOP_IMAGES, WORDS_PER_IMAGE, HUBNESS)):
        t = time.perf_counter()
        explain_cache(trained, tcache, vocab, ExplainOptions(method=method, p=p, s=s, hubness=hub), extract=ext_opts)
        _sync(dev)
        t_explain = time.perf_counter() - t
        rows.append((f"explain all {cache.shape[0]} filters ({method}, p={p}, s={s}{f', --hubness {hub}' if hub else ''}) "
                     "/ target extraction (s)",
                     f"{t_explain:.2f} / {t_textract:.1f} (fixed cost: under 10% from {t_explain / 0.1 * n / t_textract:.0f} images)",
                     t_explain / t_textract, "< 0.10"))
        data["explain"][f"{method}_p{p}_s{s}{f'_hubness{hub}' if hub else ''}_s"] = t_explain

    if not args.skip_rss:
        print("4. peak RSS at N vs 4N target images", flush=True)
        run = tmp / "run"
        trained_cfg = {"model": tm.spec, "weights": None, "model_digest": tm.weights_digest, "layer": layer,
                       "embeddings": "glove-6b-50d", "concepts": concepts, "head": cfg_head}
        TrainedExplainer(head.eval(), concepts, cv, trained_cfg).save(run)
        small, big = max(16, n // 4), max(64, n)
        rss_small, rss_big = peak_rss_explain(run, small, 1), peak_rss_explain(run, big, 1)
        rows.append((f"peak RSS explain {big} / {small} images (MiB)", f"{rss_big:.0f} / {rss_small:.0f}",
                     rss_big / rss_small, "<= 1.10"))
        data["rss"] = {"small": small, "big": big, "rss_small_mib": rss_small, "rss_big_mib": rss_big}

    if not args.skip_distributed:
        print("5. one vs two processes (torchrun, gloo)", flush=True)
        times = {}
        for nproc in (1, 2):
            out = tmp / f"dist{nproc}"
            code = ("import time, torch.distributed as dist, os; from lavise.runtime import init_distributed; "
                    "init_distributed('cpu'); from lavise.models import load_model; from lavise.data import load_dataset; "
                    "from lavise.features import extract_features; tm = load_model(%r); "
                    "ds = load_dataset('builtin:scenes?size=%d&seed=2&split=test'); t = time.perf_counter(); "
                    "from lavise.options import ExtractOptions; extract_features(tm, %r, ds, %r, None, ExtractOptions(show_progress=False)); "
                    "print('TIME', time.perf_counter() - t) if os.environ.get('RANK', '0') == '0' else None"
                    ) % (tm.spec, n, layer, str(out))
            launcher = [sys.executable, "-c", code] if nproc == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
                sys.executable, "-c", code]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
            res = subprocess.run(launcher, capture_output=True, text=True, env=env)
            if res.returncode:
                raise RuntimeError(res.stderr[-2000:])
            times[nproc] = float(res.stdout.split("TIME")[-1].split()[0])
        same = (tmp / "dist1").exists() and sorted(p.name for p in (tmp / "dist1").iterdir()) == sorted(
            p.name for p in (tmp / "dist2").iterdir())
        rows.append(("extraction time 1 process / 2 processes (s)", f"{times[1]:.1f} / {times[2]:.1f}",
                     times[1] / times[2], "(speed-up; same cache key: %s)" % same))
        data["distributed"] = {"one_s": times[1], "two_s": times[2]}

    print(f"6. {len(layers)} layers in one pass ({', '.join(layers)})", flush=True)
    more, data["multilayer"] = multilayer(tm, layers, n, ext_opts, tmp, args.repeats)
    rows += more

    table = "| measure | values | ratio | target |\n|---|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c:.3f} | {d} |" for a, b, c, d in rows)
    print(table)
    print("saved", save("speed" if dev == "cpu" else f"speed-{dev.split(':')[0]}", table, {"rows": rows, "images": n, "model": tm.spec, "layer": layer, **data}))


if __name__ == "__main__":
    main()
