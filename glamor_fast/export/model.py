"""The network that ``glamor-fast export`` writes: the CPU inference model ``predict`` builds.

``ExportNet`` wraps the model of ``glamor_fast.predict.model.FaceClassifier`` (the checkpoint's
preset with ``optimize_for_inference``: BatchNorm folded, the fused ReLU + pool and stem
kernels, the fused GLA op) behind a fixed contract:

    inputs   face (B, 3, 96, 96) and context (B, 3, 112, 112), float32 RGB in [0, 1], NCHW
             (the ImageNet normalisation of checkpoints trained with ``--normalize`` runs
             inside the network, so every exported file takes [0, 1]);
    outputs  logits (B, C) float32 (scores before the softmax) and, for models with GLA or
             CA attention, attn (B, h, w) float32, the attention over the context's feature
             grid (7x7 for conv5 encoders).

``metadata(...)`` holds what a runtime needs besides the weights: the class names and the
preprocessing, as string key/values (ONNX ``metadata_props``, pt2 extra files, AOTI metadata).
"""
from __future__ import annotations

import json
from typing import Optional

import torch
from torch import nn

from glamor_fast.data.transforms import CONTEXT_CROP, CONTEXT_RESIZE, FACE_SIZE, IMAGENET_MEAN, IMAGENET_STD

INPUT_NAMES = ("face", "context")
METADATA_KEY = "glamor_fast"  # the pt2 extra file / AOTI metadata key holding the JSON metadata


class ExportNet(nn.Module):
    """``forward(face, context) -> (logits,)`` or ``(logits, attn)``; see the module docstring."""

    def __init__(self, model: nn.Module, normalize: bool):
        super().__init__()
        self.model = model
        self.normalize = normalize
        self.has_attention = getattr(model, "attention_kind", "none") != "none"
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN.copy()).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD.copy()).view(1, 3, 1, 1), persistent=False)

    def forward(self, face: torch.Tensor, context: torch.Tensor):
        if self.normalize:
            face, context = (face - self.mean) / self.std, (context - self.mean) / self.std
        logits, attn, _ = self.model(face, context, return_details=True)
        return (logits, attn) if self.has_attention else (logits,)


def output_names(net: ExportNet) -> tuple[str, ...]:
    return ("logits", "attn") if net.has_attention else ("logits",)


def example_inputs(batch: int, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (face, context) in [0, 1] of the contract's shapes."""
    return (torch.rand(batch, 3, FACE_SIZE, FACE_SIZE, generator=generator),
            torch.rand(batch, 3, CONTEXT_CROP, CONTEXT_CROP, generator=generator))


def load_for_export(checkpoint) -> tuple[ExportNet, dict[str, str]]:
    """(ExportNet in eval mode on the CPU, its metadata) from a training checkpoint.

    The GLA backend is ``auto`` on the CPU: the fused ``cpp`` op where glamor_fast._C is built,
    whatever backend the checkpoint was trained with (the weights do not depend on it).
    Raises CheckpointError for a file that is not a usable checkpoint.
    """
    from glamor_fast.models import PRESETS, optimize_for_inference
    from glamor_fast.training.checkpoint import load_checkpoint, model_from_checkpoint
    from glamor_fast.training.config import TrainConfig

    ckpt = load_checkpoint(checkpoint)
    # Built as predict builds it (glamor_fast.predict.model.FaceClassifier): BatchNorm folded,
    # fused kernels, channels_last weights (ONNX has no memory formats; pt2 keeps them).
    model = model_from_checkpoint(ckpt, backend="auto", device="cpu", where=f"checkpoint {checkpoint}")
    model = optimize_for_inference(model)
    cfg = TrainConfig.from_dict(ckpt["config"])  # valid: model_from_checkpoint read it
    net = ExportNet(model, cfg.normalize).eval()
    return net, metadata([str(c) for c in ckpt["class_names"]], cfg.model, getattr(model, "attention_kind", "none"),
                         PRESETS[cfg.model].face_visible_in_context, cfg.normalize)


def metadata(classes, preset: str, attention: str, face_visible: bool, normalize: bool) -> dict[str, str]:
    """String key/values describing the exported network (ONNX metadata_props and pt2 extras)."""
    import glamor_fast

    preprocessing = {
        "input_range": [0.0, 1.0], "channels": "RGB", "layout": "NCHW", "dtype": "float32",
        "face_size": [FACE_SIZE, FACE_SIZE],
        "face": "the face box cropped from the frame and resized to face_size",
        "context_resize": list(CONTEXT_RESIZE), "context_crop": [CONTEXT_CROP, CONTEXT_CROP],
        "context": "the frame" + ("" if face_visible else " with the face box blacked out")
                   + ", resized to context_resize (H, W), centre-cropped to context_crop",
        "face_visible_in_context": face_visible,
        "imagenet_normalization": "inside the network" if normalize else "none",
    }
    outputs = "logits (B, C) float32, scores before the softmax"
    if attention != "none":
        outputs += "; attn (B, h, w) float32, the attention over the context's feature grid (sums to 1)"
    return {
        "classes": json.dumps(list(classes)),
        "preset": preset,
        "attention": attention,
        "inputs": "face (B, 3, 96, 96), context (B, 3, 112, 112)",
        "outputs": outputs,
        "preprocessing": json.dumps(preprocessing),
        "producer": f"glamor_fast {getattr(glamor_fast, '__version__', '0.1.0')}, torch {torch.__version__}",
    }
