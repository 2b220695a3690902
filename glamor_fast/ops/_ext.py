"""Loads the compiled extension ``glamor_fast._C`` and wires its ops into torch.

Shared by the "cpp" and "cuda" backends: the op schemas live in csrc/glamor_fast.cpp and their
CPU / CUDA kernels in csrc/cpu and csrc/cuda; here we add what torch needs from Python:
fake (meta) kernels for torch.compile and autograd formulas (``torch.library``).

Ops (see csrc/glamor_fast.cpp):
    glamor_fast::gla_forward(face, context, w1, b1, w2, b2, hidden_scale?, hidden_shift?,
        save_hidden=False) -> pooled (B, Dc), attn (B, H, W) [inputs' dtype], lse (B) and
        hidden (B, N, Hd) or (0,) [float64 or float32]
    glamor_fast::gla_backward(grad_pooled, grad_attn, grad_lse, <the 8 inputs>, pooled, attn,
        lse, hidden?, needs_grad: 8 bools) -> the 8 input gradients, an empty (0,) tensor where
        not needed

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


def cpu_kernel_missing(op: str) -> Optional[str]:
    """None when glamor_fast._C registered a CPU kernel for ``glamor_fast::<op>``, else why not."""
    if _LOAD_ERROR is not None:
        return _LOAD_ERROR
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"glamor_fast::{op}", "CPU"):
        return f"glamor_fast._C has no {op} kernel; rebuild it: {BUILD_HINT}"
    return None


def has_kernel(dispatch_key: str) -> bool:
    """Whether glamor_fast._C registered kernels for ``dispatch_key`` ("CPU" or "CUDA")."""
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("glamor_fast::gla_forward", dispatch_key)


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout the kernels' outputs follow: channels_last for a channels_last (and not also
    contiguous) x, contiguous otherwise (csrc/layout.h's is_channels_last for the C++ kernels)."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _grad_context_like(context: torch.Tensor) -> torch.Tensor:
    return torch.empty(context.shape, dtype=context.dtype, device=context.device,
                       memory_format=memory_format_of(context))


def _register() -> None:
    @torch.library.register_fake("glamor_fast::gla_forward")
    def _gla_forward_fake(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, save_hidden=False):
        B, Dc, H, W = context.shape
        acc = _lse_dtype(context.dtype)
        return (
            context.new_empty((B, Dc)),
            context.new_empty((B, H, W)),
            context.new_empty((B,), dtype=acc),
            context.new_empty((B, H * W, w1.shape[0]) if save_hidden else (0,), dtype=acc),
        )

    @torch.library.register_fake("glamor_fast::gla_backward")
    def _gla_backward_fake(grad_pooled, grad_attn, grad_lse, face, context, w1, b1, w2, b2,
                           hidden_scale, hidden_shift, pooled, attn, lse, hidden, needs_grad):
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

    @torch.library.register_fake("glamor_fast::gla_hidden_stats_forward")
    def _stats_forward_fake(face, context, w1, b1):
        return context.new_empty((w1.shape[0],)), context.new_empty((w1.shape[0],))

    @torch.library.register_fake("glamor_fast::gla_hidden_stats_backward")
    def _stats_backward_fake(grad_mean, grad_var, face, context, w1, b1, mean, need_context, need_w1c):
        B, Dc = context.shape[:2]
        Hd = w1.shape[0]
        return (context.new_empty((B, Hd)), context.new_empty((Hd, Dc)),
                _grad_context_like(context) if need_context else context.new_empty((0,)))

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[3])  # hidden: saved activations, not a result
        ctx.save_for_backward(*inputs[:8], *output)

    def backward(ctx, grad_pooled, grad_attn, grad_lse, _grad_hidden=None):
        saved = ctx.saved_tensors
        inputs, (pooled, attn, lse, hidden) = saved[:8], saved[8:]
        needs = [bool(n) for n in ctx.needs_input_grad[:8]]
        if inputs[6] is None:
            needs[6] = needs[7] = False
        if torch.is_grad_enabled():  # create_graph=True: gla_backward has no derivative
            return (*gla_reference_vjp(inputs, needs, grad_pooled, grad_attn, grad_lse), None)
        # Autograd materialises missing output grads as zeros; guard for callers that do not.
        grad_pooled = torch.zeros_like(pooled) if grad_pooled is None else grad_pooled
        grad_attn = torch.zeros_like(attn) if grad_attn is None else grad_attn
        grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse
        # The kernels call ATen matmuls: autocast (if backward runs inside it) must not recast them.
        with torch.autocast(pooled.device.type, enabled=False):
            grads = torch.ops.glamor_fast.gla_backward(
                grad_pooled, grad_attn, grad_lse, *inputs, pooled, attn, lse,
                hidden if hidden.numel() > 0 else None, needs
            )
        return (*(g if n else None for g, n in zip(grads, needs)), None)

    torch.library.register_autograd("glamor_fast::gla_forward", backward, setup_context=setup_context)


if _C is not None:
    _register()


# recompute=None on the CPU saves the hidden layer z (B, N, Hd) when a backward will follow and z
# takes at most this many bytes: the backward then skips one of its three GEMMs. Above it (large
# maps), z is recomputed, so the op's memory stays O(B * N) whatever the map size.
SAVE_HIDDEN_MAX_BYTES = 64 << 20


def save_hidden(recompute, face, context, w1, *params) -> bool:
    """Whether the forward saves z for the backward, under the ``recompute`` policy."""
    if recompute is not None:
        if not recompute and context.device.type != "cpu":
            raise ValueError(
                "gla: recompute=False (save the hidden layer for the backward) is implemented by the "
                f"cpp backend only; the {context.device.type} kernels always recompute it (use "
                "recompute=None or True)")
        return not recompute
    if context.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    if not any(t is not None and t.requires_grad for t in (face, context, w1, *params)):
        return False
    B, _, H, W = context.shape
    nbytes = B * H * W * w1.shape[0] * (8 if context.dtype == torch.float64 else 4)
    return nbytes <= SAVE_HIDDEN_MAX_BYTES


def gla(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic=True, recompute=None):
    """(pooled (B, Dc), attn (B, H, W)) through the compiled op; differentiable in every input.

    Both compiled kernels reduce weight gradients in a fixed order, so ``deterministic`` has
    nothing to switch. ``recompute``: see :func:`save_hidden` and ``glamor_fast.ops.gla``.
    """
    keep = save_hidden(recompute, face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    pooled, attn, _, _ = torch.ops.glamor_fast.gla_forward(
        face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, keep
    )
    return pooled, attn
