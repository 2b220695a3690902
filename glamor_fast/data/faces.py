"""Face boxes for data that has none: OpenCV's bundled Haar cascade, or any detector you plug in.

``detect_faces(root)`` writes ``root/crop/<split>/<class>/<stem>.txt`` ("x1,y1,x2,y2", or an
empty file when no face was found, so that image is not retried) for every image of every split
folder of a CAER-S-layout tree. Existing box files are kept, so an interrupted run resumes where
it stopped; ``overwrite=True`` redoes everything.

A detector is any callable ``detector(image_rgb uint8 (H, W, 3)) -> (x1, y1, x2, y2) or None``.
Users with boxes from a better detector can also skip this and hand them to ``CAERSDataset``
as a dict or an annotation file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from .caer import CROP_DIR, box_file_for, read_image, scan_split, write_box_file
from .transforms import Box

Detector = Callable[[np.ndarray], Optional[Sequence[int]]]

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (ships inside opencv-python(-headless) 4.x; nothing is downloaded).

    ``__call__(image_rgb uint8 (H, W, 3)) -> (x1, y1, x2, y2)`` of the largest detected face, or None.
    """

    def __init__(self, cascade_path: Optional[Union[str, os.PathLike]] = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 20):
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
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def __call__(self, image: np.ndarray) -> Optional[Box]:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"HaarFaceDetector: expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        faces = self.cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return x, y, x + w, y + h


def list_splits(root: Union[str, os.PathLike]) -> list[str]:
    """Split folders of a CAER-S-layout root: sub-folders other than crop/ and hidden ones."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != CROP_DIR and not p.name.startswith("."))


def detect_faces(root: Union[str, os.PathLike], detector: Optional[Detector] = None, overwrite: bool = False,
                 progress: bool = True, splits: Optional[Sequence[str]] = None) -> dict[str, int]:
    """Write a box file for every image under root/<split>/<Emotion>/ that has none yet.

    Args:
        root: CAER-S-layout dataset root.
        detector: callable(image_rgb) -> box or None; default HaarFaceDetector().
        overwrite: redo images whose box file already exists.
        progress: show a tqdm progress bar.
        splits: split folder names; default every folder of root except crop/.
    Returns counts {"images", "detected", "no_face", "skipped"} ("skipped": box file already there).
    """
    root = Path(root)
    detector = HaarFaceDetector() if detector is None else detector
    samples = [rel for split in (splits or list_splits(root)) for rel, _ in scan_split(root, split)]
    counts = {"images": len(samples), "detected": 0, "no_face": 0, "skipped": 0}
    for rel in tqdm(samples, desc="detect-faces", unit="img", disable=not progress):
        box_path = box_file_for(root, rel)
        if box_path.is_file() and not overwrite:
            counts["skipped"] += 1
            continue
        img = read_image(root / rel)
        box = detector(img)
        if box is not None:
            box = tuple(int(round(float(v))) for v in box)
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"detector returned an invalid box {box} for {root / rel}; expected (x1, y1, x2, y2)")
        write_box_file(box_path, box)
        counts["detected" if box is not None else "no_face"] += 1
    return counts
