"""Tiny CAER-S-layout trees for the data tests."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from glamor_fast.data.sample_frames import write_frames_tree


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


@pytest.fixture
def frames_tree(tmp_path):
    """train: 2 frames per class, test: 1 per class; test/Happy/0000.png has no face box."""
    return write_frames_tree(tmp_path / "caer", {"train": 2, "test": 1}, no_box=("test/Happy/0000.png",))
