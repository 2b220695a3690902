"""glamor_fast: a fused Global-Local Attention op and the GLAMOR-Net model family for PyTorch."""
from .models import (
    PRESETS, AdaptiveFusion, CAERNetS, ContextAttention, Conv5Encoder, GLAMORNet,
    GlobalLocalAttention, ResNet18Encoder, build_model,
)
from .ops import available_backends, gla, gla_reference

__version__ = "0.1.0"

__all__ = [
    "AdaptiveFusion", "available_backends", "build_model", "CAERNetS", "ContextAttention",
    "Conv5Encoder", "gla", "gla_reference", "GLAMORNet", "GlobalLocalAttention", "PRESETS",
    "ResNet18Encoder",
]
