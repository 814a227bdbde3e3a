"""From explainer outputs to words: per-pair top-s words (with optional penalties: calibrated stacking,
hub-word correction) and each filter's words ranked by how many of its top images voted for them."""
from __future__ import annotations

import numpy as np
import torch

from ..defaults import STABILITY_RESAMPLES
from ..embeddings import Vocabulary
from ..features import FeatureCache
from ..stats import Thresholds
from .inputs import TopPairs
from .results import FilterExplanation


def vocabulary_tensor(vocab: Vocabulary, device: str = "cpu") -> torch.Tensor:
    """The vocabulary's unit vectors as a float32 (V, D) tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(vocab.vectors, dtype=np.float32)).to(device)


def calibration_penalty(vocab: Vocabulary, concepts: list[str], gamma: float,
                        device: str = "cpu") -> torch.Tensor | None:
    """Calibrated stacking (Chao et al. 2016): γ for each vocabulary word that is a training concept, else 0
    (None when γ = 0), subtracted from similarities before words are chosen so unseen concepts can compete."""
    if not gamma:
        return None
    trained = set(concepts)
    return torch.tensor([gamma if w in trained else 0.0 for w in vocab.words], device=device)


HUB_NEIGHBOURS = 200  # k of CSLS's neighbourhood


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


def rank_words(pairs: TopPairs, idx: torch.Tensor, sim: torch.Tensor, vocab: Vocabulary, thresholds: Thresholds,
               cache: FeatureCache, x: int, votes: str = "count") -> list[FilterExplanation]:
    """Rank the words voted by each filter's top images by frequency (ties: mean similarity, then word order).

    Args:
        pairs: the explained filters and their top images.
        idx, sim: (U·p, s) or (U, p, s) vocabulary indices and cosines of each pair's top-s words.
        vocab: the candidate words.
        thresholds: T_u (dead filters get no words; the threshold and saturation are reported).
        cache: the target cache (image ids).
        x: words kept per filter.
        votes: ``count`` (a word's ``score`` is its share of the votes) or ``similarity`` (each vote weighted by
            its cosine, floored at 0; ``score`` is the weighted share).

    Returns:
        One ``FilterExplanation`` per filter of ``pairs``.
    """
    units, rows, vals, thr = pairs.units, pairs.rows, pairs.vals, thresholds
    U, p = rows.shape
    idx, sim = idx.reshape(U, p, -1), sim.reshape(U, p, -1)
    V = len(vocab.words)
    # Only images on which the filter fires vote: below T_u a masked input is empty and the head's answer to
    # nothing would win the votes of every filter with fewer than p such images.
    fires = qualifying(pairs, thr)
    voting = fires[:, :, None].expand_as(idx).reshape(-1)
    keys = (torch.arange(U)[:, None, None] * V + idx).reshape(-1)[voting]
    uniq, inv, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    vsim = sim.reshape(-1)[voting].double()
    sims = torch.zeros(len(uniq), dtype=torch.float64).scatter_add_(0, inv, vsim)
    fu, fw = (uniq // V).numpy(), (uniq % V).numpy()
    mean_sim = (sims.numpy() / counts.numpy())
    # the votes: counts, or sums of (non-negative) cosines
    cnt = counts.numpy().astype(np.float64) if votes == "count" else torch.zeros(len(uniq), dtype=torch.float64) \
        .scatter_add_(0, inv, vsim.clamp(min=0)).numpy()
    order = np.lexsort((fw, -mean_sim, -cnt, fu))  # by filter, then count desc, similarity desc, word index
    fu, fw, cnt, mean_sim = fu[order], fw[order], cnt[order], mean_sim[order]
    starts = np.searchsorted(fu, np.arange(U))
    ends = np.searchsorted(fu, np.arange(U), side="right")
    stable = vote_stability(idx, sim, units, weighted=votes == "similarity", voting=fires)
    out = []
    for i, u in enumerate(units.tolist()):
        sl = slice(starts[i], min(ends[i], starts[i] + x))
        dead = bool(thr.dead[u])
        words = [] if dead else [{"word": vocab.words[w], "score": round(float(c) / p, 6), "similarity": round(float(m), 6)}
                                 for w, c, m in zip(fw[sl], cnt[sl], mean_sim[sl])]
        images = [{"image_id": cache.image_ids[int(r)], "max_activation": round(float(v), 6)}
                  for r, v in zip(rows[i].tolist(), vals[i].tolist())]
        out.append(FilterExplanation(u, round(float(thr.values[u]), 6), words, images,
                                     bool(thr.inclusive[u]), dead,
                                     stability=None if dead or not words else round(float(stable[i]), 6)))
    return out


def qualifying(pairs: TopPairs, thresholds: Thresholds) -> torch.Tensor:
    """(U, p) bool: whether each top image reaches its filter's T_u (the rule of ``Thresholds.masks``)."""
    cut = torch.as_tensor(thresholds.cut)[pairs.units][:, None]
    inc = torch.as_tensor(thresholds.inclusive)[pairs.units][:, None]
    vals = pairs.vals.float()
    return torch.where(inc, vals >= cut, vals > cut)


def vote_stability(idx: torch.Tensor, sim: torch.Tensor, units: torch.Tensor,
                   resamples: int = STABILITY_RESAMPLES, weighted: bool = False,
                   voting: torch.Tensor | None = None) -> np.ndarray:
    """Per filter, the share of bootstrap resamples of its top images whose votes elect the same top word as
    all of them (``rank_words``' rule: most votes, then highest mean similarity, then word order).

    A top word that wins by three votes out of a hundred is one draw of images away from another: this says how
    far, without another pass over any image.

    Args:
        idx, sim: (U, p, s) vocabulary indices and cosines of each pair's top-s words.
        units: (U,) the filters' numbers; filter u's resamples are seeded by u, so a filter gets the same
            figure whichever other filters are explained with it.
        resamples: bootstrap resamples per filter.
        weighted: votes weighted by their (non-negative) cosine, as ``rank_words(votes="similarity")``.
        voting: (U, p) bool, the images that vote (default all); the others are drawn but do not vote.

    Returns:
        (U,) shares in [0, 1].
    """
    U, p, s = idx.shape
    out = np.empty(U)
    for i, u in enumerate(units.tolist()):
        local, inv = torch.unique(idx[i].reshape(-1), return_inverse=True)  # sorted: argmax ties go to word order
        inv = inv.reshape(p, s)
        on = torch.ones(p, s, dtype=torch.float64) if voting is None else voting[i].double()[:, None].expand(p, s)
        ones = on * (sim[i].double().clamp(min=0) if weighted else 1.0)
        votes = torch.zeros(p, len(local), dtype=torch.float64).scatter_add_(1, inv, ones)
        sims = torch.zeros(p, len(local), dtype=torch.float64).scatter_add_(1, inv, sim[i].double() * on)
        draws = torch.randint(p, (resamples, p), generator=torch.Generator().manual_seed(int(u)))
        weights = torch.zeros(resamples, p, dtype=torch.float64).scatter_add_(
            1, draws, torch.ones(resamples, p, dtype=torch.float64))
        n_votes = torch.zeros(p, len(local), dtype=torch.float64).scatter_add_(1, inv, on.contiguous())

        def winner(w: torch.Tensor) -> torch.Tensor:
            count, total, n = w @ votes, w @ sims, w @ n_votes
            mean = total / n.clamp(min=1.0)
            best = count.max(-1, keepdim=True).values
            if not weighted:  # counts differ by whole votes, mean similarities by less than 2: one key orders both
                won = (4.0 * count + mean).argmax(-1)
            else:  # weighted sums tie only exactly; then the mean similarity decides, as in rank_words
                won = torch.where(count == best, mean, torch.full_like(mean, -9.0)).argmax(-1)
            return torch.where(best[..., 0] > 0, won, torch.full_like(won, -1))  # no voter drawn: no winner

        out[i] = float((winner(weights) == winner(torch.ones(1, p, dtype=torch.float64))).double().mean())
    return out
