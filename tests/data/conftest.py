"""Tiny CAER-S-layout trees for the data tests."""
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_image(path: Path, h: int = 40, w: int = 60, seed: int = 0, value=None) -> np.ndarray:
    """Write a random (or constant ``value``) RGB image as PNG/JPG; returns the RGB array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = (np.full((h, w, 3), value, np.uint8) if value is not None
           else rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


@pytest.fixture
def tree(tmp_path):
    """root/{train,test}/<class>/ with train using "Angry" and test using "Anger" (as some copies do)."""
    root = tmp_path / "caer"
    files = {
        "train/Angry/a0.png": 0, "train/Angry/a1.png": 0, "train/happy/h0.png": 3,
        "train/Sad/s0.jpg": 5, "test/Anger/a0.png": 0, "test/Surprise/u0.png": 6,
    }
    for i, rel in enumerate(files):
        write_image(root / rel, seed=i)
    return root, files


FRAME_H, FRAME_W = 400, 712  # CAER-S frames


def write_frames_tree(root: Path, per_class: dict, seed: int = 0, no_box: tuple = ()) -> Path:
    """A CAER-S-layout tree of full-size (712x400) PNG frames with crop/ box files.

    ``per_class``: {split: images per class}. Frames are the matplotlib sample photo, shifted,
    scaled and noised per image (a real photo's statistics, PNG decode cost like CAER-S's);
    relpaths in ``no_box`` get no box file.
    """
    import matplotlib.cbook

    from glamor_fast.data import EMOTIONS
    from glamor_fast.data.caer import box_file_for, write_box_file

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


@pytest.fixture
def frames_tree(tmp_path):
    """train: 2 frames per class, test: 1 per class; test/Happy/0000.png has no face box."""
    return write_frames_tree(tmp_path / "caer", {"train": 2, "test": 1}, no_box=("test/Happy/0000.png",))
