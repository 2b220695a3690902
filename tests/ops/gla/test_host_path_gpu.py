"""On a GPU: the fused ops' forward+backward never synchronises with the host (a sync would
stall the launch queue and break CUDA-graph capture), and each captures in torch.cuda.graph
and replays to eager's results. Written for issue 18; they run only with a CUDA device."""
from __future__ import annotations

import pytest
import torch

from glamor_fast.models.encoders import FusedBNReLUPool2d
from glamor_fast.ops.gla import gla
from glamor_fast.ops.registry import available_backends
from tests.conftest import requires_cuda
from tests.helpers import make_gla_inputs

CUDA = torch.device("cuda")


def _fused_gla_backends():
    if not torch.cuda.is_available():
        return []
    return [n for n in available_backends(CUDA, torch.float32) if n != "reference"]


def _gla_leaves(B=8, H=7, W=7):
    x = make_gla_inputs(B=B, Df=32, Dc=32, H=H, W=W, Hd=16, folded_bn=True)
    return [t.float().to(CUDA).requires_grad_(True) for t in x]


@requires_cuda
@pytest.mark.parametrize("backend", _fused_gla_backends())
def test_gla_forward_backward_makes_no_sync(backend):
    leaves = _gla_leaves()
    gp, ga = torch.randn(8, 32, device=CUDA), torch.randn(8, 7, 7, device=CUDA)
    torch.autograd.backward(gla(*leaves, backend=backend), (gp, ga))  # warm-up: autotuning may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        torch.autograd.backward(gla(*leaves, backend=backend), (gp, ga))
    finally:
        torch.cuda.set_sync_debug_mode("default")


@requires_cuda
@pytest.mark.parametrize("backend", _fused_gla_backends())
def test_gla_forward_backward_captures_in_a_cuda_graph(backend):
    leaves = _gla_leaves()
    gp, ga = torch.randn(8, 32, device=CUDA), torch.randn(8, 7, 7, device=CUDA)

    def step():
        for t in leaves:
            t.grad = None
        pooled, attn = gla(*leaves, backend=backend)
        grads = torch.autograd.grad((pooled, attn), leaves, (gp, ga))
        return (pooled, attn, *grads)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            eager = step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    for got, want in zip(captured, eager):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@requires_cuda
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_block_forward_backward_makes_no_sync_and_captures(backend):
    block = FusedBNReLUPool2d(16, backend=backend).to(CUDA)
    x = torch.randn(4, 16, 32, 32, device=CUDA).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    g = torch.randn(4, 16, 16, 16, device=CUDA).contiguous(memory_format=torch.channels_last)
    torch.autograd.backward(block(x), g)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        torch.autograd.backward(block(x), g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        block(x)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        y = block(x)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(y).all()
