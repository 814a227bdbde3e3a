"""Inference: explain every filter of the layer in words, all filters at once.

For filter u: its top-p images on the target set (by max activation), one
explainer input per (u, image) built by the chosen method, the top-s words of
each input by cosine similarity, and the words ranked by how many of the p
images voted for them (ties: mean similarity). Inputs for all (u, image) pairs
are built in batched tensor operations, never a Python loop over filters.

Methods (paper §3.2, Table 2):
    attention   every filter k reweighted by cos(A_u, A_k): pooled input = cos ⊙ GAP(F)
    masked-attention  (default; not in the paper) the same weights, pooled only where u fires:
                cos ⊙ GAP(F ⊙ [A_u > T_u])
    activation  F ⊙ [A_u > T_u], the mask at feature resolution
    image       pixels where upsampled A_u <= T_u set to the mean colour, network rerun
    original    F unmasked
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.base import ConceptDataset
from .defaults import DEFAULT_METHOD, TOP_IMAGES, WORDS_PER_IMAGE
from .embeddings import Vocabulary, load_embeddings
from .errors import EmbeddingError, LaviseError, RunError
from .features import FeatureCache, FeatureExtractor, _barrier, check_device, distributed, extract_features
from .io import read_json, write_json, write_text
from .models import TargetModel, load_model
from .run import RunFolder, versions
from .stats import ActivationStats, Thresholds
from .train import TrainedExplainer

# "masked-attention" is not in the paper: filter attention restricted to the filter's own activation mask, so
# that objects next to the one the filter responds to do not leak into the input (see README, quality).
METHODS = ("attention", "masked-attention", "activation", "image", "original")



@dataclass(frozen=True)
class FilterExplanation:
    """The explanation of one filter."""

    unit: int
    threshold: float
    words: list[dict]  # [{"word", "score", "similarity"}], best first
    images: list[dict]  # [{"image_id", "max_activation"}], most active first
    saturated: bool = False
    dead: bool = False

    @property
    def top_words(self) -> list[str]:
        return [w["word"] for w in self.words]


@dataclass(frozen=True)
class Explanations:
    """Explanations of every filter of one layer; ``save`` writes JSON + CSV into a run folder."""

    model: str
    layer: str
    method: str
    dataset: str
    settings: dict
    filters: list[FilterExplanation] = field(default_factory=list)

    def __getitem__(self, unit: int) -> FilterExplanation:
        return self.filters[unit]

    def to_dict(self) -> dict:
        return {"model": self.model, "layer": self.layer, "method": self.method, "dataset": self.dataset,
                "settings": self.settings, "filters": [asdict(f) for f in self.filters]}

    def csv_text(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["layer", "unit", "rank", "word", "score", "similarity"])
        for f in self.filters:
            for r, word in enumerate(f.words, 1):
                w.writerow([self.layer, f.unit, r, word["word"], word["score"], word["similarity"]])
        return buf.getvalue()

    def save(self, run: str | Path, name: str = "explanations") -> Path:
        """Write ``RUN/<name>.json`` and ``RUN/<name>.csv`` atomically and record them in the manifest."""
        rf = RunFolder(run)
        write_json(rf / f"{name}.json", self.to_dict())
        write_text(rf / f"{name}.csv", self.csv_text())
        rf.record(name, [f"{name}.json", f"{name}.csv"], method=self.method)
        return rf / f"{name}.json"

    @classmethod
    def load(cls, path: str | Path) -> "Explanations":
        """Read ``explanations.json`` (a file or a run folder)."""
        p = Path(path)
        if p.is_dir():
            RunFolder(p).require("explanations", "lavise explain")
            p = p / "explanations.json"
        d = read_json(p)
        return cls(d["model"], d["layer"], d["method"], d["dataset"], d["settings"],
                   [FilterExplanation(**f) for f in d["filters"]])


def top_images(cache: FeatureCache, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The p rows with the largest max activation per filter: (d, p) rows and values, most active first.

    Ties are broken by the map's mean activation, then dataset order. Uses the streaming statistics when
    they kept enough images, else one chunked pass over the cache; memory is O(d·p) either way.
    """
    p = min(p, len(cache))
    if p <= cache.stats.keep_images:
        idx, val = cache.stats.top_images(p)
    else:  # one more streaming pass over the cached maps (max, then mean, as the statistics rank them)
        acc = ActivationStats(cache.shape[0], 1, keep_images=p)
        for start in range(0, len(cache), 256):
            f = cache.read(np.arange(start, min(start + 256, len(cache))))
            ix = torch.from_numpy(np.asarray(cache.dataset_index[start:start + 256], dtype=np.int64))
            acc._keep_images(torch.cat([acc.img_val, f.amax((2, 3)).T], 1), torch.cat([acc.img_mean, f.mean((2, 3)).T], 1),
                             torch.cat([acc.img_idx, ix[None].expand(f.shape[1], -1)], 1))
        idx, val = acc.top_images(p)
    rows = cache.rows_of(idx.reshape(-1)).reshape(idx.shape)
    return torch.from_numpy(rows).long(), torch.from_numpy(np.ascontiguousarray(val))


def filter_inputs(method: str, feats: torch.Tensor, units: torch.Tensor, thresholds: Thresholds,
                  image: torch.Tensor | None = None) -> torch.Tensor:
    """Pooled explainer inputs for a batch of (filter, image) pairs.

    Args:
        method: ``attention``, ``masked-attention``, ``activation`` or ``original`` (``image`` needs the network:
            see ``_image_inputs``).
        feats: (M, d, h, w) feature maps of the images involved.
        units: (B,) the filter of each pair.
        thresholds: T_u of the target set.
        image: (B,) row of ``feats`` of each pair (default: pair b uses ``feats[b]``).

    Returns:
        (B, d) pooled inputs.
    """
    if method not in ("attention", "masked-attention", "activation", "original"):
        raise LaviseError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    flat = feats.flatten(2)  # (M, d, hw)
    image = torch.arange(len(units), device=feats.device) if image is None else image
    pooled = flat.mean(-1)  # (M, d)
    if method == "original":
        return pooled[image]
    hw = flat.shape[-1]
    own = flat[image, units]  # (B, hw)
    # The products of each pair's image maps (d, hw) with its right-hand sides: the attention weights (own map,
    # normalised) and/or the activation mask.
    rhs = []
    if method in ("attention", "masked-attention"):
        rhs.append(F.normalize(own, dim=-1))
        inv_norm = 1 / flat.norm(dim=-1).clamp_min(1e-12)  # cos(A_u, A_k) = (A_k · Â_u) / |A_k|
    if method in ("activation", "masked-attention"):
        rhs.append(thresholds.masks(own, units=units).to(flat.dtype))
    prod = _pair_products(flat, image, torch.stack(rhs, 2))  # (B, d, r)
    if method == "activation":
        return prod[..., 0] / hw  # GAP(F ⊙ [A_u > T_u])
    if method == "attention":
        return prod[..., 0] * (inv_norm * pooled)[image]  # GAP(cos ⊙ F) = cos ⊙ GAP(F)
    return prod[..., 0] * prod[..., 1] * inv_norm[image] / hw  # GAP(cos ⊙ F ⊙ [A_u > T_u]): attention where u fires


def _pair_products(flat: torch.Tensor, image: torch.Tensor, rhs: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
    """``flat[image[b]] @ rhs[b]`` for every pair b: (M, d, hw) maps, (B,) images, (B, hw, r) -> (B, d, r).

    ``batched`` (default: on a GPU) gathers each pair's maps for one batched product. On a CPU a copy of the
    maps per pair costs more than the arithmetic, so each image's maps meet all of its pairs' right-hand
    sides in one matmul instead.
    """
    if flat.device.type != "cpu" if batched is None else batched:
        return torch.bmm(flat[image], rhs)
    B, hw, r = rhs.shape
    out = torch.empty(B, flat.shape[1], r, dtype=flat.dtype, device=flat.device)
    order = torch.argsort(image, stable=True)
    imgs, counts = torch.unique_consecutive(image[order], return_counts=True)
    start = 0
    for j, k in zip(imgs.tolist(), counts.tolist()):
        sel = order[start:start + k]
        start += k
        out[sel] = (flat[j] @ rhs[sel].transpose(0, 1).reshape(hw, k * r)).view(-1, k, r).transpose(0, 1)
    return out


def _image_inputs(pairs_units, pairs_rows, cache, dataset, extractor, thresholds, device) -> torch.Tensor:
    pre = extractor.target.preprocess
    xs = []
    for u, r in zip(pairs_units.tolist(), pairs_rows.tolist()):
        x = pre(pre.load(dataset[int(cache.dataset_index[r])].path))  # as the target cache decoded it
        a = torch.from_numpy(np.array(cache.features[r, u], dtype=np.float32))
        up = F.interpolate(a[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        keep = thresholds.masks(up[None], units=torch.tensor([u]))[0]
        xs.append(x * keep)  # 0 after normalisation = the mean colour
    f = extractor(torch.stack(xs).to(device)).float().cpu()
    return f.mean((2, 3))


def default_batch_pairs(shape: tuple[int, int, int], device: str = "cpu", budget: int = 512 << 20) -> int:
    """(filter, image) pairs per explain chunk for maps of ``shape`` (d, h, w).

    A chunk holds up to one float32 copy of the maps per pair (the images read on a CPU, the gathered maps
    on a GPU), kept within ``budget`` bytes so that layers with large maps do not exhaust memory; within
    that, 512 pairs on a CPU and 2,048 on a GPU (fewer kernel launches).
    """
    per_pair = 4 * int(np.prod(shape))
    return int(max(16, min(2048 if device.startswith("cuda") else 512, budget // per_pair)))


def check_units(units: list[int] | None, d: int, layer: str = "the layer") -> None:
    """A one-line ``LaviseError`` unless every filter index in ``units`` is one of the layer's ``d`` filters."""
    if units is None:
        return
    bad = [u for u in units if not 0 <= int(u) < d]
    if bad or not len(units):
        what = f"filter {bad[0]} is out of range" if bad else "no filters were given"
        raise LaviseError(f"--units: {what}: {layer} has {d} filters, numbered 0 to {d - 1}")


def compute_thresholds(cache: FeatureCache) -> Thresholds:
    """T_u (upper 0.5% quantile of each filter's activations on the cached set)."""
    return Thresholds.from_stats(cache.stats)


@torch.no_grad()
def explain_cache(
    explainer: TrainedExplainer,
    cache: FeatureCache,
    vocab: Vocabulary,
    method: str = DEFAULT_METHOD,
    p: int = TOP_IMAGES,
    s: int = WORDS_PER_IMAGE,
    x: int = 10,
    units: list[int] | None = None,
    dataset: ConceptDataset | None = None,
    target: TargetModel | None = None,
    device: str = "cpu",
    batch_pairs: int | None = None,
    show_progress: bool = True,
    calibration: float = 0.0,
    amp: bool = False,
    hubness: float = 0.0,
) -> list[FilterExplanation]:
    """Explain filters from an already extracted target cache (see ``explain_filters``).

    ``batch_pairs`` (default ``default_batch_pairs``) bounds the (filter, image) pairs handled at once.

    ``calibration`` (γ, default 0 = the paper's method) is subtracted from the similarity of every
    vocabulary word that is one of the explainer's training concepts before the top-s words are taken
    (calibrated stacking, Chao et al. 2016), which lets unseen concepts compete with seen ones. Reported
    similarities stay the raw cosines.

    ``hubness`` (λ, default 0 = off) corrects for hub words, which are near many explainer outputs and so
    win votes for many filters: each word's similarity is lowered by λ·r_w before the top-s words are taken,
    r_w being its mean cosine to its ``HUB_NEIGHBOURS`` nearest outputs among the (filter, image) pairs of every
    filter of the layer (CSLS, Conneau et al. 2018; λ = 0.5 is CSLS proper), so a filter's words do not depend
    on which ``units`` were asked for; the ``image`` method, which reruns the network per pair, takes r_w from
    the explained pairs only. It needs every output before any word is chosen: with ``units``, all filters'
    outputs are computed. Reported similarities stay the raw cosines.

    ``amp`` runs the explainer head under autocast (bfloat16 on a CPU, where AMX or AVX512-BF16 make its
    matmuls several times faster); near-tied words may then swap places.
    """
    if method not in METHODS:
        raise LaviseError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not hubness >= 0:
        raise LaviseError(f"--hubness must be 0 (off) or positive, not {hubness}")
    check_device(device)
    d = cache.shape[0]
    if explainer.head.in_dim != d:
        raise RunError(f"explainer expects {explainer.head.in_dim} filters but the layer has {d}")
    check_units(units, d, explainer.config.get("layer", "the layer"))
    if vocab.vectors.shape[1] != explainer.head.emb_dim:
        raise EmbeddingError(f"vocabulary vectors are {vocab.vectors.shape[1]}-d but the explainer was trained with "
                             f"{explainer.head.emb_dim}-d embeddings; use the embeddings named in the run's config.json")
    thr = compute_thresholds(cache)
    units_t = torch.arange(d) if units is None else torch.as_tensor(units, dtype=torch.long)
    all_rows, all_vals = top_images(cache, p)
    rows, vals = all_rows[units_t], all_vals[units_t]
    p_eff = rows.shape[1]
    pair_u = units_t[:, None].expand(-1, p_eff).reshape(-1)
    pair_r = rows.reshape(-1)
    head = explainer.head.eval().to(device).folded()
    vocab_t = torch.from_numpy(np.ascontiguousarray(vocab.vectors, dtype=np.float32)).to(device)
    s_eff = min(s, vocab_t.shape[0])
    penalty = None
    if calibration:
        trained = set(explainer.concepts)
        penalty = torch.tensor([calibration if w in trained else 0.0 for w in vocab.words], device=device)
    if batch_pairs is None:
        batch_pairs = default_batch_pairs(cache.shape, device)
    extractor = None
    if method == "image":
        if dataset is None or target is None:
            raise LaviseError("method 'image' reruns the network: pass the target dataset and model")
        extractor = FeatureExtractor(target, explainer.config["layer"])
        batch_pairs = min(batch_pairs, 32)
    outputs = partial(_head_outputs, method, head, cache, thr, batch_pairs, device, amp, dataset, extractor,
                      show_progress)
    top_idx = torch.empty(len(pair_u), s_eff, dtype=torch.long)
    top_sim = torch.empty(len(pair_u), s_eff)
    if not hubness:  # words chunk by chunk, as the outputs come
        def words(sel, v):
            top_idx[sel], top_sim[sel] = _top_words(v, vocab_t, s_eff, penalty)
        outputs(pair_u, pair_r, words)
    else:
        # every output is needed before any word is chosen (pairs x D floats: small). r_w comes from the pairs
        # of every filter, so that a filter's words do not depend on which others were asked for; the image
        # method reruns the network per pair, so there it comes from the explained pairs only.
        every = method != "image" and units is not None and not torch.equal(units_t, torch.arange(d))
        hub_u = torch.arange(d)[:, None].expand(-1, p_eff).reshape(-1) if every else pair_u
        hub_r = all_rows.reshape(-1) if every else pair_r
        out = torch.empty(len(hub_u), vocab_t.shape[1], device=device)

        def keep(sel, v):
            out[sel.to(device)] = v
        outputs(hub_u, hub_r, keep)
        hub = hubness * hub_scores(out, vocab_t)
        penalty = hub if penalty is None else penalty + hub
        if every:  # the explained filters' pairs among all of them
            out = out.view(d, p_eff, -1)[units_t.to(device)].reshape(len(pair_u), -1)
        for start in range(0, len(out), batch_pairs):
            sl = slice(start, start + batch_pairs)
            top_idx[sl], top_sim[sl] = _top_words(out[sl], vocab_t, s_eff, penalty)
    return _rank_words(units_t, rows, vals, top_idx.view(len(units_t), p_eff, s_eff),
                       top_sim.view(len(units_t), p_eff, s_eff), vocab, thr, cache, x)


def _head_outputs(method, head, cache, thr, batch_pairs, device, amp, dataset, extractor, show_progress,
                  pair_u, pair_r, sink) -> None:
    """The head's output for every (filter, image) pair, handed to ``sink(positions, outputs)`` chunk by chunk."""
    order = torch.argsort(pair_r, stable=True)  # read each image's features once per chunk
    bar = tqdm(range(0, len(order), batch_pairs), desc=f"explain ({method})", unit="batch", disable=not show_progress,
               leave=False)
    for start in bar:
        sel = order[start:start + batch_pairs]
        u, r = pair_u[sel], pair_r[sel]
        if method == "image":
            inp = _image_inputs(u, r, cache, dataset, extractor, thr, device)
        else:
            uniq, inv = torch.unique(r, return_inverse=True)
            feats = cache.read(uniq.numpy()).to(device)  # pooling runs where the head does
            inp = filter_inputs(method, feats, u.to(device), thr, image=inv.to(device))
        with torch.autocast(device_type=device.split(":")[0], enabled=amp):
            v = head(inp.to(device)).float()
        sink(sel, v)


HUB_NEIGHBOURS = 200


def hub_scores(outputs: torch.Tensor, vocab: torch.Tensor, k: int = HUB_NEIGHBOURS) -> torch.Tensor:
    """r_w of CSLS: each vocabulary word's mean cosine to its k nearest explainer outputs.

    Args:
        outputs: (N, D) unit explainer outputs.
        vocab: (V, D) unit word vectors.
        k: neighbours (at most N).

    Returns:
        (V,) scores on ``outputs``' device.
    """
    k = max(1, min(k, len(outputs)))
    # Blocks of words against all outputs: one top-k per word along contiguous rows. A running top-k over
    # blocks of outputs re-selects the kept k each time and selects along strided columns: 3x slower on CPU.
    budget = (1 << 30) if outputs.device.type == "cuda" else (64 << 20)
    words = max(1, budget // (4 * len(outputs)))
    out = torch.empty(vocab.shape[0], device=outputs.device)
    for j in range(0, vocab.shape[0], words):
        out[j:j + words] = (vocab[j:j + words] @ outputs.T).topk(k, dim=1, sorted=False).values.mean(1)
    return out


def _top_words(v: torch.Tensor, vocab: torch.Tensor, s: int, penalty: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and cosines of the top-s vocabulary words of each row of ``v``: (B, s) each, on the CPU.

    Rows go through in small blocks so that each (rows x vocabulary) similarity block stays in cache;
    one big block is bandwidth-bound and about twice as slow on CPU.
    """
    rows = 64 if v.device.type == "cpu" else len(v)
    out_idx, out_sim = torch.empty(len(v), s, dtype=torch.long), torch.empty(len(v), s)
    buf = torch.empty(min(rows, len(v)), vocab.shape[0], device=v.device)
    for i in range(0, len(v), rows):
        sims = torch.mm(v[i:i + rows], vocab.T, out=buf[:len(v[i:i + rows])])
        if penalty is not None:  # calibrated stacking, hubness: rank with the penalty, report the raw cosine
            idx = (sims - penalty).topk(s, dim=1).indices
        elif s == 1:  # an argmax is several times faster than topk(1), with the same answer; numpy's on CPU
            idx = (torch.from_numpy(sims.numpy().argmax(1)) if sims.device.type == "cpu" else sims.argmax(1))[:, None]
        else:
            idx = sims.topk(s, dim=1).indices
        out_idx[i:i + rows], out_sim[i:i + rows] = idx.cpu(), sims.gather(1, idx).cpu()
    return out_idx, out_sim


def _rank_words(units, rows, vals, idx, sim, vocab, thr, cache, x) -> list[FilterExplanation]:
    """Frequency ranking of the words voted by each filter's top images (vectorised over filters)."""
    U, p, s = idx.shape
    V = len(vocab.words)
    keys = (torch.arange(U)[:, None, None] * V + idx).reshape(-1)
    uniq, inv, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    sims = torch.zeros(len(uniq), dtype=torch.float64).scatter_add_(0, inv, sim.reshape(-1).double())
    fu, fw = (uniq // V).numpy(), (uniq % V).numpy()
    cnt = counts.numpy()
    mean_sim = (sims.numpy() / cnt)
    order = np.lexsort((fw, -mean_sim, -cnt, fu))  # by filter, then count desc, similarity desc, word index
    fu, fw, cnt, mean_sim = fu[order], fw[order], cnt[order], mean_sim[order]
    starts = np.searchsorted(fu, np.arange(U))
    ends = np.searchsorted(fu, np.arange(U), side="right")
    out = []
    for i, u in enumerate(units.tolist()):
        sl = slice(starts[i], min(ends[i], starts[i] + x))
        dead = bool(thr.dead[u])
        words = [] if dead else [{"word": vocab.words[w], "score": round(float(c) / p, 6), "similarity": round(float(m), 6)}
                                 for w, c, m in zip(fw[sl], cnt[sl], mean_sim[sl])]
        images = [{"image_id": cache.image_ids[int(r)], "max_activation": round(float(v), 6)}
                  for r, v in zip(rows[i].tolist(), vals[i].tolist())]
        out.append(FilterExplanation(u, round(float(thr.values[u]), 6), words, images,
                                     bool(thr.inclusive[u]), dead))
    return out


def explain_filters(
    run: str | Path | TrainedExplainer,
    images: ConceptDataset,
    method: str = DEFAULT_METHOD,
    p: int = TOP_IMAGES,
    s: int = WORDS_PER_IMAGE,
    x: int = 10,
    vocabulary: str = "nouns",
    vocabulary_size: int = 10000,
    units: list[int] | None = None,
    target: TargetModel | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    amp: bool = False,
    strict: bool = False,
    hubness: float = 0.0,
    show_progress: bool = True,
) -> Explanations:
    """Explain every filter (or ``units``) of the run's layer on an unlabeled image set.

    Args:
        run: a run folder written by ``train_explainer`` or a ``TrainedExplainer``.
        images: the target dataset D (labels, if any, are ignored).
        method: one of ``METHODS``.
        p: top activating images per filter; s: words kept per image; x: words per filter.
        vocabulary: ``nouns`` (frequent singular nouns + concept names), ``common`` (frequent words +
            concept names), ``concepts`` or a word-list FILE.
        vocabulary_size: how many frequent words ``nouns``/``common`` take.
        units: filters to explain (default all).
        target: the model (default: loaded from the run's config).
        cache_dir: feature cache folder (default ``RUN/cache``).
        out: run folder to save ``explanations.json``/``.csv`` into (default: the run folder).
        device, batch_size, num_workers, amp, strict: extraction settings (see ``extract_features``); ``amp``
            also runs the explainer head under autocast.
        hubness: λ of the hub-word correction (0: off; see ``explain_cache``).
        show_progress: progress bars.

    Returns:
        ``Explanations``.
    """
    run_dir = None if isinstance(run, TrainedExplainer) else Path(run)
    explainer = run if isinstance(run, TrainedExplainer) else TrainedExplainer.load(run)
    cfg = explainer.config
    check_units(units, explainer.head.in_dim, cfg["layer"])  # before any extraction
    if target is None:
        target = load_model(cfg["model"], cfg.get("weights"))
        if target.weights_digest != cfg["model_digest"]:
            raise RunError(f"the weights of {cfg['model']} differ from those the explainer was trained on; pass the same --weights")
    emb = load_embeddings(cfg["embeddings"])
    if emb.dim != explainer.head.emb_dim:
        raise EmbeddingError(f"{cfg['embeddings']} is {emb.dim}-d but the explainer outputs {explainer.head.emb_dim}-d")
    vocab = emb.vocabulary(vocabulary, concepts=explainer.concepts, size=vocabulary_size)
    cache_dir = cache_dir or (Path(out or run_dir) / "cache" if (out or run_dir) else None)
    if cache_dir is None:
        raise RunError("give out=RUN or cache_dir for the target feature cache")
    cache = extract_features(target, cfg["layer"], images, cache_dir, None, batch_size=batch_size,
                             num_workers=num_workers, amp=amp, device=device, strict=strict, show_progress=show_progress)
    filters = explain_cache(explainer, cache, vocab, method, p, s, x, units, images, target, device,
                            show_progress=show_progress, amp=amp, hubness=hubness)
    settings = {"p": p, "s": s, "x": x, "vocabulary": vocabulary, "vocabulary_size": len(vocab.words), "amp": amp,
                "hubness": hubness,
                "embeddings": cfg["embeddings"], "quantile": cache.stats.q, "images": len(cache),
                "skipped_images": len(cache.meta.get("skipped", [])), "dataset_fingerprint": cache.meta["dataset_fingerprint"],
                "versions": versions()}
    result = Explanations(cfg["model"], cfg["layer"], method, images.spec, settings, filters)
    if (out is not None or run_dir is not None) and distributed()[1] == 0:
        result.save(out or run_dir)
    _barrier()
    return result
