"""The one-pass inference ReLU -> MaxPool2d(2) (glamor_fast.ops.relu_pool) against the literal
F.max_pool2d(F.relu(x), 2). Max and ReLU round nothing, so every comparison is exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glamor_fast.ops.relu_pool import ReLUMaxPool2d, relu_pool, relu_pool_backend, relu_pool_reference


@pytest.fixture(autouse=True)
def _kernel_built():
    if relu_pool_backend(torch.zeros(1, 1, 2, 2)) != "cpp":
        pytest.fail("the relu_pool cpp kernel is not built into glamor_fast._C")


def _same(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(got.nan_to_num(0.0), want.nan_to_num(0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 2, 2), (3, 17, 8, 9), (4, 32, 30, 31), (1, 256, 14, 14)])
def test_matches_literal_ops_exactly(shape, channels_last, dtype):
    x = torch.randn(shape, dtype=dtype) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = relu_pool(x)
    _same(y, relu_pool_reference(x))
    if shape[1] > 1:  # with one channel both layouts are the same
        assert y.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("channels_last", [True, False])
def test_nan_inf_large_and_all_negative_windows(channels_last):
    x = torch.randn(2, 5, 6, 8) * 1e30
    x[0, 1, 0, 0] = float("nan")   # NaN window
    x[0, 2, 2, 3] = float("inf")
    x[1, 3, 4, 4] = float("-inf")
    x[1, 4] = -torch.rand(6, 8) - 1  # a whole channel negative: exact zeros out
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = relu_pool(x)
    _same(y, relu_pool_reference(x))
    assert torch.isnan(y[0, 1, 0, 0]) and y[0, 2, 1, 1] == float("inf")
    assert (y[1, 4] == 0).all()


def test_non_contiguous_input():
    x = torch.randn(3, 8, 10, 12)[:, ::2, :, 1:]  # a channel-strided slice, W = 11
    with torch.no_grad():
        _same(relu_pool(x), relu_pool_reference(x))


def test_gradients_run_the_literal_ops():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert relu_pool_backend(x) == "reference"
    with torch.no_grad():
        assert relu_pool_backend(x) == "cpp"
    assert torch.autograd.gradcheck(relu_pool, (x,))
    assert torch.autograd.gradgradcheck(relu_pool, (x,))


def test_other_dtypes_use_the_literal_ops():
    x = torch.randn(2, 3, 4, 4).bfloat16()
    assert relu_pool_backend(x) == "reference"
    with torch.no_grad():
        _same(relu_pool(x), relu_pool_reference(x))


def test_opcheck_and_compile():
    x = torch.randn(2, 3, 6, 7).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.glamor_fast.relu_pool.default, (x,))
    torch._dynamo.reset()
    fn = torch.compile(ReLUMaxPool2d(), fullgraph=True)
    with torch.inference_mode():
        _same(fn(x), F.max_pool2d(F.relu(x), 2))


def test_unbatched_input_like_maxpool2d():
    x = torch.randn(5, 6, 7)
    with torch.no_grad():
        _same(relu_pool(x), F.max_pool2d(F.relu(x), 2))


@pytest.mark.parametrize("shape, match", [((2, 3), r"\(N, C, H, W\)"), ((2, 3, 1, 4), "H and W")])
def test_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        relu_pool(torch.randn(shape))
