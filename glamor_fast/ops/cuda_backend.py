"""Backend "cuda": the CUDA kernels of glamor_fast._C (csrc/cuda/gla.cu).

Runs on CUDA tensors of dtype float32 / float16 / bfloat16 (fp32 accumulation) and float64.
Shares the fake kernels and autograd wiring of the cpp backend (``_ext``).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _ext
from ._ext import gla  # noqa: F401  (the backend contract)


def unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    if _ext.load_error() is not None:
        return _ext.load_error()
    if torch.device(device).type != "cuda":
        return f"the cuda backend runs on CUDA tensors, not {torch.device(device).type} (use 'cpp' for CPU)"
    if not _ext.has_kernel("CUDA"):
        return (
            "glamor_fast._C was built without CUDA (the build needs a CUDA build of torch and "
            f"CUDA_HOME / nvcc); with both present, {_ext.BUILD_HINT}"
        )
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None
