"""``glamor-fast predict IMAGE...``: emotion and class probabilities for images.

Each image is preprocessed as in evaluation (face crop 96x96; context = image with the face
blacked out unless the model's preset keeps it visible, resized to 128x171, centre 112x112).
The face box comes from ``--box x1,y1,x2,y2`` (one per image, in order) or OpenCV's Haar
cascade; an image where no face is found gets a zero face and an unmasked context (as the
authors' code does for images without a box) and a warning.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from glamor_fast.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.distributed import DistInfo, resolve_device

DEFAULT_CHECKPOINT = "runs/quickstart/best.pt"


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'x1,y1,x2,y2' -> ints; argparse-friendly ValueError otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(round(float(p))) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be 'x1,y1,x2,y2' (pixels), got {text!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise argparse.ArgumentTypeError(f"--box {text!r}: need x1 < x2 and y1 < y2")
    return x1, y1, x2, y2


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG/JPEG)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="checkpoint to use (default %(default)s, written by `glamor-fast quickstart`; "
                             "that one is trained on the synthetic built-in dataset, not on real faces)")
    parser.add_argument("--box", type=parse_box, action="append", metavar="X1,Y1,X2,Y2",
                        help="face box in pixels, once per image in order (default: detect with a Haar cascade)")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        results = predict(args.checkpoint, args.images, args.box, args.device, args.backend)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"glamor-fast predict: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        probs = "  ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
        print(f"{r['image']}: {r['emotion']} ({r['probabilities'][r['emotion']]:.3f}); face box "
              f"{r['box']} ({r['box_source']})\n  {probs}")
    return 0
