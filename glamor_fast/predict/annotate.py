"""Drawing predictions on a frame: a box and "emotion p" per face, optionally the attention maps.

Attention maps (n, h, w) live on the context crop's feature grid; they are upsampled onto the part
of the frame that crop shows (``context_region``) with ``glamor_fast.visualize.overlay_attention``.
Several faces in one frame: each map is scaled to [0, 1] and the pixel-wise maximum is shown.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from glamor_fast.visualize import overlay_attention

from .model import context_region

# Distinct BGR-free RGB colours, one per track id (cycled).
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def blend_attention(frame: np.ndarray, attn: Sequence[np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """frame RGB uint8 (H, W, 3), attn: maps (h, w) -> a copy with the maps blended over the context region."""
    if len(attn) == 0:
        return frame
    maps = []
    for a in attn:
        a = np.asarray(a, np.float32)
        maps.append((a - a.min()) / max(float(a.max() - a.min()), 1e-12))
    combined = np.max(np.stack(maps), axis=0)
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in context_region(h, w))
    out = frame.copy()
    region = out[y1:y2, x1:x2].astype(np.float32) / 255.0
    out[y1:y2, x1:x2] = np.round(overlay_attention(region, combined, alpha) * 255.0).astype(np.uint8)
    return out


def draw_faces(frame: np.ndarray, faces: Sequence[dict], attn: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """A copy of ``frame`` (RGB uint8) with, per face record (``box``, ``track``, ``emotion``,
    ``probs``), its box and label; ``attn`` maps blended first when given."""
    out = blend_attention(frame, attn) if attn is not None else frame.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 700.0)
    thick = max(1, int(round(scale * 2)))
    for r in faces:
        if r.get("box") is None:
            continue
        x1, y1, x2, y2 = r["box"]
        colour = PALETTE[(r.get("track") or 0) % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thick)
        label = f"{r['emotion']} {r['probs'][r['emotion']]:.2f}"
        if r.get("track") is not None:
            label = f"#{r['track']} {label}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        cv2.rectangle(out, (x1, ty - th - 2), (min(x1 + tw + 2, w - 1), ty + base), colour, -1)
        cv2.putText(out, label, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
