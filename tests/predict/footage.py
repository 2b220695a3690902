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


FULL = (0, 0, 512, 600)
HEAD = (115, 50, 415, 410)  # the part of the photograph pasted into generated clips: her head and shoulders


def face_box_in_paste(x: int, y: int, scale: float, crop=HEAD) -> tuple[int, int, int, int]:
    """GRACE_FACE once ``crop`` of the photograph, resized by ``scale``, is pasted at (x, y)."""
    hx, hy = crop[:2]
    return tuple(round(o + (v - h) * scale) for o, v, h in zip((x, y, x, y), GRACE_FACE, (hx, hy, hx, hy)))


def background(kind: str, size=(640, 360), seed: int = 0) -> np.ndarray:
    """An RGB uint8 (h, w, 3) background: ``flat`` (one grey), ``textured`` (blurred colour noise
    stretched to full contrast: soft blobs) or ``fine`` (lightly blurred noise: high-frequency)."""
    w, h = size
    if kind == "flat":
        return np.full((h, w, 3), 90, np.uint8)
    noise = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    blur = {"textured": 31, "fine": 3}.get(kind)
    if blur is None:
        raise ValueError(f"unknown background {kind!r}")
    return cv2.normalize(cv2.GaussianBlur(noise, (blur, blur), 0), None, 0, 255, cv2.NORM_MINMAX)


def faces_clip(path: Path, kind: str = "flat", frames: int = 45, fps: float = 15.0, size=(640, 360),
               faces: int = 2, scale: float = 0.4, motion: str = "sine", speed: float = 1.0,
               crop=HEAD) -> list[list[tuple]]:
    """A video of ``faces`` copies of the photograph's head (``crop``, default HEAD; FULL: the whole
    photograph, flag and all) resized by ``scale`` (face about 80 px at 0.4) moving over a
    ``background(kind)``; returns each frame's true face boxes.

    motion ``sine``: each copy swings left and right (amplitude 40 px, period 2 s at ``speed`` 1,
    so the speed varies: up to 8.4 px a frame at 15 fps), neighbours in opposite directions;
    ``linear``: it slides ``4 * speed`` px a frame (right; neighbours left), stopping at the edge.
    """
    w, h = size
    x1, y1, x2, y2 = crop
    pw, ph = round((x2 - x1) * scale), round((y2 - y1) * scale)
    head = cv2.resize(grace()[y1:y2, x1:x2], (pw, ph), interpolation=cv2.INTER_AREA)
    bg = background(kind, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = {".webm": "VP80", ".avi": "MJPG"}.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    truth = []
    for i in range(frames):
        frame = bg.copy()
        boxes = []
        for k in range(faces):
            sign = 1 if k % 2 == 0 else -1
            x0 = 40 + k * (w - pw - 160) // max(faces - 1, 1)
            if motion == "sine":
                x = x0 + 40 + sign * round(40 * np.sin(2 * np.pi * speed * i / (2 * fps)))
            else:
                x = x0 + sign * round(4 * speed * i)
            x, y = min(max(x, 0), w - pw), (h - ph) // 2
            frame[y:y + ph, x:x + pw] = head
            boxes.append(face_box_in_paste(x, y, scale, crop))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        truth.append(boxes)
    writer.release()
    return truth


def read_frames(path: Path) -> list[np.ndarray]:
    """Every decodable frame of a video, RGB uint8."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out
