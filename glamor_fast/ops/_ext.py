"""Loads the compiled extension ``glamor_fast._C`` and wires its ops into torch.

Shared by the "cpp" and "cuda" backends: the op schemas live in csrc/glamor_fast.cpp and their
CPU / CUDA kernels in csrc/cpu and csrc/cuda; here we add what torch needs from Python:
fake (meta) kernels for torch.compile and autograd formulas (``torch.library``).

Ops (see csrc/glamor_fast.cpp):
    glamor_fast::gla_forward(face, context, w1, b1, w2, b2, hidden_scale?, hidden_shift?)
        -> pooled (B, Dc), attn (B, H, W) [inputs' dtype], lse (B) [float64 or float32]
    glamor_fast::gla_backward(grad_pooled, grad_attn, grad_lse, <the 8 inputs>, pooled, attn,
        lse, needs_grad: 8 bools) -> the 8 input gradients, an empty (0,) tensor where not needed

Double backward: gla_backward has no derivative. A backward run with create_graph=True (grad
mode on inside it) takes its gradients from ``gla_reference_vjp`` instead, so higher-order
gradients are those of the reference formulas (exact, at the reference's speed and memory).
"""
from __future__ import annotations

from typing import Optional

import torch

from .reference import gla_reference_vjp

BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` from the repository root "
    "(torch must be installed first)"
)

try:
    from glamor_fast import _C  # noqa: F401  (loading it registers the ops)

    _LOAD_ERROR: Optional[str] = None
except ImportError as exc:  # not built, or built against another torch
    _C = None
    _LOAD_ERROR = f"the compiled extension glamor_fast._C cannot be imported ({exc}); {BUILD_HINT}"


def load_error() -> Optional[str]:
    """None when glamor_fast._C is loaded, else why not and how to build it."""
    return _LOAD_ERROR


def has_kernel(dispatch_key: str) -> bool:
    """Whether glamor_fast._C registered kernels for ``dispatch_key`` ("CPU" or "CUDA")."""
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("glamor_fast::gla_forward", dispatch_key)


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grad_context_like(context: torch.Tensor) -> torch.Tensor:
    channels_last = context.is_contiguous(memory_format=torch.channels_last) and not context.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(context.shape, dtype=context.dtype, device=context.device).contiguous(memory_format=fmt)


def _register() -> None:
    @torch.library.register_fake("glamor_fast::gla_forward")
    def _gla_forward_fake(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift):
        B, Dc, H, W = context.shape
        return (
            context.new_empty((B, Dc)),
            context.new_empty((B, H, W)),
            context.new_empty((B,), dtype=_lse_dtype(context.dtype)),
        )

    @torch.library.register_fake("glamor_fast::gla_backward")
    def _gla_backward_fake(grad_pooled, grad_attn, grad_lse, face, context, w1, b1, w2, b2,
                           hidden_scale, hidden_shift, pooled, attn, lse, needs_grad):
        def like(t, needed):
            if needed and t is not None:
                return t.new_empty(t.shape)
            return context.new_empty((0,))

        return (
            like(face, needs_grad[0]),
            _grad_context_like(context) if needs_grad[1] else context.new_empty((0,)),
            like(w1, needs_grad[2]),
            like(b1, needs_grad[3]),
            like(w2, needs_grad[4]),
            like(b2, needs_grad[5]),
            like(hidden_scale, needs_grad[6]),
            like(hidden_shift, needs_grad[7]),
        )

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, *output)

    def backward(ctx, grad_pooled, grad_attn, grad_lse):
        saved = ctx.saved_tensors
        inputs, (pooled, attn, lse) = saved[:8], saved[8:]
        needs = [bool(n) for n in ctx.needs_input_grad[:8]]
        if inputs[6] is None:
            needs[6] = needs[7] = False
        if torch.is_grad_enabled():  # create_graph=True: gla_backward has no derivative
            return gla_reference_vjp(inputs, needs, grad_pooled, grad_attn, grad_lse)
        # Autograd materialises missing output grads as zeros; guard for callers that do not.
        grad_pooled = torch.zeros_like(pooled) if grad_pooled is None else grad_pooled
        grad_attn = torch.zeros_like(attn) if grad_attn is None else grad_attn
        grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse
        # The kernels call ATen matmuls: autocast (if backward runs inside it) must not recast them.
        with torch.autocast(pooled.device.type, enabled=False):
            grads = torch.ops.glamor_fast.gla_backward(
                grad_pooled, grad_attn, grad_lse, *inputs, pooled, attn, lse, needs
            )
        return tuple(g if n else None for g, n in zip(grads, needs))

    torch.library.register_autograd("glamor_fast::gla_forward", backward, setup_context=setup_context)


if _C is not None:
    _register()


def gla(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic=True):
    """(pooled (B, Dc), attn (B, H, W)) through the compiled op; differentiable in every input.

    Both compiled kernels reduce weight gradients in a fixed order, so ``deterministic`` has
    nothing to switch.
    """
    pooled, attn, _ = torch.ops.glamor_fast.gla_forward(
        face, context, w1, b1, w2, b2, hidden_scale, hidden_shift
    )
    return pooled, attn
