"""Top-k word search by cosine similarity: ``top_words`` (the one search) and ``similarity_topk`` over it."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import EmbeddingError
from .base import Vocabulary


def top_words(v: torch.Tensor, vocab: torch.Tensor, s: int,
              penalty: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and cosines of the top-s vocabulary words of each row of ``v``: (B, s) each, on the CPU.

    Args:
        v: (B, dim) unit query vectors, on the device of ``vocab``.
        vocab: (V, dim) unit word vectors.
        s: words per row.
        penalty: (V,) or broadcastable; words are ranked by cosine minus it, but the raw cosine is returned.

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


def similarity_topk(queries: torch.Tensor | np.ndarray, vocab: Vocabulary, k: int,
                    chunk: int = 1 << 25) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Top-k vocabulary words by cosine similarity for each query vector.

    Args:
        queries: (n, dim) vectors (need not be normalised).
        vocab: the candidate words.
        k: words per query (capped at ``len(vocab)``).
        chunk: max elements of one similarity block (bounds memory).
    Returns:
        (scores, indices), each (n, k), best first; numpy if ``queries`` is numpy, else torch tensors
        on the device of ``queries`` (detached: this is a search, not a loss).
    """
    as_numpy = not isinstance(queries, torch.Tensor)
    q = torch.as_tensor(np.asarray(queries) if as_numpy else queries).float()
    if q.ndim != 2 or q.shape[1] != vocab.vectors.shape[1]:
        raise EmbeddingError(f"queries of shape {tuple(q.shape)} do not match {vocab.vectors.shape[1]}-d "
                             "embeddings; use the embeddings the explainer was trained with")
    # top_words writes into a preallocated block (out=), which autograd refuses.
    q = torch.nn.functional.normalize(q.detach(), dim=1)
    v = torch.from_numpy(np.ascontiguousarray(vocab.vectors)).to(q.device, torch.float32)
    k = min(k, len(vocab))
    step = max(1, chunk // max(1, len(vocab)))  # top_words' GPU block is every row given: bound it here
    indices, scores = [], []
    for s in range(0, len(q), step):
        idx, sim = top_words(q[s:s + step], v, k)
        indices.append(idx)
        scores.append(sim)
    out_s = torch.cat(scores) if scores else torch.zeros((0, k))
    out_i = torch.cat(indices) if indices else torch.zeros((0, k), dtype=torch.long)
    return (out_s.numpy(), out_i.numpy()) if as_numpy else (out_s.to(q.device), out_i.to(q.device))
