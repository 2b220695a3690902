"""Where the GLA op's CUDA time goes, per backend: event-timed fwd / fwd+bwd and the top kernels.

    python -m bench.gpu_probe [--B 256] [--hw 7]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from glamor_fast.ops.gla import gla
from glamor_fast.ops import gla_split


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
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--backends", nargs="+", default=["split", "reference", "triton", "cuda"])
    p.add_argument("--fp32-precision", default=None, choices=("ieee", "tf32x3", "tf32"),
                   help="force the Triton kernels' fp32 dot precision (experiment)")
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    if a.fp32_precision:
        from glamor_fast.ops.gla import triton as K
        K._input_precision = lambda dtype: a.fp32_precision if dtype == torch.float32 else "tf32"
    dev = "cuda"
    B, D, Hd, hw = a.B, 256, 128, a.hw
    g = torch.Generator(device=dev).manual_seed(0)
    dt = getattr(torch, a.dtype)
    face = torch.randn(B, D, device=dev, generator=g)
    ctx = torch.randn(B, D, hw, hw, device=dev, generator=g)
    w1 = torch.randn(Hd, 2 * D, device=dev, generator=g) * 0.05
    b1 = torch.randn(Hd, device=dev, generator=g) * 0.1
    w2 = torch.randn(Hd, device=dev, generator=g) * 0.1
    b2 = torch.zeros((), device=dev)
    x64 = [t.double().requires_grad_() for t in (face, ctx, w1, b1, w2, b2)]
    x = tuple(t.to(dt).requires_grad_() for t in (face, ctx, w1, b1, w2, b2))
    ops = {"split": lambda *t: gla_split(*t), "reference": lambda *t: gla(*t, backend="reference"),
           "triton": lambda *t: gla(*t, backend="triton"), "cuda": lambda *t: gla(*t, backend="cuda"),
           "compile": torch.compile(gla_split)}
    gp, ga = torch.randn(B, D, device=dev), torch.rand(B, hw, hw, device=dev)
    rp, ra = gla(*x64, backend="reference")
    ref = [rp, ra, *torch.autograd.grad((rp, ra), x64, (gp.double(), ga.double()))]
    gp, ga = gp.to(dt), ga.to(dt)
    for name in a.backends:
        op = ops[name]
        p_, a_ = op(*x)
        got = [p_, a_, *torch.autograd.grad((p_, a_), x, (gp, ga))]
        errs = [float((u.double() - v).norm() / v.norm().clamp_min(1e-30)) for u, v in zip(got[:5] + got[6:7], ref[:5] + ref[6:7])]
        print(f"  {name}: rel. errors vs float64 (pooled, attn, dface, dctx, dw1, dw2): "
              + " ".join(f"{e:.1e}" for e in errs))
        def f():
            with torch.no_grad():
                op(*x)

        def fb():
            p_, a_ = op(*x)
            torch.autograd.grad((p_, a_), x, (gp, ga))
        tf, tfb = timed(f), timed(fb)
        print(f"B{B} {hw}x{hw} {a.dtype} {name:<10} fwd {tf * 1e3:8.1f} us  fwd+bwd {tfb * 1e3:8.1f} us")
        if not a.profile:
            continue
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fb()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=40))


if __name__ == "__main__":
    main()
