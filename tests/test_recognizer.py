"""glamor_fast.EmotionRecognizer on a real photograph (grace_hopper.jpg) and videos written here."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import glamor_fast
from glamor_fast import EmotionRecognizer, Face, VideoFrame
from glamor_fast.predict.tracking import iou
from glamor_fast.training.checkpoint import CheckpointError
from tests.predict.footage import GRACE_FACE, GRACE_PATH, grace, moving_face_video, two_faces
from tests.tiny_training import tiny_checkpoint

REF = dict(backend="reference", device="cpu")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("recognizer"))


@pytest.fixture(scope="module")
def rec(ckpt):
    return EmotionRecognizer(ckpt, **REF)


def count_forward(monkeypatch) -> list:
    """Patches EmotionRecognizer.forward to record each call's batch size."""
    calls = []
    real = EmotionRecognizer.forward
    monkeypatch.setattr(EmotionRecognizer, "forward", lambda self, f, c: calls.append(len(f)) or real(self, f, c))
    return calls


def test_a_path_an_array_and_a_pil_image_give_the_same_face(rec):
    from PIL import Image

    by_path = rec.predict(GRACE_PATH)
    by_str = rec.predict(str(GRACE_PATH))
    by_array = rec.predict(grace())
    by_pil = rec.predict(Image.open(GRACE_PATH))
    assert len(by_path) == 1 and isinstance(by_path[0], Face)
    f = by_path[0]
    assert iou(f.box, GRACE_FACE) > 0.6 and f.detector_score is None and f.track is None and f.attention is None
    assert list(f.probs) == rec.classes and sum(f.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert f.emotion == max(f.probs, key=f.probs.get)
    for other in (by_str, by_array, by_pil):
        assert other[0].box == f.box
        np.testing.assert_allclose(list(other[0].probs.values()), list(f.probs.values()), atol=1e-6)
    d = f.to_dict()
    assert set(d) == {"track", "box", "detector_score", "emotion", "probs"} and d["box"] == f.box


def test_attention_on_request(rec):
    (f,) = rec.predict(GRACE_PATH, attention=True)
    assert f.attention.dtype == np.float32 and f.attention.ndim == 2
    assert f.attention.sum() == pytest.approx(1.0, abs=1e-4)  # a softmax over the context cells
    assert np.array(f.to_dict()["attention"]).shape == f.attention.shape


def test_given_boxes_skip_the_detector(ckpt, rec):
    (detected,) = rec.predict(GRACE_PATH)

    def no_detector(image):
        raise AssertionError("the detector ran")

    given = EmotionRecognizer(ckpt, detector=no_detector, **REF)
    (f,) = given.predict(GRACE_PATH, boxes=[detected.box])
    assert f.box == detected.box and f.detector_score is None
    np.testing.assert_allclose(list(f.probs.values()), list(detected.probs.values()), atol=1e-6)
    clipped = given.predict(grace(), boxes=[(-20, -10, 100.4, 90.6)])[0].box
    assert clipped == [0, 0, 100, 91]
    assert given.predict(grace(), boxes=[]) == []


def test_batch_goes_through_the_model_in_one_pass_and_matches_one_by_one(rec, monkeypatch):
    images = [grace(), two_faces(), np.full((120, 160, 3), 128, np.uint8)]
    singles = [rec.predict(img) for img in images]
    calls = count_forward(monkeypatch)
    batch = rec.predict_batch(images)
    assert calls == [3]  # 1 + 2 + 0 faces
    assert [len(faces) for faces in batch] == [1, 2, 0]
    for got, want in zip(batch, singles):
        for a, b in zip(got, want):
            assert a.box == b.box
            np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), rtol=1e-4, atol=1e-6)


def test_batch_is_chunked(rec, monkeypatch):
    import glamor_fast.recognizer as recognizer

    monkeypatch.setattr(recognizer, "MAX_FACES", 2)
    calls = count_forward(monkeypatch)
    faces = rec.predict_batch([grace()] * 5, boxes=[[GRACE_FACE]] * 5)
    assert calls == [2, 2, 1] and [len(f) for f in faces] == [1] * 5
    stacked = rec.predict_batch(np.stack([grace()] * 2), boxes=[[GRACE_FACE]] * 2)  # an (N, H, W, 3) array
    assert [f[0].box for f in stacked] == [list(GRACE_FACE)] * 2


def test_video_frames_with_tracks(rec, tmp_path, monkeypatch):
    video = moving_face_video(tmp_path / "clip.mp4", frames=12, fps=12.0)
    calls = count_forward(monkeypatch)
    frames = rec.predict_video(video, every=3, batch_frames=4)
    assert (frames.fps, frames.size, frames.frame_count) == (pytest.approx(12.0), (320, 240), 12)
    got = list(frames)
    assert all(isinstance(f, VideoFrame) for f in got) and [f.index for f in got] == list(range(12))
    assert got[6].time_s == pytest.approx(0.5) and got[6].image.shape == (240, 320, 3)
    assert all(len(f.faces) == 1 and f.faces[0].track == 0 for f in got)
    assert calls == [4, 4, 4]
    assert got[11].faces[0].box[0] > got[0].faces[0].box[0] + 20  # the face moves 3 px a frame


def test_a_video_cut_short_warns_with_the_frames_read(rec, tmp_path):
    whole = moving_face_video(tmp_path / "clip.avi", frames=24)  # MJPG in AVI: frames decode up to the cut
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.warns(UserWarning, match=r"cut\.avi: the video ends after 1[0-3] of the 24 frames"):
        n = sum(1 for _ in rec.predict_video(cut, every=6))
    assert 10 <= n <= 13
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole video: no warning
        assert sum(1 for _ in rec.predict_video(whole, every=6)) == 24


def test_bad_inputs_raise_one_clear_error(ckpt, rec, tmp_path):
    with pytest.raises(ValueError, match=r"expected an RGB uint8 array \(H, W, 3\), got float32 \(8, 8, 3\)"):
        rec.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \(8, 8\)"):
        rec.predict(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="got list"):
        rec.predict([1, 2, 3])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        rec.predict(tmp_path / "missing.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode image .*broken.jpg"):
        rec.predict(tmp_path / "broken.jpg")
    with pytest.raises(ValueError, match=r"box \[10.0, 10.0, 5.0, 20.0\] is not"):
        rec.predict(grace(), boxes=[[10, 10, 5, 20]])
    with pytest.raises(ValueError, match=r"2 box lists for 1 images"):
        rec.predict_batch([grace()], boxes=[[], []])
    with pytest.raises(ValueError, match=r"forward: expected face \(B, 3, 96, 96\) .* got \(2, 3, 96, 96\) and \(1, 3"):
        rec.forward(np.zeros((2, 3, 96, 96), np.float32), np.zeros((1, 3, 112, 112), np.float32))
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        rec.predict_video(tmp_path / "nothing.mp4")
    with pytest.raises(ValueError, match="every must be >= 1"):
        rec.predict_video(moving_face_video(tmp_path / "c.mp4", frames=2), every=0)
    not_ckpt = tmp_path / "photo.pt"
    not_ckpt.write_bytes(GRACE_PATH.read_bytes())
    with pytest.raises(CheckpointError, match="photo.pt is not a checkpoint"):
        EmotionRecognizer(not_ckpt)
    with pytest.raises(CheckpointError, match="absent.pt does not exist"):
        EmotionRecognizer(tmp_path / "absent.pt")


def test_attention_needs_an_attention_model(tmp_path):
    face_only = EmotionRecognizer(tiny_checkpoint(tmp_path / "ck", model="face"), **REF)
    assert face_only.predict(GRACE_PATH)[0].attention is None
    with pytest.raises(ValueError, match="attention maps need a model with GLA or CA"):
        face_only.predict(GRACE_PATH, attention=True)


def test_exported_in_the_package():
    assert "EmotionRecognizer" in glamor_fast.__all__ and glamor_fast.EmotionRecognizer is EmotionRecognizer


def test_an_onnx_file_that_is_missing_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.onnx does not exist"):
        EmotionRecognizer(tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        EmotionRecognizer(tmp_path / "model.onnx", device="cuda")


@pytest.mark.skipif(importlib.util.find_spec("glamor_fast.export") is None
                    or importlib.util.find_spec("glamor_fast.export.onnx_runtime") is None,
                    reason="glamor_fast.export.onnx_runtime (the ONNX runner) is not in this checkout")
def test_an_exported_onnx_model_gives_the_checkpoints_answers(ckpt, rec, tmp_path):
    pytest.importorskip("onnxruntime", reason='optional extra: pip install ".[onnx]"')
    from glamor_fast.cli import main as cli_main

    onnx = tmp_path / "model.onnx"
    assert cli_main(["export", str(ckpt), str(onnx), "--format", "onnx"]) == 0
    by_onnx = EmotionRecognizer(onnx)
    assert by_onnx.classes == rec.classes
    for got, want in zip(by_onnx.predict_batch([grace(), two_faces()], attention=True),
                         rec.predict_batch([grace(), two_faces()], attention=True)):
        assert [f.box for f in got] == [f.box for f in want]
        for a, b in zip(got, want):
            np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)



def test_the_readme_example_runs(ckpt, tmp_path, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("Emotion recognition from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    video = moving_face_video(tmp_path / "talk.mp4", frames=6)
    code = (code.replace('"runs/quickstart/best.pt"', repr(str(ckpt))).replace('"photo.jpg"', repr(str(GRACE_PATH)))
            .replace('"talk.mp4"', repr(str(video))))
    exec(compile(code, "README.md", "exec"), {"frame_rgb": grace()})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 6 and lines[0].startswith("[") and lines[-1].startswith("5 0.41")


def test_a_network_with_the_onnx_runners_contract_is_read_from_its_metadata(ckpt, rec, monkeypatch):
    """What the recognizer needs of an exported model: ``classes``, ``preprocessing`` and ``metadata``
    (as glamor_fast.export writes them) and ``__call__(face, context) -> (logits, attn)``."""
    import glamor_fast.recognizer as recognizer

    torch_net = recognizer.load_net(ckpt, **REF)

    class ExportLike:  # the PyTorch network behind the ONNX runner's interface only
        def __init__(self, face_visible):
            self._net = torch_net
            self.classes = self._net.classes
            self.preprocessing = {"face_visible_in_context": face_visible}
            self.metadata = {"attention": "gla"}

        def __call__(self, face, context):
            return self._net(face, context)

    for face_visible in (False, True):
        monkeypatch.setattr(recognizer, "load_net", lambda *a, **k: ExportLike(face_visible))
        other = EmotionRecognizer("model.onnx")
        assert (other.face_visible, other.attention_kind) == (face_visible, "gla")
        (f,) = other.predict(GRACE_PATH, attention=True)
        (want,) = rec.predict(GRACE_PATH, attention=True)
        same = np.allclose(list(f.probs.values()), list(want.probs.values()), atol=1e-6)
        assert same != face_visible  # a visible face changes the context, hence the answer
