"""Roofline: the least the GLA op must move and compute, against the device's measured limits.

Per case and mode, ``op_cost`` counts
  bytes  every input read once and every output written once (fp32: 4 bytes an element):
         forward  reads V (B,N,Dc), face (B,Df), w1 (Hd,Df+Dc), b1, w2, b2;
                  writes pooled (B,Dc), attn (B,N).
         backward reads V, face, w1, b1, w2, the saved attn (B,N) and pooled (B,Dc), the
                  incoming gradients gp (B,Dc), ga (B,N); writes dV, dface, dw1, db1, dw2.
  flops  the matrix products: forward 2*B*N*Dc*Hd (V W1c^T, the product that dominates) +
         2*B*Df*Hd (the face half, once per batch element) + 2*B*N*Hd (scores) +
         2*B*N*Dc (pooling); backward the two unavoidable big products dW1c = dZ^T V and
         dV = dZ W1c (4*B*N*Dc*Hd) + 3*B*N*Dc (gp.v and a*gp) + 4*B*Df*Hd + 4*B*N*Hd.
         A backward that recomputes Z (to save memory) does 2*B*N*Dc*Hd more than counted.
The limits are measured in the same run: ``copy_bandwidth`` (a large ``copy_``, read + write
bytes per second) and ``mm_throughput`` (a large square ``torch.mm``). The roofline time is
max(bytes / bandwidth, flops / throughput); a result's fraction is roofline time / measured.
"""
from __future__ import annotations

import torch

from .suites import Case
from .timing import time_fn


def op_cost(case: Case, mode: str, itemsize: int = 4) -> dict:
    """Least bytes and FLOPs of ``mode`` ("fwd", "bwd" or "fwdbwd") for ``case``."""
    B, N, Df, Dc, Hd = case.B, case.N, case.Df, case.Dc, case.Hd
    weights = Hd * (Df + Dc) + 2 * Hd + 1
    fwd_bytes = (B * N * Dc + B * Df + weights + B * Dc + B * N) * itemsize
    fwd_flops = 2 * B * N * Dc * Hd + 2 * B * Df * Hd + 2 * B * N * Hd + 2 * B * N * Dc
    bwd_bytes = (B * N * Dc + B * Df + weights + 2 * (B * N + B * Dc)         # reads
                 + B * N * Dc + B * Df + weights - 1) * itemsize              # writes
    bwd_flops = 4 * B * N * Dc * Hd + 3 * B * N * Dc + 4 * B * Df * Hd + 4 * B * N * Hd
    if mode == "fwd":
        return {"bytes": fwd_bytes, "flops": fwd_flops}
    if mode == "bwd":
        return {"bytes": bwd_bytes, "flops": bwd_flops}
    if mode == "fwdbwd":
        return {"bytes": fwd_bytes + bwd_bytes, "flops": fwd_flops + bwd_flops}
    raise ValueError(f"op_cost: mode must be 'fwd', 'bwd' or 'fwdbwd', got {mode!r}")


def measure_limits(device: torch.device, threads: int, min_time: float, quick: bool) -> dict:
    """Achievable copy bandwidth (bytes/s) and fp32 matmul throughput (FLOP/s) of ``device``."""
    big = (64 << 20) if device.type == "cpu" else (1 << 30)        # bytes per copy buffer
    src = torch.empty(big // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    copy = time_fn(lambda: dst.copy_(src), device, threads, min_time)
    n = (1024 if quick else 2048) if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    mm = time_fn(lambda: torch.mm(a, b), device, threads, min_time)
    return {
        "copy_bytes_per_s": 2 * big / copy["median_s"],
        "copy_buffer_bytes": big,
        "mm_flops_per_s": 2 * n ** 3 / mm["median_s"],
        "mm_size": n,
        "tf32": bool(device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32),
    }


def fraction(case: Case, mode: str, seconds: float, limits: dict) -> dict:
    """The roofline time of ``mode`` and the fraction of it a measured ``seconds`` reaches."""
    cost = op_cost(case, mode)
    t_mem = cost["bytes"] / limits["copy_bytes_per_s"]
    t_math = cost["flops"] / limits["mm_flops_per_s"]
    bound = max(t_mem, t_math)
    return {**cost, "roofline_s": bound, "bound": "memory" if t_mem >= t_math else "compute",
            "fraction": bound / seconds}
