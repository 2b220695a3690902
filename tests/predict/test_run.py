"""glamor_fast.predict on real photographs (grace_hopper.jpg, twice side by side) and videos written here."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import glamor_fast.data.transforms as transforms
from glamor_fast.data import HaarFaceDetector, read_image
from glamor_fast.predict import RECORD_FIELDS, ProbSmoother, predict
from glamor_fast.predict.tracking import iou
from glamor_fast.recognizer import EmotionRecognizer

from .footage import GRACE_FACE, GRACE_PATH, count_frames, grace, moving_face_video, two_faces, write_rgb

REF = dict(backend="reference", device="cpu")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if ".tmp-" in p.name]


def test_one_photo_gives_one_record_with_every_field(ckpt, tmp_path):
    res = predict([GRACE_PATH], ckpt, tmp_path / "out", **REF)
    assert res.errors == [] and res.records == 1
    (r,) = read_jsonl(tmp_path / "out/predictions.jsonl")
    assert set(RECORD_FIELDS) <= set(r)
    assert r["source"] == str(GRACE_PATH) and r["frame"] == 0 and r["time_s"] == 0.0 and r["track"] == 0
    assert iou(r["box"], GRACE_FACE) > 0.6, r["box"]
    assert list(r["probs"]) == ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
    assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert r["emotion"] == max(r["probs"], key=r["probs"].get) and r["detector_score"] is None
    out = read_image(tmp_path / "out/grace_hopper.jpg")  # same name, same size, and something drawn on it
    assert out.shape == grace().shape
    assert np.abs(out.astype(int) - grace().astype(int)).max() > 100
    assert no_temp_files(tmp_path / "out")


def test_two_faces_each_with_only_its_own_face_masked_in_one_forward_pass(ckpt, tmp_path, monkeypatch):
    frame = two_faces()
    path = write_rgb(tmp_path / "in/two.png", frame)
    masked = []
    real_mask = transforms.mask_face
    monkeypatch.setattr(transforms, "mask_face", lambda img, box: masked.append((img, box)) or real_mask(img, box))
    calls = []
    real_call = EmotionRecognizer.forward
    monkeypatch.setattr(EmotionRecognizer, "forward", lambda self, f, c: calls.append(len(f)) or real_call(self, f, c))
    res = predict([path], ckpt, tmp_path / "out", **REF)
    records = read_jsonl(res.jsonl)
    assert len(records) == 2 and calls == [2]
    left, right = (r["box"] for r in records)
    assert iou(left, GRACE_FACE) > 0.6 and iou(right, np.add(GRACE_FACE, [512, 0, 512, 0])) > 0.6
    assert [r["track"] for r in records] == [0, 1]
    assert len(masked) == 2
    for (img, box), own, other in zip(masked, (left, right), (right, left)):
        assert list(box) == own
        ctx = real_mask(img, box)
        assert (ctx[own[1]:own[3], own[0]:own[2]] == 0).all()
        np.testing.assert_array_equal(ctx[other[1]:other[3], other[0]:other[2]],
                                      frame[other[1]:other[3], other[0]:other[2]])
    # the batched pass gives what one face at a time gives
    rec = EmotionRecognizer(ckpt, **REF)
    both = rec.classify([frame, frame], [tuple(left), tuple(right)])[0]
    one = rec.classify([frame], [tuple(right)])[0]
    np.testing.assert_allclose(both[1], one[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([list(r["probs"].values()) for r in records], both, atol=2e-6)
    assert read_image(tmp_path / "out/two.png").shape == frame.shape


def test_video_one_stable_track_every_frame_annotated(ckpt, tmp_path, monkeypatch):
    video = moving_face_video(tmp_path / "in/clip.mp4", frames=24, fps=12.0)
    calls = []
    real_call = EmotionRecognizer.forward
    monkeypatch.setattr(EmotionRecognizer, "forward", lambda self, f, c: calls.append(len(f)) or real_call(self, f, c))
    res = predict([video], ckpt, tmp_path / "out", every=3, batch_frames=8, **REF)
    assert res.errors == []
    records = read_jsonl(tmp_path / "out/predictions.jsonl")
    assert [r["frame"] for r in records] == list(range(24))
    assert {r["track"] for r in records} == {0}
    assert records[5]["time_s"] == pytest.approx(5 / 12.0)
    assert calls == [8, 8, 8]  # the faces of 8 frames per forward pass
    # boxes follow the face (it moves 3 px a frame), also between detections
    assert records[21]["box"][0] - records[0]["box"][0] > 40
    xs = [r["box"][0] for r in records]
    assert all(a < b for a, b in zip(xs[:6], xs[1:6])), xs
    assert count_frames(tmp_path / "out/clip.mp4") == (24, pytest.approx(12.0), (320, 240))
    png = cv2.imread(str(tmp_path / "out/clip.timeline.png"))
    assert png is not None and png.shape[0] > 100
    assert no_temp_files(tmp_path / "out")


def test_smoothing_is_the_per_track_moving_average_of_the_raw_probabilities(sharp_ckpt, tmp_path):
    video = moving_face_video(tmp_path / "clip.mp4", frames=10)
    raw = read_jsonl(predict([video], sharp_ckpt, tmp_path / "raw", every=2, **REF).jsonl)
    smooth = read_jsonl(predict([video], sharp_ckpt, tmp_path / "smooth", every=2, smooth=0.3, **REF).jsonl)
    assert [(r["frame"], r["track"], r["box"]) for r in raw] == [(r["frame"], r["track"], r["box"]) for r in smooth]
    probs = lambda recs: np.array([list(r["probs"].values()) for r in recs if r["track"] is not None])  # noqa: E731
    assert np.abs(probs(smooth) - probs(raw)).max() > 1e-3  # smoothing changed something
    expect = ProbSmoother(0.3)
    for r, s in zip(raw, smooth):
        if r["track"] is not None:
            want = expect(r["track"], r["time_s"], np.array(list(r["probs"].values())))
            np.testing.assert_allclose(list(s["probs"].values()), want, atol=2e-6)
            assert s["emotion"] == list(s["probs"])[int(np.argmax(want))]


def test_folder_recursive_sorted_with_a_corrupt_file_and_a_frame_without_face(ckpt, tmp_path):
    root = tmp_path / "shots"
    write_rgb(root / "b/face.jpg", grace())
    write_rgb(root / "a/blank.png", np.full((120, 160, 3), 128, np.uint8))
    (root / "a/broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("ignored")
    moving_face_video(root / "b/clip.avi", frames=6)
    errors = []
    res = predict([root, tmp_path / "missing.mp4"], ckpt, tmp_path / "out", on_error=errors.append, **REF)
    assert len(errors) == 2 and "missing.mp4" in errors[0] and "broken.jpg" in errors[1]
    records = read_jsonl(res.jsonl)
    names = [Path(r["source"]).name for r in records]
    assert list(dict.fromkeys(names)) == ["blank.png", "clip.avi", "face.jpg"]  # sorted, grouped by input
    assert sorted({r["frame"] for r in records if r["source"].endswith("clip.avi")}) == list(range(6))
    blank = records[0]
    assert blank["box"] is None and blank["track"] is None and blank["probs"] is None and blank["emotion"] is None
    out = tmp_path / "out/shots"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a", "a/blank.png", "b", "b/clip.mp4", "b/clip.timeline.png", "b/face.jpg"]


def test_attention_is_blended_over_the_frame(ckpt, tmp_path):
    plain = read_image(predict([GRACE_PATH], ckpt, tmp_path / "plain", **REF).outputs[0])
    att = read_image(predict([GRACE_PATH], ckpt, tmp_path / "att", attention=True, **REF).outputs[0])
    assert att.shape == plain.shape
    diff = np.abs(att.astype(int) - plain.astype(int)).sum(axis=2)
    assert diff[300, 256] > 30       # the middle of the frame lies in the context crop
    assert diff[300, :20].max() < 30  # the outer columns do not (the crop is the middle 112/171)


def test_attention_needs_an_attention_model(tmp_path):
    from tests.tiny_training import tiny_checkpoint

    face_only = tiny_checkpoint(tmp_path / "ck", model="face")
    with pytest.raises(ValueError, match="--attention needs a model with GLA or CA"):
        predict([GRACE_PATH], face_only, tmp_path / "out", attention=True, **REF)


def test_a_failed_run_leaves_the_previous_results_and_no_temp_files(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").write_text("old\n")
    monkeypatch.setattr(EmotionRecognizer, "forward", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        predict([moving_face_video(tmp_path / "clip.mp4", frames=4)], ckpt, out, overwrite=True, **REF)
    assert (out / "predictions.jsonl").read_text() == "old\n"
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl"]


def test_refuses_to_write_over_an_input_and_checks_options(ckpt, tmp_path):
    photo = write_rgb(tmp_path / "photo.jpg", grace())
    with pytest.raises(ValueError, match="would overwrite the input"):
        predict([photo], ckpt, tmp_path, **REF)
    with pytest.raises(ValueError, match="every must be >= 1"):
        predict([photo], ckpt, tmp_path / "o", every=0, **REF)
    with pytest.raises(ValueError, match="--backend nope"):
        predict([photo], ckpt, tmp_path / "o", backend="nope")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write there"):
        predict([photo], ckpt, blocker / "out", **REF)


def test_inputs_that_would_share_an_output_name_get_distinct_ones(ckpt, tmp_path):
    a = write_rgb(tmp_path / "a/x.jpg", grace())
    b = write_rgb(tmp_path / "b/x.jpg", grace())
    v1 = moving_face_video(tmp_path / "v/clip.avi", frames=3)
    v2 = moving_face_video(tmp_path / "v/clip.mp4", frames=3)
    res = predict([a, b, v1, v2], ckpt, tmp_path / "out", **REF)
    assert res.errors == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip-2.mp4", "clip-2.timeline.png", "clip.mp4", "clip.timeline.png", "predictions.files.json",
        "predictions.jsonl", "x-2.jpg", "x.jpg"]


def test_a_small_face_in_a_large_photo_is_found(ckpt, tmp_path):
    """Still images are searched at up to 1280 px (videos at --detect-side 480, for speed)."""
    big = np.full((1080, 1920, 3), 90, np.uint8)
    big[500:725, 900:1092] = cv2.resize(grace(), (192, 225), interpolation=cv2.INTER_AREA)  # face about 85 px
    photo = write_rgb(tmp_path / "big.png", big)
    (r,) = read_jsonl(predict([photo], ckpt, tmp_path / "out", **REF).jsonl)
    assert r["box"] is not None and 900 <= r["box"][0] < r["box"][2] <= 1092
    # the same photo as a video frame: at 480 px that face is under Haar's 24 px window
    assert HaarFaceDetector(max_side=480, min_size=40)(big) == []


def test_attention_of_several_faces_one_panel_each(ckpt, tmp_path):
    frame = two_faces()
    path = write_rgb(tmp_path / "in/two.png", frame)
    res = predict([path], ckpt, tmp_path / "out", attention=True, **REF)
    assert [p.name for p in res.outputs] == ["two.png", "two.attention.png"]
    panels = read_image(tmp_path / "out/two.attention.png")
    assert panels.shape == (600, 2 * 1024, 3)
    # each panel is the frame with one face's map: the maps differ (each face has its own masked
    # context), also away from the boxes and labels (below both faces, inside the context crop)
    left, right = panels[340:600, 250:780].astype(int), panels[340:600, 1024 + 250:1024 + 780].astype(int)
    assert np.abs(left - right).max() > 30


def test_a_used_out_is_refused_unless_overwrite(ckpt, tmp_path):
    out = tmp_path / "out"
    predict([GRACE_PATH], ckpt, out, **REF)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"--out .* holds the results of an earlier run "
                                         r"\(predictions.jsonl and 2 more\); pass --overwrite"):
        predict([GRACE_PATH], ckpt, out, **REF)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written
    other = tmp_path / "other"  # no predictions.jsonl, but a file where an output goes
    write_rgb(other / "grace_hopper.jpg", grace())
    with pytest.raises(ValueError, match=r"\(grace_hopper.jpg\)"):
        predict([GRACE_PATH], ckpt, other, **REF)
    assert predict([GRACE_PATH], ckpt, out, overwrite=True, **REF).records == 1


def test_overwrite_removes_only_the_files_the_earlier_run_wrote(ckpt, tmp_path):
    out = tmp_path / "out"
    first = [write_rgb(tmp_path / "in/a/face.jpg", grace()), write_rgb(tmp_path / "in/a/edited.png", grace()),
             moving_face_video(tmp_path / "in/clip.mp4", frames=3)]
    predict(first, ckpt, out, **REF)
    (out / "notes.txt").write_text("mine")                      # the user's own files
    write_rgb(out / "sub/mine.png", grace())
    (out / "edited.png").write_bytes((out / "edited.png").read_bytes() + b"\0")  # a listed file changed since
    with pytest.warns(UserWarning, match=r"edited.png: kept \(--overwrite\)"):
        res = predict([write_rgb(tmp_path / "in/b.png", two_faces())], ckpt, out, overwrite=True, **REF)
    assert sorted(p.name for p in res.removed) == ["clip.mp4", "clip.timeline.png", "face.jpg"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "b.png", "edited.png", "notes.txt", "predictions.files.json", "predictions.jsonl", "sub", "sub/mine.png"]
    assert {r["source"] for r in read_jsonl(out / "predictions.jsonl")} == {str(tmp_path / "in/b.png")}
    # a listed file in a folder the run created: the folder goes when it is left empty
    predict([tmp_path / "in/a"], ckpt, tmp_path / "nested", **REF)
    predict([tmp_path / "in/b.png"], ckpt, tmp_path / "nested", overwrite=True, **REF)
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == [
        "b.png", "predictions.files.json", "predictions.jsonl"]


def test_csv_holds_the_json_lines_as_a_table(ckpt, tmp_path):
    import csv

    video = moving_face_video(tmp_path / "clip.mp4", frames=3)
    blank = write_rgb(tmp_path / "blank.png", np.full((120, 160, 3), 128, np.uint8))
    res = predict([GRACE_PATH, video, blank], ckpt, tmp_path / "out", csv=tmp_path / "table.csv", **REF)
    assert res.csv == tmp_path / "table.csv"
    with open(res.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    records = read_jsonl(res.jsonl)
    assert len(rows) == len(records) == 5
    assert list(rows[0]) == ["source", "frame", "time_s", "track", "box_x1", "box_y1", "box_x2", "box_y2",
                             "detector_score", "emotion", *[f"probs_{c}" for c in records[0]["probs"]]]
    for row, r in zip(rows, records):
        assert row["source"] == r["source"] and int(row["frame"]) == r["frame"]
        assert float(row["time_s"]) == r["time_s"] and row["emotion"] == (r["emotion"] or "")
        if r["box"] is None:
            assert row["box_x1"] == row["track"] == row["probs_Happy"] == row["detector_score"] == ""
        else:
            assert [int(row[f"box_{k}"]) for k in ("x1", "y1", "x2", "y2")] == r["box"]
            assert [float(row[f"probs_{c}"]) for c in r["probs"]] == list(r["probs"].values())
    with pytest.raises(ValueError, match="--csv .*table.csv already exists; pass --overwrite"):
        predict([GRACE_PATH], ckpt, tmp_path / "out2", csv=tmp_path / "table.csv", **REF)
    assert not (tmp_path / "out2").exists()
    from glamor_fast.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):  # settings are checked before any folder is made
        predict([GRACE_PATH], tmp_path / "absent.pt", tmp_path / "out3", csv=tmp_path / "new/t.csv", **REF)
    assert not (tmp_path / "new").exists() and not (tmp_path / "out3").exists()
