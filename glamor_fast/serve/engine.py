"""The model behind the server: face detection, and the one call that classifies faces (the seam).

``Engine.recognize(items)`` is the only place the server touches the model: it takes a list of
``(image, boxes)`` pairs (RGB uint8 (H, W, 3) arrays, boxes ``(x1, y1, x2, y2)`` int pixels,
x2/y2 exclusive) and returns, per pair, one face record per box, in the record format of
``predict`` (``box``, ``detector_score``, ``emotion``, ``probs``). The dynamic batcher hands
it the faces of many requests at once; they go through the model in one forward pass.
Detection (``Engine.detect``) is separate so that it can run in a worker pool.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from glamor_fast.data.faces import make_detector
from glamor_fast.data.transforms import Box
from glamor_fast.predict.model import FaceClassifier
from glamor_fast.predict.records import face_record
from glamor_fast.predict.run import DEFAULT_DETECT_SIDE, DEFAULT_MIN_FACE, IMAGE_DETECT_SIDE

FaceBoxes = Sequence[tuple[Box, Optional[float]]]   # [(box, detector score or None)]


class Engine:
    """A checkpoint loaded once, plus a face detector per worker thread.

    ``detector``: a name of ``glamor_fast.data.faces.DETECTORS``. Still images are searched on a
    copy downscaled to at most ``IMAGE_DETECT_SIDE`` pixels, video frames to ``DEFAULT_DETECT_SIDE``
    (Haar only, as in ``predict``); faces smaller than ``min_face`` pixels are ignored.
    """

    def __init__(self, checkpoint, device: str = "auto", backend: Optional[str] = None, detector: str = "haar",
                 min_face: int = DEFAULT_MIN_FACE):
        self.checkpoint = Path(checkpoint)
        self.classifier = FaceClassifier(checkpoint, device=device, backend=backend)
        self.classes = list(self.classifier.classes)
        self.detector_name, self.min_face = detector, int(min_face)
        if detector != "haar":
            make_detector(detector)  # an unknown name or a missing extra is reported now, not at a request
        self._local = threading.local()

    def _detector(self, video: bool):
        """Detectors hold OpenCV state that is not safe to share between threads: one per thread."""
        key = "video" if video else "image"
        found = getattr(self._local, key, None)
        if found is None:
            if self.detector_name == "haar":
                side = DEFAULT_DETECT_SIDE if video else IMAGE_DETECT_SIDE
                found = make_detector("haar", max_side=side, min_size=self.min_face)
            else:
                found = make_detector(self.detector_name)
            setattr(self._local, key, found)
        return found

    def detect(self, image: np.ndarray, video: bool = False) -> list[tuple[Box, Optional[float]]]:
        """Faces of one RGB uint8 image: [(box, score)], left to right, smaller than ``min_face`` left out."""
        out = []
        for box, score in self._detector(video)(image):
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face:
                out.append((tuple(int(v) for v in box), score))
        return out

    def recognize(self, items: Sequence[tuple[np.ndarray, FaceBoxes]]) -> list[list[dict]]:
        """The seam: every face of every ``(image, [(box, score)])`` item in one forward pass ->
        per item, its face records in box order."""
        frames = [image for image, faces in items for _ in faces]
        boxes = [box for _, faces in items for box, _ in faces]
        probs = self.classifier(frames, boxes).probs
        out, k = [], 0
        for _, faces in items:
            out.append([face_record(box, score, self.classes, probs[k + i]) for i, (box, score) in enumerate(faces)])
            k += len(faces)
        return out

    def info(self) -> dict:
        """What ``GET /v1/info`` says about the model."""
        from glamor_fast import GlobalLocalAttention

        clf = self.classifier
        gla = [m.backend for m in clf.model.modules() if isinstance(m, GlobalLocalAttention)]
        return {"checkpoint": self.checkpoint.name, "classes": self.classes, "attention": clf.attention,
                "gla_backend": gla[0] if gla else None,
                "device": str(clf.device), "detector": self.detector_name, "min_face": self.min_face}
