"""The fused encoder block: BatchNorm2d (batch statistics) -> ReLU -> MaxPool2d(2).

Maths (per channel c over the n = N*H*W values of x (N, C, H, W)):
    mean, var = mean(x), mean((x - mean)^2)        (biased; the running var gets var * n/(n-1))
    y = maxpool2x2(relu((x - mean) / sqrt(var + eps) * weight + bias))      (N, C, H//2, W//2)
The pool floors odd H/W, the first maximum of a window wins and NaN propagates, as
``nn.MaxPool2d(2)`` on the CPU. Running statistics are updated exactly as ``nn.BatchNorm2d``.

Backends (chosen by ``glamor_fast.ops.registry``, op "bn_relu_pool"):
    "reference": ``spec.py``, the literal ``F.batch_norm -> F.relu -> F.max_pool2d`` (any device, dtype);
    "cpp": ``compiled.py`` (csrc/bn_relu_pool/), CPU float32/float64, two passes forward, two backward;
    "triton": ``triton.py`` / ``triton_kernels.py``, CUDA (and the Triton interpreter on CPU);
    both fused backends share one contract and autograd (``autograd.py``).
Eval mode (running statistics) always uses the reference ops; ``optimize_for_inference`` folds
the BatchNorm into the conv before that matters.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from ..registry import choose_for_compile
from .compiled import bn_relu_pool_cpp
from .compiled import unavailable_reason as cpp_unavailable_reason  # noqa: F401  (the registry's)
from .spec import bn_relu_pool_reference

_TRITON: dict = {}  # "module", filled once


def _triton_module():
    """The Triton backend (imported on first use: it needs triton)."""
    if "module" not in _TRITON:
        from . import triton as module
        _TRITON["module"] = module
    return _TRITON["module"]


if torch.cuda.is_available():
    # Loaded now, so that torch.compile of backend="triton" never traces the import; without
    # triton, backend="triton" reports the ImportError when asked.
    try:
        _triton_module()
    except ImportError:
        pass


def triton_unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the Triton block runs on tensors of this device and dtype, else why not."""
    device = torch.device(device)
    interpreted = os.environ.get("TRITON_INTERPRET", "0") == "1" and device.type == "cpu"
    if not (device.type == "cuda" or interpreted) or dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return ("the Triton block runs on CUDA float32/float16/bfloat16 tensors "
                f"(CPU only under TRITON_INTERPRET=1), got {device.type} {dtype}")
    try:
        _triton_module()
    except ImportError as exc:
        return f"triton is not importable ({exc}); install it with `pip install triton==3.9.0`"
    return None


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"bn_relu_pool: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    N, C, H, W = x.shape
    if weight.shape != (C,):
        raise ValueError(f"bn_relu_pool: weight must be ({C},) for x {tuple(x.shape)}, got {tuple(weight.shape)}")
    if H < 2 or W < 2:
        raise ValueError(f"bn_relu_pool: H and W must be >= 2 for a 2x2 pool, got x {tuple(x.shape)}")
    if N * H * W <= 1:
        raise ValueError(f"bn_relu_pool: expected more than 1 value per channel when training, got x {tuple(x.shape)}")


def bn_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 running_mean: Optional[torch.Tensor] = None, running_var: Optional[torch.Tensor] = None,
                 momentum: float = 0.1, eps: float = 1e-5, backend: str = "auto") -> torch.Tensor:
    """Training-mode block: y (N, C, H//2, W//2) from x (N, C, H, W), weight/bias (C,).

    Uses batch statistics; running_mean/running_var (C,), when given, are updated in place as
    ``F.batch_norm(training=True, momentum=momentum)`` does (``momentum`` is the exponential
    average factor: nn.BatchNorm2d's momentum, or 1/num_batches_tracked for momentum=None).
    Output memory format follows x (channels_last in, channels_last out).
    """
    _check(x, weight)
    backend = choose_for_compile(backend, x.device, x.dtype, "bn_relu_pool")
    if backend == "reference":
        return bn_relu_pool_reference(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if backend == "cpp":
        y, mean, var = bn_relu_pool_cpp(x, weight, bias, eps)
    else:
        y, mean, var = _triton_module().bn_relu_pool_triton(x, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        with torch.no_grad():  # mean and var are non-differentiable outputs: no detach needed
            if mean.dtype != running_mean.dtype:
                mean, var = mean.to(running_mean.dtype), var.to(running_var.dtype)
            # F.batch_norm's update, (1 - m) r + m s, as two foreach calls for both buffers
            torch._foreach_mul_((running_mean, running_var), 1 - momentum)
            torch._foreach_add_((running_mean, running_var), (mean, var * (n / (n - 1))), alpha=momentum)
    return y
