"""CAER-S-like trees of full-size (712x400) PNG frames with face-box files, made from matplotlib's
sample photo: realistic decode cost and image statistics for `bench.data` and the data tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .caer import EMOTIONS, box_file_for, write_box_file

FRAME_H, FRAME_W = 400, 712  # CAER-S frames


def write_frames_tree(root: Path, per_class: dict, seed: int = 0, no_box: tuple = ()) -> Path:
    """A CAER-S-layout tree of full-size (712x400) PNG frames with crop/ box files.

    ``per_class``: {split: images per class}. Frames are the matplotlib sample photo, shifted,
    scaled and noised per image (a real photo's statistics, PNG decode cost like CAER-S's);
    relpaths in ``no_box`` get no box file.
    """
    import matplotlib.cbook  # a tools dependency, needed only here

    photo = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label, name in enumerate(EMOTIONS):
            for k in range(n):
                rel = f"{split}/{name}/{k:04d}.png"
                scale = rng.uniform(0.9, 1.3)
                tx, ty = rng.uniform(-60, 60), rng.uniform(-40, 40)
                m = np.float32([[scale * FRAME_W / photo.shape[1], 0, tx], [0, scale * FRAME_H / photo.shape[0], ty]])
                frame = cv2.warpAffine(photo, m, (FRAME_W, FRAME_H), borderMode=cv2.BORDER_REFLECT)
                frame = np.clip(frame.astype(np.int16) + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), frame)
                if rel not in no_box:
                    x1, y1 = int(rng.integers(150, 400)), int(rng.integers(20, 150))
                    side = int(rng.integers(80, 200))
                    write_box_file(box_file_for(root, rel), (x1, y1, x1 + side, min(FRAME_H + 30, y1 + side)))
    return root
