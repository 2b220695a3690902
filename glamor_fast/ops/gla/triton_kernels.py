"""Fused Global-Local Attention (GLA) in Triton: the @triton.jit kernels (``triton.py`` launches them).

Maths (per batch element b; docs/gla.md has the derivation). Face vector f (Df), context
cells v_i (Dc), i < N = H*W, W1 = [W1f | W1c] (Hd, Df + Dc), optional gamma/beta (Hd,) =
``hidden_scale`` / ``hidden_shift`` (a BatchNorm folded into the hidden layer):

    u    = W1f f + b1                        once per b                (_gla_face_proj_kernel)
    z_i  = W1c v_i + u,   h1_i = relu(z_i),  h_i = relu(gamma h1_i + beta)  (or h_i = h1_i)
    s_i  = w2 . h_i + b2
    a    = softmax_i(s),  p = sum_i a_i v_i                                 (_gla_fwd_kernel)

The forward (_gla_fwd_kernel, one program per batch element and cell split) scores the cells
in tiles of BLOCK_N, walking Dc in BLOCK_K slices with the whole hidden layer in one tile
(BLOCK_H = next pow2 >= Hd), keeps the running max m and sum l, then re-reads the cells and
pools them with weights exp(s - m). With one split it writes lse, pooled, attn and the fp32
softmax a = exp(s - m) / l itself; with S splits the host merges (m, l, acc) (a (B, S, Dc)
reduction). Nothing of size (B, N, Df + Dc) or (B, N, Hd) is written by the forward; the
backward reads the op's saved outputs attn and lse and recomputes u (B, Hd).

Backward, given gp = dL/dp (B, Dc) and ga = dL/da (B, N):

    g_i   = gp . v_i + ga_i,   delta = sum_i a_i g_i     (_gla_delta_kernel, one program per b)
    ds_i  = a_i (g_i - delta)                             (exactly 0 for N = 1 or a one-hot a)
    dh_i  = ds_i w2;  dy_i = dh_i [gamma h1_i + beta > 0];  dh1_i = gamma dy_i  (BN variant)
    dz_i  = dh1_i [z_i > 0]                               (_gla_bwd_kernel: recomputes z)
    dv_i  = a_i gp + W1c^T dz_i                           (cuBLAS addmm over dz)
    dW1c  = sum_{b,i} dz_i v_i^T                          (cuBLAS mm over dz)
    dw2 = sum ds_i h_i,  dgamma = sum dy_i h1_i,  dbeta = sum dy_i,  du_b = sum_i dz_i
    db1 = sum_b du_b;  dW1f = sum_b du_b f_b^T;  df_b = W1f^T du_b;  db2 = sum_b g_lse
    (lse = log sum_i exp(s_i) is an output too: d lse / d s_i = a_i, so delta -= g_lse)

_gla_bwd_kernel runs one program per (b, cell split); the per-hidden-unit sums stay in
registers and each program writes its own row of partials, which the host sums in a fixed
order: the backward is bitwise reproducible. dz lives in a
(B*N, Hd) workspace (fp32 for fp32 inputs) for the duration of the backward only.

Launch settings: ``triton.autotune`` keyed on (N, Dc, Hd) (and the dtypes) over short tile lists
(BLOCK_N, BLOCK_K, num_warps), one for exact fp32 dots and one for tensor-core dots, pruned to one
fixed config under the interpreter or with GLAMOR_FAST_TRITON_TUNE=0.

Precision: tiles are read in the inputs' dtype and every accumulation is fp32. For fp32
inputs ``tl.dot`` uses input_precision "ieee" when torch.get_float32_matmul_precision() is
"highest" (PyTorch's default: exact fp32, errors ~1e-6) and "tf32" otherwise (~1e-3), i.e. the
same choice PyTorch makes for its own matmuls ("ieee" tiles compile slowly, ~20-40 s each on
one CPU core, so autotuning keeps only small ones). Under TRITON_INTERPRET=1 every dot operand is
upcast to fp32 first (DOT_FP32): the interpreter's bf16 dot is wrong (triton-lang/triton#11584).

Limits: the whole hidden layer is one tile, so Hd <= MAX_HIDDEN (512) (larger raises, naming the
backends that take it); tiles are spill-free for Hd <= 128, larger Hd runs correctly but spills.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

# Read once: TRITON_INTERPRET must be set before any @triton.jit function is defined.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


# --------------------------------------------------------------------------------------------
# Launch configurations
# --------------------------------------------------------------------------------------------
# (BLOCK_N, BLOCK_K, num_warps). BLOCK_H is not tuned: it covers the whole hidden layer
# (next power of two >= Hd), so a tile's z, dz and the per-program weight partials stay in
# registers and no program ever re-reads or re-writes a partial in global memory. The cells x Dc
# product is walked in BLOCK_K slices, so no tile holds a whole Dc vector (the first version
# held BLOCK_N x Dc tiles and spilled: 255 registers and ~1 KB of stack per thread).
# Two lists, chosen by the dot's precision: exact fp32 ("ieee") dots run on the FMA units and
# hold whole operand rows per thread, so they get thinner tiles than tensor-core ("tf32",
# 16-bit) dots. Every tile here compiles for sm_80 and sm_90 at Hd <= 128 without spilling
# (tests/ops/gla/test_gla_triton.py::test_kernels_compile_without_spills).
_GPU_TILES = {
    "ieee": ((16, 32, 8),),
    "mma": ((32, 32, 8), (16, 64, 8)),
}
# Largest BLOCK_N x BLOCK_H tile of fp32 accumulators per warp count (32 x 128 / 4 warps = 32
# registers a thread for z; dz and the hidden values are as large again).
_MAX_TILE_PER_WARP = 32 * 128 // 4


def _gpu_configs() -> list:
    return [triton.Config({"BLOCK_N": n, "BLOCK_K": k, "KIND": kind}, num_warps=w, num_stages=2)
            for kind, tiles in _GPU_TILES.items() for n, k, w in tiles]


# Small tiles under the interpreter so that small test shapes still exercise the masked tails
# and the loops over several cell tiles and Dc slices.
_INTERPRET_CONFIG = triton.Config({"BLOCK_N": 16, "BLOCK_K": 16, "KIND": "interpret"}, num_warps=4,
                                  num_stages=1)

# GLAMOR_FAST_TRITON_TUNE=0 skips autotuning (one config per shape: fast start-up, for tests).
TUNE = os.environ.get("GLAMOR_FAST_TRITON_TUNE", "1") != "0"


def _prune_configs(configs, named_args, **kwargs):
    """One fixed config under the interpreter (several crash without a driver). On a GPU keep
    the tiles of the dot's precision, drop tiles much larger than the problem and tiles whose
    (BLOCK_N, BLOCK_H) accumulators would not fit the warps' registers; with TUNE off keep the
    first that remains."""
    if INTERPRET:
        return [_INTERPRET_CONFIG]
    kind = "ieee" if kwargs.get("INPUT_PRECISION", named_args.get("INPUT_PRECISION")) == "ieee" else "mma"
    configs = [c for c in configs if c.kwargs["KIND"] == kind]
    n_cap = max(16, triton.next_power_of_2(int(named_args["N"])))
    k_cap = max(16, triton.next_power_of_2(int(named_args["DC"])))
    block_h = int(kwargs.get("BLOCK_H", named_args.get("BLOCK_H", 128)))
    kept = [c for c in configs
            if c.kwargs["BLOCK_N"] <= n_cap and c.kwargs["BLOCK_K"] <= k_cap
            and c.kwargs["BLOCK_N"] * block_h <= _MAX_TILE_PER_WARP * c.num_warps]
    kept = kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_N"] * block_h // c.num_warps,
                                                c.kwargs["BLOCK_K"]))]
    return kept if TUNE else kept[:1]


_CONFIGS = [_INTERPRET_CONFIG] if INTERPRET else _gpu_configs()
# The widest hidden layer a tile holds at once (BLOCK_N = 16 x 512 over 8 warps).
MAX_HIDDEN = 512


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
    """The (BLOCK_N, BLOCK_K) tile of cells offs_n, channels offs_k of one batch element, read
    through strides (NCHW, channels_last or any other layout, no copy); zero where masked."""
    ptrs = ctx_b + offs_k[None, :] * s_cc + (offs_n // W)[:, None] * s_ch + (offs_n % W)[:, None] * s_cw
    return tl.load(ptrs, mask=mask_n[:, None] & mask_k[None, :], other=0.0)


@triton.jit
def _dot(a, b, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision=INPUT_PRECISION)
    return tl.dot(a, b, input_precision=INPUT_PRECISION)


@triton.jit
def _preactivation(ctx_b, offs_n, mask_n, w1_ptr, u_b, offs_h, mask_h, Df, DC, W,
                   s_cc, s_ch, s_cw, s_w1h, s_w1k,
                   DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """z = V W1c^T + u for the cells offs_n: (BLOCK_N, BLOCK_H) fp32, Dc walked in BLOCK_K slices."""
    z = tl.zeros([BLOCK_N, BLOCK_H], dtype=tl.float32)
    for k0 in range(0, DC, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < DC
        v = _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw)
        w1c_t = tl.load(w1_ptr + offs_h[None, :] * s_w1h + (Df + offs_k)[:, None] * s_w1k,
                        mask=mask_k[:, None] & mask_h[None, :], other=0.0)
        z += _dot(v, w1c_t, DOT_FP32, INPUT_PRECISION)
    return z + tl.load(u_b + offs_h, mask=mask_h, other=0.0)[None, :]


@triton.jit
def _activation(z, scale_ptr, shift_ptr, offs_h, mask_h, HAS_BN: tl.constexpr, BLOCK_H: tl.constexpr):
    """h1 = relu(z); y = gamma h1 + beta (h1 without BN); h = relu(y) (h1 without BN); gamma."""
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
    return h1, y, hid, gamma


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
    scores_ptr,   # (B, N) fp32 contiguous, out: raw scores s; if FINAL then the fp32 softmax
    m_ptr,        # (B, S) fp32 contiguous, out: max score of each cell split
    l_ptr,        # (B, S) fp32 contiguous, out: sum exp(s - m) of each cell split
    acc_ptr,      # (B, S, Dc) fp32 contiguous, out: sum exp(s - m) v of each cell split
    lse_ptr,      # (B,) fp32, out if FINAL: log sum exp(s)
    pooled_ptr,   # (B, Dc) input dtype contiguous, out if FINAL
    attn_ptr,     # (B, N) input dtype contiguous, out if FINAL: softmax(s)
    Df, N, W, DC, HD, CELLS_PER_SPLIT, S,
    s_cb, s_cc, s_ch, s_cw, s_w1h, s_w1k,
    HAS_BN: tl.constexpr, FINAL: tl.constexpr, DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    KIND: tl.constexpr,  # which tile list the config came from (autotune bookkeeping only)
):
    """One program per (batch element, cell split). Pass 1 scores the cells tile by tile and
    keeps the running max m and sum l; pass 2 re-reads the split's cells (from L2) and pools
    them with weights exp(s - m), one BLOCK_K slice of Dc at a time. With one split per batch
    element (FINAL) the program also writes lse, the normalised pooled vector and attn, so the
    host merges nothing."""
    b = tl.program_id(0)
    split = tl.program_id(1)
    start = split * CELLS_PER_SPLIT
    end = tl.minimum(start + CELLS_PER_SPLIT, N)
    ctx_b = ctx_ptr + b.to(tl.int64) * s_cb
    scores_b = scores_ptr + b.to(tl.int64) * N
    u_b = u_ptr + b * HD
    offs_h = tl.arange(0, BLOCK_H)
    mask_h = offs_h < HD
    w2 = tl.load(w2_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    b2 = tl.load(b2_ptr).to(tl.float32)

    m_i = tl.zeros([], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        z = _preactivation(ctx_b, offs_n, mask_n, w1_ptr, u_b, offs_h, mask_h, Df, DC, W,
                           s_cc, s_ch, s_cw, s_w1h, s_w1k, DOT_FP32, INPUT_PRECISION,
                           BLOCK_N, BLOCK_H, BLOCK_K)
        h1, y, hid, gamma = _activation(z, scale_ptr, shift_ptr, offs_h, mask_h, HAS_BN, BLOCK_H)
        s = tl.sum(hid * w2[None, :], axis=1) + b2
        tl.store(scores_b + offs_n, s, mask=mask_n)
        s = tl.where(mask_n, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(s - m_new), axis=0)
        m_i = m_new
    tl.store(m_ptr + b * S + split, m_i)
    tl.store(l_ptr + b * S + split, l_i)
    # The scores were stored by other threads of this program: make them visible.
    tl.debug_barrier()
    acc_row = acc_ptr + (b * S + split).to(tl.int64) * DC
    for k0 in range(0, DC, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < DC
        acc = tl.zeros([BLOCK_K], dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < end
            p = tl.exp(tl.load(scores_b + offs_n, mask=mask_n, other=float("-inf")) - m_i)
            v = _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw)
            acc += tl.sum(tl.where(mask_n, p, 0.0)[:, None] * v.to(tl.float32), axis=0)
        if FINAL:
            pooled = acc / l_i
            tl.store(pooled_ptr + b.to(tl.int64) * DC + offs_k,
                     pooled.to(pooled_ptr.dtype.element_ty), mask=mask_k)
        else:
            tl.store(acc_row + offs_k, acc, mask=mask_k)
    if FINAL:
        lse = m_i + tl.log(l_i)
        tl.store(lse_ptr + b, lse)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < end
            # exp(s - m) / l, not exp(s - lse): with scores of magnitude 1e3, s - lse would lose
            # ~1e-4 relative to the rounding of lse, while s - m is exact near the maximum.
            a = tl.exp(tl.load(scores_b + offs_n, mask=mask_n, other=0.0) - m_i) / l_i
            tl.store(attn_ptr + b.to(tl.int64) * N + offs_n, a.to(attn_ptr.dtype.element_ty), mask=mask_n)
            tl.store(scores_b + offs_n, a, mask=mask_n)  # the backward's fp32 probabilities


@triton.autotune(configs=_CONFIGS, key=["N", "DC", "HD"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit
def _gla_delta_kernel(
    ctx_ptr,      # (B, Dc, H, W) input dtype, strides (s_cb, s_cc, s_ch, s_cw)
    probs_ptr,    # (B, N) contiguous, the inputs' dtype: the saved softmax a (attn)
    gp_ptr,       # (B, Dc) fp32 contiguous: grad of pooled
    ga_ptr,       # (B, N) fp32 contiguous: grad of attn (unused unless HAS_GA)
    g_ptr,        # (B, N) fp32 contiguous, out: g_i = gp . v_i + ga_i
    delta_ptr,    # (B,) fp32, out: delta = sum_i a_i g_i
    N, W, DC, HD,
    s_cb, s_cc, s_ch, s_cw,
    HAS_GA: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    KIND: tl.constexpr,  # which tile list the config came from (autotune bookkeeping only)
):
    """One program per batch element. delta is summed from the same per-cell terms g_i that
    ds_i = a_i (g_i - delta) uses, so a one-hot softmax (or N = 1) gives ds = 0 exactly, as
    PyTorch's softmax backward does; a delta formed from the saved pooled output would not."""
    b = tl.program_id(0)
    ctx_b = ctx_ptr + b.to(tl.int64) * s_cb
    d = tl.zeros([BLOCK_N], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        g = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, DC, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < DC
            v = _load_cells(ctx_b, offs_n, mask_n, offs_k, mask_k, W, s_cc, s_ch, s_cw)
            gp = tl.load(gp_ptr + b.to(tl.int64) * DC + offs_k, mask=mask_k, other=0.0)
            g += tl.sum(v.to(tl.float32) * gp[None, :], axis=1)
        if HAS_GA:
            g += tl.load(ga_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0)
        tl.store(g_ptr + b.to(tl.int64) * N + offs_n, g, mask=mask_n)
        d += tl.load(probs_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0).to(tl.float32) * g
    tl.store(delta_ptr + b, tl.sum(d, axis=0))


@triton.autotune(configs=_CONFIGS, key=["N", "DC", "HD"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit
def _gla_bwd_kernel(
    ctx_ptr,      # (B, Dc, H, W) input dtype, strides (s_cb, s_cc, s_ch, s_cw)
    w1_ptr,       # (Hd, Df + Dc) input dtype, strides (s_w1h, s_w1k)
    u_ptr,        # (B, Hd) fp32 contiguous, recomputed by _gla_face_proj_kernel
    w2_ptr,       # (Hd,) input dtype, contiguous
    scale_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    shift_ptr,    # (Hd,) input dtype, contiguous (unused unless HAS_BN)
    probs_ptr,    # (B, N) contiguous, the inputs' dtype: the saved softmax a (attn)
    g_ptr,        # (B, N) fp32 contiguous: gp . v_i + ga_i (_gla_delta_kernel)
    delta_ptr,    # (B,) fp32: sum_i a_i g_i (_gla_delta_kernel)
    dz_ptr,       # (B * N, Hd) dz dtype contiguous, out (if NEED_DZ): dW1c = dz^T V, dV = a gp + dz W1c
    du_ptr,       # (B * S, Hd) fp32 contiguous, out: sum_i dz_i of each work item (b, split)
    dw2_ptr,      # (B * S, Hd) fp32 contiguous, out: partial dw2 (if NEED_DW2)
    dscale_ptr,   # (B * S, Hd) fp32 contiguous, out: partial d hidden_scale (if NEED_DBN)
    dshift_ptr,   # (B * S, Hd) fp32 contiguous, out: partial d hidden_shift (if NEED_DBN)
    Df, N, W, DC, HD, CELLS_PER_SPLIT, S,
    s_cb, s_cc, s_ch, s_cw, s_w1h, s_w1k,
    HAS_BN: tl.constexpr, NEED_DZ: tl.constexpr,
    NEED_DW2: tl.constexpr, NEED_DBN: tl.constexpr,
    DOT_FP32: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    KIND: tl.constexpr,  # which tile list the config came from (autotune bookkeeping only)
):
    """One program per (batch element, cell split): recompute z tile by tile (one read of V),
    form dz and write it, and keep the per-hidden-unit sums (du, dw2, dgamma, dbeta) in
    registers; each program writes its own row of partials, which the host sums in a fixed
    order (bitwise reproducible). The two products of dz (dV's dz W1c and dW1c = dz^T V) are
    cuBLAS matmuls on the host: holding dz as a dot operand over the whole hidden layer here
    spilled registers in every tile tried."""
    b = tl.program_id(0)
    split = tl.program_id(1)
    work = b * S + split
    start = split * CELLS_PER_SPLIT
    end = tl.minimum(start + CELLS_PER_SPLIT, N)
    ctx_b = ctx_ptr + b.to(tl.int64) * s_cb
    u_b = u_ptr + b * HD
    delta = tl.load(delta_ptr + b)
    offs_h = tl.arange(0, BLOCK_H)
    mask_h = offs_h < HD
    w2 = tl.load(w2_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    du = tl.zeros([BLOCK_H], dtype=tl.float32)
    dw2 = tl.zeros([BLOCK_H], dtype=tl.float32)
    dscale = tl.zeros([BLOCK_H], dtype=tl.float32)
    dshift = tl.zeros([BLOCK_H], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        a = tl.load(probs_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + b.to(tl.int64) * N + offs_n, mask=mask_n, other=0.0)
        ds = a * (g - delta)
        z = _preactivation(ctx_b, offs_n, mask_n, w1_ptr, u_b, offs_h, mask_h, Df, DC, W,
                           s_cc, s_ch, s_cw, s_w1h, s_w1k, DOT_FP32, INPUT_PRECISION,
                           BLOCK_N, BLOCK_H, BLOCK_K)
        h1, y, hid, gamma = _activation(z, scale_ptr, shift_ptr, offs_h, mask_h, HAS_BN, BLOCK_H)
        if NEED_DW2:
            dw2 += tl.sum(ds[:, None] * hid, axis=0)
        dh = ds[:, None] * w2[None, :]
        if HAS_BN:
            dy = tl.where(y > 0.0, dh, 0.0)
            if NEED_DBN:
                dscale += tl.sum(dy * h1, axis=0)
                dshift += tl.sum(dy, axis=0)
            dh = dy * gamma[None, :]
        dz = tl.where(z > 0.0, dh, 0.0)
        du += tl.sum(dz, axis=0)
        if NEED_DZ:
            rows = (b.to(tl.int64) * N + offs_n) * HD
            tl.store(dz_ptr + rows[:, None] + offs_h[None, :], dz.to(dz_ptr.dtype.element_ty),
                     mask=mask_n[:, None] & mask_h[None, :])
    row = work.to(tl.int64) * HD + offs_h
    tl.store(du_ptr + row, du, mask=mask_h)
    if NEED_DW2:
        tl.store(dw2_ptr + row, dw2, mask=mask_h)
    if NEED_DBN:
        tl.store(dscale_ptr + row, dscale, mask=mask_h)
        tl.store(dshift_ptr + row, dshift, mask=mask_h)
