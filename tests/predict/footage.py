"""Real footage for the predict tests: matplotlib's grace_hopper.jpg, a two-face frame made by
pasting it twice side by side, and short videos written here with OpenCV (a face moving across)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib import cbook

from glamor_fast.data import read_image

GRACE_PATH = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # 512 x 600
# Her face (forehead under the cap to chin, ear to ear), checked by eye: about x 165..365, y 130..330.
GRACE_FACE = (165, 130, 365, 330)


def grace() -> np.ndarray:
    return read_image(GRACE_PATH)


def two_faces() -> np.ndarray:
    """(600, 1024, 3) RGB: the photograph twice, side by side (faces near x 165..365 and 677..877)."""
    g = grace()
    return np.concatenate([g, g], axis=1)


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def moving_face_video(path: Path, frames: int = 24, fps: float = 12.0, size=(320, 240), step: int = 3) -> Path:
    """A video (codec by extension: .webm VP8, .avi MJPG, others mp4v): a grey background and the photograph (128x150, the face about 70 px) sliding right ``step`` px a frame."""
    face = cv2.cvtColor(cv2.resize(grace(), (128, 150), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = {".webm": "VP80", ".avi": "MJPG"}.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((h, w, 3), 90, np.uint8)
        x = 10 + step * i
        frame[40:190, x:x + 128] = face
        writer.write(frame)
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames decoded, fps, (width, height)) of a video file."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, fps, size
