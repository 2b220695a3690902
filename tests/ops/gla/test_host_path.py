"""The host path around the GLA op's and the block's kernels: how many ATen calls one
forward+backward makes (torch.profiler, outermost calls, the autograd engine's included), and
that none of them reads a tensor's value on the host (aten::item: a sync on a GPU)."""
from __future__ import annotations

import pytest
import torch

from glamor_fast.models.encoders import FusedBNReLUPool2d
from glamor_fast.ops.gla import gla
from glamor_fast.ops.gla.hidden_stats import gla_hidden_stats
from glamor_fast.ops.host_calls import count_aten_calls
from glamor_fast.ops.registry import available_backends
from tests.helpers import make_gla_inputs

# Issue 18's bar: at most 20 outermost ATen calls per GLA forward+backward at a tiny shape.
# Of those, the autograd engine makes one aten::detach per leaf as it stores its gradient
# (6 leaves, 8 with the folded BatchNorm); the op itself makes 4 in the forward (its 4 results)
# and 8 in the backward (its 8 gradients).
MAX_GLA_CALLS = 20
ITEM = ("aten::item", "aten::_local_scalar_dense")


def _gla_step(backend, dtype=torch.float32, folded_bn=False, shape=None):
    shape = shape or dict(B=1, Df=8, Dc=8, H=1, W=1, Hd=8)
    inputs = [None if t is None else t.to(dtype).requires_grad_(True)
              for t in make_gla_inputs(**shape, folded_bn=folded_bn)]
    leaves = [t for t in inputs if t is not None]
    B, Dc, H, W = inputs[1].shape
    grads = (torch.randn(B, Dc, dtype=dtype), torch.randn(B, H, W, dtype=dtype))

    def step():
        for t in leaves:
            t.grad = None
        torch.autograd.backward(gla(*inputs, backend=backend), grads)
        return leaves

    return step


@pytest.mark.parametrize("folded_bn", [False, True], ids=["plain", "folded_bn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpp_forward_backward_stays_within_the_call_budget(dtype, folded_bn):
    step = _gla_step("cpp", dtype, folded_bn)
    step()
    counts = count_aten_calls(step)
    assert sum(counts.values()) <= MAX_GLA_CALLS, counts
    assert not any(counts[name] for name in ITEM), counts
    leaves = step()
    assert all(t.grad is not None for t in leaves)


@pytest.mark.parametrize("backend", available_backends(torch.device("cpu"), torch.float32))
def test_no_host_reads_of_tensor_values(backend):
    """No backend reads a value back to the host in a forward+backward (the model's shape at a
    small batch, and 16-bit through cpp's float32 compute)."""
    shapes = [dict(B=3, Df=16, Dc=16, H=7, W=7, Hd=8)]
    for shape in shapes:
        for dtype in ([torch.float32, torch.bfloat16] if backend == "cpp" else [torch.float32]):
            step = _gla_step(backend, dtype, folded_bn=True, shape=shape)
            step()
            counts = count_aten_calls(step)
            assert not any(counts[name] for name in ITEM), (backend, dtype, counts)


def test_missing_output_gradients_are_zeros_without_materialising_them():
    """Only pooled gets a gradient: autograd passes None for attn and lse, the backward op takes
    them as zeros, and the gradients equal those of a zero cotangent given explicitly."""
    x = [t.requires_grad_(True) for t in make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=5)[:6]]
    gp = torch.randn(2, 4, dtype=torch.float64)
    pooled, attn = gla(*x, backend="cpp")
    alone = torch.autograd.grad(pooled, x, gp)
    pooled, attn = gla(*x, backend="cpp")
    both = torch.autograd.grad((pooled, attn), x, (gp, torch.zeros_like(attn)))
    for a, b in zip(alone, both):
        assert torch.equal(a, b)


def test_block_forward_backward_calls():
    """The cpp block on channels_last input (the training layout): its two ops' results, the
    running statistics' two foreach updates and one scale, and the engine's three detaches."""
    block = FusedBNReLUPool2d(8, backend="cpp")
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(2, 8, 2, 2).contiguous(memory_format=torch.channels_last)

    def step():
        for t in (x, block.weight, block.bias):
            t.grad = None
        torch.autograd.backward(block(x), grad)

    step()
    counts = count_aten_calls(step)
    assert not any(counts[name] for name in ITEM), counts
    assert sum(counts.values()) <= 16, counts


def test_hidden_stats_reads_no_values_on_the_host():
    face, context, w1, b1 = (t.requires_grad_(True) for t in make_gla_inputs(B=2, Df=4, Dc=5, H=3, W=3, Hd=6)[:4])

    def step():
        mean, var = gla_hidden_stats(face, context, w1, b1)
        torch.autograd.backward((mean, var), (torch.ones_like(mean), torch.ones_like(var)))

    step()
    counts = count_aten_calls(step)
    assert not any(counts[name] for name in ITEM), counts
