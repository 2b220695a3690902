"""Backend "cpp": the fused multithreaded CPU kernel of glamor_fast._C (csrc/cpu/gla.cpp).

Runs on CPU tensors of dtype float32 / float64 (float16 / bfloat16 accumulate in float32).
Fake kernels and autograd for the op are registered in ``_ext``.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _ext
from ._ext import gla  # noqa: F401  (the backend contract)


def unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    if _ext.load_error() is not None:
        return _ext.load_error()
    if torch.device(device).type != "cpu":
        return f"the cpp backend runs on CPU tensors, not {torch.device(device).type} (use 'cuda' or 'triton')"
    if not _ext.has_kernel("CPU"):
        return f"glamor_fast._C has no CPU kernel registered; rebuild it: {_ext.BUILD_HINT}"
    return None
