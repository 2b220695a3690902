"""The fused encoder block: BatchNorm2d (batch statistics) -> ReLU -> MaxPool2d(2).

Maths (per channel c over the n = N*H*W values of x (N, C, H, W)):
    mean, var = mean(x), mean((x - mean)^2)        (biased; the running var gets var * n/(n-1))
    y = maxpool2x2(relu((x - mean) / sqrt(var + eps) * weight + bias))      (N, C, H//2, W//2)
The pool floors odd H/W, the first maximum of a window wins and NaN propagates, as
``nn.MaxPool2d(2)`` on the CPU. Running statistics are updated exactly as ``nn.BatchNorm2d``.

Backends:
    "reference": the literal ``F.batch_norm -> F.relu -> F.max_pool2d`` (any device, dtype);
    "cpp": csrc/cpu/bn_relu_pool.cpp, CPU float32/float64, two passes forward, two backward;
    "triton": kernels/bn_relu_pool.py, CUDA (and the Triton interpreter on CPU);
    "auto": cpp for CPU float32/float64, else reference. On CUDA the Triton block measured 2.4x
        slower than cuDNN's BatchNorm + ReLU + MaxPool2d (H200, (32, 32, 112, 112) fwd+bwd:
        2.2 vs 0.9 ms; bench/RESULTS.md), so it runs only when asked for by name.
Eval mode (running statistics) always uses the reference ops; ``optimize_for_inference`` folds
the BatchNorm into the conv before that matters.
"""
from __future__ import annotations

import importlib
import os
from typing import Optional

import torch
import torch.nn.functional as F

from . import _ext
from ._ext import memory_format_of  # noqa: F401  (kernels/bn_relu_pool.py imports it from here)

BACKENDS = ("auto", "reference", "cpp", "triton")


def bn_relu_pool_reference(x, weight, bias, running_mean=None, running_var=None, training=True,
                           momentum=0.1, eps=1e-5):
    """The unfused block with torch ops; updates the running statistics in place like F.batch_norm."""
    z = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return F.max_pool2d(F.relu(z), 2)


def pooled_like(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """Empty (N, C, H//2, W//2) in x's device, layout and (unless given) dtype, for x (N, C, H, W)."""
    N, C, H, W = x.shape
    return torch.empty((N, C, H // 2, W // 2), dtype=dtype or x.dtype, device=x.device,
                       memory_format=memory_format_of(x))


def block_backward_fake(grad_y, x, weight, y, idx, xp, mean, var, eps):
    """Fake kernel of a block backward op (cpp and Triton): grad_x like x, grad_weight, grad_bias."""
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x)),
            weight.new_empty(weight.shape), weight.new_empty(weight.shape))


def register_block_autograd(forward_name: str, backward_op) -> None:
    """Autograd for a block forward op ``(x, weight, bias, eps) -> (y, idx, xp, mean, var)``
    whose gradients ``backward_op(grad_y, x, weight, y, idx, xp, mean, var, eps)`` returns as
    (grad_x, grad_weight, grad_bias). Shared by the cpp and Triton ops."""

    def setup_context(ctx, inputs, output):
        x, weight, bias, eps = inputs
        y, idx, xp, mean, var = output
        ctx.eps = eps
        ctx.mark_non_differentiable(idx, xp, mean, var)
        # No zero tensors for the four outputs that never get a gradient: materialising them
        # zero-filled ~1 ms per call at the first block (aten::fill_, 2 threads).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight, y, idx, xp, mean, var)

    def backward(ctx, grad_y, _gi, _gxp, _gm, _gv):
        x, weight, y, idx, xp, mean, var = ctx.saved_tensors
        grad_y = torch.zeros_like(y) if grad_y is None else grad_y
        dx, dw, db = backward_op(grad_y, x, weight, y, idx, xp, mean, var, ctx.eps)
        return dx, dw, db, None

    torch.library.register_autograd(forward_name, backward, setup_context=setup_context)


def _register_cpp() -> None:
    @torch.library.register_fake("glamor_fast::bn_relu_pool_forward")
    def _forward_fake(x, weight, bias, eps):
        C = x.shape[1]
        return (pooled_like(x), pooled_like(x, torch.uint8), pooled_like(x),
                x.new_empty((C,)), x.new_empty((C,)))

    torch.library.register_fake("glamor_fast::bn_relu_pool_backward")(block_backward_fake)
    register_block_autograd("glamor_fast::bn_relu_pool_forward", torch.ops.glamor_fast.bn_relu_pool_backward)


_CPP_REASON = _ext.cpu_kernel_missing("bn_relu_pool_forward")  # fixed at import, so torch.compile traces the dispatch as a constant


def cpp_available() -> Optional[str]:
    """None when the cpp kernel is registered, else why not."""
    return _CPP_REASON


if _CPP_REASON is None:
    _register_cpp()

_TRITON: dict = {}  # "module", filled once


def _triton_module():
    """glamor_fast.kernels.bn_relu_pool when installed; kernels.bn_relu_pool in a source checkout."""
    if "module" not in _TRITON:
        try:
            module = importlib.import_module("glamor_fast.kernels.bn_relu_pool")  # needs triton
        except ModuleNotFoundError as exc:
            if exc.name not in ("glamor_fast.kernels", "glamor_fast.kernels.bn_relu_pool"):
                raise
            module = importlib.import_module("kernels.bn_relu_pool")  # repository root on sys.path
        _TRITON["module"] = module
    return _TRITON["module"]


if torch.cuda.is_available():
    # Loaded now, so that torch.compile of backend="triton" never traces the import; without
    # triton, resolve_backend("triton") raises the ImportError when asked.
    try:
        _triton_module()
    except ImportError:
        pass


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The concrete backend for ``x``; raises ValueError for an unknown or unusable one."""
    if backend not in BACKENDS:
        raise ValueError(f"bn_relu_pool: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    fused_dtype = x.dtype in (torch.float32, torch.float64)
    if backend == "auto":
        if x.device.type == "cpu" and fused_dtype and cpp_available() is None:
            return "cpp"
        return "reference"
    if backend == "cpp":
        reason = cpp_available()
        if reason is None and (x.device.type != "cpu" or not fused_dtype):
            reason = f"the cpp block runs on CPU float32/float64 tensors, got {x.device.type} {x.dtype}"
        if reason is not None:
            raise ValueError(f"bn_relu_pool: backend 'cpp' unavailable: {reason}")
    if backend == "triton":
        interpreted = os.environ.get("TRITON_INTERPRET", "0") == "1" and x.device.type == "cpu"
        if not (x.device.type == "cuda" or interpreted) or x.dtype == torch.float64:
            raise ValueError("bn_relu_pool: backend 'triton' runs on CUDA float32/float16/bfloat16 tensors "
                             f"(CPU only under TRITON_INTERPRET=1), got {x.device.type} {x.dtype}")
        _triton_module()
    return backend


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
    backend = resolve_backend(backend, x)
    if backend == "reference":
        return bn_relu_pool_reference(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if backend == "cpp":
        y, _idx, _xp, mean, var = torch.ops.glamor_fast.bn_relu_pool_forward(x, weight, bias, eps)
    else:
        y, mean, var = _triton_module().bn_relu_pool_triton(x, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            unbiased = var.detach().to(running_var.dtype) * (n / (n - 1))
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return y
