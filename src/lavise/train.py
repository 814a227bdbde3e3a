"""Training the explainer on cached masked features of a reference dataset.

The backbone never runs during epochs: features are extracted once
(``features.extract_features``), pooled with each concept mask, and the head
is trained on those (P, d) vectors with the hinge rank loss.
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .data.base import ConceptDataset
from .defaults import SMALL_MASK_CELLS
from .embeddings import Embeddings, load_embeddings
from .errors import DatasetError, EmbeddingError, RunError
from .explainer import ExplainerHead, hinge_rank_loss
from .features import FeatureCache, extract_features
from .io import atomic_path, read_json, write_json, write_text
from .models import TargetModel
from .options import ExtractOptions, TrainOptions
from .run import RunFolder, versions
from .runtime import barrier, is_main_process

if TYPE_CHECKING:
    from .explain.confidence import Calibrator


@dataclass(frozen=True)
class TrainedExplainer:
    """A trained head with the concepts and settings it was trained with.

    Attributes:
        head: the ``ExplainerHead`` (eval mode).
        concepts: training concept names, in the order of ``concept_vectors``.
        concept_vectors: (C, D) unit vectors.
        config: every setting (model, layer, datasets, embeddings, hyper-parameters, versions).
        history: one dict per epoch (train_loss, val_loss, val_top1, val_top5).
        calibrator: the confidence model fitted on the reference set (None: not fitted, e.g. an older run).
    """

    head: ExplainerHead
    concepts: list[str]
    concept_vectors: torch.Tensor
    config: dict
    history: list[dict] = field(default_factory=list)
    calibrator: Calibrator | None = None

    def save(self, run: str | Path) -> RunFolder:
        """Write ``explainer.safetensors``, ``config.json`` and ``train_log.csv`` into ``run``."""
        rf = RunFolder(run)
        tensors = {f"head.{k}": v.contiguous() for k, v in self.head.state_dict().items()}
        tensors["concept_vectors"] = self.concept_vectors.contiguous()
        with atomic_path(rf / "explainer.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"format": "lavise-explainer-1"})
        write_json(rf / "config.json", self.config)
        buf = _io.StringIO()
        if self.history:
            w = csv.DictWriter(buf, fieldnames=list(self.history[0]))
            w.writeheader()
            w.writerows(self.history)
        write_text(rf / "train_log.csv", buf.getvalue())
        files = ["explainer.safetensors", "config.json", "train_log.csv"]
        if self.calibrator is not None:
            write_json(rf / "calibration.json", self.calibrator.to_dict())
            files.append("calibration.json")
            if self.calibrator.grounding is not None:
                self.calibrator.grounding.save(rf / "grounding.npz")
                files.append("grounding.npz")
        rf.record("explainer", files)
        return rf

    @classmethod
    def load(cls, run: str | Path) -> "TrainedExplainer":
        """Read a trained explainer from a run folder."""
        rf = RunFolder(run)
        cfg = rf.config()
        try:
            tensors = load_file(str(rf / "explainer.safetensors"))
        except Exception as e:  # noqa: BLE001
            raise RunError(f"cannot read {rf / 'explainer.safetensors'} ({e}); retrain with `lavise train`") from None
        head = ExplainerHead(**cfg["head"])
        head.load_state_dict({k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")})
        head.eval()
        history = []
        log = rf / "train_log.csv"
        if log.is_file():
            with log.open(newline="") as f:
                history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        from .explain.confidence import Calibrator, Grounding

        cal = rf / "calibration.json"
        calibrator = Calibrator.from_dict(read_json(cal, RunError, "calibration")) if cal.is_file() else None
        if calibrator is not None and (rf / "grounding.npz").is_file():
            calibrator = replace(calibrator, grounding=Grounding.load(rf / "grounding.npz"))
        return cls(head, cfg["concepts"], tensors["concept_vectors"], cfg, history, calibrator)


def small_mask_pooled(cache: FeatureCache, copies: int, generator: torch.Generator,
                      max_cells: int = SMALL_MASK_CELLS) -> torch.Tensor:
    """Training inputs of every (image, concept) pair seen through small masks: GAP(F ⊙ S), where S is 1 to
    ``max_cells`` random cells of the pair's mask at feature resolution (cells at least half covered; the most
    covered cell where none is).

    Filters are explained through their activation mask A_u > T_u, often a cell or two of the map, while the
    head trains on whole object masks; these inputs show it objects through masks of that size.

    Args:
        cache: a reference cache (with pairs and feature-resolution masks).
        copies: draws per pair.
        generator: seeds the cells and their number.
        max_cells: the most cells in one draw.

    Returns:
        (copies, P, d) float32, pooled over all h'×w' cells like ``FeatureCache.masked_pooled``.
    """
    assert cache.pairs is not None and cache.masks_feat is not None
    out = torch.zeros(copies, len(cache.pairs), cache.shape[0])
    for start in range(0, len(cache.pairs), 1024):  # pairs are in row order: sequential reads
        sl = slice(start, start + 1024)
        f = cache.read(cache.pairs[sl, 0]).flatten(2)  # (b, d, hw)
        m = torch.from_numpy(cache.masks_feat[sl].astype(np.float32)).flatten(1)  # (b, hw)
        ok = m >= 0.5
        ok[torch.arange(len(m)), m.argmax(1)] |= ~ok.any(1)
        for c in range(copies):
            # the k cells of highest random score among the eligible ones: a uniform k-subset
            score = torch.rand(m.shape, generator=generator).masked_fill(~ok, -1.0)
            k = torch.minimum(torch.randint(1, max_cells + 1, (len(m),), generator=generator), ok.sum(1))
            rank = score.argsort(1, descending=True).argsort(1)
            cells = (rank < k[:, None]).to(f.dtype)
            out[c, sl] = (f * cells[:, None]).mean(-1)
    return out


def validation_pairs(cache: FeatureCache, val_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(P,) bool: the reference pairs that validate, those of a random ``val_fraction`` of the images (so no
    image is on both sides); drawn from ``generator``, which then seeds the first member's shuffles."""
    n_img = len(cache)
    is_val = torch.zeros(n_img, dtype=torch.bool)
    is_val[torch.randperm(n_img, generator=generator)[: int(round(n_img * val_fraction))]] = True
    return is_val[torch.from_numpy(cache.pairs[:, 0])]


def training_pairs(cache: FeatureCache, x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int,
                   small_masks: int = 0, select: torch.Tensor | None = None):
    """``train_explainer``'s training and validation sets: the image-level split (``validation_pairs``), plus
    ``small_masks`` small-mask inputs per training pair (``small_mask_pooled``; validation keeps whole masks).

    Args:
        cache: the reference cache the pairs come from.
        x, y: (P, d) pooled inputs and (P,) concept indices of all the cache's pairs.
        val_fraction: share of images that validate.
        seed: seeds the split (and the generator returned) and, apart, the small masks.
        small_masks: small-mask inputs per training pair.
        select: (P,) bool, the pairs to keep (default all); the split is drawn over all images either way.

    Returns:
        ``xtr, ytr, xva, yva`` and the generator the split was drawn from (it goes on to shuffle member 0).
    """
    g = torch.Generator().manual_seed(seed)
    val = validation_pairs(cache, val_fraction, g)
    keep = torch.ones_like(val) if select is None else select
    tr, va = keep & ~val, keep & val
    xtr, ytr = x[tr], y[tr]
    if small_masks:  # a generator of its own: the split and the members' shuffles stay as without
        small = small_mask_pooled(cache, small_masks, torch.Generator().manual_seed(seed))[:, tr]
        xtr, ytr = torch.cat([xtr, small.flatten(0, 1)]), ytr.repeat(small_masks + 1)
    return xtr, ytr, x[va], y[va], g


def train_explainer(
    target: TargetModel,
    reference: ConceptDataset,
    embeddings: Embeddings | str = "glove-6b-50d",
    layer: str | None = None,
    out: str | Path | None = None,
    options: TrainOptions = TrainOptions(),
    extract: ExtractOptions = ExtractOptions(),
    cache_dir: str | Path | None = None,
) -> TrainedExplainer:
    """Train the explainer head for one layer of ``target`` on ``reference``.

    Args:
        target: model from ``load_model``.
        reference: dataset with concept masks from ``load_dataset``.
        embeddings: ``Embeddings`` or a spec for ``load_embeddings``.
        layer: dotted layer name (default: the model's default layer).
        out: run folder to save into (None: do not save).
        options: epochs, patience, learning rate, batch size, validation share, seed, head members
            (``fit_head``) and small-mask inputs (``small_mask_pooled``; validation uses whole masks only).
        extract: how the backbone runs (device, batches, workers, precision, strictness, progress).
        cache_dir: where feature caches live (default ``out/cache``).

    Returns:
        The ``TrainedExplainer`` (also saved to ``out`` when given).
    """
    o = options
    emb = load_embeddings(embeddings) if isinstance(embeddings, str) else embeddings
    layer = layer or target.default_layer
    target.layer(layer)  # fail early on a wrong name
    vectors, concepts, missing = emb.encode(list(reference.concepts))
    if len(concepts) < 2:
        raise EmbeddingError(f"only {len(concepts)} of {len(reference.concepts)} concepts of {reference.spec} "
                             f"are in the {emb.name} vocabulary; use other embeddings (e.g. minilm)")
    if cache_dir is None:
        if out is None:
            raise RunError("give a run folder (out=...) or a cache_dir for the feature cache")
        cache_dir = Path(out) / "cache"
    cache = extract_features(target, layer, reference, cache_dir, concepts, extract)
    if cache.pairs is None or len(cache.pairs) == 0:
        raise DatasetError(f"{reference.spec} has no usable concept masks; a reference set needs annotations")
    x = cache.masked_pooled()
    y = torch.from_numpy(cache.pairs[:, 1])
    cv = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))

    xtr, ytr, xva, yva, g = training_pairs(cache, x, y, o.val_fraction, o.seed, o.small_masks)
    if len(xtr) < 2:
        raise DatasetError(f"only {len(xtr)} training pairs in {reference.spec}; use a larger reference set")

    head, history = fit_head(xtr, ytr, xva, yva, cv, o, generator=g, device=extract.device,
                             show_progress=extract.show_progress)
    config = {
        "model": target.spec, "weights": target.weights_path, "model_digest": target.weights_digest, "layer": layer,
        "feature_shape": list(cache.shape), "preprocess": target.preprocess.to_dict(),
        "reference": reference.spec, "reference_fingerprint": reference.fingerprint(),
        "embeddings": emb.name, "embeddings_fingerprint": emb.fingerprint(), "concepts": concepts,
        "missing_concepts": missing, "skipped_images": cache.meta.get("skipped", []),
        "head": head.config(),
        "train": {**o.to_dict(), "epochs_run": len(history),
                  "pairs_train": len(xtr), "pairs_val": len(xva), "best_epoch": _best_epoch(history)},
        "versions": versions(),
    }
    result = TrainedExplainer(head, concepts, cv, config, history)
    if o.calibrate:
        from .explain.confidence import fit_on_reference

        result = replace(result, calibrator=fit_on_reference(result, cache, emb, reference.spec, o.seed, extract))
    if out is not None and is_main_process():  # every rank trains the same head; rank 0 writes it
        result.save(out)
    barrier()
    return result


def fit_head(
    xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, cv: torch.Tensor,
    options: TrainOptions = TrainOptions(), *, generator: torch.Generator | None = None, device: str = "cpu",
    show_progress: bool = False,
) -> tuple[ExplainerHead, list[dict]]:
    """Train an ``ExplainerHead`` on pooled inputs with the hinge rank loss; keep the epoch of least validation loss.

    Each member has its own Adam optimiser, shuffle and (on the CPU) dropout stream, so members are independent
    models that only share the stopping epoch, and member 0 trains exactly as a one-member head would. The
    validation figures are those of the whole head (the normalised sum).

    Args:
        xtr, ytr: training inputs (N, d) and concept indices (N,).
        xva, yva: validation inputs and indices (may be empty: the training loss then picks the epoch).
        cv: (C, D) unit concept vectors.
        options: members (``heads``), ``epochs``, ``patience`` (stop once this many epochs in a row brought no
            new least validation loss; None: run all), Adam ``lr`` and ``batch_size``, ``seed`` (the
            initialisation and the shuffles); ``val_fraction`` and ``small_masks`` are the caller's business.
        generator: member 0's shuffle generator (default: seeded with ``seed``); others use ``seed*1000+k``.
        device: where training runs.
        show_progress: a progress bar over epochs.

    Returns:
        The head (eval mode, on the CPU) and one dict per epoch run (train_loss, val_loss, val_top1, val_top5).
    """
    heads, epochs, patience, lr, batch_size, seed = (options.heads, options.epochs, options.patience, options.lr,
                                                     options.batch_size, options.seed)
    torch.manual_seed(seed)
    head = ExplainerHead(xtr.shape[1], cv.shape[1], members=heads).to(device)
    gens = [generator or torch.Generator().manual_seed(seed)]
    gens += [torch.Generator().manual_seed(seed * 1000 + k) for k in range(1, heads)]
    opts = [torch.optim.Adam(m.parameters(), lr=lr) for m in head.members]
    rng = [torch.get_rng_state()] + [g.get_state() for g in gens[1:]]  # the CPU dropout stream of each member
    cv_dev = cv.to(device)
    history: list[dict] = []
    best_state, best_key, best_epoch = None, None, 0
    bar = tqdm(range(epochs), desc="train explainer", unit="epoch", disable=not show_progress)
    for epoch in bar:
        head.train()
        total = 0.0
        for k, (member, opt, gen) in enumerate(zip(head.members, opts, gens)):
            torch.set_rng_state(rng[k])
            perm = torch.randperm(len(xtr), generator=gen)
            for i in range(0, len(perm), batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                pred = F.normalize(member(xtr[idx].to(device)), dim=-1)
                loss = hinge_rank_loss(pred, ytr[idx].to(device), cv_dev)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            rng[k] = torch.get_rng_state()
        torch.set_rng_state(rng[0])
        rec = {"epoch": epoch + 1, "train_loss": total / (len(xtr) * heads)}
        rec.update(evaluate_head(head, xva, yva, cv, device) if len(xva) else {})
        history.append(rec)
        key = rec.get("val_loss", rec["train_loss"])
        if best_key is None or key < best_key:
            best_key, best_state, best_epoch = key, {k: v.detach().clone() for k, v in head.state_dict().items()}, epoch
        bar.set_postfix({k: round(v, 3) for k, v in rec.items() if k != "epoch"})
        if patience is not None and epoch - best_epoch >= patience:
            break
    bar.close()
    head.load_state_dict(best_state)
    return head.eval().cpu(), history


def _best_epoch(history: list[dict]) -> int:
    key = "val_loss" if history and "val_loss" in history[0] else "train_loss"
    return int(min(history, key=lambda r: r[key])["epoch"]) if history else 0


@torch.no_grad()
def evaluate_head(head: ExplainerHead, x: torch.Tensor, y: torch.Tensor, cv: torch.Tensor, device: str = "cpu") -> dict:
    """Validation loss and top-1/top-5 accuracy among the training concepts."""
    head.eval()
    pred = head(x.to(device)).cpu()
    loss = float(hinge_rank_loss(pred, y, cv))
    rank = (pred @ cv.T).argsort(1, descending=True)
    hit = rank == y[:, None]
    return {"val_loss": loss, "val_top1": float(hit[:, :1].any(1).float().mean()),
            "val_top5": float(hit[:, :5].any(1).float().mean())}
