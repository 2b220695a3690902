"""@triton.jit kernels of the fused encoder block (docs/bn_relu_pool.md has the maths;
``triton.py`` launches them).

Passes: forward = stats (read x) + pool (read x, write y, xp, idx); backward = reduce over
pooled (read dy, y, xp) + dx (read x, pooled tensors; write dx). Tensors of any strides (NCHW or
channels_last) are addressed through their strides; the channel axis is one tile (BLOCK_C = next
pow2 >= C) and programs walk BLOCK_R rows (pixels). All arithmetic is fp32.
"""
from __future__ import annotations

import triton
import triton.language as tl

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
