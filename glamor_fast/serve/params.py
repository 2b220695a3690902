"""Query parameters of ``POST /v1/predict``: ``boxes`` (the caller's face boxes) and ``annotate``."""
from __future__ import annotations

import json
from typing import Optional

from .limits import ApiError, Limits, exceeded


def parse_boxes(text: Optional[str], limits: Limits) -> Optional[list[tuple[int, int, int, int]]]:
    """``[[x1, y1, x2, y2], ...]`` (JSON, pixels, x2/y2 exclusive) -> int boxes; None when absent.
    400 for anything else; 413 beyond ``max_faces`` boxes."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, "boxes: not JSON; expected [[x1, y1, x2, y2], ...] in pixels") from None
    if not isinstance(value, list):
        raise ApiError(400, "boxes: expected a JSON list [[x1, y1, x2, y2], ...]")
    if len(value) > limits.max_faces:
        raise exceeded(413, limits, "max_faces", f"boxes ({len(value)} faces)")
    out = []
    for i, box in enumerate(value):
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise ApiError(400, f"boxes[{i}]: expected [x1, y1, x2, y2] (4 numbers), got {json.dumps(box)[:80]}")
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise ApiError(400, f"boxes[{i}]: {[x1, y1, x2, y2]} is empty (needs x2 > x1 and y2 > y1)")
        out.append((x1, y1, x2, y2))
    return out


def check_boxes_inside(boxes: list, width: int, height: int) -> None:
    """400 naming the first box that is not inside a width x height image."""
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ApiError(400, f"boxes[{i}]: {[x1, y1, x2, y2]} is not inside the {width}x{height} image")


def parse_flag(text: Optional[str], name: str) -> bool:
    if text is None:
        return False
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(400, f"{name}: expected 1 or 0, got {text[:40]!r}")
