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
