"""The network behind ``EmotionRecognizer``: a checkpoint loaded for inference, one call per batch.

Every network here has one contract, shared with the ONNX runner
(``glamor_fast.export.onnx_runtime.OnnxGlamorNet``):

- ``classes``: the class names (7 for the CAER-S emotions);
- ``__call__(face, context) -> (logits, attn)`` on CPU torch tensors: face (B, 3, 96, 96) and
  context (B, 3, 112, 112) float32 scaled to [0, 1] (an ImageNet-normalised checkpoint
  normalises inside), logits (B, C) float32, attn (B, h, w) float32 on the context crop's
  feature grid or None for a model without GLA/CA attention.

Each face gets its own inputs, exactly as in evaluation (``glamor_fast.data.preprocess``): the face
crop resized to 96x96, and the context = the frame with *that* face blacked out (unless the
preset keeps the face visible), resized to 128x171 and centre-cropped to 112x112. Two faces of
one frame therefore see two different contexts, each with only its own face masked, as in the
GLAMOR-Net authors' demo.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from glamor_fast.data.transforms import CONTEXT_CROP, CONTEXT_RESIZE, IMAGENET_MEAN, IMAGENET_STD
from glamor_fast.training.checkpoint import load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.distributed import DistInfo, resolve_device


class TorchGlamorNet:
    """A project checkpoint (``glamor-fast train`` / ``import-tf``) ready for inference.

    ``backend``: the GLA backend ("auto": the fastest here; None: the one it was trained with).
    The model is folded for inference (``optimize_for_inference``: BatchNorm folded into the
    convs, channels_last; same logits up to rounding, about 1.7x the images/s of the plain eval
    model on a CPU, bench/RESULTS-archive.md) and runs under ``torch.inference_mode``.
    """

    def __init__(self, checkpoint, device: str = "auto", backend: Optional[str] = "auto"):
        from glamor_fast.models import PRESETS, optimize_for_inference

        ckpt = load_checkpoint(checkpoint)
        cfg = TrainConfig.from_dict(ckpt["config"])
        self.classes = [str(c) for c in ckpt["class_names"]]
        self.device = resolve_device(device, DistInfo())
        if backend is not None:
            from glamor_fast.ops.registry import choose_backend

            try:  # checked now: the model would only find out at its first forward pass
                choose_backend(backend, self.device, torch.float32)
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"--backend {backend}: {exc}") from None
        model = model_from_checkpoint(ckpt, backend=backend, device=self.device, where=f"checkpoint {checkpoint}")
        self.model = optimize_for_inference(model)
        self.face_visible = PRESETS[cfg.model].face_visible_in_context
        self.attention_kind = getattr(self.model, "attention_kind", "none")
        self.mean_std = None
        if cfg.normalize:
            shape = (1, 3, 1, 1)
            self.mean_std = (torch.from_numpy(IMAGENET_MEAN).view(shape).to(self.device),
                             torch.from_numpy(IMAGENET_STD).view(shape).to(self.device))

    @torch.inference_mode()
    def __call__(self, face: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """face (B, 3, 96, 96), context (B, 3, 112, 112) float32 in [0, 1] -> (logits (B, C),
        attn (B, h, w) or None), float32 on the CPU."""
        cl = torch.channels_last
        face = face.to(self.device).contiguous(memory_format=cl)
        context = context.to(self.device).contiguous(memory_format=cl)
        if self.mean_std is not None:
            mean, std = self.mean_std
            face, context = (face - mean) / std, (context - mean) / std
        logits, attn, _ = self.model(face, context, return_details=True)
        return logits.float().cpu(), None if attn is None else attn.float().cpu()


def load_net(checkpoint, device: str = "auto", backend: Optional[str] = "auto"):
    """A network for ``checkpoint``: ``OnnxGlamorNet`` for a ``.onnx`` file (onnxruntime, CPU, no
    model code; ``backend`` and a device other than the CPU are refused), ``TorchGlamorNet`` otherwise."""
    if str(checkpoint).lower().endswith(".onnx"):
        if device not in ("auto", "cpu"):
            raise ValueError(f"device {device!r}: an ONNX model ({checkpoint}) runs on the CPU only (onnxruntime)")
        if backend not in (None, "auto"):
            raise ValueError(f"backend {backend!r}: an ONNX model ({checkpoint}) has no GLA backend to choose")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"ONNX model {checkpoint} does not exist (or is not a file)")
        try:  # onnxruntime is the optional extra [onnx]: imported only here
            from glamor_fast.export.onnx_runtime import OnnxGlamorNet
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "onnxruntime":
                raise
            from glamor_fast.data.faces import MissingExtraError

            raise MissingExtraError(f"running the ONNX model {checkpoint} needs onnxruntime: "
                                    'pip install ".[onnx]"') from None

        return OnnxGlamorNet(str(checkpoint))
    return TorchGlamorNet(checkpoint, device=device, backend=backend)


def context_region(height: int, width: int) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the frame (float pixels) that the model's context crop shows.

    The context is the frame resized to CONTEXT_RESIZE (128x171) then centre-cropped to 112x112,
    so the crop covers the middle 112/171 of the width and 112/128 of the height.
    """
    rh, rw = CONTEXT_RESIZE
    top, left = (rh - CONTEXT_CROP) // 2, (rw - CONTEXT_CROP) // 2
    sx, sy = width / rw, height / rh
    return left * sx, top * sy, (left + CONTEXT_CROP) * sx, (top + CONTEXT_CROP) * sy
