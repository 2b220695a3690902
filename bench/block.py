"""One encoder block alone: BatchNorm2d (training) -> ReLU -> MaxPool2d(2), forward + backward.

    python -m bench.block [--shape 32 32 112 112] [--threads N] [--rounds 7] [--device cpu|cuda]
                          [--json PATH]
    python -m bench.block --profile [--shape ...] [--rounds 5]      (CUDA only)

Default input: the first context block's activation (32, 32, 112, 112) fp32, channels_last.
Variants, timed round-robin (one call each per round, medians over rounds, min-max shown):
  eager      the literal F.batch_norm -> F.relu -> F.max_pool2d (oneDNN/ATen or cuDNN)
  compile    torch.compile of the same function
  fused      glamor_fast.ops.bn_relu_pool (cpp on CPU, triton on CUDA)
Each call runs forward, backward with a fixed cotangent, and the running-statistics update.

Bytes moved are those of the fused kernels' passes (x bytes = X): forward reads x twice and
writes y, xp (X/4 each) and idx (X/16 elements of 1 byte); backward reads dy, y, xp (X/4 each)
for BN's reductions, then x, dy, y, idx and writes dx. The fraction of bandwidth is
(bytes / copy bandwidth) / median time, the copy bandwidth measured in the same run (a 64 MiB
``copy_`` on the CPU, 1 GiB on CUDA, read + write bytes per second).

--profile (CUDA only) looks inside the GPU block instead: for the Triton block and for cuDNN's
BatchNorm + ReLU + MaxPool2d (fp32, channels_last, after 3 warm-up calls) the wall time per
forward + backward over --rounds calls, and torch.profiler's table of the ops with the most GPU
time over --rounds more calls (totals: divide by --rounds for one call).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Optional

import torch

from glamor_fast.ops.bn_relu_pool import bn_relu_pool, bn_relu_pool_reference

from .gpu_kernels import kernel_table, require_cuda, wall_ms
from .machine import machine_info
from .timing import time_fn


def fused_bytes(shape, itemsize: int = 4) -> int:
    """Bytes the fused forward + backward move for an input of ``shape`` (N, C, H, W)."""
    N, C, H, W = shape
    x = N * C * H * W * itemsize
    p = N * C * (H // 2) * (W // 2)
    pooled, idx = p * itemsize, p
    fwd = 2 * x + 2 * pooled + idx
    bwd = 3 * pooled + (x + 2 * pooled + idx + x)
    return fwd + bwd


def copy_bandwidth(device: torch.device, threads: int) -> float:
    big = (64 << 20) if device.type == "cpu" else (1 << 30)
    src = torch.empty(big // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    return 2 * big / time_fn(lambda: dst.copy_(src), device, threads, 0.5)["median_s"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def block_variants(shape, device: torch.device, compile_ok: bool = True) -> dict:
    """name -> zero-argument callable doing forward + backward of the block once."""
    N, C, H, W = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = (torch.rand(C, generator=g) + 0.5).to(device).requires_grad_(True)
    b = torch.randn(C, generator=g).to(device).requires_grad_(True)
    gy = torch.randn(N, C, H // 2, W // 2, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    rm, rv = torch.zeros(C, device=device), torch.ones(C, device=device)

    def runner(fn):
        def call():
            y = fn(x, w, b, rm, rv)
            y.backward(gy)
            x.grad = w.grad = b.grad = None
            _sync(device)
        return call

    variants = {"eager": runner(bn_relu_pool_reference)}
    if compile_ok:
        variants["compile"] = runner(torch.compile(bn_relu_pool_reference))
    variants["fused"] = runner(lambda *a: bn_relu_pool(*a))
    return variants


def run_block(shape=(32, 32, 112, 112), device: torch.device = torch.device("cpu"), threads: int = 2,
              rounds: int = 7, compile_ok: bool = True, log=print) -> dict:
    """Interleaved medians of every variant, bytes moved and the fused kernel's fraction of copy bandwidth."""
    variants = block_variants(shape, device, compile_ok)
    for fn in variants.values():  # warm-up (and compilation)
        fn(), fn()
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    bw = copy_bandwidth(device, threads)
    nbytes = fused_bytes(shape)
    out = {"shape": list(shape), "bytes_fused": nbytes, "copy_bytes_per_s": bw, "rounds": rounds, "variants": {}}
    for k, ts in times.items():
        med = statistics.median(ts)
        out["variants"][k] = {"median_s": med, "min_s": min(ts), "max_s": max(ts),
                              "fraction_of_copy_bw": nbytes / bw / med}
    floor = nbytes / bw
    log(f"block BN-ReLU-MaxPool2d {tuple(shape)} fp32 channels_last fwd+bwd, fused moves {nbytes / 1e6:.0f} MB; "
        f"copy bandwidth {bw / 1e9:.1f} GB/s -> floor {floor * 1e3:.1f} ms")
    for k, r in out["variants"].items():
        log(f"  {k:<8} median {r['median_s'] * 1e3:7.1f} ms (min {r['min_s'] * 1e3:.1f}, max {r['max_s'] * 1e3:.1f})"
            f"  {100 * r['fraction_of_copy_bw']:5.1f}% of copy bandwidth at the fused bytes")
    return out


def profile_gpu_block(shape, calls: int) -> None:
    """--profile: wall time and top GPU kernels of the Triton block and of cuDNN's ops."""
    N, C, H, W = shape
    cl = torch.channels_last
    x = torch.randn(shape, device="cuda").contiguous(memory_format=cl).requires_grad_(True)
    w = torch.ones(C, device="cuda", requires_grad=True)
    b = torch.zeros(C, device="cuda", requires_grad=True)
    gy = torch.randn(N, C, H // 2, W // 2, device="cuda").contiguous(memory_format=cl)
    for backend in ("triton", "reference"):
        def step():
            bn_relu_pool(x, w, b, backend=backend).backward(gy)

        for _ in range(3):
            step()
        print(f"== {backend}: wall {wall_ms(step, calls):.3f} ms per fwd+bwd ({calls} calls)")
        print(kernel_table(step, calls=calls, rows=14, with_cpu=True))


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.block", description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs=4, default=[32, 32, 112, 112], metavar=("N", "C", "H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    p.add_argument("--profile", action="store_true",
                   help="CUDA only: wall time and top GPU kernels of the Triton block and cuDNN's ops")
    p.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: glibc keeps freed memory for reuse, as `train` and bench.model do by default "
                        "(without it every large tensor is mapped and zeroed afresh: 74 ms instead of 16)")
    args = p.parse_args(argv)
    if min(args.shape) < 1 or args.shape[2] < 2 or args.shape[3] < 2:
        raise SystemExit(f"bench.block: --shape N C H W needs positive sizes and H, W >= 2, got {args.shape}")
    if args.threads < 1 or args.rounds < 1:
        raise SystemExit(f"bench.block: --threads and --rounds must be >= 1, got {args.threads}, {args.rounds}")
    if args.profile:
        require_cuda("bench.block", "--profile")
        profile_gpu_block(tuple(args.shape), args.rounds)
        return 0
    if args.device == "cuda":
        require_cuda("bench.block", "--device cuda")
    torch.set_num_threads(args.threads)
    kept = False
    if args.keep_freed_memory and args.device == "cpu":
        from glamor_fast.training.allocator import keep_freed_memory

        kept = keep_freed_memory()
    info = machine_info(args.threads)
    print(f"{info['cpu_model']}, {args.threads} threads, load {info['load_average']}, freed memory kept: {kept}")
    out = run_block(tuple(args.shape), torch.device(args.device), args.threads, args.rounds, not args.no_compile)
    if args.json:
        write_json(args.json, {"machine": info, "keep_freed_memory": kept, **out})
    return 0


def write_json(path: str, result: dict) -> None:
    """``result`` as JSON at ``path``, written under a temporary name and renamed when complete."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
