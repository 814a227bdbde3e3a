"""The explainer head g: pooled masked features -> a vector in word-embedding space.

Each member follows the published code: global average pooling of F ⊙ M, then
BN1d -> Dropout -> Linear(d, d) -> ReLU -> BN1d -> Dropout -> Linear(d, D).
Because pooling comes first, callers pass already pooled inputs (B, d).

A head may hold several such members, trained alike from different initialisations and
shuffles; its output is the normalised sum of theirs. One member is the paper's head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _member(in_dim: int, emb_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm1d(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
        nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, emb_dim),
    )


class ExplainerHead(nn.Module):
    """Maps pooled features (B, d) to unit vectors (B, D) in the embedding space.

    Args:
        in_dim: d, the layer's filters.
        emb_dim: D, the embedding dimension.
        hidden: hidden width (default d).
        dropout: dropout before each linear layer.
        members: independently initialised MLPs whose unit outputs are summed (1: the paper's head).
    """

    def __init__(self, in_dim: int, emb_dim: int, hidden: int | None = None, dropout: float = 0.1, members: int = 1):
        super().__init__()
        if members < 1:
            raise ValueError(f"an explainer head needs at least one member, not {members}")
        hidden = hidden or in_dim
        self.in_dim, self.emb_dim, self.hidden, self.dropout = in_dim, emb_dim, hidden, dropout
        self.members = nn.ModuleList([_member(in_dim, emb_dim, hidden, dropout)])
        # the other members draw from a fork of the global RNG, so that member 0 and everything drawn after it
        # (dropout masks) are those of a one-member head
        with torch.random.fork_rng(devices=[]):
            self.members.extend(_member(in_dim, emb_dim, hidden, dropout) for _ in range(members - 1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        out = F.normalize(self.members[0](pooled), dim=-1)
        if len(self.members) == 1:
            return out
        for m in self.members[1:]:
            out = out + F.normalize(m(pooled), dim=-1)
        return F.normalize(out, dim=-1)

    def folded(self) -> "FoldedHead":
        """A frozen copy for inference that gives this head's eval-mode outputs (up to rounding), faster."""
        return FoldedHead(self)

    def member_outputs(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        """Each member's unit output (training scores every member with its own loss)."""
        return [F.normalize(m(pooled), dim=-1) for m in self.members]

    def config(self) -> dict:
        """What ``ExplainerHead(**config)`` needs to rebuild this head."""
        return {"in_dim": self.in_dim, "emb_dim": self.emb_dim, "hidden": self.hidden, "dropout": self.dropout,
                "members": len(self.members)}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # lavise-explainer-1 files hold one head as `net.*`: it is member 0
        for k in [k for k in state_dict if k.startswith(prefix + "net.")]:
            state_dict[prefix + "members.0." + k[len(prefix) + 4:]] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class FoldedHead(nn.Module):
    """An ``ExplainerHead`` in eval mode, rearranged for speed on many inputs.

    In eval mode BatchNorm is an affine map, so it folds into the linear layer after it (dropout is the
    identity), and the members' first layers run as one product. Explaining spends most of its time here
    (d·p pairs); the weights are folded once, not per batch. Later changes to the head do not reach it.
    """

    @torch.no_grad()  # buffers, not a graph: the copy is frozen however it is made
    def __init__(self, head: ExplainerHead):
        super().__init__()
        w1, b1, w2, b2 = [], [], [], []
        for m in head.members:
            for bn, lin, ws, bs in ((m[0], m[2], w1, b1), (m[4], m[6], w2, b2)):
                scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
                ws.append(lin.weight * scale)
                bs.append(torch.addmv(lin.bias, lin.weight, bn.bias - bn.running_mean * scale))
        self.register_buffer("w1", torch.cat(w1))  # (members * hidden, d)
        self.register_buffer("b1", torch.cat(b1))
        self.register_buffer("w2", torch.stack(w2).transpose(1, 2).contiguous())  # (members, hidden, D)
        self.register_buffer("b2", torch.stack(b2)[:, None])  # (members, 1, D)
        self.in_dim, self.emb_dim, self.members = head.in_dim, head.emb_dim, len(head.members)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = F.linear(pooled, self.w1, self.b1).relu_()
        hidden = hidden.view(len(pooled), self.members, -1).transpose(0, 1)  # (members, B, hidden)
        out = F.normalize(torch.baddbmm(self.b2, hidden, self.w2), dim=-1)
        return out[0] if self.members == 1 else F.normalize(out.sum(0), dim=-1)


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
