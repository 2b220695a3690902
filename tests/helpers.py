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


# ---------------------------------------------------------------------------------------------
# The GLA op: its fused backends and the checks every one of them is held to
# ---------------------------------------------------------------------------------------------
GLA_INPUT_NAMES = ("face", "context", "w1", "b1", "w2", "b2", "hidden_scale", "hidden_shift")

# Bound of a float32/16-bit result against the float64 reference (``assert_within_twice_pytorch``):
#     max|got - ref64| <= 2 * max|torch_dtype - ref64| + ulps * eps(dtype) * scale
# torch_dtype is gla_reference run in the same dtype: a fused kernel does the same arithmetic in
# another order, so its error should not exceed twice PyTorch's own. The second term covers the
# final rounding to the dtype where PyTorch's own error is accidentally near zero.
#   cpp, cuda: one ulp of 1 + max|ref| (they round each output once from float32 sums).
#   triton: 16 ulp for float32 and 2 for the 16-bit types, of max(1, max|ref|, cond), where cond
#     (``gla_rounding_scales``) is the gradient's size with the softmax backward's cancelling
#     g_i - delta replaced by |g_i| + |delta|: a first-order rounding bound that matters for
#     peaked softmaxes (scores ~1e3), where PyTorch's float32 happens to cancel exactly and any
#     other summation order leaves eps * |g| * |w2|. Its tiles reorder sums more than the
#     compiled kernels do (online softmax, split cells).
GLA_LOW_PRECISION_BOUND = {
    "cpp": dict(ulps={torch.float32: 1, torch.float16: 1, torch.bfloat16: 1}, rounding_scale=False),
    "cuda": dict(ulps={torch.float32: 1, torch.float16: 1, torch.bfloat16: 1}, rounding_scale=False),
    "triton": dict(ulps={torch.float32: 16, torch.float16: 2, torch.bfloat16: 2}, rounding_scale=True),
}


def gla_device(backend: str) -> str:
    """Where a GLA backend runs in this session: cuda on CUDA; triton on CUDA when there is one
    (else on the CPU through the interpreter); cpp and reference on the CPU."""
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def require_gla_backend(backend: str, dtype=torch.float32) -> str:
    """The device ``backend`` runs ``dtype`` on here. A backend this machine must have fails the
    test (cpp always: CI builds the extension; cuda where there is a GPU); any other unavailable
    one skips with the registry's reason."""
    import pytest

    from glamor_fast.ops.registry import unavailable_reason

    name = backend.split("-")[0]
    device = gla_device(name)
    reason = unavailable_reason(name, device, dtype)
    if reason is None:
        return device
    if name == "cpp" or (name == "cuda" and torch.cuda.is_available()):
        pytest.fail(f"backend {name!r} must run here: {reason}")
    pytest.skip(reason)


def gla_backend_fn(backend: str):
    """``gla`` on a test's backend id: "cpp" (the default recompute policy), "cpp-recompute",
    "cpp-saved" (recompute=False), "triton", "cuda", "reference"."""
    from glamor_fast.ops.gla import gla

    name, _, mode = backend.partition("-")
    recompute = {"": None, "recompute": True, "saved": False}[mode]
    return lambda *x: gla(*x, backend=name, recompute=recompute)


def gla_forward_op(backend: str):
    """The backend's forward op (the one contract: same schema for all three)."""
    name = backend.split("-")[0]
    return torch.ops.glamor_fast.gla_forward_triton if name == "triton" else torch.ops.glamor_fast.gla_forward


def run_gla(fn, x, gp=None, ga=None):
    """(pooled, attn, gradients of every given input, gp, ga) of ``fn(*x)`` under the loss
    <pooled, gp> + <attn, ga>; gp and ga are drawn in float64 on the CPU when not given (so a
    CUDA run and its CPU reference see the same numbers)."""
    x = [None if t is None else t.detach().clone().requires_grad_(True) for t in x]
    p, a = fn(*x)
    gp = torch.randn(p.shape, dtype=torch.float64).to(p.device, p.dtype) if gp is None else gp
    ga = torch.randn(a.shape, dtype=torch.float64).to(a.device, a.dtype) if ga is None else ga
    loss = (p * gp).sum() + (a * ga).sum()
    grads = torch.autograd.grad(loss, [t for t in x if t is not None])
    return p.detach(), a.detach(), list(grads), gp, ga


def max_abs_err(u, v) -> float:
    return (u.detach().cpu().double() - v.detach().cpu().double()).abs().max().item()


def assert_close_float64(got, want, what=""):
    """float64 on both sides: a fused kernel differs from the literal one only in summation order
    (~1e-16 relative). 1e-9 relative leaves room for scores ~1e3, where a score error of ~1e-13
    shows up as a relative error of the same size in attn and the gradients."""
    want = want.detach().cpu()
    torch.testing.assert_close(got.detach().cpu(), want, rtol=1e-9,
                               atol=1e-9 * (1.0 + want.abs().max().item()), msg=what)


def gla_rounding_scales(inputs64, gp, ga):
    """Per gradient name: its magnitude with every cancellation removed (GLA_LOW_PRECISION_BOUND)."""
    face, context, w1, b1, w2, b2, gamma, beta = [None if t is None else t.detach().cpu().double()
                                                  for t in inputs64]
    gp = gp.cpu().double()
    ga = None if ga is None else ga.cpu().double()
    B, Df = face.shape
    cells = context.flatten(2).transpose(1, 2)                           # (B, N, Dc)
    z = cells @ w1[:, Df:].t() + (face @ w1[:, :Df].t() + b1)[:, None]   # (B, N, Hd)
    h1 = z.clamp_min(0)
    y = h1 * gamma + beta if gamma is not None else h1
    h = y.clamp_min(0)
    a = torch.softmax(h @ w2 + b2, dim=1)                                # (B, N)
    g = (cells @ gp.unsqueeze(-1)).squeeze(-1) + (ga.flatten(1) if ga is not None else 0)
    delta = (a * g).sum(1, keepdim=True)
    e = a * (g.abs() + delta.abs())                                      # |ds| without cancelling
    dy = e.unsqueeze(-1) * w2.abs() * (y > 0)
    dz = (dy * gamma.abs() if gamma is not None else dy) * (z > 0)
    du = dz.sum(1)
    scales = {
        "face": du @ w1[:, :Df].abs(),
        "context": a.unsqueeze(-1) * gp.abs().unsqueeze(1) + dz @ w1[:, Df:].abs(),
        "w1": torch.cat([du.t() @ face.abs(), torch.einsum("bnh,bnc->hc", dz, cells.abs())], 1),
        "b1": du.sum(0),
        "w2": (e.unsqueeze(-1) * h).sum((0, 1)),
        "hidden_scale": (dy * h1).sum((0, 1)),
        "hidden_shift": dy.sum((0, 1)),
    }
    return {k: v.abs().max().item() for k, v in scales.items()}


def assert_within_twice_pytorch(backend, name, got, low, ref, dtype, cond=None):
    """``got`` (a backend's ``dtype`` result) against ``ref`` (float64), with ``low`` PyTorch's
    result in ``dtype``: the backend's GLA_LOW_PRECISION_BOUND."""
    bound_of = GLA_LOW_PRECISION_BOUND[backend.split("-")[0]]
    eps = torch.finfo(dtype).eps
    ref_max = ref.detach().abs().max().item()
    if bound_of["rounding_scale"]:
        scale = max(1.0, ref_max, (cond or {}).get(name.removeprefix("grad "), 0.0))
    else:
        scale = 1.0 + ref_max
    err, torch_err = max_abs_err(got, ref), max_abs_err(low, ref)
    bound = 2 * torch_err + bound_of["ulps"][dtype] * eps * scale
    assert err <= bound, f"{backend} {name} ({dtype}): error {err:.3g} > bound {bound:.3g} (torch {torch_err:.3g})"


def check_gla(backend, inputs64, dtype, with_grad=None, pooled_grad=True, attn_grad=True,
              context_transform=None):
    """Forward and every requested gradient of ``backend`` in ``dtype`` against gla_reference in
    float64: float64 results to summation order (``assert_close_float64``), lower precisions
    within the backend's bound (``assert_within_twice_pytorch``). Also: a gradient exactly where
    one was requested, the inputs' dtype and shape, finite values, and d b2 exactly 0 (the loss
    does not involve lse, and softmax is shift invariant). ``with_grad``: 8 bools (default all);
    ``context_transform``: gives the context a layout ``.to`` would not keep.
    Returns the backend's (outputs, gradients)."""
    device = require_gla_backend(backend, dtype)
    B, Dc, H, W = inputs64[1].shape
    gp = torch.randn(B, Dc, dtype=torch.float64) if pooled_grad else None
    ga = torch.randn(B, H, W, dtype=torch.float64) if attn_grad else None

    def leaves(dtype, device):
        out = []
        for i, t in enumerate(inputs64):
            if t is not None:
                t = t.detach().to(device=device, dtype=dtype).requires_grad_(
                    True if with_grad is None else with_grad[i])
            out.append(t)
        return out

    def run(fn, xs):
        pooled, attn = fn(*xs)
        loss = (pooled.double() * gp.to(pooled.device)).sum() if gp is not None else 0
        if ga is not None:
            loss = loss + (attn.double() * ga.to(attn.device)).sum()
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
        return [pooled, attn], [None if t is None or not t.requires_grad else t.grad for t in xs]

    from glamor_fast.ops import gla_reference

    ref_out, ref_grads = run(gla_reference, leaves(torch.float64, "cpu"))
    xs = leaves(dtype, device)
    if context_transform is not None:
        xs[1] = context_transform(xs[1].detach()).requires_grad_(xs[1].requires_grad)
        assert xs[1].is_leaf and not xs[1].is_contiguous()
    out, grads = run(gla_backend_fn(backend), xs)
    if dtype != torch.float64:
        low_out, low_grads = run(gla_reference, leaves(dtype, device))
        cond = gla_rounding_scales(inputs64, torch.zeros(B, Dc, dtype=torch.float64) if gp is None else gp, ga)
    else:
        low_out, low_grads = [None] * 2, [None] * 8
    names = ["pooled", "attn"] + [f"grad {n}" for n in GLA_INPUT_NAMES]
    for name, got, low, ref in zip(names, out + grads, low_out + low_grads, ref_out + ref_grads):
        if ref is None:
            assert got is None, f"{name}: computed but not requested"
            continue
        assert got is not None, f"{name}: missing"
        assert got.dtype == dtype and got.shape == ref.shape, f"{name}: {got.dtype} {tuple(got.shape)}"
        assert torch.isfinite(got).all(), f"{name}: non-finite values"
        if name == "grad b2":
            assert torch.count_nonzero(got) == 0, "d b2 must be exactly zero"
        elif dtype == torch.float64:
            assert_close_float64(got, ref, name)
        else:
            assert_within_twice_pytorch(backend, name, got, low, ref, dtype, cond)
    return out, grads


def gla_exact_zero_cases():
    """(name -> float32 inputs) where the true gradients of face, w1, b1 and w2 are 0: one cell,
    and a softmax made one-hot by large scores (the winning cell's score ~1e4 above the rest)."""
    n1 = make_gla_inputs(B=3, Df=5, Dc=7, H=1, W=1, Hd=4, dtype=torch.float32)
    n1[2] = n1[2] * 30  # large weights amplified the old rounding noise
    hot = make_gla_inputs(B=2, Df=5, Dc=7, H=4, W=6, Hd=4, dtype=torch.float32)
    hot[1][:, :, 1, 2] += 40.0  # one cell far out: its hidden units dominate the score
    hot[4] = hot[4].abs() * 1e3
    big = make_gla_inputs(B=2, Df=5, Dc=7, H=20, W=20, Hd=4, dtype=torch.float32)  # cells span tiles
    big[1][:, :, 13, 17] += 40.0
    big[4] = big[4].abs() * 1e5  # gaps beyond float64's exp underflow too
    return {"n1": n1, "one_hot": hot, "one_hot_multi_tile": big}


def assert_exact_zero_grads(a, ra, g, rg):
    """attn one-hot on both sides; the face, w1, b1 and w2 gradients exactly 0 as PyTorch's."""
    assert ((a == 0) | (a == 1)).all() and (ra.to(a.device) == a).all(), "the case must be exactly one-hot"
    for i, what in ((0, "face"), (2, "w1"), (3, "b1"), (4, "w2")):
        assert (rg[i] == 0).all(), f"PyTorch's {what} gradient is exactly 0 here"
        assert (g[i] == 0).all(), f"grad {what}: max |g| = {g[i].abs().max().item():.3g}, not exactly 0"


def sliced_context(c, kind):
    """A non-contiguous view holding c's (B, Dc, H, W) values: "gaps" (NCHW channels with a gap:
    cells unit stride), "cl_gaps" (channels_last with padded channels: channels unit stride),
    "strided" (every other channel and column of a bigger map: neither unit stride) or "permuted"
    ((B, W, H, Dc) memory: dense but neither NCHW nor NHWC)."""
    B, Dc, H, W = c.shape
    kw = dict(dtype=c.dtype, device=c.device)
    if kind == "gaps":
        view = torch.zeros(B, Dc + 3, H, W, **kw)[:, 2:Dc + 2]
    elif kind == "cl_gaps":
        view = torch.zeros(B, Dc + 3, H, W, **kw).contiguous(memory_format=torch.channels_last)[:, 1:Dc + 1]
    elif kind == "strided":
        view = torch.zeros(B, 2 * Dc, H + 1, 2 * W, **kw)[:, ::2, 1:, ::2]
    else:
        view = torch.zeros(B, W, H, Dc, **kw).permute(0, 3, 2, 1)
        assert not view.is_contiguous(memory_format=torch.channels_last)
    view.copy_(c)
    assert view.shape == c.shape and not view.is_contiguous()
    return view
