"""GLAMOR-Net preprocessing, as in the authors' code (numpy + OpenCV, no torch).

Inputs are RGB uint8 images (H, W, 3) and face boxes ``(x1, y1, x2, y2)`` in pixels, with
``x2``/``y2`` exclusive. Outputs are float32 (3, h, w) arrays scaled to [0, 1] (then optionally
normalised with the ImageNet mean/std):

- face: the box cropped and resized to 96x96; training adds a random horizontal flip and a
  random rotation of up to +-20 degrees (zero fill, as torchvision's RandomRotation).
- context: the whole image with the face box set to zero (skipped for setting (iii), "face
  visible in context"), resized to 128x171 (H x W), then a random 112x112 crop for training or
  the centre crop for evaluation.
- no box: a zero face (zero also after normalisation) and an unmasked context.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a sample is a pure
function of (image, box, generator state).
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

FACE_SIZE = 96
CONTEXT_RESIZE = (128, 171)  # (H, W)
CONTEXT_CROP = 112
MAX_ROTATION_DEG = 20.0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

Box = tuple[int, int, int, int]


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = (img.dtype, img.shape) if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"image must be an RGB uint8 array (H, W, 3), got {desc}")


def clip_box(box: Sequence[float], height: int, width: int) -> Optional[Box]:
    """Round ``box`` to ints and clip it to an (height, width) image; None if nothing is left."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, x2 = max(0, min(x1, width)), max(0, min(x2, width))
    y1, y2 = max(0, min(y1, height)), max(0, min(y2, height))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def mask_face(img: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``img`` (H, W, C) with zeros exactly in rows [y1, y2) and columns [x1, x2)."""
    x1, y1, x2, y2 = box
    out = img.copy()
    out[y1:y2, x1:x2] = 0
    return out


def crop_face(img: np.ndarray, box: Box, size: int = FACE_SIZE) -> np.ndarray:
    """The box region of ``img`` (H, W, 3) uint8, resized to (size, size, 3) uint8."""
    x1, y1, x2, y2 = box
    return cv2.resize(img[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LINEAR)


def augment_face(face: np.ndarray, rng: np.random.Generator,
                 max_rotation: float = MAX_ROTATION_DEG) -> np.ndarray:
    """Random horizontal flip (p=0.5) and rotation in [-max_rotation, max_rotation] degrees."""
    if rng.random() < 0.5:
        face = face[:, ::-1]
    angle = float(rng.uniform(-max_rotation, max_rotation))
    h, w = face.shape[:2]
    rot = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    return cv2.warpAffine(np.ascontiguousarray(face), rot, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def crop_context(img: np.ndarray, train: bool, rng: Optional[np.random.Generator],
                 resize=CONTEXT_RESIZE, crop: int = CONTEXT_CROP) -> np.ndarray:
    """Resize (H, W, 3) to ``resize`` (H, W), then a random (train) or centre crop of crop x crop."""
    rh, rw = resize
    img = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
    if train:
        top = int(rng.integers(0, rh - crop + 1))
        left = int(rng.integers(0, rw - crop + 1))
    else:
        top, left = (rh - crop) // 2, (rw - crop) // 2
    return img[top:top + crop, left:left + crop]


def to_chw_float(img: np.ndarray, normalize: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1], or ImageNet-normalised if ``normalize``."""
    out = img.astype(np.float32) / 255.0
    if normalize:
        out = (out - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def prepare_uint8(img: np.ndarray, clipped: Optional[Box], face_visible: bool = False,
                  resize=CONTEXT_RESIZE) -> tuple[Optional[np.ndarray], np.ndarray]:
    """The deterministic, cacheable stage: (face (96, 96, 3) uint8 or None, context (rh, rw, 3) uint8).

    ``clipped`` is a box already clipped to the image (``clip_box``) or None (no face: no face
    crop and an unmasked context). The context is the (masked unless ``face_visible``) image
    resized to ``resize``, i.e. before the 112x112 crop, so a training crop can still be taken.
    """
    rh, rw = resize
    if clipped is None:
        return None, cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
    face = crop_face(img, clipped)
    context_img = img if face_visible else mask_face(img, clipped)
    return face, cv2.resize(context_img, (rw, rh), interpolation=cv2.INTER_LINEAR)


def centre_crop_offsets(resize=CONTEXT_RESIZE, crop: int = CONTEXT_CROP) -> tuple[int, int]:
    """(top, left) of the evaluation crop."""
    return (resize[0] - crop) // 2, (resize[1] - crop) // 2


def finish_eval(face_u8: Optional[np.ndarray], context_u8: np.ndarray, normalize: bool = False,
                crop: int = CONTEXT_CROP) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation tensors from ``prepare_uint8``'s output: (face (3, 96, 96), context (3, crop, crop)) float32.

    The on-the-fly loader and the cache both end here, so their tensors are bit-identical.
    """
    top, left = centre_crop_offsets(context_u8.shape[:2], crop)
    context = to_chw_float(context_u8[top:top + crop, left:left + crop], normalize)
    if face_u8 is None:
        return np.zeros((3, FACE_SIZE, FACE_SIZE), dtype=np.float32), context
    return to_chw_float(face_u8, normalize), context


def draw_augmentation(rng: np.random.Generator, has_face: bool, resize=CONTEXT_RESIZE,
                      crop: int = CONTEXT_CROP, max_rotation: float = MAX_ROTATION_DEG) -> tuple[bool, float, int, int]:
    """(flip, angle in degrees, top, left): the random draws of one training sample, in the
    order the per-sample path (``preprocess``) makes them (no face: no flip or angle drawn)."""
    flip, angle = False, 0.0
    if has_face:
        flip = bool(rng.random() < 0.5)
        angle = float(rng.uniform(-max_rotation, max_rotation))
    top = int(rng.integers(0, resize[0] - crop + 1))
    left = int(rng.integers(0, resize[1] - crop + 1))
    return flip, angle, top, left


def preprocess(img: np.ndarray, box: Optional[Sequence[float]], *, train: bool = False,
               rng: Optional[np.random.Generator] = None, face_visible: bool = False,
               normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One image -> (face (3, 96, 96) float32, context (3, 112, 112) float32).

    Args:
        img: RGB uint8 (H, W, 3).
        box: (x1, y1, x2, y2) face box in pixels (clipped to the image), or None for no face.
        train: random augmentation (needs ``rng``) instead of the deterministic eval path.
        face_visible: keep the face in the context (setting (iii)); default masks it.
        normalize: subtract the ImageNet mean and divide by its std after scaling to [0, 1].
    Raises ValueError for a malformed image, a box outside the image, or train without rng.
    """
    _check_image(img)
    if train and rng is None:
        raise ValueError("preprocess: train=True needs a numpy Generator `rng`")
    clipped = None
    if box is not None:
        clipped = clip_box(box, img.shape[0], img.shape[1])
        if clipped is None:
            raise ValueError(f"preprocess: face box {tuple(box)} lies outside the {img.shape[1]}x{img.shape[0]} image")
    face_u8, context_u8 = prepare_uint8(img, clipped, face_visible)
    if not train:
        return finish_eval(face_u8, context_u8, normalize)
    if face_u8 is None:
        face = np.zeros((3, FACE_SIZE, FACE_SIZE), dtype=np.float32)
    else:
        face = to_chw_float(augment_face(face_u8, rng), normalize)
    rh, rw = context_u8.shape[:2]
    top = int(rng.integers(0, rh - CONTEXT_CROP + 1))
    left = int(rng.integers(0, rw - CONTEXT_CROP + 1))
    context = to_chw_float(context_u8[top:top + CONTEXT_CROP, left:left + CONTEXT_CROP], normalize)
    return face, context
