import argparse
import importlib.util
import sys
import warnings

import cv2
import numpy as np

import pytest
from matplotlib import cbook

from glamor_fast.data import CAERSDataset, HaarFaceDetector, detect_faces, read_image
from glamor_fast.data.faces import Detection, MissingExtraError, largest_face, make_detector
from glamor_fast.cli import detect_faces as faces_cli


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


GRACE = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
# Her face (forehead under the cap to chin, ear to ear), checked by eye once: about x 165..365, y 130..330.
GRACE_FACE = (165, 130, 365, 330)


def _two_faces(scale: float = 1.0):
    img = read_image(GRACE)
    if scale != 1.0:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return np.concatenate([img, img], axis=1)


def _assert_finds_both(found, scale: float = 1.0, min_iou: float = 0.6):
    w = round(512 * scale)
    expect = [tuple(v * scale for v in GRACE_FACE), tuple(v * scale + (w if i % 2 == 0 else 0) for i, v in enumerate(GRACE_FACE))]
    assert len(found) == 2, found
    for det, box in zip(found, expect):
        assert isinstance(det, Detection) and all(isinstance(v, int) for v in det.box)
        assert _iou(det.box, box) > min_iou, (det, box)


def test_haar_finds_grace_hopper():
    img = read_image(GRACE)
    assert img.shape == (600, 512, 3)
    (det,) = HaarFaceDetector()(img)
    assert _iou(det.box, GRACE_FACE) > 0.6 and det.score is None
    assert largest_face([det]) == det.box


def test_haar_returns_every_face_and_detects_on_a_downscaled_copy():
    two = _two_faces()
    _assert_finds_both(HaarFaceDetector(max_side=None)(two))
    _assert_finds_both(HaarFaceDetector(max_side=320)(two))  # boxes in pixels of the original frame
    assert HaarFaceDetector(max_size=150)(two) == []           # size limits in original pixels
    assert HaarFaceDetector(min_size=260)(two) == []


def test_haar_returns_nothing_without_a_face_and_rejects_bad_images():
    assert HaarFaceDetector()(np.full((120, 160, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        HaarFaceDetector()(np.zeros((10, 10), np.uint8))


def test_make_detector_names():
    assert isinstance(make_detector("haar"), HaarFaceDetector)
    with pytest.raises(ValueError, match="unknown face detector 'yolo'; choose one of haar, dlib-cnn, dlib-hog"):
        make_detector("yolo")


@pytest.mark.parametrize("name", ["dlib-cnn", "dlib-hog"])
def test_dlib_detectors_without_dlib_name_the_extra(name, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "\.\[dlib\]"'):
        make_detector(name)


def test_dlib_cnn_without_its_weights_package_names_the_extra(monkeypatch):
    pytest.importorskip("dlib")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingExtraError, match="face-recognition-models"):
        make_detector("dlib-cnn")


def test_dlib_hog_finds_both_faces():
    pytest.importorskip("dlib", reason="optional extra: pip install '.[dlib]'")
    found = make_detector("dlib-hog")(_two_faces())
    _assert_finds_both(found)
    assert all(d.score > 0 for d in found)


def test_dlib_cnn_finds_both_faces():
    pytest.importorskip("dlib", reason="optional extra: pip install '.[dlib]'")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("optional extra: pip install '.[dlib]' (face-recognition-models)")
    found = make_detector("dlib-cnn")(_two_faces(scale=0.3))  # small frame: the CNN takes seconds on a CPU
    _assert_finds_both(found, scale=0.3, min_iou=0.5)
    assert all(d.score >= 0.6 for d in found)


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
    assert counts == {"images": 6, "detected": 5, "no_face": 1, "skipped": 0, "unreadable": 0} and det.calls == 6
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


def test_detect_faces_keeps_the_largest_face_of_a_detector(tree):
    root, _ = tree
    det = lambda img: [Detection((0, 0, 5, 5), 0.9), Detection((1, 2, 30, 33), 0.5)]  # noqa: E731
    assert detect_faces(root, detector=det, progress=False, splits=["test"])["detected"] == 2
    assert (root / "crop/test/Anger/a0.txt").read_text().strip() == "1,2,30,33"


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


def test_haar_finds_both_faces_of_a_flat_background_clip(tmp_path):
    """Generated footage: two 60-px faces swinging over flat grey. With cv2.equalizeHist first (the
    old default) the cascade found one face or none in every frame here (OpenCV 4.14); without it, both."""
    from glamor_fast.predict.tracking import iou
    from tests.predict.footage import faces_clip, read_frames

    truth = faces_clip(tmp_path / "flat.mp4", "flat", frames=8, scale=0.3)
    default, equalized = HaarFaceDetector(max_side=480, min_size=40), HaarFaceDetector(max_side=480, min_size=40,
                                                                                        equalize=True)
    both = {"default": 0, "equalized": 0}
    for frame, boxes in zip(read_frames(tmp_path / "flat.mp4"), truth):
        for name, det in (("default", default), ("equalized", equalized)):
            found = [d.box for d in det(frame)]
            hits = [max((iou(f, b) for f in found), default=0.0) >= 0.3 for b in boxes]
            both[name] += all(hits) and len(found) == 2
    assert both["default"] == 8 and both["equalized"] < 8, both
