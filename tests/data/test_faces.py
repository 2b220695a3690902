import argparse
import warnings

import pytest
from matplotlib import cbook

from glamor_fast.data import CAERSDataset, HaarFaceDetector, detect_faces, read_image
from glamor_fast.cli import detect_faces as faces_cli


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_haar_finds_grace_hopper():
    img = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert img.shape == (600, 512, 3)
    box = HaarFaceDetector()(img)
    assert box is not None
    # Her face (forehead under the cap to chin, ear to ear), checked by eye once: about x 165..365, y 130..330.
    assert _iou(box, (165, 130, 365, 330)) > 0.6, box


def test_haar_returns_none_without_a_face():
    import numpy as np
    assert HaarFaceDetector()(np.full((120, 160, 3), 128, np.uint8)) is None


class CountingDetector:
    """Finds a face in every image except those whose top-left pixel is dark."""

    def __init__(self):
        self.calls = 0

    def __call__(self, img):
        self.calls += 1
        return None if img[0, 0].sum() < 100 else (2, 3, 20, 25)


def test_detect_faces_writes_box_files_cached_and_resumable(tree):
    root, files = tree
    from .conftest import write_image
    write_image(root / "train/Sad/s0.jpg", value=10)  # dark -> "no face"
    for rel in files:
        if rel != "train/Sad/s0.jpg":
            write_image(root / rel, value=200)
    det = CountingDetector()
    counts = detect_faces(root, detector=det, progress=False)
    assert counts == {"images": 6, "detected": 5, "no_face": 1, "skipped": 0} and det.calls == 6
    assert (root / "crop/train/Angry/a0.txt").read_text().strip() == "2,3,20,25"
    assert (root / "crop/train/Sad/s0.txt").read_text() == ""  # marker: not retried
    # second run: everything cached, including the no-face image
    counts = detect_faces(root, detector=det, progress=False)
    assert counts["skipped"] == 6 and det.calls == 6
    # resume after an interruption: only the missing box file is redone
    (root / "crop/test/Surprise/u0.txt").unlink()
    assert detect_faces(root, detector=det, progress=False)["detected"] == 1 and det.calls == 7
    assert detect_faces(root, detector=det, progress=False, overwrite=True)["detected"] == 5 and det.calls == 13
    # the loader reads them: a warning only for the no-face image
    with pytest.warns(UserWarning, match="1 of 4 images"):
        ds = CAERSDataset(root, "train")
    assert ds.boxes == [(2, 3, 20, 25), (2, 3, 20, 25), (2, 3, 20, 25), None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CAERSDataset(root, "test").boxes == [(2, 3, 20, 25)] * 2


def test_detector_returning_a_bad_box_is_an_error(tree):
    root, _ = tree
    with pytest.raises(ValueError, match="invalid box"):
        detect_faces(root, detector=lambda img: (5, 5, 2, 2), progress=False)


def test_detect_faces_cli(tree, capsys):
    root, _ = tree
    parser = argparse.ArgumentParser()
    faces_cli.add_arguments(parser)
    args = parser.parse_args([str(root), "--no-progress", "--splits", "test"])
    assert faces_cli.main(args) == 0
    assert "2 images" in capsys.readouterr().out
    assert (root / "crop/test/Anger/a0.txt").is_file() and not (root / "crop/train").exists()
