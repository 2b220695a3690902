"""FaceTracker (IoU / centre matcher, stable ids) and ProbSmoother."""
import math

import numpy as np
import pytest

from glamor_fast.data.faces import Detection
from glamor_fast.predict.tracking import FaceTracker, ProbSmoother, centre_distance, iou


def det(x, y, s=40):
    return Detection((x, y, x + s, y + s), None)


def test_iou_and_centre_distance():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert centre_distance((0, 0, 10, 10), (30, 40, 40, 50)) == pytest.approx(5.0)


def test_two_people_keep_their_ids_while_moving_and_crossing_rounds():
    tr = FaceTracker()
    assert [t.id for t in tr.update([det(0, 0), det(200, 0)])] == [0, 1]
    for step in range(1, 6):  # both move 12 px per round, reported in the other order
        shown = tr.update([det(200 - 12 * step, 0), det(12 * step, 0)])
        assert {t.id: t.box[0] for t in shown} == {0: 12 * step, 1: 200 - 12 * step}


def test_a_face_whose_box_changes_size_is_matched_by_its_centre():
    tr = FaceTracker()
    tr.update([det(0, 0, 20)])
    small = Detection((3, 3, 13, 13), None)  # the detector boxed the face tighter
    assert iou((0, 0, 20, 20), small.box) < tr.min_iou
    assert [t.id for t in tr.update([small])] == [0]
    far = Detection((60, 0, 70, 10), None)
    assert [t.id for t in tr.update([far])] == [0, 1]  # too far from track 0: a new face (0 is held)


def test_missed_faces_are_held_then_hidden_then_dropped_and_ids_are_not_reused():
    tr = FaceTracker(hold_missed=1, max_missed=2)
    tr.update([det(0, 0)])
    tr.update([det(1, 0), det(100, 100)])                # 1 is seen once: a false positive?
    assert [t.id for t in tr.update([])] == [0]          # 0 missed once: still shown at its last box; 1 hidden
    assert tr.update([]) == [] and len(tr.tracks) == 2   # missed twice: hidden, still matchable
    assert [t.id for t in tr.update([det(2, 0)])] == [0]  # found again: same id
    for _ in range(3):
        tr.update([])
    assert tr.tracks == []
    assert [t.id for t in tr.update([det(0, 0)])] == [2]  # a new person gets a new id


def test_smoother_is_an_exponential_moving_average_in_time():
    sm = ProbSmoother(tau=1.0)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(sm(0, 0.0, a), a)
    w = math.exp(-0.5)
    np.testing.assert_allclose(sm(0, 0.5, b), w * a + (1 - w) * b)
    np.testing.assert_allclose(sm(1, 0.5, b), b)  # tracks are independent
    with pytest.raises(ValueError, match="> 0 seconds"):
        ProbSmoother(0.0)


def test_boxes_follow_a_moving_face_between_detections():
    tr = FaceTracker()
    tr.update([det(100, 50, 80)], frame=0)
    (t,) = tr.current()
    assert t.box_at(3) == (100, 50, 180, 130)                  # one detection: no motion known yet
    tr.update([det(120, 40, 80)], frame=5)                     # 4 px right, 2 px up a frame
    assert [t.box_at(f) for f in (5, 6, 8)] == [(120, 40, 200, 120), (124, 38, 204, 118), (132, 34, 212, 114)]
    tr.update([det(141, 30, 80)], frame=10)                    # matched against the predicted box
    assert [t.id for t in tr.current()] == [0] and t.box_at(11) == (145, 28, 225, 108)
    assert tr.update([], frame=15)[0].box_at(17) == t.box_at(15) == (162, 20, 242, 100)  # missed: stops there


def test_carrying_the_motion_brings_the_boxes_closer_to_a_moving_face(tmp_path):
    """Haar every 5 frames on a generated clip of a face sliding 6 px a frame: the boxes shown between
    detections overlap the true face more when they carry the last motion than when held still."""
    from glamor_fast.data.faces import HaarFaceDetector

    from .footage import faces_clip, read_frames

    truth = faces_clip(tmp_path / "slide.mp4", "textured", frames=21, faces=1, motion="linear", speed=1.5)
    frames = read_frames(tmp_path / "slide.mp4")
    detector = HaarFaceDetector(max_side=480, min_size=40, equalize=False)
    found = {i: detector(frames[i]) for i in range(0, 21, 5)}
    mean_iou = {}
    for carry in (False, True):
        tr, between = FaceTracker(), []
        for i in range(21):
            if i in found:
                tr.update(found[i], frame=i if carry else None)
            elif i > 5:
                (true,) = truth[i]
                between.append(max((iou(t.box_at(i if carry else None), true) for t in tr.current()), default=0.0))
        mean_iou[carry] = sum(between) / len(between)
    assert mean_iou[True] > mean_iou[False] + 0.1, mean_iou
