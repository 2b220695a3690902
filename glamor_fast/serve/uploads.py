"""Uploaded bytes -> an RGB image or a video's frames, within the server's limits.

Nothing the client sends becomes a path: a video is written to a temporary file whose name the
server makes (``tempfile.mkstemp``), decoded from there with OpenCV's FFmpeg and deleted by
``VideoUpload.close``. Images are decoded from memory; their size is read from the header
(Pillow, which matplotlib already needs) before any pixel is decoded, so a small file that
claims a huge picture is refused without allocating it.
"""
from __future__ import annotations

import os
import tempfile
import threading
import warnings
from io import BytesIO
from typing import Optional

import cv2
import numpy as np

from .limits import ApiError, Limits, exceeded

ACCEPTED_TYPES = "image/*, video/*, application/octet-stream or multipart/form-data"


def upload_kind(content_type: Optional[str]) -> str:
    """"image", "video", "any" (octet-stream or none: sniffed) or "multipart"; 415 for anything else."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base in ("", "application/octet-stream"):
        return "any"
    if base == "multipart/form-data":
        return "multipart"
    if base.startswith("image/"):
        return "image"
    if base.startswith("video/"):
        return "video"
    raise ApiError(415, f"content type {base!r} is not accepted; send {ACCEPTED_TYPES}")


def header_size(data: bytes, limits: Limits) -> Optional[tuple[int, int]]:
    """(width, height) from an image file's header, None when Pillow does not know the format."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as img:
                return img.size
        except Image.DecompressionBombError:
            raise exceeded(413, limits, "max_image_pixels", "the image") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def check_pixels(width: int, height: int, limits: Limits, what: str) -> None:
    if width * height > limits.max_image_pixels:
        raise exceeded(413, limits, "max_image_pixels", f"{what} of {width}x{height} pixels")


def decode_image(data: bytes, limits: Limits) -> Optional[np.ndarray]:
    """RGB uint8 (H, W, 3), or None when the bytes are no image OpenCV can decode; 413 when too large."""
    size = header_size(data, limits)
    if size is not None:
        check_pixels(*size, limits, "the image")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        return None
    check_pixels(bgr.shape[1], bgr.shape[0], limits, "the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class VideoUpload:
    """A video's frames, read one at a time (thread-safe: ``read`` and ``close`` share a lock).

    Opening refuses (ApiError) a file FFmpeg cannot decode (400), frames over ``max_image_pixels``
    and a container that announces more than ``max_video_frames`` frames (413); ``read`` also
    stops at that limit if the container under-stated its length.
    """

    def __init__(self, data: bytes, limits: Limits, tmp_dir: Optional[str] = None):
        self.limits, self.index, self._lock = limits, 0, threading.Lock()
        fd, self.path = tempfile.mkstemp(prefix="glamor-serve-", suffix=".video", dir=tmp_dir)
        self.cap = None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
            ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
            if not ok or first is None:
                raise ApiError(400, "the upload is neither an image nor a video that can be decoded "
                                    "(corrupt, truncated or an unknown format)")
            self.width, self.height = first.shape[1], first.shape[0]
            check_pixels(self.width, self.height, limits, "a video frame")
            fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0 < fps < 1000 else 25.0
            announced = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if announced > limits.max_video_frames:
                raise exceeded(413, limits, "max_video_frames", f"the video ({announced} frames)")
            self._first: Optional[np.ndarray] = first
        except BaseException:
            self.close()
            raise

    def read(self) -> Optional[np.ndarray]:
        """The next frame as RGB uint8 (H, W, 3), None at the end."""
        with self._lock:
            if self.cap is None:
                return None
            if self._first is not None:
                bgr, self._first = self._first, None
            else:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    return None
            if self.index >= self.limits.max_video_frames:
                raise exceeded(413, self.limits, "max_video_frames", "the video")
            if (bgr.shape[1], bgr.shape[0]) != (self.width, self.height):
                raise ApiError(400, f"video frame {self.index} is {bgr.shape[1]}x{bgr.shape[0]}, "
                                    f"the first was {self.width}x{self.height}")
            self.index += 1
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        with self._lock:
            if self.cap is not None:
                self.cap.release()
                self.cap = None
            if self.path is not None:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                self.path = None
