"""The Triton backend of the fused block: host wrappers of ``triton_kernels`` as torch.library ops
``glamor_fast::bn_relu_pool_triton_fwd/bwd`` (the cpp ops' contract and autograd, ``autograd.py``).

Maths (per channel c over the n = N*H*W values of x (N, C, H, W); see
docs/bn_relu_pool.md):
    mean = shift + S/n, var = Q/n - (S/n)^2, with S = sum(x - shift), Q = sum((x - shift)^2) and
    shift = x[0, c, 0, 0] (shifted sums: no cancellation for large means)
    z = (x - mean) * (gamma / sqrt(var + eps)) + beta,  r = relu(z),  y = max over 2x2 windows
    (floored; first maximum wins, NaN wins, a later NaN over an earlier one: at::max_pool2d).
Backward with dz_p = dy * !(y <= 0) at each window's argmax p (0 elsewhere):
    dbeta = sum dz_p,  dgamma = invstd * sum dz_p (xp - mean),
    dx = gamma*invstd*dz - gamma*invstd*dbeta/n - gamma*invstd^2*dgamma/n * (x - mean).

Passes: forward = stats (read x) + pool (read x, write y, xp, idx); backward = reduce over
pooled (read dy, y, xp) + dx (read x, pooled tensors; write dx). Each reduction writes fp32
partials per program, summed on the host in float64 in a fixed order (deterministic).
Tensors of any strides (NCHW or channels_last) are addressed through their strides; the
channel axis is one tile (BLOCK_C = next pow2 >= C) and programs walk BLOCK_R rows (pixels).
All arithmetic is fp32; float16/bfloat16 are read and written in their dtype.
"""
from __future__ import annotations

import contextlib

import torch
import triton

from ..extension import empty_like_layout, memory_format_of
from .autograd import block_backward_fake, pooled_like, register_block_autograd
from .triton_kernels import BLOCK_R, _bwd_dx_kernel, _bwd_reduce_kernel, _pool_kernel, _stats_kernel


# ---- host wrappers ---------------------------------------------------------------------------

def _on_device(device: torch.device):
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _programs(rows: int, device: torch.device) -> tuple[int, int]:
    """(P, rows per program, a multiple of BLOCK_R) for a reduction over ``rows`` rows."""
    target = 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    per = max(BLOCK_R, -(-rows // target))
    per = -(-per // BLOCK_R) * BLOCK_R
    return -(-rows // per), per


def _sum_partials(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    total = part.double().sum(0)
    return total[0], total[1]


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
    """-> y, idx (uint8), xp (N, C, H//2, W//2) in x's memory format; mean, var (C,) fp32."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    rows, prows = N * H * W, N * OH * OW
    BLOCK_C = max(16, triton.next_power_of_2(C))
    fmt = memory_format_of(x)
    y = torch.empty((N, C, OH, OW), dtype=x.dtype, device=x.device, memory_format=fmt)
    xp, idx = torch.empty_like(y), torch.empty_like(y, dtype=torch.uint8)
    shift = x[0, :, 0, 0].float().contiguous()
    P, per = _programs(rows, x.device)
    part = torch.empty((P, 2, C), dtype=torch.float32, device=x.device)
    with _on_device(x.device):
        _stats_kernel[(P,)](x, shift, part, rows, C, H, W, *x.stride(), per, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
        S, Q = _sum_partials(part)
        dm = S / rows
        mean = (shift.double() + dm).float()
        var = (Q / rows - dm * dm).clamp_min(0.0).float()
        var = torch.where(torch.isnan(Q), Q.float(), var)
        scale = (weight.double() / torch.sqrt(var.double() + eps)).float().contiguous()
        _pool_kernel[(triton.cdiv(prows, BLOCK_R),)](
            x, mean, scale, bias.float().contiguous(), y, xp, idx, prows, C, OH, OW, *x.stride(), *y.stride(),
            BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return y, idx, xp, mean, var


def backward(grad_y, x, weight, y, idx, xp, mean, var, eps: float):
    """-> grad_x (x's shape, dtype and memory format), grad_weight, grad_bias (weight's dtype)."""
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    rows, prows = N * H * W, N * OH * OW
    BLOCK_C = max(16, triton.next_power_of_2(C))
    P, per = _programs(prows, x.device)
    part = torch.empty((P, 2, C), dtype=torch.float32, device=x.device)
    dx = empty_like_layout(x)
    with _on_device(x.device):
        _bwd_reduce_kernel[(P,)](grad_y, y, xp, mean, part, prows, C, OH, OW, *grad_y.stride(), *y.stride(), per,
                                 BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
        dbeta, s2 = _sum_partials(part)
        invstd = 1.0 / torch.sqrt(var.double() + eps)
        dgamma = s2 * invstd
        a = weight.double() * invstd
        coef = torch.stack([a, -a * dbeta / rows, a * invstd * dgamma / rows]).float().contiguous()
        _bwd_dx_kernel[(triton.cdiv(rows, BLOCK_R),)](
            x, dx, grad_y, y, idx, mean, coef, rows, C, H, W, OH, OW, *x.stride(), *dx.stride(), *grad_y.stride(),
            *y.stride(), BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return dx, dgamma.to(weight.dtype), dbeta.to(weight.dtype)


# ---- torch.library ops -----------------------------------------------------------------------

@torch.library.custom_op("glamor_fast::bn_relu_pool_triton_fwd", mutates_args=())
def _fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return forward(x, weight, bias, eps)


@_fwd_op.register_fake
def _(x, weight, bias, eps):
    C = x.shape[1]
    f32 = dict(dtype=torch.float32, device=x.device)
    return (pooled_like(x), pooled_like(x, torch.uint8), pooled_like(x),
            torch.empty((C,), **f32), torch.empty((C,), **f32))


@torch.library.custom_op("glamor_fast::bn_relu_pool_triton_bwd", mutates_args=())
def _bwd_op(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
            xp: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return backward(grad_y, x, weight, y, idx, xp, mean, var, eps)


_bwd_op.register_fake(block_backward_fake)


register_block_autograd("glamor_fast::bn_relu_pool_triton_fwd", _bwd_op)


def bn_relu_pool_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
    """(y (N, C, H//2, W//2) differentiable, batch mean (C,), biased batch var (C,))."""
    y, _idx, _xp, mean, var = _fwd_op(x, weight, bias, eps)
    return y, mean, var
