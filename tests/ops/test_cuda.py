"""The "cuda" backend (csrc/gla/cuda/) against gla_reference; skipped without a CUDA device.

Where there is a GPU, glamor_fast._C must have been built with CUDA
(`pip install --no-build-isolation -e .` with a CUDA build of torch): a missing kernel fails.
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops import gla_reference
from glamor_fast.ops.gla import gla
from glamor_fast.ops import extension as _ext
from glamor_fast.ops.gla import compiled
from tests.conftest import GPU_MARKS
from tests.helpers import make_gla_inputs
from tests.ops.test_cpp import GRID, _exact_zero_cases, _max_err, _run, _sliced, assert_exact_zero_grads

pytestmark = GPU_MARKS


@pytest.fixture(autouse=True)
def _cuda_kernels_built():
    if _ext.load_error() is not None:
        pytest.fail(f"glamor_fast._C is not importable: {_ext.load_error()}")
    if _ext.kernel_missing("gla_forward", "CUDA") is not None:
        pytest.fail("glamor_fast._C has no CUDA kernels: rebuild with a CUDA build of torch "
                    "and nvcc on the PATH (`pip install --no-build-isolation -e .`)")
    yield


def cuda_gla(*x):
    return gla(*x, backend="cuda")


def _to_cuda(x):
    return [None if t is None else t.cuda() for t in x]


def _compare_f64(x):
    p, a, g, gp, ga = _run(cuda_gla, _to_cuda(x))
    rp, ra, rg, _, _ = _run(gla_reference, x, gp.cpu(), ga.cpu())
    # float64 on the GPU too: only summation order differs (see test_cpp).
    for u, v in zip([p, a] + g, [rp, ra] + rg):
        torch.testing.assert_close(u.cpu(), v, rtol=1e-9, atol=1e-9 * (1.0 + v.abs().max().item()))


@pytest.mark.parametrize("case", list(GRID))
def test_forward_and_grads_match_reference_float64(case):
    _compare_f64(make_gla_inputs(**GRID[case]))


@pytest.mark.parametrize("kind", ["gaps", "cl_gaps", "strided"])
def test_sliced_context(kind):
    _compare_f64(_sliced(make_gla_inputs(B=2, Df=5, Dc=7, H=3, W=5, Hd=4, folded_bn=True), kind))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(dtype):
    """At most 2x the error of gla_reference in `dtype` on the GPU, plus eps * output scale."""
    x64 = make_gla_inputs(B=3, Df=32, Dc=48, H=7, W=7, Hd=16, folded_bn=True)
    xl = _to_cuda([None if t is None else t.to(dtype) for t in x64])
    p64, a64, g64, gp, ga = _run(gla_reference, x64)
    pk, ak, gk, _, _ = _run(cuda_gla, xl, gp.to(dtype).cuda(), ga.to(dtype).cuda())
    pr, ar, gr, _, _ = _run(gla_reference, xl, gp.to(dtype).cuda(), ga.to(dtype).cuda())
    eps = torch.finfo(dtype).eps
    for name, k, r, ref in [("pooled", pk, pr, p64), ("attn", ak, ar, a64)] + [
        (f"grad{i}", k, r, ref) for i, (k, r, ref) in enumerate(zip(gk, gr, g64))
    ]:
        atol = eps * (1.0 + ref.abs().max().item())
        assert _max_err(k.cpu(), ref) <= 2 * _max_err(r.cpu(), ref) + atol, name


def test_gradcheck_float64():
    x = _to_cuda(make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, folded_bn=True))
    x = [None if t is None else t.requires_grad_(True) for t in x]
    assert torch.autograd.gradcheck(lambda *t: cuda_gla(*t), tuple(x), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_opcheck():
    x = _to_cuda(make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, folded_bn=True))
    x = [None if t is None else t.requires_grad_(True) for t in x]
    torch.library.opcheck(torch.ops.glamor_fast.gla_forward.default, tuple(x))


def test_deterministic_two_runs_bitwise():
    x = _to_cuda(make_gla_inputs(B=3, Df=16, Dc=24, H=9, W=11, Hd=8, dtype=torch.float32, folded_bn=True))
    first = _run(cuda_gla, x)
    second = _run(cuda_gla, x, first[3], first[4])
    for u, v in zip([first[0], first[1]] + first[2], [second[0], second[1]] + second[2]):
        assert torch.equal(u, v)


def test_cuda_matches_cpp_float32():
    x = make_gla_inputs(B=2, Df=16, Dc=24, H=10, W=13, Hd=8, dtype=torch.float32, channels_last=True)
    p, a, g, gp, ga = _run(cuda_gla, _to_cuda(x))
    cp, ca, cg, _, _ = _run(lambda *t: gla(*t, backend="cpp"), x, gp.cpu(), ga.cpu())
    for u, v in zip([p, a] + g, [cp, ca] + cg):
        torch.testing.assert_close(u.cpu(), v, rtol=1e-4, atol=1e-5)  # fp32, different sum orders


def test_wrong_device_mix_raises():
    x = _to_cuda(make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3))
    x[2] = x[2].cpu()
    with pytest.raises(RuntimeError, match="`w1` is on cpu"):
        torch.ops.glamor_fast.gla_forward(*x)


@pytest.mark.parametrize("name", ["n1", "one_hot", "one_hot_multi_tile"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_exact_zero_gradients_stay_exactly_zero(name, dtype):
    """As test_cpp's: one cell, or a one-hot softmax, gives exactly 0 for the face, w1, b1 and
    w2 gradients (the binding forms delta from the same per-cell terms as ds)."""
    x = [None if t is None else t.to("cuda", dtype) for t in _exact_zero_cases()[name]]
    p, a, g, gp, ga = _run(cuda_gla, x)
    rp, ra, rg, _, _ = _run(gla_reference, x, gp, ga)
    assert_exact_zero_grads(a, ra, g, rg)
