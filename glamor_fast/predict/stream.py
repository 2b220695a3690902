"""Live streams: a camera (``--camera N``) or any URL OpenCV opens (rtsp://, http://, file:), as frames arrive.

``predict_stream(source, checkpoint, out_dir)`` reads frames on a thread that always keeps only
the newest one: when the model falls behind, older frames are dropped (and counted), never
queued, so the answers stay live. Each processed frame's records (``RECORD_FIELDS``; ``frame``
is the source's frame number, so dropped frames show as gaps) are written to
``<name>.jsonl`` and flushed at once (``on_record`` sees them too), and the annotated frame goes
to ``<name>.mp4``. The stream ends when the source does, or on Ctrl-C (SIGINT) or ``stop``: the
video is finished (playable) and both files are renamed into place, complete.

A ``file:`` URL is paced at the file's frame rate, so a file behaves as a live source (this is
how the tests run it).
"""
from __future__ import annotations

import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from glamor_fast.data.faces import make_detector

from .annotate import draw_faces
from .outputs import JsonLines, VideoWriter
from .records import face_record
from .tracking import FaceTracker

STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "file:")


def is_stream(text) -> bool:
    """Whether a ``predict`` input names a stream (a URL) rather than a file or folder."""
    return isinstance(text, str) and text.lower().startswith(STREAM_PREFIXES)


def stream_name(source: Union[int, str]) -> str:
    """Output file stem: ``camera0`` for camera 0, else the URL's last path part (letters, digits, ``-_.``)."""
    if isinstance(source, int):
        return f"camera{source}"
    tail = re.split(r"[/\\?#]", source.split("://", 1)[-1].split(":", 1)[-1].rstrip("/"))
    stem = Path([t for t in tail if t][-1] if any(tail) else "stream").stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip("._") or "stream"


@dataclass
class StreamResult:
    frames_read: int = 0       # frames the source delivered
    frames_done: int = 0       # frames classified and written
    dropped: int = 0           # frames skipped because the model was behind
    records: int = 0
    video: Optional[Path] = None
    jsonl: Optional[Path] = None
    interrupted: bool = False


class LatestFrame:
    """Reads ``cap`` on a thread; ``take()`` returns the newest unread (index, RGB frame), dropping older ones."""

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray, fps: float, pace: bool):
        self.cap, self.fps, self.pace = cap, fps, pace
        self.read, self.dropped = 1, 0
        self.ended = False
        self._slot: Optional[tuple[int, np.ndarray]] = (0, first)
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="stream reader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        start = time.monotonic()
        try:
            while not self._stop:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    break
                if self.pace:  # a file: deliver frames at its own rate, as a camera would
                    time.sleep(max(0.0, start + self.read / self.fps - time.monotonic()))
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = (self.read, bgr)
                    self.read += 1
                    self._cond.notify()
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify()

    def take(self, timeout: float = 0.2) -> Optional[tuple[int, np.ndarray]]:
        """The newest frame not yet taken; None when none came within ``timeout`` (see ``ended``)."""
        with self._cond:
            if self._slot is None and not self.ended:
                self._cond.wait(timeout)
            item, self._slot = self._slot, None
        return None if item is None else (item[0], cv2.cvtColor(item[1], cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.cap.release()


def open_capture(source: Union[int, str]) -> tuple[cv2.VideoCapture, np.ndarray]:
    """An opened capture and its first frame (BGR); ValueError naming the source otherwise."""
    cap = cv2.VideoCapture(source) if isinstance(source, int) else cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    what = f"camera {source}" if isinstance(source, int) else source
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise ValueError(f"{what}: cannot open the stream (no frame could be read)")
    return cap, first


def predict_stream(source: Union[int, str], checkpoint, out_dir, *, detector: str = "haar", every: int = 5,
                   device: str = "auto", backend: Optional[str] = None, detect_side: Optional[int] = 480,
                   min_face: int = 40, on_record: Optional[Callable[[dict], None]] = None,
                   stop: Optional[threading.Event] = None) -> StreamResult:
    """Classify every face of a live ``source`` (camera index or URL) until it ends, Ctrl-C or ``stop``.

    Detection runs on every ``every``-th processed frame, a ``FaceTracker`` carries the faces in
    between. Raises ValueError (bad option, stream that does not open) or OSError (``out_dir``)
    before anything is written.
    """
    if int(every) < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    out_dir = Path(out_dir)
    cap, first = open_capture(source)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        from glamor_fast.recognizer import EmotionRecognizer

        classifier = EmotionRecognizer(checkpoint, detector=lambda image: [], device=device,
                                       backend="auto" if backend is None else backend)
        detect = (make_detector("haar", max_side=detect_side, min_size=min_face) if detector == "haar"
                  else make_detector(detector))
    except BaseException:
        cap.release()
        raise
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if 0 < fps < 1000 else 25.0
    name, label = stream_name(source), (f"camera:{source}" if isinstance(source, int) else source)
    size = (first.shape[1], first.shape[0])
    stop = stop or threading.Event()
    result = StreamResult()
    writer = VideoWriter(out_dir / f"{name}.mp4", fps, size)
    jsonl = JsonLines(out_dir / f"{name}.jsonl")
    reader = LatestFrame(cap, first, fps, pace=isinstance(source, str) and source.lower().startswith("file:"))
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda s, f: stop.set())
    try:
        tracker = FaceTracker()
        while not stop.is_set():
            item = reader.take()
            if item is None:
                if reader.ended:
                    break
                continue
            index, frame = item
            if (frame.shape[1], frame.shape[0]) != size:
                raise ValueError(f"{label}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"the stream began at {size[0]}x{size[1]}")
            if result.frames_done % every == 0:
                tracker.update([d for d in detect(frame) if min(d[0][2] - d[0][0], d[0][3] - d[0][1]) >= min_face])
            tracks = tracker.current()
            probs = classifier.classify([frame] * len(tracks), [t.box for t in tracks])[0]
            records = []
            for t, p in zip(tracks, probs):
                records.append({"source": label, "frame": index, "time_s": round(index / fps, 6), "track": t.id,
                                **face_record(t.box, t.score, classifier.classes, p)})
            shown = records or [{"source": label, "frame": index, "time_s": round(index / fps, 6), "track": None,
                                 "box": None, "detector_score": None, "emotion": None, "probs": None}]
            for r in shown:
                jsonl.write(r)
                if on_record is not None:
                    on_record(r)
            jsonl.file.flush()
            writer.write(draw_faces(frame, records))
            result.frames_done += 1
            result.records += len(shown)
    except BaseException:
        writer.abort()
        jsonl.abort()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        reader.close()
        result.frames_read, result.dropped = reader.read, reader.dropped
    result.interrupted = stop.is_set()
    result.video, result.jsonl = writer.close(), jsonl.close()
    return result
