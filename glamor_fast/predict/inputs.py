"""What ``predict`` reads: image files, video files and folders of them, as a stream of frames.

Folders are searched recursively and sorted; inside them only files with a known image or video
extension are taken. A file named explicitly with another extension is tried as an image, then
as a video. Videos are decoded with OpenCV's bundled FFmpeg one frame at a time (memory does
not grow with the video's length).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from glamor_fast.data.caer import CorruptImageError, read_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


class InputError(ValueError):
    """An input that cannot be used (missing, undecodable, empty); the message names it."""


@dataclass(frozen=True)
class Source:
    """One input file; ``rel`` is its output path relative to ``--out`` (mirrors folders)."""
    path: Path
    rel: Path
    kind: str          # "image", "video" or "unknown" (tried as an image, then as a video)


def expand_inputs(inputs: Sequence) -> tuple[list[Source], list[str]]:
    """Inputs -> (sources in order, one error line per input that does not exist or holds nothing usable).

    A file gives one source named by its file name; a folder gives every image/video below it,
    sorted, named by its path relative to the folder's parent (so ``clips/a.mp4`` -> ``clips/a``).
    """
    sources, errors = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and _kind(q) != "unknown"
                           and not any(part.startswith(".") for part in q.relative_to(p).parts))
            if not found:
                errors.append(f"{p}: folder holds no image or video files ({', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
            sources += [Source(q, Path(p.resolve().name) / q.relative_to(p), _kind(q)) for q in found]
        elif p.is_file():
            sources.append(Source(p, Path(p.name), _kind(p)))
        else:
            errors.append(f"{p}: no such file or folder")
    return sources, errors


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else "unknown"


class VideoReader:
    """Frames of a video as RGB uint8 (H, W, 3), decoded one at a time with OpenCV's FFmpeg.

    ``fps`` (the container's rate; 25 when it states none), ``size`` (width, height) and
    ``frame_count`` (the container's estimate, possibly 0 or wrong) are known after opening.
    """

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        self.cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            self.cap.release()
            raise InputError(f"{self.path}: cannot open as a video (OpenCV's FFmpeg cannot decode it)")
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise InputError(f"{self.path}: video has no decodable frame (corrupt or empty)")
        self._first: Optional[np.ndarray] = first
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0
        self.size = (first.shape[1], first.shape[0])
        self.frame_count = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
            while True:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            self.cap.release()

    def close(self) -> None:
        self.cap.release()


def open_source(src: Source):
    """-> ("image", RGB uint8 array) or ("video", VideoReader); InputError when neither works."""
    if src.kind in ("image", "unknown"):
        try:
            return "image", read_image(src.path)
        except CorruptImageError as exc:
            if src.kind == "image":
                raise InputError(str(exc)) from None
        except OSError as exc:
            raise InputError(f"{src.path}: cannot read: {exc.strerror or exc}") from None
    try:
        return "video", VideoReader(src.path)
    except InputError:
        if src.kind == "unknown":
            raise InputError(f"{src.path}: neither an image nor a video OpenCV can decode") from None
        raise
