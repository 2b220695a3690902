"""Context attention modules: GLAMOR-Net's Global-Local Attention and CAER-Net's standard attention.

Both return ``(pooled (B, Dc), attn (B, H, W))``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.gla import gla
from ..ops.gla.hidden_stats import gla_hidden_stats


class GlobalLocalAttention(nn.Module):
    """GLA: a face-guided softmax over the context cells, computed by ``gla(backend=...)``.

    Parameters are ordinary layers: ``hidden`` = Linear(Df + Dc, Hd) (the first Df input
    columns act on the face), ``score`` = Linear(Hd, 1), and with ``norm="batchnorm"`` a
    ``norm`` = BatchNorm1d(Hd) on the hidden layer (Dense-ReLU-BN-ReLU-Dense, as in the
    authors' code). Training uses batch statistics over all B*H*W hidden activations;
    eval folds the running statistics. Either way the BatchNorm reaches the op as
    ``hidden_scale``/``hidden_shift``, so every backend computes the same function (the maths:
    docs/gla.md, F11 and S1-S2).
    ``bn_eps``/``bn_momentum`` are the BatchNorm1d's (torch's defaults; Keras's are 1e-3, 0.01).

    ``recompute`` is the hidden-layer policy of :func:`glamor_fast.ops.gla` (None: by size and
    device; True: never store the (B, H*W, Hd) hidden layer; False: store it, cpp only).

    forward(face (B, Df, h, w) map, global-average pooled here, or (B, Df) vector;
            context (B, Dc, H, W)) -> pooled (B, Dc), attn (B, H, W), in the context's dtype.
    """

    def __init__(self, face_dim: int = 256, context_dim: int = 256, hidden_dim: int = 128,
                 norm: Optional[str] = None, backend: str = "auto", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, recompute: Optional[bool] = None):
        super().__init__()
        if norm not in (None, "batchnorm"):
            raise ValueError(f"GlobalLocalAttention: norm must be None or 'batchnorm', got {norm!r}")
        for name, value in (("face_dim", face_dim), ("context_dim", context_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GlobalLocalAttention: {name} must be a positive int, got {value!r}")
        self.face_dim, self.context_dim = face_dim, context_dim
        self.backend = backend
        self.recompute = recompute  # the hidden-layer policy of gla(): None, True or False
        self.hidden = nn.Linear(face_dim + context_dim, hidden_dim)
        self.score = nn.Linear(hidden_dim, 1)
        self.norm = nn.BatchNorm1d(hidden_dim, bn_eps, bn_momentum) if norm == "batchnorm" else None

    def forward(self, face: torch.Tensor, context: torch.Tensor):
        if face.dim() == 4:
            face = face.mean(dim=(2, 3))
        if face.dim() != 2 or face.shape[1] != self.face_dim:
            raise ValueError(
                f"GlobalLocalAttention: `face` must be (B, {self.face_dim}) or (B, {self.face_dim}, h, w), "
                f"got {tuple(face.shape)}"
            )
        if context.dim() != 4 or context.shape[1] != self.context_dim:
            raise ValueError(
                f"GlobalLocalAttention: `context` must be (B, {self.context_dim}, H, W), got {tuple(context.shape)}"
            )
        if not torch.is_autocast_enabled(context.device.type) and not (
                face.dtype == context.dtype == self.hidden.weight.dtype):
            raise TypeError(f"GlobalLocalAttention: `face` ({face.dtype}), `context` ({context.dtype}) and the "
                            f"module's parameters ({self.hidden.weight.dtype}) must share one dtype outside autocast, "
                            "as gla requires (convert the module with .to(dtype) or the inputs)")
        dtype = context.dtype  # under autocast the encoders hand us 16-bit maps: follow them
        w1 = self.hidden.weight.to(dtype)
        b1 = self.hidden.bias.to(dtype)
        w2 = self.score.weight.reshape(-1).to(dtype)
        b2 = self.score.bias.reshape(()).to(dtype)
        face = face.to(dtype)
        scale = shift = None
        if self.norm is not None:
            scale, shift = self._folded_norm(face, context)
            scale, shift = scale.to(dtype), shift.to(dtype)
        return gla(face, context, w1, b1, w2, b2, scale, shift, backend=self.backend,
                   recompute=self.recompute)

    def _folded_norm(self, face: torch.Tensor, context: torch.Tensor):
        """BatchNorm1d on the hidden layer as (scale, shift), with batch statistics in training.

        Training needs the mean and variance of ReLU(W1 [v_f; v_ij] + b1) over all B*H*W
        cells before any score exists, at least in float32 and differentiable (the gradient is
        training-mode BatchNorm's): the "reference" backend computes them with plain torch ops
        over the whole (B, N, Hd) hidden layer, the fused backends with ``gla_hidden_stats``
        (glamor_fast.ops.hidden_stats: tiles of cells, no (B, N, Hd) tensor).
        """
        bn = self.norm
        if self.training or not bn.track_running_stats or bn.running_mean is None:
            Df = self.face_dim
            acc = torch.promote_types(context.dtype, torch.float32)  # 16-bit inputs: fp32 stats
            w1 = self.hidden.weight.to(acc)
            if self.backend == "reference":
                u = F.linear(face.to(acc), w1[:, :Df], self.hidden.bias.to(acc))     # (B, Hd)
                cells = context.to(acc).flatten(2).transpose(1, 2)                   # (B, N, Dc)
                h1 = F.relu(cells @ w1[:, Df:].t() + u.unsqueeze(1)).reshape(-1, w1.shape[0])
                mean = h1.mean(0)
                var = h1.var(0, unbiased=False)
            else:
                mean, var = gla_hidden_stats(face.to(acc), context.to(acc), w1, self.hidden.bias.to(acc))
            if self.training and bn.track_running_stats:
                with torch.no_grad():
                    n = context.shape[0] * context.shape[2] * context.shape[3]
                    bn.num_batches_tracked += 1
                    m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), m)
                    unbiased = var * n / max(n - 1, 1)
                    bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), m)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight / torch.sqrt(var + bn.eps)
        return scale, bn.bias - scale * mean


class ContextAttention(nn.Module):
    """CAER-Net's standard attention from the context alone.

    conv3x3 Dc->128, BN, ReLU, conv3x3 128->1, softmax over the H*W cells, weighted pooling.
    forward(context (B, Dc, H, W)) -> pooled (B, Dc), attn (B, H, W).
    """

    def __init__(self, context_dim: int = 256, hidden_dim: int = 128, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.context_dim = context_dim
        self.scorer = nn.Sequential(
            nn.Conv2d(context_dim, hidden_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden_dim, bn_eps, bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, 1, 3, padding=1),
        )

    def forward(self, context: torch.Tensor):
        if context.dim() != 4 or context.shape[1] != self.context_dim:
            raise ValueError(
                f"ContextAttention: `context` must be (B, {self.context_dim}, H, W), got {tuple(context.shape)}"
            )
        B, Dc, H, W = context.shape
        scores = self.scorer(context).reshape(B, H * W)
        attn = torch.softmax(scores.float(), dim=1).to(context.dtype)
        pooled = torch.bmm(attn.unsqueeze(1), context.flatten(2).transpose(1, 2)).squeeze(1)
        return pooled, attn.reshape(B, H, W)
