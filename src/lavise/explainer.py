"""The explainer head g: pooled masked features -> a vector in word-embedding space.

The head follows the published code: global average pooling of F ⊙ M, then
BN1d -> Dropout -> Linear(d, d) -> ReLU -> BN1d -> Dropout -> Linear(d, D).
Because pooling comes first, callers pass already pooled inputs (B, d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ExplainerHead(nn.Module):
    """Maps pooled features (B, d) to unit vectors (B, D) in the embedding space."""

    def __init__(self, in_dim: int, emb_dim: int, hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        hidden = hidden or in_dim
        self.in_dim, self.emb_dim, self.hidden = in_dim, emb_dim, hidden
        self.net = nn.Sequential(
            nn.BatchNorm1d(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
            nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, emb_dim),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(pooled), dim=-1)


def hinge_rank_loss(pred: torch.Tensor, targets: torch.Tensor, concept_vectors: torch.Tensor,
                    margin: float = 1.0) -> torch.Tensor:
    """Eq. 1 of the paper, vectorised over all negatives.

    ``mean over pairs of  sum_{c != t} max(0, margin - v_t·v̂ + v_c·v̂)``

    Args:
        pred: (B, D) unit vectors v̂.
        targets: (B,) index of the true concept t of each pair.
        concept_vectors: (C, D) unit vectors of all training concepts.
        margin: the hinge margin.

    Returns:
        Scalar loss.
    """
    scores = pred @ concept_vectors.T  # (B, C)
    pos = scores.gather(1, targets[:, None])
    hinge = (margin - pos + scores).clamp_min(0)
    hinge = hinge.scatter(1, targets[:, None], 0.0)
    return hinge.sum(1).mean()
