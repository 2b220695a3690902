"""glamor_fast: a fused Global-Local Attention op and the GLAMOR-Net model family for PyTorch."""
from .models import (
    PRESETS, AdaptiveFusion, CAERNetS, ContextAttention, Conv5Encoder, GLAMORNet,
    GlobalLocalAttention, ResNet18Encoder, build_model, fold_batchnorm, load_tf_checkpoint, optimize_for_inference,
)
from .ops import available_backends, gla_reference
from .ops.gla import gla

__version__ = "0.1.0"

_LAZY = {"EmotionRecognizer", "Face", "VideoFrame"}  # glamor_fast.recognizer (OpenCV), imported on first use


def __getattr__(name):
    if name in _LAZY:
        from . import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'glamor_fast' has no attribute {name!r}")


__all__ = [
    "AdaptiveFusion", "available_backends", "build_model", "CAERNetS", "ContextAttention",
    "Conv5Encoder", "EmotionRecognizer", "Face", "fold_batchnorm", "gla", "gla_reference", "GLAMORNet", "GlobalLocalAttention",
    "load_tf_checkpoint", "optimize_for_inference", "PRESETS",
    "ResNet18Encoder", "VideoFrame",
]
