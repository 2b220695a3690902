"""The GLA reference: the readable specification every fast backend is tested against.

For each batch element, with v_f the face vector and v_ij the context cells:

    v̄_ij = [v_f ; v_ij]                                 (the paper's concatenation)
    s_ij = w2 · g(W1 v̄_ij + b1) + b2                     g = ReLU, or with a folded BatchNorm
                                                         g(x) = ReLU(scale * ReLU(x) + shift)
    a    = softmax over all H*W cells of s
    v_c  = Σ_ij a_ij v_ij

It materialises the (B, N, Df + Dc) concatenation and the (B, N, Hd) hidden layer on
purpose: it is the spec, not the fast path.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .checks import check_gla_inputs


def gla_reference(
    face: torch.Tensor,
    context: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    hidden_scale: Optional[torch.Tensor] = None,
    hidden_shift: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global-Local Attention, computed literally.

    Args:
        face: (B, Df) face vector v_f.
        context: (B, Dc, H, W) context feature map, any strides.
        w1: (Hd, Df + Dc); the first Df columns act on the face.
        b1, w2: (Hd,).  b2: scalar tensor.
        hidden_scale, hidden_shift: optional (Hd,), a BatchNorm on the hidden layer folded
            for inference.
    Returns:
        pooled (B, Dc) and attn (B, H, W), in the inputs' dtype.
    """
    B, Df, Dc, H, W, Hd = check_gla_inputs(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    cells = context.flatten(2).transpose(1, 2)                      # (B, N, Dc)
    faces = face.unsqueeze(1).expand(B, H * W, Df)                  # (B, N, Df)
    joined = torch.cat([faces, cells], dim=-1)                      # (B, N, Df + Dc)
    hidden = F.relu(F.linear(joined, w1, b1))                       # (B, N, Hd)
    if hidden_scale is not None:
        hidden = F.relu(hidden * hidden_scale + hidden_shift)
    scores = hidden @ w2 + b2.reshape(())                           # (B, N)
    attn = torch.softmax(scores, dim=1)                             # (B, N)
    pooled = torch.bmm(attn.unsqueeze(1), cells).squeeze(1)         # (B, Dc)
    return pooled, attn.view(B, H, W)


def gla_split(
    face: torch.Tensor,
    context: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    hidden_scale: Optional[torch.Tensor] = None,
    hidden_shift: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same function as :func:`gla_reference`, written as a careful user would in plain
    PyTorch: no concatenation; the face half of the MLP, u = v_f W1f^T + b1 (B, Hd), once per
    sample; z = ReLU(cells W1c^T + u) (B, N, Hd); scores; softmax; pooling with bmm.

    It is the baseline the fused backends are benchmarked against (bench/gla.py, "split"),
    and tested equal to the reference. Same arguments, shapes and dtypes as ``gla_reference``.
    """
    B, Df, Dc, H, W, Hd = check_gla_inputs(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    cells = context.flatten(2).transpose(1, 2)                      # (B, N, Dc)
    u = torch.addmm(b1, face, w1[:, :Df].t())                       # (B, Hd)
    hidden = F.relu(torch.matmul(cells, w1[:, Df:].t()) + u.unsqueeze(1))  # (B, N, Hd)
    if hidden_scale is not None:
        hidden = F.relu(hidden * hidden_scale + hidden_shift)
    scores = torch.matmul(hidden, w2) + b2.reshape(())              # (B, N)
    attn = torch.softmax(scores, dim=1)                             # (B, N)
    pooled = torch.bmm(attn.unsqueeze(1), cells).squeeze(1)         # (B, Dc)
    return pooled, attn.view(B, H, W)
