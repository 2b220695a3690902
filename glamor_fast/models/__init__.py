"""The GLAMOR-Net model family."""
from .attention import ContextAttention, GlobalLocalAttention
from .encoders import Conv5Encoder, ResNet18Encoder, build_encoder
from .fusion import AdaptiveFusion
from .glamor import ATTENTIONS, KERAS_BN, PRESETS, CAERNetS, GLAMORNet, Preset, build_model
from .speed import fold_batchnorm, optimize_for_inference
from .tf_weights import load_tf_checkpoint

__all__ = [
    "AdaptiveFusion", "ATTENTIONS", "build_encoder", "build_model", "CAERNetS", "ContextAttention",
    "Conv5Encoder", "fold_batchnorm", "GLAMORNet", "GlobalLocalAttention", "KERAS_BN", "load_tf_checkpoint",
    "optimize_for_inference", "PRESETS",
    "Preset", "ResNet18Encoder",
]
