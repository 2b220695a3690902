"""The GLAMOR-Net model family."""
from .attention import ContextAttention, GlobalLocalAttention
from .encoders import Conv5Encoder, ResNet18Encoder, build_encoder
from .fusion import AdaptiveFusion
from .glamor import ATTENTIONS, PRESETS, CAERNetS, GLAMORNet, Preset, build_model

__all__ = [
    "AdaptiveFusion", "ATTENTIONS", "build_encoder", "build_model", "CAERNetS", "ContextAttention",
    "Conv5Encoder", "GLAMORNet", "GlobalLocalAttention", "PRESETS", "Preset", "ResNet18Encoder",
]
