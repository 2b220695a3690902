"""The fused block's cpp backend: ``glamor_fast::bn_relu_pool_forward/backward`` of glamor_fast._C
(csrc/bn_relu_pool/), CPU float32/float64, two passes forward and two backward."""
from __future__ import annotations

from typing import Optional

import torch

from ..extension import kernel_missing
from .autograd import block_backward_fake, pooled_like, register_block_autograd

_CPP_REASON = kernel_missing("bn_relu_pool_forward")  # fixed at import, so torch.compile traces the dispatch as a constant

if _CPP_REASON is None:
    @torch.library.register_fake("glamor_fast::bn_relu_pool_forward")
    def _forward_fake(x, weight, bias, eps):
        C = x.shape[1]
        return (pooled_like(x), pooled_like(x, torch.uint8), pooled_like(x),
                x.new_empty((C,)), x.new_empty((C,)))

    torch.library.register_fake("glamor_fast::bn_relu_pool_backward")(block_backward_fake)
    register_block_autograd("glamor_fast::bn_relu_pool_forward", torch.ops.glamor_fast.bn_relu_pool_backward)


def unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the cpp block runs on tensors of this device and dtype, else why not."""
    if _CPP_REASON is not None:
        return _CPP_REASON
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return f"the cpp block runs on CPU float32/float64 tensors, got {torch.device(device).type} {dtype}"
    return None


def bn_relu_pool_cpp(x, weight, bias, eps):
    """(y (N, C, H//2, W//2) differentiable, batch mean (C,), biased batch var (C,))."""
    y, _idx, _xp, mean, var = torch.ops.glamor_fast.bn_relu_pool_forward(x, weight, bias, eps)
    return y, mean, var
