"""What one request may ask of the server, and the errors a client gets.

Every refusal is an ``ApiError``: an HTTP status (4xx for anything the client can fix) and a
JSON body ``{"error": message, "limit": name or null, "value": the limit or null}``, where
``limit`` names the ``Limits`` field that was exceeded (the ``glamor-fast serve`` flag is the
same name with dashes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 32 * 1024 * 1024    # request body (the encoded image or video)
    max_image_pixels: int = 25_000_000          # width x height of an image or of a video frame
    max_video_frames: int = 900                 # 30 s at 30 frames/s
    max_request_seconds: float = 60.0           # from the request's arrival to its answer
    max_faces: int = 64                         # boxes a caller may send for one image

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")

    def as_dict(self) -> dict:
        return asdict(self)


class ApiError(Exception):
    """A request the server refuses: ``status`` (HTTP), ``message``, and the limit it broke, if any."""

    def __init__(self, status: int, message: str, limit: Optional[str] = None, value=None):
        super().__init__(message)
        self.status, self.message, self.limit, self.value = status, message, limit, value

    def body(self) -> dict:
        return {"error": self.message, "limit": self.limit, "value": self.value}


def exceeded(status: int, limits: Limits, name: str, what: str) -> ApiError:
    """An ApiError saying ``what`` broke the limit ``name`` (a field of ``limits``)."""
    value = getattr(limits, name)
    return ApiError(status, f"{what}: over the server's limit {name} = {value}", limit=name, value=value)
