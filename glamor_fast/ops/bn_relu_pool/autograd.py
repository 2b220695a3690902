"""The fused block's one contract, shared by its cpp and Triton ops: output shapes, the fake of
the backward op and the autograd formula.

Forward op: (x, weight, bias, eps) -> (y, idx (uint8 window index), xp (x at the argmax), mean,
var), the pooled tensors (N, C, H//2, W//2) in x's memory format. Backward op: (grad_y, x,
weight, y, idx, xp, mean, var, eps) -> (grad_x, grad_weight, grad_bias).
"""
from __future__ import annotations

import torch

from ..extension import empty_like_layout, memory_format_of


def pooled_like(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """Empty (N, C, H//2, W//2) in x's device, layout and (unless given) dtype, for x (N, C, H, W)."""
    N, C, H, W = x.shape
    return torch.empty((N, C, H // 2, W // 2), dtype=dtype or x.dtype, device=x.device,
                       memory_format=memory_format_of(x))


def block_backward_fake(grad_y, x, weight, y, idx, xp, mean, var, eps):
    """Fake kernel of a block backward op (cpp and Triton): grad_x like x, grad_weight, grad_bias."""
    return empty_like_layout(x), weight.new_empty(weight.shape), weight.new_empty(weight.shape)


def register_block_autograd(forward_name: str, backward_op) -> None:
    """Autograd for a block forward op ``(x, weight, bias, eps) -> (y, idx, xp, mean, var)``
    whose gradients ``backward_op(grad_y, x, weight, y, idx, xp, mean, var, eps)`` returns as
    (grad_x, grad_weight, grad_bias). Shared by the cpp and Triton ops."""

    def setup_context(ctx, inputs, output):
        x, weight, bias, eps = inputs
        y, idx, xp, mean, var = output
        ctx.eps = eps
        ctx.mark_non_differentiable(idx, xp, mean, var)
        # No zero tensors for the four outputs that never get a gradient: materialising them
        # zero-filled ~1 ms per call at the first block (aten::fill_, 2 threads).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight, y, idx, xp, mean, var)

    def backward(ctx, grad_y, _gi, _gxp, _gm, _gv):
        x, weight, y, idx, xp, mean, var = ctx.saved_tensors
        grad_y = torch.zeros_like(y) if grad_y is None else grad_y
        dx, dw, db = backward_op(grad_y, x, weight, y, idx, xp, mean, var, ctx.eps)
        return dx, dw, db, None

    torch.library.register_autograd(forward_name, backward, setup_context=setup_context)
