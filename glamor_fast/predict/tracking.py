"""Face tracks across the frames of a video: a greedy IoU / centre-distance matcher, and
per-track temporal smoothing of class probabilities.

Detection runs every N frames; between detections ``follow`` moves each track's box with the
motion of the image inside it (the median optical flow of its corner points, ``flow_shift``),
or, where too few points are found, carries it on with the track's last motion (constant
velocity: the shift of its box centre between its last two detections, per frame); the box
keeps its last detected size. So boxes follow moving faces instead of lagging until the next
detection (bench/RESULTS.md, "Face detection"), and every frame still gets one record per
tracked face. Detections are matched against the boxes predicted for their frame. Without
``follow`` calls, boxes move with the constant velocity alone (``box_at``). A track found in
at least two rounds and then missed by one stops where it was predicted at that round and is
still shown there (detectors such as Haar flicker); a track found only once is hidden as soon
as it is missed (most of Haar's false positives last one frame); missed by more than
``hold_missed`` rounds a track is hidden but can still be matched again under its id; missed by
more than ``max_missed`` it is dropped. Ids are never reused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from glamor_fast.data.faces import Detection
from glamor_fast.data.transforms import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def centre_distance(a: Box, b: Box) -> float:
    """Distance of the box centres divided by the mean side of the two boxes."""
    ca, cb = _centre(a), _centre(b)
    side = (a[2] - a[0] + a[3] - a[1] + b[2] - b[0] + b[3] - b[1]) / 4
    return math.hypot(ca[0] - cb[0], ca[1] - cb[1]) / max(side, 1e-9)


@dataclass
class Track:
    id: int
    box: Box                  # last detected box (or, after a miss, where it was predicted then)
    score: Optional[float]
    missed: int = 0           # consecutive detections that did not find this face
    hits: int = 1             # detection rounds that found it
    frame: Optional[int] = None               # frame of ``box``
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre shift per frame (x, y), pixels
    shift: tuple[float, float] = (0.0, 0.0)     # how far ``follow`` moved the box since ``frame``...
    shift_frame: Optional[int] = None           # ... up to this frame (None: not followed)

    def shift_at(self, frame: int) -> tuple[float, float]:
        """(dx, dy) from ``box`` to the box for ``frame``: the followed shift, then ``velocity``
        per frame beyond the last frame followed."""
        base, since = (self.shift, self.shift_frame) if self.shift_frame is not None else ((0.0, 0.0), self.frame)
        dt = frame - since
        return base[0] + self.velocity[0] * dt, base[1] + self.velocity[1] * dt

    def box_at(self, frame: Optional[int]) -> Box:
        """The box for ``frame`` (ints, not clipped to the image): ``box`` moved by ``shift_at``."""
        if frame is None or self.frame is None:
            return self.box
        dx, dy = (round(v) for v in self.shift_at(frame))
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


@dataclass
class FaceTracker:
    """Match each detection round to the live tracks.

    A detection joins the track with the highest IoU (>= ``min_iou``), or failing that the
    nearest centre (< ``max_centre_distance`` mean box sides); pairs are taken best first, each
    track and detection at most once. Unmatched detections start new tracks.
    """
    min_iou: float = 0.3
    max_centre_distance: float = 0.5
    hold_missed: int = 1
    max_missed: int = 3
    tracks: list = field(default_factory=list)
    next_id: int = 0

    def update(self, detections: Sequence[Detection], frame: Optional[int] = None) -> list[Track]:
        """Feed one detection round (of video frame ``frame``; None: no motion is tracked); returns
        ``current()``. Detections are matched against each track's box predicted for ``frame``."""
        pairs = []
        predicted = [t.box_at(frame) for t in self.tracks]
        for ti, t in enumerate(self.tracks):
            for di, d in enumerate(detections):
                o = iou(predicted[ti], d.box)
                if o >= self.min_iou:
                    pairs.append((0, -o, ti, di))
                else:
                    c = centre_distance(predicted[ti], d.box)
                    if c < self.max_centre_distance:
                        pairs.append((1, c, ti, di))
        used_t, used_d = set(), set()
        for _, _, ti, di in sorted(pairs):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t = self.tracks[ti]
            box = tuple(detections[di].box)
            if frame is not None and t.frame is not None and frame > t.frame:
                (ox, oy), (nx, ny) = _centre(t.box), _centre(box)
                t.velocity = ((nx - ox) / (frame - t.frame), (ny - oy) / (frame - t.frame))
            t.box, t.score, t.missed, t.frame = box, detections[di].score, 0, frame
            t.shift, t.shift_frame = (0.0, 0.0), None
            t.hits += 1
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:  # missed: stop where it was predicted now (a face that stopped is not carried off)
                t.missed += 1
                t.box, t.frame, t.velocity = predicted[ti], frame, (0.0, 0.0)
                t.shift, t.shift_frame = (0.0, 0.0), None
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for di, d in enumerate(detections):
            if di not in used_d:
                self.tracks.append(Track(self.next_id, tuple(d.box), d.score, frame=frame))
                self.next_id += 1
        return self.current()

    def follow(self, prev_gray: np.ndarray, gray: np.ndarray, frame: int, scale: float = 1.0) -> None:
        """Move each shown track's box from frame ``frame - 1`` to ``frame`` by the motion of the
        image inside it (``flow_shift``), or by its ``velocity`` where that finds too few points.

        prev_gray, gray: uint8 (h, w) grey copies of the two frames, ``scale`` times the frame's size.
        """
        for t in self.current():
            if t.frame is None or frame <= t.frame:
                continue
            before = t.shift_at(frame - 1)
            x1, y1, x2, y2 = t.box_at(frame - 1)
            moved = flow_shift(prev_gray, gray, (x1 * scale, y1 * scale, x2 * scale, y2 * scale))
            step = t.velocity if moved is None else (moved[0] / scale, moved[1] / scale)
            t.shift, t.shift_frame = (before[0] + step[0], before[1] + step[1]), frame

    def current(self) -> list[Track]:
        """Tracks shown until the next detection round, sorted by id: those found by the latest round,
        and those found in two or more rounds and missed since at most ``hold_missed`` times."""
        return sorted((t for t in self.tracks if t.missed == 0 or (t.hits > 1 and t.missed <= self.hold_missed)),
                      key=lambda t: t.id)


def flow_shift(prev: np.ndarray, cur: np.ndarray, box, max_points: int = 40) -> Optional[tuple[float, float]]:
    """Median motion (dx, dy) in pixels of corner points inside ``box`` (x1, y1, x2, y2) from grey
    uint8 image ``prev`` to ``cur`` (OpenCV's pyramidal Lucas-Kanade optical flow, on the box and
    a margin of half its size around it); None when fewer than 3 points are found and followed."""
    h, w = prev.shape
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    bx1, by1, bx2, by2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if bx2 - bx1 < 8 or by2 - by1 < 8:
        return None
    mx, my = (x2 - x1) // 2, (y2 - y1) // 2
    rx1, ry1, rx2, ry2 = max(bx1 - mx, 0), max(by1 - my, 0), min(bx2 + mx, w), min(by2 + my, h)
    a, b = prev[ry1:ry2, rx1:rx2], cur[ry1:ry2, rx1:rx2]
    mask = np.zeros_like(a)
    mask[by1 - ry1:by2 - ry1, bx1 - rx1:bx2 - rx1] = 255
    points = cv2.goodFeaturesToTrack(a, max_points, 0.01, 5, mask=mask)
    if points is None or len(points) < 3:
        return None
    moved, found, _ = cv2.calcOpticalFlowPyrLK(a, b, points, None, winSize=(15, 15), maxLevel=2)
    ok = found.ravel() == 1
    if ok.sum() < 3:
        return None
    d = (moved[ok] - points[ok]).reshape(-1, 2)
    return float(np.median(d[:, 0])), float(np.median(d[:, 1]))


class ProbSmoother:
    """Exponential moving average of each track's probabilities with time constant ``tau`` seconds:
    p_t = a * p_prev + (1 - a) * p, a = exp(-dt / tau). A track's first frame is taken as is."""

    def __init__(self, tau: float):
        if not tau > 0:
            raise ValueError(f"smoothing time constant must be > 0 seconds, got {tau}")
        self.tau = tau
        self.state: dict[int, tuple[float, np.ndarray]] = {}

    def __call__(self, track: int, time_s: float, probs: np.ndarray) -> np.ndarray:
        prev = self.state.get(track)
        if prev is not None:
            a = math.exp(-max(time_s - prev[0], 0.0) / self.tau)
            probs = a * prev[1] + (1 - a) * probs
        self.state[track] = (time_s, probs)
        return probs
