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
    scores = _scores(face, cells, w1, b1, w2, b2, hidden_scale, hidden_shift)  # (B, N)
    attn = torch.softmax(scores, dim=1)                             # (B, N)
    pooled = torch.bmm(attn.unsqueeze(1), cells).squeeze(1)         # (B, Dc)
    return pooled, attn.view(B, H, W)


def _scores(face, cells, w1, b1, w2, b2, hidden_scale, hidden_shift):
    """s (B, N) = w2 . g(W1 [v_f; v_ij] + b1) + b2 for cells (B, N, Dc), literally."""
    B, N, _ = cells.shape
    faces = face.unsqueeze(1).expand(B, N, face.shape[1])           # (B, N, Df)
    joined = torch.cat([faces, cells], dim=-1)                      # (B, N, Df + Dc)
    hidden = F.relu(F.linear(joined, w1, b1))                       # (B, N, Hd)
    if hidden_scale is not None:
        hidden = F.relu(hidden * hidden_scale + hidden_shift)
    return hidden @ w2 + b2.reshape(())


def gla_reference_vjp(inputs, needs, grad_pooled, grad_attn, grad_lse=None):
    """Input gradients of the GLA op by autograd through the reference, with create_graph=True.

    The fused backends call this from their backward when it runs with grad mode on (a
    ``create_graph=True`` backward: double backward, gradient penalties). Their backward ops
    have no derivative of their own, so these gradients, and the graph behind them, come from
    the reference formulas on the same saved inputs: second-order gradients are right (and
    slow), never silently missing.

    Args:
        inputs: the op's 8 inputs (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift).
        needs: 8 bools, which gradients are wanted.
        grad_pooled (B, Dc), grad_attn (B, H, W) or None, grad_lse (B,) or None: the cotangents
            of pooled, attn and lse = log sum_i exp(s_i) (the C++ op's third output).
    Returns:
        8 gradients, None where not wanted.
    """
    face, context = inputs[0], inputs[1]
    wanted = [i for i, n in enumerate(needs) if n and inputs[i] is not None]
    with torch.enable_grad():
        B, _, H, W = context.shape
        cells = context.flatten(2).transpose(1, 2)
        scores = _scores(face, cells, *inputs[2:])
        attn = torch.softmax(scores, dim=1)
        pooled = torch.bmm(attn.unsqueeze(1), cells).squeeze(1)
        outs, cots = [], []
        for out, cot in ((pooled, grad_pooled), (attn.view(B, H, W), grad_attn),
                         (torch.logsumexp(scores, dim=1), grad_lse)):
            if cot is not None:
                outs.append(out)
                cots.append(cot.to(out.dtype).reshape(out.shape))
        grads = torch.autograd.grad(outs, [inputs[i] for i in wanted], cots, create_graph=True,
                                    allow_unused=True) if outs else [None] * len(wanted)
    result = [None] * 8
    for i, g in zip(wanted, grads):
        result[i] = torch.zeros_like(inputs[i]) if g is None else g
    return tuple(result)


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
