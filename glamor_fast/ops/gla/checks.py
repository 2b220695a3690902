"""Argument validation shared by every GLA backend.

Every public entry point (``gla``, ``gla_reference`` and the modules) calls
:func:`check_gla_inputs` once, so a bad call fails here with a message naming the
argument, its shape, dtype or device, and never inside a kernel.
"""
from __future__ import annotations

from typing import Optional

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _require_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"gla: `{name}` must be a torch.Tensor, got {type(value).__name__}")
    return value


def _require_shape(name: str, t: torch.Tensor, expected: tuple, meaning: str) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(
            f"gla: `{name}` must have shape {meaning} = {tuple(expected)}, got {tuple(t.shape)}"
        )


def check_gla_inputs(
    face: torch.Tensor,
    context: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    hidden_scale: Optional[torch.Tensor] = None,
    hidden_shift: Optional[torch.Tensor] = None,
) -> tuple[int, int, int, int, int, int]:
    """Validate the GLA arguments and return ``(B, Df, Dc, H, W, Hd)``.

    Expected: ``face`` (B, Df); ``context`` (B, Dc, H, W), any strides; ``w1`` (Hd, Df+Dc);
    ``b1`` (Hd,); ``w2`` (Hd,); ``b2`` a scalar (0-d or one-element 1-d) tensor;
    ``hidden_scale`` and ``hidden_shift`` both None or both (Hd,). All tensors share one
    floating dtype (float32, float64, float16 or bfloat16) and one device.
    """
    face = _require_tensor("face", face)
    context = _require_tensor("context", context)
    if face.dim() != 2:
        raise ValueError(
            f"gla: `face` must be 2-D (B, Df); got {face.dim()}-D with {_describe(face)} "
            "(pool a (B, Df, h, w) face map first, or use GlobalLocalAttention which does)"
        )
    if context.dim() != 4:
        raise ValueError(
            f"gla: `context` must be 4-D (B, Dc, H, W); got {context.dim()}-D with {_describe(context)}"
        )
    B, Df = face.shape
    Bc, Dc, H, W = context.shape
    if Bc != B:
        raise ValueError(f"gla: batch sizes differ: `face` has B={B}, `context` has B={Bc}")
    if Df == 0 or Dc == 0:
        raise ValueError(f"gla: feature sizes must be positive, got Df={Df}, Dc={Dc}")
    if H * W == 0:
        raise ValueError(f"gla: `context` must have at least one cell, got H={H}, W={W}")

    w1 = _require_tensor("w1", w1)
    if w1.dim() != 2 or w1.shape[1] != Df + Dc or w1.shape[0] == 0:
        raise ValueError(
            f"gla: `w1` must have shape (Hd, Df + Dc) = (Hd, {Df + Dc}) with Hd >= 1, "
            f"got {tuple(w1.shape)}"
        )
    Hd = w1.shape[0]
    b1 = _require_tensor("b1", b1)
    _require_shape("b1", b1, (Hd,), "(Hd,)")
    w2 = _require_tensor("w2", w2)
    _require_shape("w2", w2, (Hd,), "(Hd,)")
    b2 = _require_tensor("b2", b2)
    if b2.numel() != 1 or b2.dim() > 1:
        raise ValueError(f"gla: `b2` must be a scalar tensor (shape () or (1,)), got {tuple(b2.shape)}")
    if (hidden_scale is None) != (hidden_shift is None):
        raise ValueError("gla: `hidden_scale` and `hidden_shift` must be given together or not at all")

    named = [("face", face), ("context", context), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]
    if hidden_scale is not None:
        hidden_scale = _require_tensor("hidden_scale", hidden_scale)
        hidden_shift = _require_tensor("hidden_shift", hidden_shift)
        _require_shape("hidden_scale", hidden_scale, (Hd,), "(Hd,)")
        _require_shape("hidden_shift", hidden_shift, (Hd,), "(Hd,)")
        named += [("hidden_scale", hidden_scale), ("hidden_shift", hidden_shift)]

    if context.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"gla: `context` has dtype {context.dtype}; supported: "
            + ", ".join(str(d) for d in SUPPORTED_DTYPES)
        )
    for name, t in named:
        if t.dtype != context.dtype:
            raise TypeError(
                f"gla: `{name}` has dtype {t.dtype} but `context` has {context.dtype}; "
                "all GLA tensors must share one dtype (cast the parameters, as GlobalLocalAttention does)"
            )
        if t.device != context.device:
            raise ValueError(
                f"gla: `{name}` is on {t.device} but `context` is on {context.device}; "
                "all GLA tensors must be on one device"
            )
    return B, Df, Dc, H, W, Hd
