"""The GLA op's compiled backends, "cpp" (CPU) and "cuda", from ``glamor_fast._C``.

The op schemas live in csrc/gla/ and their CPU / CUDA kernels in csrc/gla/cpu and csrc/gla/cuda;
here we add what torch needs from Python: fake (meta) kernels for torch.compile and autograd
formulas (``torch.library``), and the two backends' availability.

The ops ``glamor_fast::gla_forward`` / ``gla_backward`` follow the op's one contract
(``contract.py``: schemas, fakes, autograd); their schema is declared in csrc/gla/schema.cpp.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..extension import BUILD_HINT, kernel_missing, load_error
from . import contract

if load_error() is None:
    contract.register("gla_forward", "gla_backward")


def gla(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, recompute=None):
    """(pooled (B, Dc), attn (B, H, W)) through the compiled op; differentiable in every input.

    ``recompute``: see ``contract.save_hidden`` and ``glamor_fast.ops.gla``.
    """
    device = context.device.type
    keep = contract.save_hidden(recompute, device == "cpu", device, face, context, w1, b1, w2, b2,
                                hidden_scale, hidden_shift)
    out = contract.apply("gla_forward", "gla_backward", keep, face, context, w1, b1, w2, b2, hidden_scale,
                         hidden_shift)
    return out[0], out[1]


def cpp_unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the cpp backend runs on tensors of this device and dtype, else why not."""
    if torch.device(device).type != "cpu":
        return f"the cpp backend runs on CPU tensors, not {torch.device(device).type} (use 'cuda' or 'triton')"
    return kernel_missing("gla_forward", "CPU")


def cuda_unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the cuda backend runs on tensors of this device and dtype, else why not."""
    if load_error() is not None:
        return load_error()
    if torch.device(device).type != "cuda":
        return f"the cuda backend runs on CUDA tensors, not {torch.device(device).type} (use 'cpp' for CPU)"
    if kernel_missing("gla_forward", "CUDA") is not None:
        return (
            "glamor_fast._C was built without CUDA (the build needs a CUDA build of torch and "
            f"CUDA_HOME / nvcc); with both present, {BUILD_HINT}"
        )
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None
