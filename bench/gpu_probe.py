"""Where the GLA op's CUDA time goes, per backend: event-timed fwd / fwd+bwd and the top kernels.

    python -m bench.gpu_probe [--B 256] [--hw 7]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from glamor_fast.ops import gla
from glamor_fast.ops.reference import gla_split


def timed(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--B", type=int, default=256)
    p.add_argument("--hw", type=int, default=7)
    a = p.parse_args()
    dev = "cuda"
    B, D, Hd, hw = a.B, 256, 128, a.hw
    g = torch.Generator(device=dev).manual_seed(0)
    face = torch.randn(B, D, device=dev, generator=g, requires_grad=True)
    ctx = torch.randn(B, D, hw, hw, device=dev, generator=g, requires_grad=True)
    w1 = (torch.randn(Hd, 2 * D, device=dev, generator=g) * 0.05).requires_grad_()
    b1 = torch.zeros(Hd, device=dev, requires_grad=True)
    w2 = (torch.randn(Hd, device=dev, generator=g) * 0.1).requires_grad_()
    b2 = torch.zeros((), device=dev, requires_grad=True)
    x = (face, ctx, w1, b1, w2, b2)
    ops = {"split": lambda *t: gla_split(*t), "reference": lambda *t: gla(*t, backend="reference"),
           "triton": lambda *t: gla(*t, backend="triton"), "cuda": lambda *t: gla(*t, backend="cuda")}
    gp, ga = torch.randn(B, D, device=dev), torch.rand(B, hw, hw, device=dev)
    for name, op in ops.items():
        def f():
            with torch.no_grad():
                op(*x)

        def fb():
            p_, a_ = op(*x)
            torch.autograd.grad((p_, a_), x, (gp, ga))
        tf, tfb = timed(f), timed(fb)
        print(f"B{B} {hw}x{hw} {name:<10} fwd {tf * 1e3:8.1f} us  fwd+bwd {tfb * 1e3:8.1f} us")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fb()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=70))


if __name__ == "__main__":
    main()
