"""Face tracks across the frames of a video: a greedy IoU / centre-distance matcher, and
per-track temporal smoothing of class probabilities.

Detection runs every N frames; between detections each track's box moves on with the track's
last motion (constant velocity: the shift of its box centre between its last two detections,
per frame; the box keeps its last detected size), so boxes follow moving faces instead of
lagging until the next detection (bench/RESULTS.md, "Face detection"), and every frame still
gets one record per tracked face. Detections are matched against the boxes predicted for their
frame. A track found in at least two rounds and then missed by one stops where it was predicted
at that round and is still shown there (detectors such as Haar flicker); a track found only
once is hidden as soon as it is missed (most of Haar's false positives last one frame); missed
by more than ``hold_missed`` rounds a track is hidden but can still be matched again under its
id; missed by more than ``max_missed`` it is dropped. Ids are never reused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

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

    def box_at(self, frame: Optional[int]) -> Box:
        """The box predicted for ``frame``: ``box`` shifted by ``velocity`` times the frames since
        ``frame`` (rounded to ints, not clipped to the image)."""
        if frame is None or self.frame is None:
            return self.box
        dt = frame - self.frame
        dx, dy = round(self.velocity[0] * dt), round(self.velocity[1] * dt)
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
            t.hits += 1
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:  # missed: stop where it was predicted now (a face that stopped is not carried off)
                t.missed += 1
                t.box, t.frame, t.velocity = predicted[ti], frame, (0.0, 0.0)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for di, d in enumerate(detections):
            if di not in used_d:
                self.tracks.append(Track(self.next_id, tuple(d.box), d.score, frame=frame))
                self.next_id += 1
        return self.current()

    def current(self) -> list[Track]:
        """Tracks shown until the next detection round, sorted by id: those found by the latest round,
        and those found in two or more rounds and missed since at most ``hold_missed`` times."""
        return sorted((t for t in self.tracks if t.missed == 0 or (t.hits > 1 and t.missed <= self.hold_missed)),
                      key=lambda t: t.id)


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
