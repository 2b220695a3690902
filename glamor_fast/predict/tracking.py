"""Face tracks across the frames of a video: a greedy IoU / centre-distance matcher, and
per-track temporal smoothing of class probabilities.

Detection runs every N frames; between detections each track keeps its last detected box, so
every frame still gets one record per tracked face. A track found in at least two rounds and
then missed by one is still shown at its last box (detectors such as Haar flicker); a track
found only once is hidden as soon as it is missed (most of Haar's false positives last one
frame); missed by more than ``hold_missed`` rounds a track is hidden but can still be matched
again under its id; missed by more than ``max_missed`` it is dropped. Ids are never reused.
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


def centre_distance(a: Box, b: Box) -> float:
    """Distance of the box centres divided by the mean side of the two boxes."""
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    side = (a[2] - a[0] + a[3] - a[1] + b[2] - b[0] + b[3] - b[1]) / 4
    return math.hypot(ca[0] - cb[0], ca[1] - cb[1]) / max(side, 1e-9)


@dataclass
class Track:
    id: int
    box: Box
    score: Optional[float]
    missed: int = 0           # consecutive detections that did not find this face
    hits: int = 1             # detection rounds that found it


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

    def update(self, detections: Sequence[Detection]) -> list[Track]:
        """Feed one detection round; returns ``current()``."""
        pairs = []
        for ti, t in enumerate(self.tracks):
            for di, d in enumerate(detections):
                o = iou(t.box, d.box)
                if o >= self.min_iou:
                    pairs.append((0, -o, ti, di))
                else:
                    c = centre_distance(t.box, d.box)
                    if c < self.max_centre_distance:
                        pairs.append((1, c, ti, di))
        used_t, used_d = set(), set()
        for _, _, ti, di in sorted(pairs):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t = self.tracks[ti]
            t.box, t.score, t.missed = tuple(detections[di].box), detections[di].score, 0
            t.hits += 1
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for di, d in enumerate(detections):
            if di not in used_d:
                self.tracks.append(Track(self.next_id, tuple(d.box), d.score))
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
