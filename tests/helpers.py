"""Helpers shared by the tests: input factories, runners, measurements."""
from __future__ import annotations

import torch


def make_gla_inputs(B=2, Df=6, Dc=5, H=3, W=4, Hd=7, dtype=torch.float64, device="cpu",
                    folded_bn=False, channels_last=False, score_scale=1.0, requires_grad=False,
                    generator=None):
    """Fresh random GLA inputs: (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift).

    ``score_scale`` multiplies w2 (and b2) so scores reach magnitudes like 1e3.
    ``channels_last`` gives a context whose memory is NHWC (non-contiguous as NCHW).
    """
    g = generator
    kw = dict(dtype=torch.float64, device="cpu", generator=g)
    face = torch.randn(B, Df, **kw)
    context = torch.randn(B, Dc, H, W, **kw)
    w1 = torch.randn(Hd, Df + Dc, **kw) / (Df + Dc) ** 0.5
    b1 = torch.randn(Hd, **kw) * 0.1
    w2 = torch.randn(Hd, **kw) / Hd ** 0.5 * score_scale
    b2 = torch.randn((), **kw)
    scale = shift = None
    if folded_bn:
        scale = torch.rand(Hd, **kw) + 0.5
        shift = torch.randn(Hd, **kw) * 0.1
    out = [face, context, w1, b1, w2, b2, scale, shift]
    out = [None if t is None else t.to(device=device, dtype=dtype) for t in out]
    if channels_last:
        out[1] = out[1].contiguous(memory_format=torch.channels_last)
    if requires_grad:
        for t in out:
            if t is not None:
                t.requires_grad_(True)
    return out


def run_without_interpreter(script: str):
    """Runs ``script`` with ``python -c`` from the repository root with TRITON_INTERPRET unset
    (ahead-of-time GPU compiles need the real Triton compiler): the CompletedProcess."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600)


def run_bench(module: str, *args: str, timeout: float = 120):
    """Runs ``python -m bench.<module> *args`` from the repository root (tests never import
    ``bench``): the CompletedProcess, stdout and stderr as text."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", f"bench.{module}", *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a gloo process group)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_process_group_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world`` processes on this machine."""
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))


# float32: BatchNorm's reductions over n <= ~2000 values, the fused and literal paths summing in
# different orders; observed differences are ~1e-6, 1e-4 leaves margin without hiding a wrong
# index or mask (those give O(1) errors). float64: the same maths, differing only by rounding.
BN_RELU_POOL_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-9, atol=1e-9)}


def make_bn_relu_pool_inputs(shape, dtype, channels_last, scale=1.0, offset=0.0, gen=None):
    """(x (N, C, H, W), weight (C,), bias (C,)) for the BN-ReLU-MaxPool2d block, drawn in float64
    and cast to ``dtype``; weight[0] < 0 (a negative gamma flips which inputs win the pool)."""
    N, C, H, W = shape
    x = torch.randn(shape, dtype=torch.float64, generator=gen) * scale + offset
    x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = (torch.rand(C, dtype=torch.float64, generator=gen) + 0.5).to(dtype)
    w[0] = -w[0]
    b = (torch.randn(C, dtype=torch.float64, generator=gen) * 0.5).to(dtype)
    return x, w, b


def cpu_peak_bytes(fn) -> int:
    """Peak bytes held by torch's CPU allocator while ``fn()`` runs, above the level before it
    (from the profiler's memory events; what ``fn`` returns counts until the profile ends)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch._C._autograd.DeviceType.CPU
    sizes = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
             if e.name() == "[memory]" and e.device_type() == cpu]
    assert sizes, "torch.profiler recorded no CPU memory events"
    level = peak = 0
    for _, nbytes in sorted(sizes):
        level += nbytes
        peak = max(peak, level)
    return peak
