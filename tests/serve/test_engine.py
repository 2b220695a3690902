"""The model seam: Engine.prepare and Engine.recognize on many images at once, the traced model against the eager one."""
from __future__ import annotations

import numpy as np

from glamor_fast.serve import Engine
from tests.predict.footage import GRACE_FACE, grace, two_faces


def test_recognize_answers_each_image_in_box_order_and_matches_the_eager_model(engine, ckpt):
    assert engine.traced and engine.info()["traced"] is True
    right = (677, 130, 877, 330)
    items = [(grace(), [(GRACE_FACE, None)]), (two_faces(), [(right, 0.9), (GRACE_FACE, None)])]
    out = engine.recognize([(engine.prepare(image, faces), faces) for image, faces in items])
    assert [[f["box"] for f in faces] for faces in out] == [[list(GRACE_FACE)], [list(right), list(GRACE_FACE)]]
    assert out[1][0]["detector_score"] == 0.9 and out[1][1]["detector_score"] is None
    eager = Engine(ckpt, device="cpu", backend="cpp", trace=False)
    assert not eager.traced and eager.info()["traced"] is False and eager.info()["gla_backend"] == "cpp"
    frames = [grace(), two_faces(), two_faces()]
    boxes = [GRACE_FACE, right, GRACE_FACE]
    eager_probs = eager.recognizer.classify(frames, boxes)[0]
    np.testing.assert_allclose(engine.recognizer.classify(frames, boxes)[0], eager_probs, atol=1e-6)
    got = [list(f["probs"].values()) for faces in out for f in faces]
    np.testing.assert_allclose(got, eager_probs, atol=2e-6)


def test_a_model_that_cannot_be_traced_stays_eager_and_says_so(ckpt, monkeypatch, caplog):
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("tracing refused for this test")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with caplog.at_level("WARNING", logger="glamor_fast"):
        eng = Engine(ckpt, device="cpu", backend="cpp")
    assert not eng.traced and "not traced (tracing refused for this test)" in caplog.text
    faces = [(GRACE_FACE, None)]
    assert len(eng.recognize([(eng.prepare(grace(), faces), faces)])[0]) == 1
