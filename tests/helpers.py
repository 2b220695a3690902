"""Input factories shared by the op tests."""
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
