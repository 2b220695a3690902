"""A checkpoint ready for inference: every face of a batch of frames through the model in one pass.

Each face gets its own inputs, exactly as in evaluation (``glamor_fast.data.preprocess``): the face
crop resized to 96x96, and the context = the frame with *that* face blacked out (unless the
preset keeps the face visible), resized to 128x171 and centre-cropped to 112x112. Two faces of
one frame therefore see two different contexts, each with only its own face masked, as in the
GLAMOR-Net authors' demo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from glamor_fast.data.transforms import CONTEXT_CROP, CONTEXT_RESIZE, Box, preprocess
from glamor_fast.training.checkpoint import load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.distributed import DistInfo, resolve_device


@dataclass
class FaceScores:
    """Model outputs for n faces: probs (n, C) float32; attn (n, h, w) float32 on the context
    crop's feature grid, or None when the model has no GLA/CA attention."""
    probs: np.ndarray
    attn: Optional[np.ndarray]


class FaceClassifier:
    """Load ``checkpoint`` once; ``__call__(frames, boxes)`` scores many faces in one forward pass."""

    def __init__(self, checkpoint, device: str = "auto", backend: Optional[str] = None):
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
        # BatchNorm folded into the convs and channels_last: same logits up to rounding, about 1.7x
        # the images/s of the plain eval model on a CPU (bench/RESULTS-archive.md, bench.model).
        self.model = optimize_for_inference(model)
        self.normalize = cfg.normalize
        self.face_visible = PRESETS[cfg.model].face_visible_in_context
        self.attention = getattr(self.model, "attention_kind", "none")

    @torch.inference_mode()
    def __call__(self, frames: Sequence[np.ndarray], boxes: Sequence[Box]) -> FaceScores:
        """frames[i]: RGB uint8 (H, W, 3) holding face boxes[i] (x1, y1, x2, y2); the same frame
        object may appear once per face. Returns FaceScores for the len(boxes) faces."""
        if len(frames) != len(boxes):
            raise ValueError(f"FaceClassifier: {len(frames)} frames for {len(boxes)} boxes")
        if not boxes:
            return FaceScores(np.zeros((0, len(self.classes)), np.float32), None)
        pairs = [preprocess(f, b, train=False, face_visible=self.face_visible, normalize=self.normalize)
                 for f, b in zip(frames, boxes)]
        cl = torch.channels_last
        face = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device).contiguous(memory_format=cl)
        context = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device).contiguous(memory_format=cl)
        logits, attn, _ = self.model(face, context, return_details=True)
        probs = torch.softmax(logits.float(), 1).cpu().numpy()
        return FaceScores(probs, None if attn is None else attn.float().cpu().numpy())


def context_region(height: int, width: int) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the frame (float pixels) that the model's context crop shows.

    The context is the frame resized to CONTEXT_RESIZE (128x171) then centre-cropped to 112x112,
    so the crop covers the middle 112/171 of the width and 112/128 of the height.
    """
    rh, rw = CONTEXT_RESIZE
    top, left = (rh - CONTEXT_CROP) // 2, (rw - CONTEXT_CROP) // 2
    sx, sy = width / rw, height / rh
    return left * sx, top * sy, (left + CONTEXT_CROP) * sx, (top + CONTEXT_CROP) * sy
