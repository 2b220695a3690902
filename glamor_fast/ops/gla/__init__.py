"""The GLA op: validate once, pick the backend, call it.

Where things are: the maths in docs/gla.md; ``spec`` (the reference, the spec every backend is
tested against, and the split formulation, the best plain-PyTorch code); ``checks`` (argument
validation); ``compiled`` (the cpp and cuda backends of glamor_fast._C, csrc/gla/); ``triton`` and
``triton_kernels`` (the Triton backend); ``hidden_stats`` (the hidden layer's batch statistics for
a training-mode BatchNorm on it). The backend is chosen by ``glamor_fast.ops.registry``.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..registry import available_backends, choose_for_compile
from .checks import check_gla_inputs
from .spec import gla_reference, gla_split


def _run_reference(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, recompute):
    """The reference materialises the hidden layer whatever ``recompute`` says (it is the spec)."""
    return gla_reference(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)


def _runner(name: str):
    """The function that runs backend ``name`` (imported on first use)."""
    if name == "reference":
        return _run_reference
    if name == "triton":
        from .triton import gla as run
    else:
        from .compiled import gla as run
    return run


def gla(
    face: torch.Tensor,
    context: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    hidden_scale: Optional[torch.Tensor] = None,
    hidden_shift: Optional[torch.Tensor] = None,
    backend: str = "auto",
    recompute: Optional[bool] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global-Local Attention on the chosen backend; same maths and outputs as ``gla_reference``.

    Args:
        face (B, Df), context (B, Dc, H, W) any strides, w1 (Hd, Df + Dc), b1 (Hd,), w2 (Hd,),
        b2 scalar, hidden_scale / hidden_shift optional (Hd,); one dtype and device for all.
        backend: "auto" (fastest available for the device and dtype; logs its choice once),
            "reference", "triton", "cpp" or "cuda". An unavailable backend raises, naming the
            available ones; there is no silent fallback.
        recompute: the hidden layer z = W1c v_ij (B, N, Hd) for the backward.
            True: never stored (the memory-lean mode): the backward recomputes it, one GEMM more.
            False: the forward saves it and the backward reads it (cpp backend only; the
            GPU kernels always recompute, and refuse False).
            None (default): cpp saves it when a backward will follow (grad mode on and an input
            requires grad) and it takes at most ``compiled.SAVE_HIDDEN_MAX_BYTES`` (64 MiB: paper
            shape B=256, 7x7, Hd=128 is 6.4 MB); else, and on every other backend, recompute.
            The reference materialises everything whatever this says.
    Returns:
        pooled (B, Dc) and attn (B, H, W), both differentiable.

    The op computes in its inputs' dtype: autocast is switched off around it (cast the inputs
    to choose a precision, as GlobalLocalAttention does with the encoder's output dtype).
    """
    B = check_gla_inputs(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)[0]
    run = _runner(choose_for_compile(backend, context.device, context.dtype))
    if B == 0:  # empty batch: nothing for a kernel to do; keep the autograd graph
        run = _run_reference
    if not torch.is_autocast_enabled(context.device.type):
        return run(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, recompute)
    with torch.autocast(context.device.type, enabled=False):
        return run(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, recompute)


__all__ = ["gla", "gla_reference", "gla_split", "available_backends", "check_gla_inputs"]
