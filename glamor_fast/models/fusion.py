"""Adaptive fusion: a softmax over learned per-branch scores weighs the face and context vectors."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _score_net(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))


class AdaptiveFusion(nn.Module):
    """s_f = F(v_f), s_c = F(v_c); (w_f, w_c) = softmax(s_f, s_c); classify [w_f v_f ; w_c v_c].

    Either ``face_dim`` or ``context_dim`` may be None for a single-branch model (the paper's
    ablations); its one weight is then 1 and it has no score net (a softmax over one score is
    constant, so a score net would never learn).

    forward(face (B, face_dim) or None, context (B, context_dim) or None)
        -> logits (B, num_classes), weights (B, number of branches) in branch order (face, context).
    """

    def __init__(self, face_dim: Optional[int], context_dim: Optional[int], hidden: int = 128,
                 num_classes: int = 7, dropout: float = 0.5):
        super().__init__()
        dims = {"face": face_dim, "context": context_dim}
        self.branches = [name for name, d in dims.items() if d]
        if not self.branches:
            raise ValueError("AdaptiveFusion needs face_dim or context_dim (or both)")
        if num_classes < 1:
            raise ValueError(f"AdaptiveFusion: num_classes must be >= 1, got {num_classes}")
        scored = self.branches if len(self.branches) > 1 else []
        self.scorers = nn.ModuleDict({name: _score_net(dims[name], hidden) for name in scored})
        self.classifier = nn.Sequential(
            nn.Linear(sum(dims[n] for n in self.branches), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.dims = dims

    def forward(self, face: Optional[torch.Tensor] = None, context: Optional[torch.Tensor] = None):
        given = {"face": face, "context": context}
        vectors = []
        for name in self.branches:
            v = given[name]
            if v is None or v.dim() != 2 or v.shape[1] != self.dims[name]:
                shape = None if v is None else tuple(v.shape)
                raise ValueError(f"AdaptiveFusion: `{name}` must be (B, {self.dims[name]}), got {shape}")
            vectors.append(v)
        if self.scorers:
            scores = torch.cat([self.scorers[n](v) for n, v in zip(self.branches, vectors)], dim=1)
            weights = torch.softmax(scores, dim=1)                          # (B, branches)
        else:
            weights = vectors[0].new_ones(vectors[0].shape[0], 1)
        fused = torch.cat([v * weights[:, i : i + 1] for i, v in enumerate(vectors)], dim=1)
        return self.classifier(fused), weights
