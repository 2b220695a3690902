"""``glamor-fast predict IMAGE...``: emotion and class probabilities for images.

Each image is preprocessed as in evaluation (face crop 96x96; context = image with the face
blacked out unless the model's preset keeps it visible, resized to 128x171, centre 112x112).
The face box comes from ``--box x1,y1,x2,y2`` (one per image, in order) or OpenCV's Haar
cascade; an image where no face is found gets a zero face and an unmasked context (as the
authors' code does for images without a box) and a warning.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from glamor_fast.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.distributed import DistInfo, resolve_device

DEFAULT_CHECKPOINT = "runs/quickstart/best.pt"


@torch.no_grad()
def predict(checkpoint, images: Sequence, boxes: Optional[Sequence] = None, device: str = "auto",
            backend: Optional[str] = None, detector: Optional[Callable] = None) -> list[dict]:
    """Classify ``images`` (paths) with ``checkpoint``.

    boxes: None (detect every face) or one (x1, y1, x2, y2) or None per image.
    Returns one dict per image: image, box (or None), box_source ("given", "detected", "none"),
    emotion, probabilities {class: p} (sums to 1).
    """
    from glamor_fast.data import preprocess, read_image
    from glamor_fast.models import PRESETS

    images = [Path(p) for p in images]
    if not images:
        raise ValueError("predict: give at least one image")
    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"predict: {len(boxes)} boxes for {len(images)} images; give one --box per image or none")
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    classes = list(ckpt["class_names"])
    dev = resolve_device(device, DistInfo())
    model = model_from_checkpoint(ckpt, backend=backend, device=dev, where=f"checkpoint {checkpoint}")
    face_visible = PRESETS[cfg.model].face_visible_in_context
    results = []
    for i, path in enumerate(images):
        img = read_image(path)
        box, source = (boxes[i], "given") if boxes is not None and boxes[i] is not None else (None, "none")
        if box is None:
            if detector is None:
                from glamor_fast.data import HaarFaceDetector

                detector = HaarFaceDetector()
            box = detector(img)
            source = "detected" if box is not None else "none"
        if box is None:
            warnings.warn(f"{path}: no face found; using a zero face and the unmasked image as context", stacklevel=2)
        face, context = preprocess(img, box, train=False, face_visible=face_visible, normalize=cfg.normalize)
        logits = model(torch.from_numpy(face)[None].to(dev), torch.from_numpy(context)[None].to(dev))
        probs = torch.softmax(logits.float(), 1)[0].cpu()
        results.append({"image": str(path), "box": None if box is None else [int(v) for v in box],
                        "box_source": source, "emotion": classes[int(probs.argmax())],
                        "probabilities": {c: float(p) for c, p in zip(classes, probs)}})
    return results
