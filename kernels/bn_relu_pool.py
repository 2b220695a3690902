"""Fused BatchNorm2d (batch statistics) -> ReLU -> MaxPool2d(2) in Triton: kernels, host
wrappers and autograd (torch.library custom ops ``glamor_fast::bn_relu_pool_triton_fwd/bwd``).

Maths (per channel c over the n = N*H*W values of x (N, C, H, W); see
glamor_fast/ops/bn_relu_pool.py):
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
import triton.language as tl

from glamor_fast.ops.bn_relu_pool import (block_backward_fake, memory_format_of, pooled_like,
                                          register_block_autograd)

BLOCK_R = 32


@triton.jit
def _pixel(r, H, W):
    """Row index r of the (N*H*W) pixels -> (n, h, w)."""
    n = r // (H * W)
    hw = r % (H * W)
    return n, hw // W, hw % W


@triton.jit
def _stats_kernel(
    x_ptr,      # (N, C, H, W) any strides
    shift_ptr,  # (C,) fp32
    part_ptr,   # (P, 2, C) fp32: per program sum(x - shift), sum((x - shift)^2)
    rows, C, H, W, s_n, s_c, s_h, s_w, rows_per_prog,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    shift = tl.load(shift_ptr + offs_c, mask=mask_c, other=0.0)
    acc_s = tl.zeros((BLOCK_C,), dtype=tl.float32)
    acc_q = tl.zeros((BLOCK_C,), dtype=tl.float32)
    r_begin = pid * rows_per_prog
    for r0 in range(r_begin, r_begin + rows_per_prog, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        mask_r = (r < rows) & (r < r_begin + rows_per_prog)
        n, h, w = _pixel(r, H, W)
        off = n * s_n + h * s_h + w * s_w
        m = mask_r[:, None] & mask_c[None, :]
        v = tl.load(x_ptr + off[:, None] + offs_c[None, :] * s_c, mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, v - shift[None, :], 0.0)
        acc_s += tl.sum(d, axis=0)
        acc_q += tl.sum(d * d, axis=0)
    tl.store(part_ptr + pid * 2 * C + offs_c, acc_s, mask=mask_c)
    tl.store(part_ptr + pid * 2 * C + C + offs_c, acc_q, mask=mask_c)


@triton.jit
def _pool_kernel(
    x_ptr,      # (N, C, H, W) any strides
    mean_ptr,   # (C,) fp32
    scale_ptr,  # (C,) fp32 gamma * invstd
    beta_ptr,   # (C,) fp32
    y_ptr,      # (N, C, OH, OW) strides o_*: the output, x's dtype
    xp_ptr,     # (N, C, OH, OW) strides o_*: x at the argmax
    idx_ptr,    # (N, C, OH, OW) strides o_*: uint8 window index 0..3
    prows, C, OH, OW, s_n, s_c, s_h, s_w, o_n, o_c, o_h, o_w,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    p = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    m = (p < prows)[:, None] & mask_c[None, :]
    n, oh, ow = _pixel(p, OH, OW)
    mean = tl.load(mean_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    scale = tl.load(scale_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    beta = tl.load(beta_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    base = x_ptr + (n * s_n + 2 * oh * s_h + 2 * ow * s_w)[:, None] + offs_c[None, :] * s_c
    bx = tl.load(base, mask=m, other=0.0)
    z = (bx.to(tl.float32) - mean) * scale + beta
    best = tl.where(z < 0.0, 0.0, z)
    bi = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.int32)
    for k in tl.static_range(1, 4):
        xk = tl.load(base + (k // 2) * s_h + (k % 2) * s_w, mask=m, other=0.0)
        zk = (xk.to(tl.float32) - mean) * scale + beta
        rk = tl.where(zk < 0.0, 0.0, zk)
        take = (rk > best) | (rk != rk)
        best = tl.where(take, rk, best)
        bx = tl.where(take, xk, bx)
        bi = tl.where(take, k, bi)
    out = (n * o_n + oh * o_h + ow * o_w)[:, None] + offs_c[None, :] * o_c
    tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(xp_ptr + out, bx, mask=m)
    tl.store(idx_ptr + out, bi.to(tl.uint8), mask=m)


@triton.jit
def _bwd_reduce_kernel(
    dy_ptr,    # (N, C, OH, OW) strides g_*
    y_ptr,     # (N, C, OH, OW) strides o_*
    xp_ptr,    # (N, C, OH, OW) strides o_*
    mean_ptr,  # (C,) fp32
    part_ptr,  # (P, 2, C) fp32: per program sum(dz), sum(dz * (xp - mean))
    prows, C, OH, OW, g_n, g_c, g_h, g_w, o_n, o_c, o_h, o_w, rows_per_prog,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    mean = tl.load(mean_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    acc1 = tl.zeros((BLOCK_C,), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
    r_begin = pid * rows_per_prog
    for r0 in range(r_begin, r_begin + rows_per_prog, BLOCK_R):
        p = r0 + tl.arange(0, BLOCK_R)
        m = ((p < prows) & (p < r_begin + rows_per_prog))[:, None] & mask_c[None, :]
        n, oh, ow = _pixel(p, OH, OW)
        c_off = offs_c[None, :]
        dy = tl.load(dy_ptr + (n * g_n + oh * g_h + ow * g_w)[:, None] + c_off * g_c, mask=m, other=0.0)
        o = (n * o_n + oh * o_h + ow * o_w)[:, None] + c_off * o_c
        y = tl.load(y_ptr + o, mask=m, other=0.0).to(tl.float32)
        xp = tl.load(xp_ptr + o, mask=m, other=0.0).to(tl.float32)
        dz = tl.where(m & ~(y <= 0.0), dy.to(tl.float32), 0.0)
        acc1 += tl.sum(dz, axis=0)
        acc2 += tl.sum(tl.where(m, dz * (xp - mean), 0.0), axis=0)
    tl.store(part_ptr + pid * 2 * C + offs_c, acc1, mask=mask_c)
    tl.store(part_ptr + pid * 2 * C + C + offs_c, acc2, mask=mask_c)


@triton.jit
def _bwd_dx_kernel(
    x_ptr,     # (N, C, H, W) strides s_*
    dx_ptr,    # (N, C, H, W) strides d_*
    dy_ptr,    # (N, C, OH, OW) strides g_*
    y_ptr,     # (N, C, OH, OW) strides o_*
    idx_ptr,   # (N, C, OH, OW) strides o_*, uint8
    mean_ptr,  # (C,) fp32
    coef_ptr,  # (3, C) fp32: a = gamma*invstd, b = -a*dbeta/n, c1 = a*invstd*dgamma/n
    rows, C, H, W, OH, OW, s_n, s_c, s_h, s_w, d_n, d_c, d_h, d_w, g_n, g_c, g_h, g_w,
    o_n, o_c, o_h, o_w,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    m = (r < rows)[:, None] & mask_c[None, :]
    n, h, w = _pixel(r, H, W)
    oh = h // 2
    ow = w // 2
    in_pool = (oh < OH) & (ow < OW)
    k = (h % 2) * 2 + (w % 2)
    pm = m & in_pool[:, None]
    c_off = offs_c[None, :]
    o = (n * o_n + oh * o_h + ow * o_w)[:, None] + c_off * o_c
    idx = tl.load(idx_ptr + o, mask=pm, other=4).to(tl.int32)
    y = tl.load(y_ptr + o, mask=pm, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + (n * g_n + oh * g_h + ow * g_w)[:, None] + c_off * g_c, mask=pm, other=0.0)
    dz = tl.where(pm & (idx == k[:, None]) & ~(y <= 0.0), dy.to(tl.float32), 0.0)
    x = tl.load(x_ptr + (n * s_n + h * s_h + w * s_w)[:, None] + c_off * s_c, mask=m, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    a = tl.load(coef_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    b = tl.load(coef_ptr + C + offs_c, mask=mask_c, other=0.0)[None, :]
    c1 = tl.load(coef_ptr + 2 * C + offs_c, mask=mask_c, other=0.0)[None, :]
    dx = a * dz + b - c1 * (x - mean)
    tl.store(dx_ptr + (n * d_n + h * d_h + w * d_w)[:, None] + c_off * d_c, dx.to(dx_ptr.dtype.element_ty), mask=m)


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
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
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
