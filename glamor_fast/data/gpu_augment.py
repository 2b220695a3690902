"""Training augmentation of whole batches as tensor ops on the training device.

The per-sample path (``transforms.preprocess(train=True)``) does, with OpenCV on one image:
random 112x112 crop of the (masked) 128x171 context; face: horizontal flip with p=0.5, then a
rotation by ``angle`` degrees (counter-clockwise, about the pixel centre ((w-1)/2, (h-1)/2),
bilinear, zero fill, result rounded to uint8), then /255 and optional ImageNet normalisation.
``augment_batch`` does the same for a batch, with the same draws (``transforms.draw_augmentation``,
made per sample in the dataset): the crop is an exact gather; the rotation is
``F.grid_sample`` (bilinear, zeros padding, align_corners=True) on the inverse map
``src = c + R(-angle) (dst - c)`` with the flip folded in as ``x -> -x`` in grid
coordinates, rounded to uint8 levels like OpenCV's output. OpenCV interpolates with 5-bit
fixed-point weights, so rotated faces differ from it by about a grey level (tests/data/test_gpu_augment.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .transforms import CONTEXT_CROP, IMAGENET_MEAN, IMAGENET_STD


def _scale_shift(device: torch.device, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) (1, 3, 1, 1) float32 with x * scale + shift = x / 255, then ImageNet mean/std if ``normalize``."""
    std = torch.as_tensor(IMAGENET_STD if normalize else [1.0, 1.0, 1.0], device=device).view(1, 3, 1, 1)
    mean = torch.as_tensor(IMAGENET_MEAN if normalize else [0.0, 0.0, 0.0], device=device).view(1, 3, 1, 1)
    return 1.0 / (255.0 * std), -mean / std


def crop_contexts(context_u8: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                  crop: int = CONTEXT_CROP) -> torch.Tensor:
    """context_u8 (B, H, W, 3) uint8, top/left (B,) int64 -> (B, crop, crop, 3) uint8 (exact crops).

    One stack of B views: a single copy kernel on any device (a gather with index tensors was
    15x slower on the CPU).
    """
    tops, lefts = top.tolist(), left.tolist()
    return torch.stack([context_u8[b, t:t + crop, l:l + crop] for b, (t, l) in enumerate(zip(tops, lefts))])


def rotate_faces(face_u8: torch.Tensor, flip: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """face_u8 (B, H, W, 3) uint8, flip (B,) bool, angle (B,) degrees -> (B, 3, H, W) float32 uint8 levels.

    Flip then rotate (counter-clockwise by angle, about ((W-1)/2, (H-1)/2)), bilinear, zero fill, rounded.
    """
    b, h, w, _ = face_u8.shape
    x = face_u8.permute(0, 3, 1, 2).float()
    theta = torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Inverse map in pixel coordinates, then to align_corners grid units ([-1, 1] over the pixel centres):
    # sx = cx + cos dx - sin dy, sy = cy + sin dx + cos dy; in normalised units the non-square
    # image scales the off-diagonal terms by (h-1)/(w-1) and (w-1)/(h-1).
    rx, ry = (w - 1) / 2.0, (h - 1) / 2.0
    sign = 1.0 - 2.0 * flip.to(torch.float64)  # flip: x -> -x after the rotation's inverse map
    mat = torch.zeros(b, 2, 3, dtype=torch.float64, device=face_u8.device)
    mat[:, 0, 0] = sign * cos
    mat[:, 0, 1] = -sign * sin * ry / rx
    mat[:, 1, 0] = sin * rx / ry
    mat[:, 1, 1] = cos
    grid = F.affine_grid(mat.to(x.dtype), [b, 3, h, w], align_corners=True)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.round_()  # bilinear weights sum to <= 1 over [0, 255] values: no clamp needed


def augment_batch(face_u8: torch.Tensor, context_u8: torch.Tensor, aug: torch.Tensor, has_face: torch.Tensor,
                  normalize: bool = False, channels_last: bool = False,
                  crop: int = CONTEXT_CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of cached uint8 samples -> the model's inputs, on the tensors' device.

    Args:
        face_u8: (B, 96, 96, 3) uint8 face crops.
        context_u8: (B, 128, 171, 3) uint8 contexts before cropping.
        aug: (B, 4) float (flip 0/1, angle in degrees, top, left), from ``draw_augmentation``.
        has_face: (B,) bool; faces of samples without one are zero (after normalisation too).
        normalize: ImageNet mean/std after scaling to [0, 1].
        channels_last: return channels_last tensors (for a model that uses that memory format).
    Returns face (B, 3, 96, 96) float32 and context (B, 3, crop, crop) float32.
    """
    if face_u8.dtype != torch.uint8 or context_u8.dtype != torch.uint8:
        raise ValueError(f"augment_batch: expected uint8 faces and contexts, got {face_u8.dtype} and {context_u8.dtype}")
    if face_u8.dim() != 4 or face_u8.shape[-1] != 3 or context_u8.dim() != 4 or context_u8.shape[-1] != 3:
        raise ValueError(f"augment_batch: expected (B, H, W, 3) tensors, got {tuple(face_u8.shape)} and "
                         f"{tuple(context_u8.shape)}")
    aug = aug.to(face_u8.device)
    flip, angle = aug[:, 0] > 0.5, aug[:, 1]
    top, left = aug[:, 2].long(), aug[:, 3].long()
    hc, wc = context_u8.shape[1:3]
    if bool(((top < 0) | (left < 0) | (top > hc - crop) | (left > wc - crop)).any()):
        raise ValueError(f"augment_batch: crop offsets outside [0, {hc - crop}] x [0, {wc - crop}]")
    scale, shift = _scale_shift(face_u8.device, normalize)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # One pass each for the uint8 -> float conversion and the affine scaling (this path is the
    # CPU's bottleneck when there is no GPU).
    crops = crop_contexts(context_u8, top, left, crop).permute(0, 3, 1, 2)
    ctx = torch.empty(crops.shape, dtype=torch.float32, device=crops.device, memory_format=fmt).copy_(crops)
    ctx = torch.addcmul(shift, ctx, scale)
    face = rotate_faces(face_u8, flip, angle)
    keep = has_face.to(face_u8.device).view(-1, 1, 1, 1).to(face.dtype)
    face = torch.addcmul(shift * keep, face, scale * keep)  # zero where there is no face
    return face.contiguous(memory_format=fmt), ctx.contiguous(memory_format=fmt)
