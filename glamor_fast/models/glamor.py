"""GLAMOR-Net, CAER-Net-S and the paper's ablation presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .attention import ContextAttention, GlobalLocalAttention
from .encoders import build_encoder
from .fusion import AdaptiveFusion

ATTENTIONS = ("gla", "ca", "none")
# Keras's BatchNormalization defaults (the authors' TF code) in torch's convention.
KERAS_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}
FUSION_INPUTS = ("face", "context")


def _check_image(name: str, img: Optional[torch.Tensor]) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 3:
        shape = None if not isinstance(img, torch.Tensor) else tuple(img.shape)
        raise ValueError(f"GLAMORNet: `{name}` must be a (B, 3, H, W) image tensor, got {shape}")
    return img


class GLAMORNet(nn.Module):
    """Face encoder + context encoder + context attention + adaptive fusion.

    Args:
        encoder: "conv5" (the paper's) or "resnet18".
        attention: "gla" (face-guided), "ca" (CAER-Net's, context only) or "none" (mean of cells).
        fusion_inputs: which vectors the fusion network classifies: ("face", "context"),
            ("context",) (the face encoder then exists only to guide GLA, the paper's settings
            (ii)/(iii)) or ("face",) (setting (i); needs attention="none").
        gla_hidden, gla_norm, backend, recompute: GlobalLocalAttention's hidden size,
            hidden-layer norm (None or "batchnorm"), GLA backend and hidden-layer policy
            (``glamor_fast.ops.gla.gla``'s ``recompute``).
        block_backend: the conv5 encoders' fused BatchNorm -> ReLU -> MaxPool blocks' backend
            ("auto", "cpp", "triton" or "reference"; ``glamor_fast.ops.bn_relu_pool``).
        bn_eps, bn_momentum: every BatchNorm's eps and running-statistics momentum, in torch's
            convention (running = (1 - momentum) * running + momentum * batch). torch's defaults
            are 1e-5 and 0.1; Keras's (the authors' code) are eps 1e-3 and momentum 0.99, which is
            torch momentum 0.01 (KERAS_BN).
    forward(face_img (B, 3, 96, 96) or None when unused, context_img (B, 3, 112, 112) or None
        when unused, return_details=False) -> logits (B, num_classes), and with
        return_details also attn (B, H, W) or None and the fusion weights (B, len(fusion_inputs)).
    """

    def __init__(self, num_classes: int = 7, encoder: str = "conv5", attention: str = "gla",
                 fusion_inputs=("face", "context"), gla_hidden: int = 128,
                 gla_norm: Optional[str] = None, backend: str = "auto", dropout: float = 0.5,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, block_backend: str = "auto",
                 recompute: Optional[bool] = None):
        super().__init__()
        if not (isinstance(bn_eps, (int, float)) and bn_eps > 0):
            raise ValueError(f"GLAMORNet: bn_eps must be a number > 0, got {bn_eps!r}")
        if not (isinstance(bn_momentum, (int, float)) and 0 <= bn_momentum <= 1):
            raise ValueError(f"GLAMORNet: bn_momentum must be in [0, 1] (torch's convention: Keras's momentum "
                             f"0.99 is 0.01 here), got {bn_momentum!r}")
        bn = dict(bn_eps=float(bn_eps), bn_momentum=float(bn_momentum))
        fusion_inputs = (fusion_inputs,) if isinstance(fusion_inputs, str) else tuple(fusion_inputs)
        if not fusion_inputs or len(set(fusion_inputs)) != len(fusion_inputs) or not set(fusion_inputs) <= set(FUSION_INPUTS):
            raise ValueError(
                f"GLAMORNet: fusion_inputs must be a non-empty subset of {FUSION_INPUTS}, got {fusion_inputs!r}"
            )
        if attention not in ATTENTIONS:
            raise ValueError(f"GLAMORNet: attention must be one of {ATTENTIONS}, got {attention!r}")
        if "context" not in fusion_inputs and attention != "none":
            raise ValueError(
                f"GLAMORNet: attention={attention!r} pools the context, but fusion_inputs={fusion_inputs!r} "
                "uses no context; use attention='none' for a face-only model"
            )
        self.attention_kind = attention
        self.fusion_inputs = tuple(fusion_inputs)
        use_face = "face" in fusion_inputs or attention == "gla"
        enc = dict(bn, block_backend=block_backend) if encoder == "conv5" else bn
        self.face_encoder = build_encoder(encoder, **enc) if use_face else None
        self.context_encoder = build_encoder(encoder, **enc) if "context" in fusion_inputs else None
        channels = (self.face_encoder or self.context_encoder).out_channels
        if attention == "gla":
            self.attention = GlobalLocalAttention(channels, channels, gla_hidden, gla_norm, backend,
                                                  recompute=recompute, **bn)
        elif attention == "ca":
            self.attention = ContextAttention(channels, **bn)
        else:
            self.attention = None
        self.fusion = AdaptiveFusion(
            channels if "face" in fusion_inputs else None,
            channels if "context" in fusion_inputs else None,
            num_classes=num_classes,
            dropout=dropout,
        )

    def forward(self, face_img: Optional[torch.Tensor] = None, context_img: Optional[torch.Tensor] = None,
                return_details: bool = False):
        face_vec = context_vec = attn = None
        if self.face_encoder is not None:
            face_vec = self.face_encoder(_check_image("face_img", face_img)).mean(dim=(2, 3))
        if self.context_encoder is not None:
            context_map = self.context_encoder(_check_image("context_img", context_img))
            if face_vec is not None and context_map.shape[0] != face_vec.shape[0]:
                raise ValueError(
                    f"GLAMORNet: face_img has batch {face_vec.shape[0]} but context_img has {context_map.shape[0]}"
                )
            if self.attention_kind == "gla":
                context_vec, attn = self.attention(face_vec, context_map)
            elif self.attention_kind == "ca":
                context_vec, attn = self.attention(context_map)
            else:
                context_vec = context_map.mean(dim=(2, 3))
        logits, weights = self.fusion(
            face_vec if "face" in self.fusion_inputs else None,
            context_vec,
        )
        if return_details:
            return logits, attn, weights
        return logits


class CAERNetS(GLAMORNet):
    """The CAER-Net-S baseline: GLAMOR-Net's encoders and fusion with CAER-Net's attention."""

    def __init__(self, num_classes: int = 7, encoder: str = "conv5", dropout: float = 0.5, **kwargs):
        if "attention" in kwargs:
            raise ValueError("CAERNetS fixes attention='ca'; use GLAMORNet for other attentions")
        super().__init__(num_classes=num_classes, encoder=encoder, attention="ca", dropout=dropout, **kwargs)


@dataclass(frozen=True)
class Preset:
    """A named model configuration; ``face_visible_in_context`` is a data setting (paper's (iii))."""

    model_kwargs: dict = field(default_factory=dict)
    face_visible_in_context: bool = False
    description: str = ""


def _presets() -> dict[str, Preset]:
    presets = {"face": Preset({"attention": "none", "fusion_inputs": ("face",)}, False, "(i) face only")}
    for att in ATTENTIONS:
        presets[f"context-masked-{att}"] = Preset(
            {"attention": att, "fusion_inputs": ("context",)}, False, f"(ii) context, face masked, attention={att}")
        presets[f"context-visible-{att}"] = Preset(
            {"attention": att, "fusion_inputs": ("context",)}, True, f"(iii) context, face visible, attention={att}")
        presets[f"both-{att}"] = Preset(
            {"attention": att, "fusion_inputs": ("face", "context")}, False, f"(iv) face and masked context, attention={att}")
    presets["glamor-net"] = Preset(presets["both-gla"].model_kwargs, False,
                                   "GLAMOR-Net (both, GLA; no GLA BatchNorm, torch BatchNorm settings): the quick start's")
    presets["glamor-net-authors"] = Preset({**presets["both-gla"].model_kwargs, "gla_norm": "batchnorm", **KERAS_BN},
                                           False, "the authors' exact GLAMOR-Net: GLA with BatchNorm, Keras BatchNorm "
                                           "settings (what load_tf_checkpoint builds); its running statistics "
                                           "(momentum 0.01) lag on the quick start's short schedule")
    presets["caernet-s"] = Preset(presets["both-ca"].model_kwargs, False, "CAER-Net-S (both, CA)")
    presets["glamor-net-resnet18"] = Preset({**presets["both-gla"].model_kwargs, "encoder": "resnet18"}, False,
                                            "GLAMOR-Net with ResNet-18 encoders")
    return presets


PRESETS: dict[str, Preset] = _presets()


def build_model(preset: str, **overrides) -> GLAMORNet:
    """GLAMORNet for a preset name in PRESETS, with keyword overrides (e.g. backend="cpp")."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return GLAMORNet(**{**PRESETS[preset].model_kwargs, **overrides})
