"""Fused Global-Local Attention (GLA) in Triton: forward, recomputing backward, host wrappers.

Maths (per batch element b; see /work/shared/design/gla-math.md). Face vector f (Df), context
cells v_i (Dc), i < N = H*W, W1 = [W1f | W1c] (Hd, Df + Dc), optional gamma/beta (Hd,) =
``hidden_scale`` / ``hidden_shift`` (a BatchNorm folded into the hidden layer):

    u    = W1f f + b1                        once per b                (_gla_face_proj_kernel)
    z_i  = W1c v_i + u,   h1_i = relu(z_i),  h_i = relu(gamma h1_i + beta)  (or h_i = h1_i)
    s_i  = w2 . h_i + b2
    a    = softmax_i(s),  p = sum_i a_i v_i                                 (_gla_fwd_kernel)

The forward walks the cells in tiles of BLOCK_N with an online softmax (fp32 running max m,
running sum l and an accumulator rescaled by exp(m_old - m_new)); Hd is walked in tiles of
BLOCK_H. A batch element may be split over S programs ("cell splits") that each produce
(m, l, acc); the host merges them (a (B, S, Dc) reduction) into pooled and lse = log sum exp(s).
Nothing of size (B, N, Df + Dc) or (B, N, Hd) ever reaches memory: the forward writes pooled,
the raw scores s (B, N) fp32 and lse (B,) fp32, plus u (B, Hd) fp32 for the backward.

Backward, given gp = dL/dp (B, Dc) and ga = dL/da (B, N):

    delta = gp . p + sum_i a_i ga_i                 (host, fp32, from the saved fp32 pooled)
    a_i   = exp(s_i - lse)                          (from the saved scores: no extra pass)
    ds_i  = a_i (gp . v_i + ga_i - delta)
    dh_i  = ds_i w2;  dy_i = dh_i [gamma h1_i + beta > 0];  dh1_i = gamma dy_i  (BN variant)
    dz_i  = dh1_i [z_i > 0]
    dv_i  = a_i gp + W1c^T dz_i
    dW1c  = sum_{b,i} dz_i v_i^T,  dw2 = sum ds_i h_i,  dgamma = sum dy_i h1_i,  dbeta = sum dy_i
    du_b  = sum_i dz_i;  db1 = sum_b du_b;  dW1f = sum_b du_b f_b^T;  df_b = W1f^T du_b
    db2   = 0 exactly (softmax is shift invariant)

_gla_bwd_kernel recomputes z from V (one read of V, one write of dV). It is persistent: P
programs (at most one per SM) walk the work items (b, cell split) in a fixed order and
accumulate the weight gradients in per-program fp32 partial buffers, summed on the host in a
fixed order, so ``deterministic=True`` is bitwise reproducible; ``deterministic=False`` makes
every program tl.atomic_add into one buffer instead. The (B, Hd) x (Hd, Df) products for face,
W1f and b1 are plain torch matmuls on the host, from du (B, Hd).

Launch settings: ``triton.autotune`` keyed on (N, Dc, Hd) (and the dtypes) over a short list
of (BLOCK_N, BLOCK_H, num_warps), pruned to one fixed config under the interpreter.

Precision: tiles are read in the inputs' dtype and every accumulation is fp32. For fp32
inputs ``tl.dot`` uses input_precision "ieee" when torch.get_float32_matmul_precision() is
"highest" (PyTorch's default: exact fp32, errors ~1e-6) and "tf32" otherwise (~1e-3), i.e. the
same choice PyTorch makes for its own matmuls ("ieee" tiles compile slowly, ~20-40 s each on
one CPU core, so autotuning keeps only small ones). Under TRITON_INTERPRET=1 every dot operand is
upcast to fp32 first (DOT_FP32): the interpreter's bf16 dot is wrong (triton-lang/triton#11584).

Limits: the whole Dc vector of a cell is one tile (BLOCK_DC = next pow2 >= 16), so Dc of a few
thousand is the practical limit (register pressure, not correctness).
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

# Read once: TRITON_INTERPRET must be set before any @triton.jit function is defined.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


# --------------------------------------------------------------------------------------------
# Launch configurations
# --------------------------------------------------------------------------------------------
# (BLOCK_N, BLOCK_H, num_warps): a short list, since every config is compiled when a new
# (N, Dc, Hd, dtype) is first tuned (16-bit: ~7 s each for sm_90 on a CPU core).
_GPU_TILES = ((16, 64, 4), (32, 32, 4), (32, 64, 4), (32, 128, 4), (64, 32, 4), (64, 64, 4),
              (64, 128, 8), (128, 64, 8))


def _gpu_configs() -> list:
    return [triton.Config({"BLOCK_N": n, "BLOCK_H": h}, num_warps=w, num_stages=2) for n, h, w in _GPU_TILES]


# Small tiles under the interpreter so that small test shapes still exercise the masked tails
# and the loop over several Hd tiles.
_INTERPRET_CONFIG = triton.Config({"BLOCK_N": 16, "BLOCK_H": 16}, num_warps=4, num_stages=1)


def _prune_configs(configs, named_args, **kwargs):
    """One fixed config under the interpreter (several crash without a driver). On a GPU drop
    tiles much larger than the problem, tiles of BLOCK_N x BLOCK_DC that would spill, and for
    exact-fp32 ("ieee", no tensor cores, ~100 s to compile a config) keep only small tiles."""
    if INTERPRET:
        return [_INTERPRET_CONFIG]
    n_cap = max(16, triton.next_power_of_2(int(named_args["N"])))
    h_cap = max(32, triton.next_power_of_2(int(named_args["HD"])))
    dc = int(kwargs.get("BLOCK_DC", named_args.get("BLOCK_DC", 256)))
    ieee = kwargs.get("INPUT_PRECISION", named_args.get("INPUT_PRECISION")) == "ieee"
    kept = [c for c in configs
            if c.kwargs["BLOCK_N"] <= n_cap and c.kwargs["BLOCK_H"] <= h_cap
            and c.kwargs["BLOCK_N"] * dc <= 64 * 512
            and (not ieee or (c.kwargs["BLOCK_N"] <= 32 and c.kwargs["BLOCK_H"] <= 64))]
    return kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_N"], c.kwargs["BLOCK_H"]))]


_CONFIGS = [_INTERPRET_CONFIG] if INTERPRET else _gpu_configs()


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _gla_face_proj_kernel(
    face_ptr,   # (B, Df) input dtype, strides (s_fb, s_fk)
    w1_ptr,     # (Hd, Df + Dc) input dtype, strides (s_w1h, s_w1k); columns [0, Df) are W1f
    b1_ptr,     # (Hd,) input dtype, contiguous
    u_ptr,      # (B, Hd) fp32 contiguous, out: u = W1f f + b1
    Df, HD,
    s_fb, s_fk, s_w1h, s_w1k,
    BLOCK_H: tl.constexpr, BLOCK_F: tl.constexpr,
):
    b = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < HD
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for f0 in range(0, Df, BLOCK_F):
        offs_f = f0 + tl.arange(0, BLOCK_F)
        mask_f = offs_f < Df
        f = tl.load(face_ptr + b.to(tl.int64) * s_fb + offs_f * s_fk, mask=mask_f, other=0.0)
        w = tl.load(w1_ptr + offs_h[:, None] * s_w1h + offs_f[None, :] * s_w1k,
                    mask=mask_h[:, None] & mask_f[None, :], other=0.0)
        acc += tl.sum(w.to(tl.float32) * f.to(tl.float32)[None, :], axis=1)
    acc += tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    tl.store(u_ptr + b * HD + offs_h, acc, mask=mask_h)


@triton.jit
def _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw):
    """The (BLOCK_N, BLOCK_DC) tile of cells offs_n of one batch element, read through strides
    (NCHW, channels_last or any other layout, no copy); zero where masked."""
    ptrs = ctx_b + offs_k[None, :] * s_cc + (offs_n // W)[:, None] * s_ch + (offs_n % W)[:, None] * s_cw
    return tl.load(ptrs, mask=mask_n[:, None] & mask_k[None, :], other=0.0)


@triton.jit
def _hidden_tile(v, w1_ptr, u_b, scale_ptr, shift_ptr, h0, Df, HD, s_w1h, s_w1k, offs_k, mask_k,
                 HAS_BN: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                 BLOCK_H: tl.constexpr):
    """Hidden units [h0, h0 + BLOCK_H) of the cells in v (BLOCK_N, BLOCK_DC).

    Returns z (pre-activation), h1 = relu(z), y = gamma h1 + beta (h1 without BN), the hidden
    value h, the W1c^T tile (BLOCK_DC, BLOCK_H), gamma (ones without BN), offs_h, mask_h.
    Padded hidden units come out exactly zero.
    """
    offs_h = h0 + tl.arange(0, BLOCK_H)
    mask_h = offs_h < HD
    w1c_t = tl.load(w1_ptr + offs_h[None, :] * s_w1h + (Df + offs_k)[:, None] * s_w1k,
                    mask=mask_k[:, None] & mask_h[None, :], other=0.0)
    if DOT_FP32:
        z = tl.dot(v.to(tl.float32), w1c_t.to(tl.float32), input_precision=INPUT_PRECISION)
    else:
        z = tl.dot(v, w1c_t, input_precision=INPUT_PRECISION)
    z += tl.load(u_b + offs_h, mask=mask_h, other=0.0)[None, :]
    h1 = tl.maximum(z, 0.0)
    if HAS_BN:
        gamma = tl.load(scale_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        beta = tl.load(shift_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        y = h1 * gamma[None, :] + beta[None, :]
        hid = tl.maximum(y, 0.0)
    else:
        gamma = tl.full([BLOCK_H], 1.0, tl.float32)
        y = h1
        hid = h1
    return z, h1, y, hid, w1c_t, gamma, offs_h, mask_h


@triton.autotune(configs=_CONFIGS, key=["N", "DC", "HD"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit
def _gla_fwd_kernel(
    ctx_ptr,      # (B, Dc, H, W) input dtype, strides (s_cb, s_cc, s_ch, s_cw), any layout
    w1_ptr,       # (Hd, Df + Dc) input dtype, strides (s_w1h, s_w1k)
    u_ptr,        # (B, Hd) fp32 contiguous: W1f f + b1
    w2_ptr,       # (Hd,) input dtype, contiguous
    b2_ptr,       # (1,) input dtype
    scale_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    shift_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    scores_ptr,   # (B, N) fp32 contiguous, out: raw scores s
    m_ptr,        # (B, S) fp32 contiguous, out: max score of each cell split
    l_ptr,        # (B, S) fp32 contiguous, out: sum exp(s - m) of each cell split
    acc_ptr,      # (B, S, Dc) fp32 contiguous, out: sum exp(s - m) v of each cell split
    Df, N, W, DC, HD, CELLS_PER_SPLIT, S,
    s_cb, s_cc, s_ch, s_cw, s_w1h, s_w1k,
    HAS_BN: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_DC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):
    b = tl.program_id(0)
    split = tl.program_id(1)
    start = split * CELLS_PER_SPLIT
    end = tl.minimum(start + CELLS_PER_SPLIT, N)
    offs_k = tl.arange(0, BLOCK_DC)
    mask_k = offs_k < DC
    ctx_b = ctx_ptr + b.to(tl.int64) * s_cb
    u_b = u_ptr + b * HD
    b2 = tl.load(b2_ptr).to(tl.float32)

    m_i = tl.zeros([], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([], dtype=tl.float32)
    acc = tl.zeros([BLOCK_DC], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        v = _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw)
        s = tl.zeros([BLOCK_N], dtype=tl.float32)
        for h0 in range(0, HD, BLOCK_H):
            z, h1, y, hid, w1c_t, gamma, offs_h, mask_h = _hidden_tile(
                v, w1_ptr, u_b, scale_ptr, shift_ptr, h0, Df, HD, s_w1h, s_w1k, offs_k, mask_k,
                HAS_BN, DOT_FP32, INPUT_PRECISION, BLOCK_H)
            w2 = tl.load(w2_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
            s += tl.sum(hid * w2[None, :], axis=1)
        s += b2
        tl.store(scores_ptr + b.to(tl.int64) * N + offs_n, s, mask=mask_n)
        s = tl.where(mask_n, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), axis=0)
        m_i = m_new
    tl.store(m_ptr + b * S + split, m_i)
    tl.store(l_ptr + b * S + split, l_i)
    tl.store(acc_ptr + (b * S + split).to(tl.int64) * DC + offs_k, acc, mask=mask_k)


@triton.jit
def _accumulate(ptr, value, mask, ATOMIC: tl.constexpr):
    """ptr += value: an atomic add into a shared buffer, or a read-modify-write of a buffer
    that only this program touches (the caller puts a barrier between successive updates)."""
    if ATOMIC:
        tl.atomic_add(ptr, value, mask=mask)
    else:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + value, mask=mask)


@triton.autotune(configs=_CONFIGS, key=["N", "DC", "HD"],
                 prune_configs_by={"early_config_prune": _prune_configs},
                 reset_to_zero=["dw1c_ptr", "du_ptr", "dw2_ptr", "dscale_ptr", "dshift_ptr"])
@triton.jit
def _gla_bwd_kernel(
    ctx_ptr,      # (B, Dc, H, W) input dtype, strides (s_cb, s_cc, s_ch, s_cw)
    w1_ptr,       # (Hd, Df + Dc) input dtype, strides (s_w1h, s_w1k)
    u_ptr,        # (B, Hd) fp32 contiguous, saved by the forward
    w2_ptr,       # (Hd,) input dtype, contiguous
    scale_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    shift_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    scores_ptr,   # (B, N) fp32 contiguous, saved raw scores
    lse_ptr,      # (B,) fp32, saved log-sum-exp of the scores
    delta_ptr,    # (B,) fp32: gp . pooled + sum_i a_i ga_i
    gp_ptr,       # (B, Dc) fp32 contiguous: grad of pooled
    ga_ptr,       # (B, N) fp32 contiguous: grad of attn (unused unless HAS_GA)
    dctx_ptr,     # (B, Dc, H, W) input dtype, strides (s_db, s_dc, s_dh, s_dw), out (if NEED_DCTX)
    dw1c_ptr,     # (P, Hd, Dc) fp32 contiguous, zeroed: per-program partial dW1c (P = 1 if ATOMIC)
    du_ptr,       # (B * S, Hd) fp32 contiguous, zeroed: sum_i dz_i per work item (b, split)
    dw2_ptr,      # (P, Hd) fp32 contiguous, zeroed: partial dw2
    dscale_ptr,   # (P, Hd) fp32 contiguous, zeroed: partial d hidden_scale (if NEED_DBN)
    dshift_ptr,   # (P, Hd) fp32 contiguous, zeroed: partial d hidden_shift (if NEED_DBN)
    Df, N, W, DC, HD, CELLS_PER_SPLIT, S, TOTAL_WORK,
    s_cb, s_cc, s_ch, s_cw, s_w1h, s_w1k, s_db, s_dc, s_dh, s_dw,
    HAS_BN: tl.constexpr, HAS_GA: tl.constexpr,
    NEED_DCTX: tl.constexpr, NEED_DW1C: tl.constexpr, NEED_DU: tl.constexpr,
    NEED_DW2: tl.constexpr, NEED_DBN: tl.constexpr, ATOMIC: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_DC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    if ATOMIC:  # which partial-sum slot this program owns
        part = pid * 0
    else:
        part = pid
    offs_k = tl.arange(0, BLOCK_DC)
    mask_k = offs_k < DC
    # Persistent loop over work items (b, cell split); the weight partials stay per program.
    for work in range(pid, TOTAL_WORK, num_programs):
        b = work // S
        split = work % S
        start = split * CELLS_PER_SPLIT
        end = tl.minimum(start + CELLS_PER_SPLIT, N)
        ctx_b = ctx_ptr + b.to(tl.int64) * s_cb
        dctx_b = dctx_ptr + b.to(tl.int64) * s_db
        u_b = u_ptr + b * HD
        lse = tl.load(lse_ptr + b)
        delta = tl.load(delta_ptr + b)
        gp = tl.load(gp_ptr + b.to(tl.int64) * DC + offs_k, mask=mask_k, other=0.0)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < end
            v = _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw)
            s = tl.load(scores_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0)
            a = tl.where(mask_n, tl.exp(s - lse), 0.0)
            g = tl.sum(v.to(tl.float32) * gp[None, :], axis=1)
            if HAS_GA:
                g += tl.load(ga_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0)
            ds = a * (g - delta)
            if NEED_DCTX:
                dv = a[:, None] * gp[None, :]
            for h0 in range(0, HD, BLOCK_H):
                z, h1, y, hid, w1c_t, gamma, offs_h, mask_h = _hidden_tile(
                    v, w1_ptr, u_b, scale_ptr, shift_ptr, h0, Df, HD, s_w1h, s_w1k, offs_k,
                    mask_k, HAS_BN, DOT_FP32, INPUT_PRECISION, BLOCK_H)
                w2 = tl.load(w2_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
                if NEED_DW2:
                    _accumulate(dw2_ptr + part * HD + offs_h, tl.sum(ds[:, None] * hid, axis=0),
                                mask_h, ATOMIC)
                dh = ds[:, None] * w2[None, :]
                if HAS_BN:
                    dy = tl.where(y > 0.0, dh, 0.0)
                    if NEED_DBN:
                        _accumulate(dscale_ptr + part * HD + offs_h, tl.sum(dy * h1, axis=0),
                                    mask_h, ATOMIC)
                        _accumulate(dshift_ptr + part * HD + offs_h, tl.sum(dy, axis=0),
                                    mask_h, ATOMIC)
                    dh = dy * gamma[None, :]
                dz = tl.where(z > 0.0, dh, 0.0)
                if NEED_DU:
                    _accumulate(du_ptr + work * HD + offs_h, tl.sum(dz, axis=0), mask_h, False)
                if DOT_FP32:
                    dz_op = dz
                    v_op = v.to(tl.float32)
                    w_op = w1c_t.to(tl.float32)
                else:
                    dz_op = dz.to(v.dtype)
                    v_op = v
                    w_op = w1c_t
                if NEED_DW1C:
                    dw1c = tl.dot(tl.trans(dz_op), v_op, input_precision=INPUT_PRECISION)
                    ptrs = dw1c_ptr + part.to(tl.int64) * HD * DC + offs_h[:, None] * DC + offs_k[None, :]
                    _accumulate(ptrs, dw1c, mask_h[:, None] & mask_k[None, :], ATOMIC)
                if NEED_DCTX:
                    dv += tl.dot(dz_op, tl.trans(w_op), input_precision=INPUT_PRECISION)
                # du (and, deterministic, every partial) is read-modify-written by this
                # program only; a CTA barrier orders one tile's stores before the next tile's
                # loads whatever thread holds an element (a no-op in the interpreter).
                tl.debug_barrier()
            if NEED_DCTX:
                ptrs = (dctx_b + offs_k[None, :] * s_dc + (offs_n // W)[:, None] * s_dh
                        + (offs_n % W)[:, None] * s_dw)
                tl.store(ptrs, dv.to(dctx_ptr.dtype.element_ty), mask=mask_n[:, None] & mask_k[None, :])


# --------------------------------------------------------------------------------------------
# Host wrappers
# --------------------------------------------------------------------------------------------
def _input_precision(dtype: torch.dtype) -> str:
    """For fp32 tiles: "ieee" (exact fp32) unless PyTorch itself may use tf32 for fp32 matmuls
    (torch.set_float32_matmul_precision("high"/"medium")), then "tf32". 16-bit tiles take the
    native tensor-core path whatever this says (Triton's default, "tf32", is passed)."""
    if INTERPRET:
        return "ieee"
    if dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _block_dc(dc: int) -> int:
    return max(16, triton.next_power_of_2(dc))


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _cell_splits(B: int, N: int, device: torch.device, num_splits: Optional[int]) -> tuple[int, int]:
    """(S, cells per split): split a batch element over S programs when B alone cannot fill the
    GPU; never more splits than cells, never an empty split."""
    if num_splits is None:
        num_splits = 1 if device.type != "cuda" else max(1, min(-(-2 * _num_sms(device) // B), -(-N // 256)))
    num_splits = max(1, min(int(num_splits), N))
    per_split = -(-N // num_splits)
    return -(-N // per_split), per_split


def gla_forward(face, context, w1, b1, w2, b2, hidden_scale=None, hidden_shift=None,
                num_splits: Optional[int] = None):
    """Fused GLA forward. Inputs as in ``gla_reference`` (already validated, one dtype/device).

    Returns ``(pooled (B, Dc) input dtype, attn (B, H, W) input dtype, lse (B,) fp32,
    scores (B, N) fp32, u (B, Hd) fp32, pooled32 (B, Dc) fp32)``; the last four are what the
    backward needs.
    """
    B, Df = face.shape
    _, Dc, H, W = context.shape
    Hd = w1.shape[0]
    N = H * W
    dev, dtype = context.device, context.dtype
    f32 = dict(device=dev, dtype=torch.float32)
    b1 = b1.contiguous()
    w2 = w2.contiguous()
    has_bn = hidden_scale is not None
    scale = hidden_scale.contiguous() if has_bn else w2
    shift = hidden_shift.contiguous() if has_bn else w2

    u = torch.empty(B, Hd, **f32)
    S, per_split = _cell_splits(B, N, dev, num_splits)
    scores = torch.empty(B, N, **f32)
    m = torch.empty(B, S, **f32)
    l = torch.empty(B, S, **f32)
    acc = torch.empty(B, S, Dc, **f32)
    with _on_device(dev):
        _gla_face_proj_kernel[(B, triton.cdiv(Hd, 32))](
            face, w1, b1, u, Df, Hd, face.stride(0), face.stride(1), w1.stride(0), w1.stride(1),
            BLOCK_H=32, BLOCK_F=64)
        _gla_fwd_kernel[(B, S)](
            context, w1, u, w2, b2.reshape(1), scale, shift, scores, m, l, acc,
            Df, N, W, Dc, Hd, per_split, S,
            *context.stride(), w1.stride(0), w1.stride(1),
            HAS_BN=has_bn, DOT_FP32=INTERPRET, INPUT_PRECISION=_input_precision(dtype),
            BLOCK_DC=_block_dc(Dc))

    # Merge the cell splits (S == 1 is the common case; this is then a no-op rescale).
    m_max = m.amax(dim=1, keepdim=True)
    weight = torch.exp(m - m_max)                                   # (B, S)
    l_tot = (weight * l).sum(dim=1)                                 # (B,)
    pooled32 = (weight.unsqueeze(-1) * acc).sum(dim=1) / l_tot.unsqueeze(-1)
    lse = m_max.squeeze(1) + torch.log(l_tot)
    attn = torch.exp(scores - lse.unsqueeze(1)).to(dtype).view(B, H, W)
    pooled = pooled32.to(dtype, copy=True)
    return pooled, attn, lse, scores, u, pooled32


def gla_backward(grad_pooled, grad_attn, face, context, w1, w2, hidden_scale, hidden_shift,
                 lse, scores, u, pooled32, needs: Sequence[bool], deterministic: bool = True,
                 num_splits: Optional[int] = None, num_programs: Optional[int] = None):
    """Fused GLA backward.

    ``needs`` = (face, context, w1, b1, w2, b2, bn) booleans, as in ``ctx.needs_input_grad``
    (bn covers hidden_scale and hidden_shift). ``grad_attn`` (B, H, W) may be None.
    Returns ``[dface, dcontext, dw1, db1, dw2, db2, dscale, dshift]``, None where not needed.
    """
    need_face, need_ctx, need_w1, need_b1, need_w2, need_b2, need_bn = (bool(x) for x in needs)
    B, Df = face.shape
    _, Dc, H, W = context.shape
    Hd = w1.shape[0]
    N = H * W
    dev, dtype = context.device, context.dtype
    f32 = dict(device=dev, dtype=torch.float32)
    has_bn = hidden_scale is not None
    need_bn = need_bn and has_bn
    out = [None] * 8
    if need_b2:
        out[5] = torch.zeros((), dtype=dtype, device=dev)  # softmax is shift invariant
    need_du = need_face or need_w1 or need_b1
    if not (need_ctx or need_w1 or need_du or need_w2 or need_bn):
        return out

    gp = grad_pooled.to(torch.float32).contiguous()
    delta = (gp * pooled32).sum(dim=1)
    has_ga = grad_attn is not None
    if has_ga:
        ga = grad_attn.reshape(B, N).to(torch.float32).contiguous()
        delta = delta + (torch.exp(scores - lse.unsqueeze(1)) * ga).sum(dim=1)
    else:
        ga = gp  # never read
    delta = delta.contiguous()

    S, per_split = _cell_splits(B, N, dev, num_splits)
    total = B * S
    if num_programs is None:
        num_programs = total if dev.type != "cuda" else min(total, _num_sms(dev))
    P = max(1, min(int(num_programs), total))
    slots = 1 if not deterministic else P
    w2c = w2.contiguous()
    scale = hidden_scale.contiguous() if has_bn else w2c
    shift = hidden_shift.contiguous() if has_bn else w2c
    dw1c = torch.zeros(slots if need_w1 else 1, Hd, Dc, **f32)
    du = torch.zeros(total if need_du else 1, Hd, **f32)
    dw2 = torch.zeros(slots if need_w2 else 1, Hd, **f32)
    dscale = torch.zeros(slots if need_bn else 1, Hd, **f32)
    dshift = torch.zeros(slots if need_bn else 1, Hd, **f32)
    if need_ctx:
        # Same strides as context when it is dense (NCHW or channels_last), else dense NCHW.
        dctx = torch.empty_like(context, memory_format=torch.preserve_format)
    else:
        dctx = context  # never written
    with _on_device(dev):
        _gla_bwd_kernel[(P,)](
            context, w1, u, w2c, scale, shift, scores, lse, delta, gp, ga,
            dctx, dw1c, du, dw2, dscale, dshift,
            Df, N, W, Dc, Hd, per_split, S, total,
            *context.stride(), w1.stride(0), w1.stride(1), *dctx.stride(),
            HAS_BN=has_bn, HAS_GA=has_ga, NEED_DCTX=need_ctx, NEED_DW1C=need_w1, NEED_DU=need_du,
            NEED_DW2=need_w2, NEED_DBN=need_bn, ATOMIC=not deterministic,
            DOT_FP32=INTERPRET, INPUT_PRECISION=_input_precision(dtype), BLOCK_DC=_block_dc(Dc))

    if need_ctx:
        out[1] = dctx
    if need_du:
        du_b = du.view(B, S, Hd).sum(dim=1)                          # (B, Hd)
        if need_face:
            out[0] = (du_b @ w1[:, :Df].to(torch.float32)).to(dtype)
        if need_b1:
            out[3] = du_b.sum(dim=0).to(dtype)
    if need_w1:
        dw1f = du_b.t() @ face.to(torch.float32)                      # (Hd, Df)
        out[2] = torch.cat([dw1f, dw1c.sum(dim=0)], dim=1).to(dtype)
    if need_w2:
        out[4] = dw2.sum(dim=0).to(dtype)
    if need_bn:
        out[6] = dscale.sum(dim=0).to(dtype)
        out[7] = dshift.sum(dim=0).to(dtype)
    return out


__all__ = ["gla_forward", "gla_backward", "INTERPRET",
           "_gla_face_proj_kernel", "_gla_fwd_kernel", "_gla_bwd_kernel"]
