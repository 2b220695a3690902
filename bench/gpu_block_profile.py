"""GPU time of each kernel in the encoder block's forward + backward: Triton vs cuDNN's ops.

    python -m bench.gpu_block_profile [--shape 32 32 112 112] [--iters 5]

torch.profiler over ``iters`` fwd+bwd calls per backend (fp32, channels_last), after 3 warm-up
calls; prints the top kernels by CUDA time and the wall time per call.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from glamor_fast.ops.bn_relu_pool import bn_relu_pool


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_block_profile", description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs=4, default=[32, 32, 112, 112], metavar=("N", "C", "H", "W"))
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args(argv)
    N, C, H, W = args.shape
    cl = torch.channels_last
    x = torch.randn(N, C, H, W, device="cuda").contiguous(memory_format=cl).requires_grad_(True)
    w = torch.ones(C, device="cuda", requires_grad=True)
    b = torch.zeros(C, device="cuda", requires_grad=True)
    gy = torch.randn(N, C, H // 2, W // 2, device="cuda").contiguous(memory_format=cl)
    for backend in ("triton", "reference"):
        step = lambda: bn_relu_pool(x, w, b, backend=backend).backward(gy)  # noqa: E731
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / args.iters * 1e3
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(args.iters):
                step()
            torch.cuda.synchronize()
        print(f"== {backend}: wall {wall:.3f} ms per fwd+bwd ({args.iters} calls)")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
