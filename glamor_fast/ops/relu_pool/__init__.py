"""ReLU -> MaxPool2d(2) in one pass, for inference: what is left of an encoder block once its
BatchNorm is folded into the conv (``optimize_for_inference``).

Maths: y = maxpool2x2(relu(x)) = relu(maxpool2x2(x)), x (N, C, H, W) -> y (N, C, H//2, W//2),
floored; a NaN in a window gives NaN. Output memory format follows x.

``relu_pool(x)`` runs the ``cpp`` kernel (csrc/relu_pool/: one read of x, one write of y,
no indices) for CPU float32/float64 tensors that need no gradient; otherwise the literal
``F.max_pool2d(F.relu(x), 2)``: on CUDA (cuDNN's ops), for other dtypes, and whenever autograd
records (the kernel keeps no argmax, so it has no backward). ``relu_pool_backend(x)`` says which.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..bn_relu_pool.autograd import pooled_like
from ..extension import kernel_missing
from ..registry import choose_for_compile

_CPP_REASON = kernel_missing("relu_pool")  # fixed at import, so torch.compile traces the dispatch as a constant

if _CPP_REASON is None:
    torch.library.register_fake("glamor_fast::relu_pool")(pooled_like)


def cpp_unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the cpp kernel runs on tensors of this device and dtype (without autograd)."""
    if _CPP_REASON is not None:
        return _CPP_REASON
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return f"the cpp relu_pool runs on CPU float32/float64 tensors, got {torch.device(device).type} {dtype}"
    return None


def relu_pool_reference(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(F.relu(x), 2)


def relu_pool_backend(x: torch.Tensor) -> str:
    """"cpp" or "reference": what ``relu_pool(x)`` runs for this tensor in the current grad mode
    (the kernel keeps no argmax, so a recording autograd gets the reference)."""
    if x.requires_grad and torch.is_grad_enabled():
        return "reference"
    return choose_for_compile("auto", x.device, x.dtype, "relu_pool")


def relu_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H//2, W//2): ``max_pool2d(relu(x), 2)``; see the module docstring.
    An unbatched (C, H, W) input gives (C, H//2, W//2), as nn.MaxPool2d does."""
    if x.dim() == 3:
        return relu_pool(x.unsqueeze(0)).squeeze(0)
    if x.dim() != 4:
        raise ValueError(f"relu_pool: x must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"relu_pool: H and W must be >= 2 for a 2x2 pool, got x {tuple(x.shape)}")
    if relu_pool_backend(x) == "cpp":
        return torch.ops.glamor_fast.relu_pool(x)
    return relu_pool_reference(x)


class ReLUMaxPool2d(nn.Module):
    """``nn.ReLU`` followed by ``nn.MaxPool2d(2)`` as one module (no parameters): ``relu_pool``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_pool(x)
