"""Loads the compiled extension ``glamor_fast._C`` (csrc/), which registers the ops' C++ kernels.

Every op package asks here whether its kernels are present; the op schemas and their kernels
live in csrc/<op>/. Nothing here knows about any one op.
"""
from __future__ import annotations

from typing import Optional

import torch

BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` from the repository root "
    "(torch must be installed first)"
)

try:
    from glamor_fast import _C  # noqa: F401  (loading it registers the ops)

    _LOAD_ERROR: Optional[str] = None
except ImportError as exc:  # not built, or built against another torch
    _C = None
    _LOAD_ERROR = f"the compiled extension glamor_fast._C cannot be imported ({exc}); {BUILD_HINT}"


def load_error() -> Optional[str]:
    """None when glamor_fast._C is loaded, else why not and how to build it."""
    return _LOAD_ERROR


def kernel_missing(op: str, dispatch_key: str = "CPU") -> Optional[str]:
    """None when glamor_fast._C registered a ``dispatch_key`` kernel for ``glamor_fast::<op>``,
    else why not."""
    if _LOAD_ERROR is not None:
        return _LOAD_ERROR
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"glamor_fast::{op}", dispatch_key):
        return f"glamor_fast._C has no {dispatch_key} kernel for {op}; rebuild it: {BUILD_HINT}"
    return None


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout the kernels' outputs follow: channels_last for a channels_last (and not also
    contiguous) x, contiguous otherwise (csrc's is_channels_last for the C++ kernels)."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def empty_like_layout(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor of x's shape, dtype and device in the kernels' output layout for x."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
