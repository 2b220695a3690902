"""FaceTracker (IoU / centre matcher, stable ids) and ProbSmoother."""
import math

import cv2
import numpy as np
import pytest

from glamor_fast.data.faces import Detection
from glamor_fast.predict.tracking import FaceTracker, ProbSmoother, centre_distance, flow_shift, iou

from .footage import GRACE_FACE, faces_clip, grace, read_frames


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


def test_flow_shift_measures_the_motion_inside_a_box():
    g = np.ascontiguousarray(grace()[:, :, 1])
    moved = np.roll(g, (-3, 5), axis=(0, 1))  # content 5 px right, 3 px up
    dx, dy = flow_shift(g, moved, GRACE_FACE)
    assert abs(dx - 5) < 0.5 and abs(dy + 3) < 0.5
    flat = np.full((200, 200), 90, np.uint8)
    assert flow_shift(flat, flat, (50, 50, 150, 150)) is None  # nothing to follow
    assert flow_shift(g, g, (-40, -40, 3, 3)) is None          # box (almost) outside the image


def test_follow_moves_the_boxes_between_detections_and_falls_back_on_velocity():
    g = np.ascontiguousarray(grace()[:, :, 1])
    tr = FaceTracker()
    tr.update([Detection(GRACE_FACE, None)], frame=0)
    tr.follow(g, np.roll(g, 4, axis=1), 1)                       # scale 1: frame pixels
    (t,) = tr.current()
    assert t.box_at(1) == tuple(np.add(GRACE_FACE, [4, 0, 4, 0]))
    half = cv2.resize(g, (256, 300), interpolation=cv2.INTER_AREA)
    tr.follow(half, np.roll(half, 2, axis=1), 2, scale=0.5)      # a half-size copy: 2 px there, 4 here
    assert t.box_at(2) == tuple(np.add(GRACE_FACE, [8, 0, 8, 0]))
    t.velocity = (1.0, 0.0)
    flat = np.full_like(g, 90)
    tr.follow(flat, flat, 3)                                     # no corners: carried on with the velocity
    assert t.box_at(3) == tuple(np.add(GRACE_FACE, [9, 0, 9, 0]))
    assert t.box_at(5) == tuple(np.add(GRACE_FACE, [11, 0, 11, 0]))
    tr.update([Detection(GRACE_FACE, None)], frame=5)            # a detection resets it
    assert t.box_at(5) == GRACE_FACE


def mean_iou_between_detections(path, truth, mode: str, every: int = 5) -> float:
    """Haar every ``every`` frames; mean over the other frames of each true face's best shown IoU."""
    from glamor_fast.data.faces import HaarFaceDetector

    frames = read_frames(path)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    detector = HaarFaceDetector(max_side=480, min_size=40)
    tr, between = FaceTracker(), []
    for i in range(len(frames)):
        if i % every == 0:
            tr.update(detector(frames[i]), frame=None if mode == "hold" else i)
            continue
        if mode == "flow":
            tr.follow(grays[i - 1], grays[i], i)
        if i > every:  # from the second detection on (the velocity needs two)
            for true in truth[i]:
                between.append(max((iou(t.box_at(None if mode == "hold" else i), true) for t in tr.current()),
                                   default=0.0))
    return sum(between) / len(between)


def test_carrying_the_motion_brings_the_boxes_closer_to_a_moving_face(tmp_path):
    """Generated clip of a face sliding 6 px a frame: the boxes shown between detections overlap the
    true face more when they carry the last motion, and more again when they follow the flow."""
    truth = faces_clip(tmp_path / "slide.mp4", "textured", frames=21, faces=1, motion="linear", speed=1.5)
    got = {m: mean_iou_between_detections(tmp_path / "slide.mp4", truth, m) for m in ("hold", "velocity", "flow")}
    assert got["velocity"] > got["hold"] + 0.1 and got["flow"] > got["hold"] + 0.1, got


def test_following_the_flow_keeps_up_with_faces_that_turn_back(tmp_path):
    """Two faces swinging left and right (reversing every 15 frames) over flat grey: the velocity
    measured at the last detection is often stale, the optical flow is not."""
    truth = faces_clip(tmp_path / "swing.mp4", "flat", frames=26, scale=0.4)
    got = {m: mean_iou_between_detections(tmp_path / "swing.mp4", truth, m) for m in ("hold", "flow")}
    assert got["flow"] > got["hold"] + 0.05, got
