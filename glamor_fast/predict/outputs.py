"""Everything ``predict`` writes, each file under a temporary name renamed when complete:
annotated images, annotated videos (encoded on a background thread), the JSON-lines file and
the per-video timeline PNG. A failure removes the temporary file and leaves any older file of
that name as it was.
"""
from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np


def temp_name(path: Path) -> Path:
    """A hidden name beside ``path`` keeping its extension (OpenCV picks the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_image(path: Path, image_rgb: np.ndarray) -> Path:
    """Encode an RGB uint8 image in the format of ``path``'s extension (PNG for one OpenCV cannot write)."""
    path = Path(path)
    ok, buf = False, None
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        pass
    if not ok:
        path = path.with_suffix(".png")
        ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    tmp = temp_name(path)
    try:
        buf.tofile(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class VideoWriter:
    """An MP4 (mp4v) written from RGB frames on a background thread; ``close()`` renames it into
    place, ``abort()`` deletes it. The queue holds at most ``max_queue`` frames, so memory stays
    bounded when encoding is slower than the rest.

    OpenCV's FFmpeg writer only writes even widths and heights (it crops an odd one): a frame of
    odd size is padded by one replicated pixel column/row on the right/bottom (``padded``), so
    nothing of the picture is lost; every other size is kept exactly.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], max_queue: int = 16):
        self.path = Path(path).with_suffix(".mp4")
        self.tmp = temp_name(self.path)
        self.pad = (size[0] % 2, size[1] % 2)
        self.padded = self.pad != (0, 0)
        even = (size[0] + self.pad[0], size[1] + self.pad[1])
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, even)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"cannot write video {self.path} (OpenCV's FFmpeg could not open an mp4v writer)")
        self.size = size
        self.frames = 0
        self.queue: queue.Queue = queue.Queue(max_queue)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._encode, name=f"encode {self.path.name}", daemon=True)
        self.thread.start()

    def _encode(self) -> None:
        while True:
            frame = self.queue.get()
            if frame is None:
                return
            if self.error is None:
                try:
                    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                    if self.padded:
                        bgr = cv2.copyMakeBorder(bgr, 0, self.pad[1], 0, self.pad[0], cv2.BORDER_REPLICATE)
                    self.writer.write(bgr)
                except BaseException as exc:  # reported by close() in the caller's thread
                    self.error = exc

    def write(self, frame_rgb: np.ndarray) -> None:
        if (frame_rgb.shape[1], frame_rgb.shape[0]) != self.size:
            raise ValueError(f"{self.path}: frame of {frame_rgb.shape[1]}x{frame_rgb.shape[0]} for a "
                             f"{self.size[0]}x{self.size[1]} video")
        if self.error is not None:
            raise OSError(f"encoding {self.path} failed: {self.error}")
        self.queue.put(frame_rgb)
        self.frames += 1

    def _stop(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.writer.release()

    def close(self) -> Path:
        self._stop()
        if self.error is not None:
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"encoding {self.path} failed: {self.error}")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._stop()
        self.tmp.unlink(missing_ok=True)


class RecordFile:
    """A text file of records written to a temporary name: ``close()`` renames it into place,
    ``abort()`` deletes it, ``mark()``/``rewind(mark)`` drop the records written since the mark (an
    input that failed half-way). Subclasses open ``self.file`` through ``__init__`` and count
    ``self.count`` in their ``write``."""

    def __init__(self, path: Path, newline: Optional[str] = None):
        self.path = Path(path)
        self.tmp = temp_name(self.path)
        self.file = open(self.tmp, "w", encoding="utf-8", newline=newline)
        self.count = 0

    def mark(self) -> tuple[int, int]:
        self.file.flush()
        return self.file.tell(), self.count

    def rewind(self, mark: tuple[int, int]) -> None:
        self.file.seek(mark[0])
        self.file.truncate()
        self.count = mark[1]

    def close(self) -> Path:
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class JsonLines(RecordFile):
    """predictions.jsonl: one JSON object per line."""

    def write(self, record: dict) -> str:
        line = json.dumps(record, separators=(", ", ": "))
        self.file.write(line + "\n")
        self.count += 1
        return line


def write_timeline(path: Path, title: str, classes: Sequence[str], tracks: dict, max_panels: int = 8,
                   duration: Optional[float] = None) -> Path:
    """Probability of each class over time, one panel per face track; saved as PNG.

    tracks: {track id: (times (n,) seconds, probs (n, C))}; no tracks gives one panel saying so.
    At most ``max_panels`` panels: the longest tracks (the title says how many were left out).
    The panels share one time axis, from 0 to ``duration`` seconds (the video's length; None: the
    last time of any track), so a face that appears late is drawn late.
    """
    from matplotlib.figure import Figure

    if len(tracks) > max_panels:
        keep = sorted(tracks, key=lambda t: -len(tracks[t][0]))[:max_panels]
        title = f"{title}; the {max_panels} longest of {len(tracks)} face tracks"
        tracks = {t: tracks[t] for t in keep}
    n = max(len(tracks), 1)
    fig = Figure(figsize=(8, 1.9 * n + 0.6), dpi=100)
    axes = fig.subplots(n, 1, squeeze=False, sharex=True)[:, 0]
    if not tracks:
        axes[0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
    for ax, (tid, (times, probs)) in zip(axes, sorted(tracks.items())):
        times, probs = np.asarray(times), np.asarray(probs)
        for c, name in enumerate(classes):
            ax.plot(times, probs[:, c], label=name, lw=1.2)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}", fontsize=8)
        ax.tick_params(labelsize=7)
    end = duration if duration is not None else max((float(np.max(t)) for t, _ in tracks.values() if len(t)),
                                                    default=0.0)
    if tracks and end > 0:
        axes[0].set_xlim(0, end)
    if tracks:
        axes[0].legend(fontsize=7, ncol=len(classes), loc="lower left", bbox_to_anchor=(0, 1.02))
    axes[-1].set_xlabel("time (s)", fontsize=8)
    fig.suptitle(title, fontsize=9, y=0.995)
    fig.tight_layout()
    path = Path(path)
    tmp = temp_name(path)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
