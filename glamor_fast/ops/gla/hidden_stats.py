"""Batch statistics of GLA's hidden layer without the (B, N, Hd) tensor: what training-mode
BatchNorm on that layer (``GlobalLocalAttention(norm="batchnorm")``) needs before any score.

Maths, over the n = B*N cells v_bi (N = H*W) of context (B, Dc, H, W):
    u_b = W1f v_f,b + b1 (B, Hd),  z_bi = W1c v_bi + u_b,  h_bi = relu(z_bi)  (Hd each)
    mean = sum_bi h_bi / n,  var = sum_bi h_bi^2 / n - mean^2   (biased, as BatchNorm1d's batch var)
Backward, given gmean, gvar (Hd):
    dh_bi = gmean / n + gvar * 2 (h_bi - mean) / n,  dz_bi = dh_bi * [z_bi > 0]
    dcontext_bi = W1c^T dz_bi,  dW1c = sum dz_bi v_bi^T,  du_b = sum_i dz_bi,
    dface_b = W1f^T du_b,  dW1f = sum_b du_b v_f,b^T,  db1 = sum_b du_b.

``gla_hidden_stats(face, context, w1, b1) -> (mean, var)`` is a torch.library custom op (fake
kernel, autograd, opcheck-tested). On the CPU it runs the compiled kernels of glamor_fast._C
(``gla_hidden_stats_forward`` / ``_backward`` in csrc/gla/cpu/hidden_stats.cpp: the GLA op's tiles and GEMMs,
per-tile sums then float64); elsewhere (CUDA, or without the extension) a loop of torch matmuls
over tiles of at most ``TILE_CELLS`` cells (whole batch elements; one element when N is larger).
Both recompute each tile's hidden layer in the backward: the largest temporary is one tile's
(cells, Hd), never (B, N, Hd); the sums run in float64. Inputs: float32 or float64 (16-bit
callers cast to float32 first). The hidden layer is computed twice (forward and backward) on top
of the GLA op's own recomputation; there is no Triton or CUDA kernel for it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..extension import empty_like_layout, kernel_missing
from ..registry import choose_for_compile

TILE_CELLS = 1024  # cells per tile (rounded to whole batch elements, at least one)


_CPP_REASON = kernel_missing("gla_hidden_stats_forward")  # fixed at import (torch.compile traces a constant)

if _CPP_REASON is None:
    @torch.library.register_fake("glamor_fast::gla_hidden_stats_forward")
    def _stats_forward_fake(face, context, w1, b1):
        return context.new_empty((w1.shape[0],)), context.new_empty((w1.shape[0],))

    @torch.library.register_fake("glamor_fast::gla_hidden_stats_backward")
    def _stats_backward_fake(grad_mean, grad_var, face, context, w1, b1, mean, need_context, need_w1c):
        B, Dc = context.shape[:2]
        Hd = w1.shape[0]
        return (context.new_empty((B, Hd)), context.new_empty((Hd, Dc)),
                empty_like_layout(context) if need_context else context.new_empty((0,)))


def cpp_unavailable_reason(device: torch.device, dtype: torch.dtype) -> "str | None":
    """None when the compiled statistics kernels run on tensors of this device and dtype."""
    if _CPP_REASON is not None:
        return _CPP_REASON
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return f"the cpp statistics kernels run on CPU float32/float64 tensors, got {torch.device(device).type} {dtype}"
    return None


def _compiled(context: Tensor) -> bool:
    """Whether glamor_fast._C's CPU kernels take these inputs."""
    return choose_for_compile("auto", context.device, context.dtype, "gla_hidden_stats") == "cpp"


def _tiles(B: int, N: int):
    per = max(1, TILE_CELLS // max(N, 1))
    for b0 in range(0, B, per):
        yield b0, min(B, b0 + per)


def _tile_z(face, context, w1, b1, b0, b1_, Df):
    """(cells (bc, N, Dc), z (bc, N, Hd)) of batch elements b0..b1_."""
    cells = context[b0:b1_].flatten(2).transpose(1, 2)                  # (bc, N, Dc)
    u = torch.addmm(b1, face[b0:b1_], w1[:, :Df].t())                   # (bc, Hd)
    return cells, torch.matmul(cells, w1[:, Df:].t()) + u.unsqueeze(1)


@torch.library.custom_op("glamor_fast::gla_hidden_stats", mutates_args=())
def gla_hidden_stats(face: Tensor, context: Tensor, w1: Tensor, b1: Tensor) -> tuple[Tensor, Tensor]:
    """mean, biased var (Hd,) of relu(W1 [v_f; v_ij] + b1) over all B*H*W cells, in the inputs' dtype."""
    if _compiled(context):
        return torch.ops.glamor_fast.gla_hidden_stats_forward(face, context, w1, b1)
    B, Df = face.shape
    N = context.shape[2] * context.shape[3]
    Hd = w1.shape[0]
    s1 = torch.zeros(Hd, dtype=torch.float64, device=face.device)
    s2 = torch.zeros(Hd, dtype=torch.float64, device=face.device)
    for b0, b1_ in _tiles(B, N):
        h = torch.relu(_tile_z(face, context, w1, b1, b0, b1_, Df)[1]).flatten(0, 1)
        s1 += h.sum(0, dtype=torch.float64)
        s2 += h.square().sum(0, dtype=torch.float64)
    n = float(B * N)
    mean = s1 / n
    var = (s2 / n - mean.square()).clamp_min(0.0)
    return mean.to(face.dtype), var.to(face.dtype)


@gla_hidden_stats.register_fake
def _(face, context, w1, b1):
    Hd = w1.shape[0]
    return face.new_empty(Hd), face.new_empty(Hd)


def _setup_context(ctx, inputs, output):
    face, context, w1, b1 = inputs
    ctx.save_for_backward(face, context, w1, b1, output[0])


def _backward(ctx, gmean, gvar):
    face, context, w1, b1, mean = ctx.saved_tensors
    B, Df = face.shape
    N = context.shape[2] * context.shape[3]
    n = float(B * N)
    gmean = torch.zeros_like(mean) if gmean is None else gmean
    gvar = torch.zeros_like(mean) if gvar is None else gvar
    need_face, need_ctx, need_w1, need_b1 = ctx.needs_input_grad
    # create_graph=True (grad mode on here): the torch loop, whose ops autograd can differentiate
    # again; the compiled backward has no derivative of its own.
    if _compiled(context) and not torch.is_grad_enabled():
        du, dw1c, dctx = torch.ops.glamor_fast.gla_hidden_stats_backward(
            gmean, gvar, face, context, w1, b1, mean, need_ctx, need_w1)       # (B, Hd), (Hd, Dc), dcontext
        return (du @ w1[:, :Df] if need_face else None,
                dctx if need_ctx else None,
                torch.cat([du.t() @ face, dw1c], dim=1) if need_w1 else None,
                du.sum(0) if need_b1 else None)
    dface = torch.empty_like(face) if need_face else None
    dctx = torch.empty_like(context) if need_ctx else None
    dw1 = torch.zeros_like(w1) if need_w1 else None
    db1 = torch.zeros_like(b1) if need_b1 else None
    for b0, b1_ in _tiles(B, N):
        cells, z = _tile_z(face, context, w1, b1, b0, b1_, Df)
        dz = torch.where(z > 0, gmean / n + gvar * (2.0 / n) * (torch.relu(z) - mean), 0.0)  # (bc, N, Hd)
        du = dz.sum(1)                                                                     # (bc, Hd)
        if need_face:
            dface[b0:b1_] = du @ w1[:, :Df]
        if need_ctx:
            dctx[b0:b1_] = (dz @ w1[:, Df:]).transpose(1, 2).reshape(dctx[b0:b1_].shape)
        if need_w1:
            dw1[:, :Df] += du.t() @ face[b0:b1_]
            dw1[:, Df:] += dz.flatten(0, 1).t() @ cells.flatten(0, 1)
        if need_b1:
            db1 += du.sum(0)
    return dface, dctx, dw1, db1


gla_hidden_stats.register_autograd(_backward, setup_context=_setup_context)
