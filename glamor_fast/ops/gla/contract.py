"""The GLA op's one contract, shared by its three fused backends (cpp, cuda, triton).

Every fused backend registers a forward and a backward op with these schemas (the cpp and cuda
kernels as ``glamor_fast::gla_forward`` / ``gla_backward`` in csrc/gla/schema.cpp, the Triton
kernels as ``glamor_fast::gla_forward_triton`` / ``gla_backward_triton`` in ``triton.py``):

    gla_forward(face, context, w1, b1, w2, b2, hidden_scale?, hidden_shift?, save_hidden=False)
        -> pooled (B, Dc), attn (B, H, W) [inputs' dtype], lse (B,) and hidden (B, N, Hd) or (0,)
           [float64 for float64 inputs, else float32]
    gla_backward(grad_pooled?, grad_attn?, grad_lse?, <the 8 inputs>, pooled, attn, lse, hidden?,
        needs_grad: 8 bools) -> the 8 input gradients, an empty (0,) tensor where not needed
        (a missing output gradient is zero: autograd gives None for an output that got none)

lse = log sum_i exp(s_i) is a differentiable output (d lse / d s_i = a_i). ``hidden`` is the
hidden layer z = W1c v_ij (+ u) saved for the backward when ``save_hidden`` (cpp only; the GPU
kernels recompute it and take save_hidden=False). The backward reads the saved attn (not a
separate float32 softmax), so every backend forms delta from the same rounded probabilities.

Here: the fake kernels (shapes for torch.compile), the recompute policy, and the autograd
formula with its gradient assembly, registered once per backend by :func:`register`, and
:func:`apply`, the one way the backends call their ops. It follows flash-attention's pattern:
eager calls go through a plain ``torch.autograd.Function`` (one Python hop around the two
kernels; no autograd at all when no gradient is needed), ``torch.compile`` traces the registered
custom op (opaque to Inductor, with the same fake kernels and backward).

Double backward: the backward ops have no derivative. A backward run with create_graph=True
(grad mode on inside it) takes its gradients from ``gla_reference_vjp`` instead, so
higher-order gradients are those of the reference formulas (exact, at the reference's speed).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..extension import empty_like_layout
from .spec import gla_reference_vjp

FORWARD_SCHEMA = (
    "(Tensor face, Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
    "Tensor? hidden_scale, Tensor? hidden_shift, bool save_hidden=False) -> "
    "(Tensor pooled, Tensor attn, Tensor lse, Tensor hidden)")
BACKWARD_SCHEMA = (
    "(Tensor? grad_pooled, Tensor? grad_attn, Tensor? grad_lse, Tensor face, "
    "Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor? hidden_scale, "
    "Tensor? hidden_shift, Tensor pooled, Tensor attn, Tensor lse, Tensor? hidden, "
    "bool[8] needs_grad) -> "
    "(Tensor grad_face, Tensor grad_context, Tensor grad_w1, Tensor grad_b1, Tensor grad_w2, "
    "Tensor grad_b2, Tensor grad_hidden_scale, Tensor grad_hidden_shift)")

# recompute=None on the CPU saves the hidden layer z (B, N, Hd) when a backward will follow and z
# takes at most this many bytes: the backward then skips one of its three GEMMs. Above it (large
# maps), z is recomputed, so the op's memory stays O(B * N) whatever the map size.
SAVE_HIDDEN_MAX_BYTES = 64 << 20


def lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of lse and hidden for inputs of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def save_hidden(recompute, can_save: bool, backend: str, face, context, w1, *params) -> bool:
    """Whether the forward saves z for the backward, under the ``recompute`` policy.

    ``can_save``: whether the backend's kernels can save it (cpp); the others always recompute
    and refuse recompute=False."""
    if recompute is not None:
        if not recompute and not can_save:
            raise ValueError(
                "gla: recompute=False (save the hidden layer for the backward) is implemented by the "
                f"cpp backend only; the {backend} kernels always recompute it (use "
                "recompute=None or True)")
        return not recompute
    if not can_save or not torch.is_grad_enabled():
        return False
    if not any(t is not None and t.requires_grad for t in (face, context, w1, *params)):
        return False
    B, _, H, W = context.shape
    nbytes = B * H * W * w1.shape[0] * (8 if context.dtype == torch.float64 else 4)
    return nbytes <= SAVE_HIDDEN_MAX_BYTES


def forward_fake(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, save_hidden=False):
    B, Dc, H, W = context.shape
    acc = lse_dtype(context.dtype)
    return (
        context.new_empty((B, Dc)),
        context.new_empty((B, H, W)),
        context.new_empty((B,), dtype=acc),
        context.new_empty((B, H * W, w1.shape[0]) if save_hidden else (0,), dtype=acc),
    )


def backward_fake(grad_pooled, grad_attn, grad_lse, face, context, w1, b1, w2, b2,
                  hidden_scale, hidden_shift, pooled, attn, lse, hidden, needs_grad):
    def like(t, needed):
        if needed and t is not None:
            return t.new_empty(t.shape)
        return context.new_empty((0,))

    return (
        like(face, needs_grad[0]),
        empty_like_layout(context) if needs_grad[1] else context.new_empty((0,)),
        like(w1, needs_grad[2]),
        like(b1, needs_grad[3]),
        like(w2, needs_grad[4]),
        like(b2, needs_grad[5]),
        like(hidden_scale, needs_grad[6]),
        like(hidden_shift, needs_grad[7]),
    )


def _autocast_off(device_type: str):
    """A context that switches autocast off, or None when it is off already (entering
    torch.autocast costs a few microseconds per call)."""
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else None


def input_grads(backward_op: Callable, saved, needs_input_grad, grad_pooled, grad_attn, grad_lse):
    """The 8 input gradients (None where not needed) from the saved 8 inputs and 4 outputs and the
    output gradients; ``backward_op`` is the backend's backward op."""
    inputs, (pooled, attn, lse, hidden) = saved[:8], saved[8:]
    needs = [bool(n) for n in needs_input_grad[:8]]
    if inputs[6] is None:
        needs[6] = needs[7] = False
    if torch.is_grad_enabled():  # create_graph=True: the backward op has no derivative
        return gla_reference_vjp(inputs, needs, grad_pooled, grad_attn, grad_lse)
    args = (grad_pooled, grad_attn, grad_lse, *inputs, pooled, attn, lse,
            hidden if hidden.numel() > 0 else None, needs)
    # The kernels call ATen matmuls: autocast (if backward runs inside it) must not recast them.
    off = _autocast_off(pooled.device.type)
    if off is None:
        grads = backward_op(*args)
    else:
        with off:
            grads = backward_op(*args)
    return tuple(g if n else None for g, n in zip(grads, needs))


def register(forward_name: str, backward_name: str) -> None:
    """Registers the fake kernels of a backend's ops ``glamor_fast::<forward_name>`` and
    ``glamor_fast::<backward_name>`` (both with this module's schemas) and the forward's autograd."""
    qualname = f"glamor_fast::{forward_name}"
    backward_op = getattr(torch.ops.glamor_fast, backward_name).default
    torch.library.register_fake(qualname)(forward_fake)
    torch.library.register_fake(f"glamor_fast::{backward_name}")(backward_fake)

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[3])  # hidden: saved activations, not a result
        ctx.set_materialize_grads(False)  # the backward ops take None for a zero output gradient
        ctx.save_for_backward(*inputs[:8], *output)

    def backward(ctx, grad_pooled, grad_attn, grad_lse, _grad_hidden=None):
        grads = input_grads(backward_op, ctx.saved_tensors, ctx.needs_input_grad, grad_pooled,
                            grad_attn, grad_lse)
        return (*grads, None)

    torch.library.register_autograd(qualname, backward, setup_context=setup_context)


class _EagerGLA(torch.autograd.Function):
    """The op in eager mode: the backend's forward and backward ops around one plain autograd
    node (the registered custom op's autograd costs more host time per call)."""

    @staticmethod
    def forward(ctx, forward_op, backward_op, save, face, context, w1, b1, w2, b2, hidden_scale, hidden_shift):
        out = forward_op(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, save)
        ctx.backward_op = backward_op
        ctx.mark_non_differentiable(out[3])  # hidden: saved activations, not a result
        ctx.set_materialize_grads(False)  # the backward ops take None for a zero output gradient
        ctx.save_for_backward(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, *out)
        return out

    @staticmethod
    def backward(ctx, grad_pooled, grad_attn, grad_lse, _grad_hidden):
        grads = input_grads(ctx.backward_op, ctx.saved_tensors, ctx.needs_input_grad[3:], grad_pooled,
                            grad_attn, grad_lse)
        return (None, None, None, *grads)


def apply(forward_name: str, backward_name: str, save: bool, face, context, w1, b1, w2, b2,
          hidden_scale, hidden_shift):
    """(pooled, attn, lse, hidden) of the backend whose ops are ``glamor_fast::<forward_name>`` and
    ``<backward_name>``: under torch.compile the registered op, in eager a plain autograd node, or
    the forward op alone when no gradient can flow."""
    forward_op = getattr(torch.ops.glamor_fast, forward_name)
    if torch.compiler.is_compiling():
        return forward_op(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, save)
    inputs = (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)):
        return forward_op.default(*inputs, save)
    return _EagerGLA.apply(forward_op.default, getattr(torch.ops.glamor_fast, backward_name).default, save,
                           *inputs)
