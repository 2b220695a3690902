"""The fused BN-ReLU-MaxPool2d block (glamor_fast.ops.bn_relu_pool) against the literal
F.batch_norm -> F.relu -> F.max_pool2d: forward, every gradient, running statistics.

Backends: "cpp" (needs glamor_fast._C; a missing build fails, it does not skip) and "triton"
(under TRITON_INTERPRET=1 on CPU, tiny shapes only).
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops.bn_relu_pool import bn_relu_pool, bn_relu_pool_reference, cpp_unavailable_reason
from tests.helpers import BN_RELU_POOL_TOL as TOL
from tests.helpers import make_bn_relu_pool_inputs


@pytest.fixture(autouse=True)
def _extension_built():
    reason = cpp_unavailable_reason(torch.device("cpu"), torch.float32)
    if reason is not None:
        pytest.fail(f"the cpp block is not available: {reason}")
    yield


def _triton_ok():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = ["cpp", pytest.param("triton", marks=pytest.mark.skipif(not _triton_ok(), reason="needs triton"))]


def _run(fn, x, w, b, gy, **kw):
    x, w, b = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
    gen = torch.Generator().manual_seed(1)  # the same starting running statistics for every run
    rm = torch.randn(w.shape[0], dtype=torch.float64, generator=gen).to(w.dtype)
    rv = (torch.rand(w.shape[0], dtype=torch.float64, generator=gen) + 0.5).to(w.dtype)
    y = fn(x, w, b, rm, rv, **kw)
    y.backward(gy)
    return y, x.grad, w.grad, b.grad, rm, rv


def _compare(backend, x, w, b, tol, momentum=0.1, eps=1e-5):
    N, C, H, W = x.shape
    gy = torch.randn((N, C, H // 2, W // 2), dtype=torch.float64).to(x.dtype)
    ref = _run(bn_relu_pool_reference, x, w, b, gy, momentum=momentum, eps=eps)
    got = _run(bn_relu_pool, x, w, b, gy, momentum=momentum, eps=eps, backend=backend)
    for name, r, g in zip(("y", "grad_x", "grad_weight", "grad_bias", "running_mean", "running_var"), ref, got):
        torch.testing.assert_close(g, r, equal_nan=True, msg=lambda m: f"{backend} {name}: {m}", **tol)
    assert got[0].is_contiguous(memory_format=torch.channels_last) == ref[0].is_contiguous(
        memory_format=torch.channels_last)
    return got


# the Triton kernels take float32/float16/bfloat16, not float64
BACKEND_DTYPES = [("cpp", torch.float32), ("cpp", torch.float64)] + [
    pytest.param(*p.values, torch.float32, marks=p.marks) for p in BACKENDS[1:]]


@pytest.mark.parametrize("backend, dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 5, 4, 6), (3, 17, 8, 9)])
def test_matches_reference(backend, channels_last, dtype, shape):
    x, w, b = make_bn_relu_pool_inputs(shape, dtype, channels_last)
    _compare(backend, x, w, b, TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_eps_and_momentum(backend):
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, w, b = make_bn_relu_pool_inputs((2, 4, 6, 6), dtype, True)
    _compare(backend, x, w, b, TOL[dtype], momentum=0.01, eps=1e-3)


def test_larger_block_two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, w, b = make_bn_relu_pool_inputs((4, 32, 30, 31), torch.float32, True)
        _compare("cpp", x, w, b, TOL[torch.float32])
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_magnitudes(backend):
    # mean 1e4, std 1e2 in float32: x itself is only known to ulp(1e4) ~ 1e-3, i.e. 1e-5 of a
    # standard deviation; the shifted float64 sums keep the statistics at that level.
    x, w, b = make_bn_relu_pool_inputs((2, 6, 8, 7), torch.float32, True, scale=1e2, offset=1e4)
    _compare(backend, x, w, b, TOL[torch.float32])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_ties_first_max_wins(backend, channels_last):
    # Integer inputs: whole windows tie after BN and ReLU; the gradient must reach the same
    # (first) element as MaxPool2d's, so an exact float64 comparison is meaningful.
    dtype = torch.float32 if backend == "triton" else torch.float64
    x = torch.randint(0, 3, (2, 5, 6, 8)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(5, dtype=torch.float64).to(dtype) + 0.5
    b = torch.zeros(5, dtype=dtype)
    _compare(backend, x, w, b, TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_propagate(backend, bad):
    x, w, b = make_bn_relu_pool_inputs((2, 3, 6, 6), torch.float32, True)
    x[1, 1, 2, 3] = bad  # channel 1 becomes NaN everywhere (its statistics are); others stay finite
    y, dx, dw, db, rm, rv = _compare(backend, x, w, b, TOL[torch.float32])
    assert torch.isnan(y[:, 1]).all() and torch.isfinite(y[:, 0]).all()


@pytest.mark.parametrize("channels_last", [True, False])
def test_gradcheck_float64(channels_last):
    x, w, b = make_bn_relu_pool_inputs((2, 3, 5, 4), torch.float64, channels_last)
    args = tuple(t.detach().clone().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: bn_relu_pool(x, w, b, backend="cpp"), args)


def test_opcheck():
    x, w, b = make_bn_relu_pool_inputs((2, 3, 5, 6), torch.float32, True)
    x, w, b = (t.requires_grad_(True) for t in (x, w, b))
    torch.library.opcheck(torch.ops.glamor_fast.bn_relu_pool_forward.default, (x, w, b, 1e-5))
    y, idx, xp, mean, var = torch.ops.glamor_fast.bn_relu_pool_forward(x.detach(), w.detach(), b.detach(), 1e-5)
    assert idx.dtype == torch.uint8 and int(idx.max()) <= 3
    args = (torch.randn_like(y), x.detach(), w.detach(), y, idx, xp, mean, var, 1e-5)
    torch.library.opcheck(torch.ops.glamor_fast.bn_relu_pool_backward.default, args)


def test_same_result_for_any_thread_count():
    x, w, b = make_bn_relu_pool_inputs((3, 16, 12, 10), torch.float32, True)
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(_run(bn_relu_pool, x, w, b, torch.ones(3, 16, 6, 5), backend="cpp"))
    finally:
        torch.set_num_threads(before)
    for a, c in zip(*outs):
        assert torch.equal(a, c)


@pytest.mark.parametrize("shape, match", [((2, 3, 1, 4), "H and W"), ((1, 3, 2, 1), "H and W"),
                                          ((3, 4, 5), r"\(N, C, H, W\)")])
def test_bad_shapes_raise(shape, match):
    x = torch.randn(shape)
    with pytest.raises(ValueError, match=match):
        bn_relu_pool(x, torch.ones(3), torch.zeros(3), backend="cpp")


def test_bad_backend_and_weight():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown backend"):
        bn_relu_pool(x, torch.ones(3), torch.zeros(3), backend="fast")
    with pytest.raises(ValueError, match="weight must be"):
        bn_relu_pool(x, torch.ones(4), torch.zeros(4), backend="cpp")
    with pytest.raises(ValueError, match="backend .cpp. is not available for cpu torch.float16"):
        bn_relu_pool(x.half(), torch.ones(3).half(), torch.zeros(3).half(), backend="cpp")


@pytest.mark.skipif(not _triton_ok(), reason="needs triton")
def test_triton_opcheck_and_bfloat16():
    from glamor_fast.ops.bn_relu_pool import _triton_module

    _triton_module()  # registers glamor_fast::bn_relu_pool_triton_fwd/bwd
    x, w, b = make_bn_relu_pool_inputs((2, 3, 5, 4), torch.float32, True)
    torch.library.opcheck(torch.ops.glamor_fast.bn_relu_pool_triton_fwd.default,
                          (x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True), 1e-5))
    # bfloat16 in and out, fp32 statistics and arithmetic: the output is within bf16 rounding
    # (2^-8 relative) of the fp32 reference computed from the same bf16 input.
    xb = x.detach().bfloat16()
    y = bn_relu_pool(xb, w.detach(), b.detach(), backend="triton")
    ref = bn_relu_pool_reference(xb.float(), w.detach(), b.detach())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=2 ** -7, atol=2 ** -7)


_AOT_SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from glamor_fast.ops.bn_relu_pool import triton_kernels as K

def sm90(fn, pointers, constexprs):
    sig = {n: "constexpr" if n in constexprs else pointers.get(n, "i32") for n in fn.arg_names}
    triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                   target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 2})

tiles = dict(BLOCK_R=32, BLOCK_C=32)
for d in ("*bf16", "*fp32"):
    f = "*fp32"
    sm90(K._stats_kernel, dict(x_ptr=d, shift_ptr=f, part_ptr=f), tiles)
    sm90(K._pool_kernel, dict(x_ptr=d, mean_ptr=f, scale_ptr=f, beta_ptr=f, y_ptr=d, xp_ptr=d, idx_ptr="*u8"), tiles)
    sm90(K._bwd_reduce_kernel, dict(dy_ptr=d, y_ptr=d, xp_ptr=d, mean_ptr=f, part_ptr=f), tiles)
    sm90(K._bwd_dx_kernel, dict(x_ptr=d, dx_ptr=d, dy_ptr=d, y_ptr=d, idx_ptr="*u8", mean_ptr=f, coef_ptr=f), tiles)
print("compiled")
"""


@pytest.mark.slow  # ~20 s: compiles with ptxas on the CPU
@pytest.mark.skipif(not _triton_ok(), reason="needs triton")
def test_triton_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter does not lower to PTX: compile every block kernel for sm_90 (fp32 and
    bf16 pointers) ahead of time, no driver needed, so GPU-only type errors show up here."""
    from tests.helpers import run_without_interpreter

    proc = run_without_interpreter(_AOT_SCRIPT)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-3000:]
