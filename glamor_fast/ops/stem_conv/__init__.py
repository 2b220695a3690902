"""The encoders' first layer for inference in one pass: conv 3x3 (stride 1, zero padding 1) over
an image with few channels, + bias, ReLU, MaxPool2d(2).

Maths: y = maxpool2x2(relu(conv2d(x, weight, bias, padding=1))), x (N, Cin, H, W) float32,
weight (Cout, Cin, 3, 3), bias (Cout,) or None -> y (N, Cout, H//2, W//2) channels_last.

Why a kernel: with Cin = 3 each output is 27 multiply-adds, too few for oneDNN's blocked conv
kernels (about 50 GFLOP/s against ~370 for the later layers on the 2-core Xeon), and the conv's
full-size output is the network's largest tensor. csrc/stem_conv/ vectorises over Cout and
writes only the pooled quarter.

``Conv3x3ReLUPool2d`` is an nn.Conv2d (same parameters and state_dict keys) whose forward is the
whole sequence. It runs the kernel for CPU float32 input with Cin <= 4, Cout a multiple of 16,
when autograd is not recording; otherwise the literal conv2d -> relu -> max_pool2d
(``stem_backend(module, x)`` says which).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..extension import kernel_missing
from ..registry import choose_for_compile
from ..relu_pool import relu_pool

_CPP_REASON = kernel_missing("stem_conv_relu_pool")  # fixed at import (torch.compile)

if _CPP_REASON is None:
    @torch.library.register_fake("glamor_fast::stem_conv_relu_pool")
    def _fake(x, weight, bias):
        N, _, H, W = x.shape
        return torch.empty((N, weight.shape[0], H // 2, W // 2), dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)


def cpp_unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the cpp kernel runs on tensors of this device and dtype (without autograd)."""
    if _CPP_REASON is not None:
        return _CPP_REASON
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        return f"the cpp stem conv runs on CPU float32 tensors, got {torch.device(device).type} {dtype}"
    return None


def conv_fits(conv: nn.Conv2d) -> bool:
    """Whether the kernel computes ``conv``: 3x3, stride 1, zero padding 1, no dilation or groups,
    1 to 4 input channels, a multiple of 16 output channels."""
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and 1 <= conv.in_channels <= 4 and conv.out_channels % 16 == 0)


class Conv3x3ReLUPool2d(nn.Conv2d):
    """nn.Conv2d -> nn.ReLU -> nn.MaxPool2d(2) as one module; build it with ``from_conv``."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "Conv3x3ReLUPool2d":
        if not conv_fits(conv):
            raise ValueError(f"Conv3x3ReLUPool2d: the kernel takes 3x3 stride-1 zero-padded convs with 1-4 input "
                             f"and a multiple of 16 output channels, got {conv}")
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.load_state_dict(conv.state_dict())
        return new

    def stem_backend(self, x: torch.Tensor) -> str:
        """"cpp" or "reference": what ``forward(x)`` runs for this input in the current grad mode."""
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if grad or self.weight.dtype != x.dtype or x.dim() != 4 or x.shape[1] != self.in_channels:
            return "reference"
        return choose_for_compile("auto", x.device, x.dtype, "stem_conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # unbatched (Cin, H, W), as nn.Conv2d accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != 4 or x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(f"Conv3x3ReLUPool2d: x must be (N, {self.in_channels}, H >= 2, W >= 2), "
                             f"got shape {tuple(x.shape)}")
        if self.stem_backend(x) == "cpp":
            return torch.ops.glamor_fast.stem_conv_relu_pool(x, self.weight, self.bias)
        return relu_pool(F.conv2d(x, self.weight, self.bias, padding=1))
