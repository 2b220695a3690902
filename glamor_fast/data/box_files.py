"""Face boxes for a dataset that has none: ``detect_faces(root)`` runs a face detector
(``faces.py``) over every image of a CAER-S-layout tree.

It writes ``root/crop/<split>/<class>/<stem>.txt`` ("x1,y1,x2,y2" of the largest face, or an
empty file when no face was found, so that image is not retried). Existing box files are kept,
so an interrupted run resumes where it stopped; ``overwrite=True`` redoes everything;
``skip_bad=True`` leaves out (with a warning each) images that cannot be decoded instead of
stopping. Users with boxes from a better detector can also skip this and hand them to
``CAERSDataset`` as a dict or an annotation file.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from tqdm import tqdm

from .caer import CROP_DIR, CorruptImageError, box_file_for, read_image, scan_split, write_box_file
from .faces import HaarFaceDetector, largest_face


def list_splits(root: Union[str, os.PathLike]) -> list[str]:
    """Split folders of a CAER-S-layout root: sub-folders other than crop/ and hidden ones."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != CROP_DIR and not p.name.startswith("."))


def detect_faces(root: Union[str, os.PathLike], detector: Optional[Callable] = None, overwrite: bool = False,
                 progress: bool = True, splits: Optional[Sequence[str]] = None,
                 skip_bad: bool = False) -> dict[str, int]:
    """Write a box file (the largest face) for every image under root/<split>/<Emotion>/ that has none yet.

    Args:
        root: CAER-S-layout dataset root.
        detector: a detector (image_rgb -> list[Detection]), or a callable returning one box or None;
            default HaarFaceDetector().
        overwrite: redo images whose box file already exists.
        progress: show a tqdm progress bar.
        splits: split folder names; default every folder of root except crop/.
        skip_bad: an image that cannot be decoded (corrupt, empty, vanished) gets a warning on the
            ``glamor_fast`` logger and no box file, and the others go on; without it, CorruptImageError
            (or FileNotFoundError) naming the file stops the run. ValueError when every image
            it looked at was unreadable.
    Returns counts {"images", "detected", "no_face", "skipped", "unreadable"} ("skipped": box file
    already there; "unreadable": left out by skip_bad).
    """
    root = Path(root)
    detector = HaarFaceDetector() if detector is None else detector
    samples = [rel for split in (splits or list_splits(root)) for rel, _ in scan_split(root, split)]
    counts = {"images": len(samples), "detected": 0, "no_face": 0, "skipped": 0, "unreadable": 0}
    for rel in tqdm(samples, desc="detect-faces", unit="img", disable=not progress):
        box_path = box_file_for(root, rel)
        if box_path.is_file() and not overwrite:
            counts["skipped"] += 1
            continue
        try:
            img = read_image(root / rel)
        except (CorruptImageError, FileNotFoundError) as exc:
            if not skip_bad:
                raise
            logging.getLogger("glamor_fast").warning("skipped (--skip-bad): %s", exc)
            counts["unreadable"] += 1
            continue
        box = largest_face(detector(img))
        if box is not None:
            box = tuple(int(round(float(v))) for v in box)
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"detector returned an invalid box {box} for {root / rel}; expected (x1, y1, x2, y2)")
        write_box_file(box_path, box)
        counts["detected" if box is not None else "no_face"] += 1
    if counts["unreadable"] and counts["unreadable"] == counts["images"] - counts["skipped"]:
        raise ValueError(f"none of the {counts['unreadable']} images to process in {root} could be decoded "
                         "(--skip-bad skipped them all)")
    return counts
