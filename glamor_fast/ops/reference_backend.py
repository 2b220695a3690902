"""The reference as a backend: always available, differentiable through plain autograd."""
from __future__ import annotations

from typing import Optional

import torch

from .reference import gla_reference


def unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    return None


def gla(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic=True, recompute=None):
    """The reference materialises the hidden layer whatever ``recompute`` says (it is the spec)."""
    return gla_reference(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
