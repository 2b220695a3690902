"""One face's answer as every output of the project writes it (``predict``'s JSON lines, the server)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def face_record(box: Sequence[int], score: Optional[float], classes: Sequence[str], probs: np.ndarray) -> dict:
    """``box`` [x1, y1, x2, y2] ints, ``detector_score`` (None for Haar), ``emotion`` (the most probable
    class) and ``probs`` {class: probability rounded to 6 digits}."""
    return {"box": [int(v) for v in box], "detector_score": None if score is None else float(score),
            "emotion": classes[int(np.argmax(probs))],
            "probs": {c: round(float(p), 6) for c, p in zip(classes, probs)}}
