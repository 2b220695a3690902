"""What to do with images that have no face box (``--no-box``).

- ``unmasked`` (default, the authors' behaviour): a zero face and an *unmasked* context, so in
  the masked-context settings the face leaks into the context. It stays the default because it
  is the protocol the published CAER-S numbers were measured with: ``drop`` changes the test
  set, so its accuracies are not comparable to the paper's.
- ``drop``: leave such images out of the dataset.
- ``detect``: run the Haar face detector (``HaarFaceDetector``) on them once; where it finds no
  face either, the image falls back to ``unmasked`` (counted in the warning).

Every policy says in one warning how many images were affected and what was done.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from .faces import HaarFaceDetector
from .transforms import Box

NO_BOX_POLICIES = ("unmasked", "drop", "detect")


def check_policy(policy: str) -> str:
    if policy not in NO_BOX_POLICIES:
        raise ValueError(f"no_box={policy!r}: choose one of {', '.join(NO_BOX_POLICIES)}")
    return policy


def apply_no_box_policy(samples: Sequence, boxes: Sequence[Optional[Box]], policy: str,
                        load_image: Callable[[int], np.ndarray], where: str,
                        detector: Optional[Callable] = None, warn: bool = True):
    """-> (samples, boxes, detected) after ``policy``; ``detected[i]`` is True where the box was detected here.

    ``samples[i]`` is ``(relpath, label)``; ``load_image(i)`` decodes image i (for ``detect``).
    Warns once (``warn``) with the number of images without a box and the policy applied.
    """
    check_policy(policy)
    samples, boxes = list(samples), list(boxes)
    detected = [False] * len(samples)
    missing = [i for i, box in enumerate(boxes) if box is None]
    if not missing:
        return samples, boxes, detected
    examples = ", ".join(samples[i][0] for i in missing[:3]) + (", ..." if len(missing) > 3 else "")
    head = f"{where}: {len(missing)} of {len(samples)} images have no face box (e.g. {examples})"
    if policy == "drop":
        keep = [i for i in range(len(samples)) if boxes[i] is not None]
        msg = f"{head}; --no-box drop: left out, {len(keep)} images remain."
        samples, boxes, detected = [samples[i] for i in keep], [boxes[i] for i in keep], [False] * len(keep)
    elif policy == "detect":
        if detector is None:
            detector = HaarFaceDetector()
        found = 0
        for i in missing:
            box = detector(load_image(i))
            if box is not None:
                boxes[i] = tuple(int(round(float(v))) for v in box)
                detected[i] = True
                found += 1
        msg = (f"{head}; --no-box detect: the Haar detector found a face in {found}; the other "
               f"{len(missing) - found} get a zero face and an unmasked context (the face leaks into it).")
    else:
        msg = (f"{head}; --no-box unmasked (the authors' behaviour): they get a zero face and an unmasked "
               "context, so the face leaks into the context. Use --no-box drop or detect, or run "
               "`glamor-fast detect-faces ROOT`.")
    if warn:
        warnings.warn(msg, stacklevel=3)
    return samples, boxes, detected
