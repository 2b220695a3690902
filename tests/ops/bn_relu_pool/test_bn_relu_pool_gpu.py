"""The Triton BN-ReLU-MaxPool2d block on a CUDA device against the literal torch ops there
(cuDNN BatchNorm, ReLU, MaxPool2d): forward, every gradient, running statistics. Skipped
without a CUDA device; the same kernels run under the interpreter in test_bn_relu_pool.py.
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops.bn_relu_pool import bn_relu_pool, bn_relu_pool_reference
from tests.conftest import requires_cuda
from tests.helpers import BN_RELU_POOL_TOL as TOL
from tests.helpers import make_bn_relu_pool_inputs

pytest.importorskip("triton")

NAMES = ("y", "grad_x", "grad_weight", "grad_bias", "running_mean", "running_var")


def _run(fn, x, w, b, gy, **kw):
    x, w, b = (t.detach().clone().cuda().requires_grad_(True) for t in (x, w, b))
    gen = torch.Generator().manual_seed(1)
    rm = torch.randn(w.shape[0], dtype=torch.float64, generator=gen).to(w.dtype).cuda()
    rv = (torch.rand(w.shape[0], dtype=torch.float64, generator=gen) + 0.5).to(w.dtype).cuda()
    y = fn(x, w, b, rm, rv, **kw)
    y.backward(gy.cuda())
    torch.cuda.synchronize()
    return [t.cpu() for t in (y, x.grad, w.grad, b.grad, rm, rv)]


def _grad_out(x):
    N, C, H, W = x.shape
    return torch.randn((N, C, H // 2, W // 2), dtype=torch.float64).to(x.dtype)


@requires_cuda
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 5, 4, 6), (3, 17, 8, 9), (32, 32, 112, 112),
                                   (8, 256, 14, 14), (4, 64, 57, 55)])
def test_float32_matches_cudnn(shape, channels_last):
    x, w, b = make_bn_relu_pool_inputs(shape, torch.float32, channels_last)
    gy = _grad_out(x)
    ref = _run(bn_relu_pool_reference, x, w, b, gy)
    got = _run(bn_relu_pool, x, w, b, gy, backend="triton")
    for name, r, g in zip(NAMES, ref, got):
        torch.testing.assert_close(g, r, msg=lambda m: f"{name}: {m}", **TOL[torch.float32])
    assert got[0].is_contiguous(memory_format=torch.channels_last) == channels_last


@requires_cuda
@pytest.mark.parametrize("case", ["ties", "large", "nan", "inf"])
def test_float32_edge_cases(case):
    if case == "ties":  # whole windows tie: the gradient must reach MaxPool2d's (first) element
        x = torch.randint(0, 3, (2, 5, 6, 8)).float().contiguous(memory_format=torch.channels_last)
        w, b = torch.rand(5) + 0.5, torch.zeros(5)
    else:
        scale, offset = (1e2, 1e4) if case == "large" else (1.0, 0.0)
        x, w, b = make_bn_relu_pool_inputs((2, 6, 8, 7), torch.float32, True, scale=scale, offset=offset)
        if case in ("nan", "inf"):
            x[1, 1, 2, 3] = float(case)
    gy = _grad_out(x)
    ref = _run(bn_relu_pool_reference, x, w, b, gy)
    got = _run(bn_relu_pool, x, w, b, gy, backend="triton")
    if case == "inf":
        # cuDNN's running mean for the channel holding inf is NaN (a Welford update computes
        # inf - inf); the CPU's F.batch_norm and ours give inf, the mean of values with one +inf.
        bn_relu_pool_reference(x, w, b, rm := torch.zeros(6), torch.ones(6))
        assert torch.isnan(ref[4][1]) and torch.isinf(got[4][1]) and torch.isinf(rm[1]), (ref[4], got[4])
        ref[4][1] = got[4][1]
    for name, r, g in zip(NAMES, ref, got):
        torch.testing.assert_close(g, r, equal_nan=True, msg=lambda m: f"{name}: {m}", **TOL[torch.float32])


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_cudnn_error(dtype):
    """16-bit x (fp32 weights, as under autocast): at most 2x the error of the literal ops in
    the same dtype, both measured against float64, plus eps x the output's scale."""
    x64, w64, b64 = make_bn_relu_pool_inputs((8, 32, 28, 30), torch.float64, True)
    gy64 = _grad_out(x64)
    exact = _run(bn_relu_pool_reference, x64, w64, b64, gy64)
    xl, gyl = x64.to(dtype), gy64.to(dtype)
    ref = _run(bn_relu_pool_reference, xl, w64.float(), b64.float(), gyl)
    got = _run(bn_relu_pool, xl, w64.float(), b64.float(), gyl, backend="triton")
    eps = torch.finfo(dtype).eps
    for name, e, r, g in zip(NAMES, exact, ref, got):
        assert g.dtype == r.dtype, name
        err_ref = (r.double() - e.double()).abs().max().item()
        err_got = (g.double() - e.double()).abs().max().item()
        assert err_got <= 2 * err_ref + eps * (1 + e.abs().max().item()), (name, err_got, err_ref)


@requires_cuda
def test_deterministic():
    x, w, b = make_bn_relu_pool_inputs((16, 32, 56, 56), torch.float32, True)
    gy = _grad_out(x)
    first = _run(bn_relu_pool, x, w, b, gy, backend="triton")
    second = _run(bn_relu_pool, x, w, b, gy, backend="triton")
    for name, u, v in zip(NAMES, first, second):
        assert torch.equal(u, v), name


@requires_cuda
def test_auto_picks_cudnn_on_cuda():
    from glamor_fast.ops.registry import choose_backend

    assert choose_backend("auto", torch.device("cuda"), torch.float32, op="bn_relu_pool") == "reference"


@requires_cuda
def test_compiled_matches_eager():
    """torch.compile around the Triton block: the same kernels, so the same numbers (to fp32
    reduction order in inductor's code around them)."""
    x, w, b = make_bn_relu_pool_inputs((8, 32, 28, 30), torch.float32, True)
    gy = _grad_out(x)
    eager = _run(bn_relu_pool, x, w, b, gy, backend="triton")
    fn = torch.compile(lambda *a: bn_relu_pool(*a, backend="triton"), fullgraph=True)
    compiled = _run(fn, x, w, b, gy)
    for name, u, v in zip(NAMES, compiled, eager):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
