"""The HTTP API on a real photograph and real videos: answers, limits and every error path."""
from __future__ import annotations

import json
import threading
import urllib.parse

import cv2
import numpy as np
import pytest

from glamor_fast.predict.tracking import iou
from tests.predict.footage import GRACE_FACE, GRACE_PATH, grace, moving_face_video, two_faces

from .conftest import running_server

CLASSES = ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


def jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def with_boxes(boxes) -> str:
    return "/v1/predict?boxes=" + urllib.parse.quote(json.dumps(boxes))


def assert_error(reply, status: int, limit=None, says: str = ""):
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["limit"] == limit and says in body["error"], body
    return body


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = moving_face_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=12, fps=12.0)
    return path.read_bytes()


def test_photo_gets_one_face_record_as_predict_writes_them(client, engine):
    reply = client.post("/v1/predict", GRACE_PATH.read_bytes(), "image/jpeg")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    (face,) = reply.json()["faces"]
    assert set(face) == {"box", "detector_score", "emotion", "probs"}
    assert iou(face["box"], GRACE_FACE) > 0.6 and face["detector_score"] is None
    assert list(face["probs"]) == CLASSES and sum(face["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert face["emotion"] == max(face["probs"], key=face["probs"].get)
    direct = engine.recognizer.classify([grace()], [tuple(face["box"])])[0][0]
    np.testing.assert_allclose(list(face["probs"].values()), direct, atol=2e-6)


def test_caller_boxes_skip_detection_and_keep_their_order(client):
    right = [677, 130, 877, 330]
    before = client.get("/v1/stats").json()["stages_s"]["detect"]
    reply = client.post(with_boxes([right, list(GRACE_FACE)]), jpeg(two_faces()), "image/jpeg")
    assert reply.status == 200
    faces = reply.json()["faces"]
    assert [f["box"] for f in faces] == [right, list(GRACE_FACE)]
    assert client.get("/v1/stats").json()["stages_s"]["detect"] == before
    # the same face on both halves of the picture gets the same answer (its own context masked)
    assert faces[0]["emotion"] in CLASSES


def test_multipart_upload_and_annotated_jpeg(client):
    reply = client.post_file("/v1/predict?annotate=1", GRACE_PATH.read_bytes(), "../../x.jpg", "image/jpeg")
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    out = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == grace().shape
    original = cv2.cvtColor(grace(), cv2.COLOR_RGB2BGR).astype(int)
    assert np.abs(out.astype(int) - original).max() > 100  # a box was drawn
    assert not (GRACE_PATH.parent.parent / "x.jpg").exists()


def test_video_gets_one_json_line_per_frame_and_its_temp_file_is_deleted(client, clip):
    reply = client.post("/v1/predict", clip, "video/mp4")
    assert reply.status == 200 and reply.headers["content-type"] == "application/x-ndjson"
    lines = reply.lines()
    assert [line["frame"] for line in lines] == list(range(12))
    assert lines[3]["time_s"] == pytest.approx(0.25)
    assert sum(len(line["faces"]) >= 1 for line in lines) >= 10
    same = client.post(with_boxes([[20, 50, 120, 150]]), clip, "application/octet-stream").lines()
    assert [len(line["faces"]) for line in same] == [1] * 12
    assert list(client.tmp_dir.iterdir()) == []


def test_info_health_and_page(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/v1/info").json()
    assert info["classes"] == CLASSES and info["server"] == "fastapi+uvicorn"
    assert info["limits"]["max_upload_bytes"] > 0 and info["batching"]["max_batch"] == 16
    page = client.get("/")
    assert page.status == 200 and b"v1/predict" in page.body and page.headers["content-type"].startswith("text/html")


def test_wrong_content_type_empty_and_bad_parameters(client):
    body = GRACE_PATH.read_bytes()
    assert_error(client.post("/v1/predict", body, "text/plain"), 415, says="text/plain")
    assert_error(client.post("/v1/predict", b"{}", "application/json"), 415)
    assert_error(client.post_file("/v1/predict", body, "a.txt", "text/plain"), 415)
    assert_error(client.post("/v1/predict", b"", "image/jpeg"), 400, says="empty")
    assert_error(client.post("/v1/predict?boxes=[[1,2,3]]", body, "image/jpeg"), 400, says="boxes[0]")
    assert_error(client.post("/v1/predict?boxes=nope", body, "image/jpeg"), 400, says="boxes")
    assert_error(client.post(with_boxes([[0, 0, 700, 50]]), body, "image/jpeg"), 400, says="not inside")
    assert_error(client.post(with_boxes([[0, 0, 9, 9]] * 65), body, "image/jpeg"), 413, "max_faces")
    assert_error(client.post("/v1/predict?annotate=maybe", body, "image/jpeg"), 400, says="annotate")


def test_corrupt_uploads_get_400_and_the_server_keeps_serving(client, clip):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    good = GRACE_PATH.read_bytes()
    assert_error(client.post("/v1/predict", noise, "image/jpeg"), 400, says="cannot be decoded")
    assert_error(client.post("/v1/predict", good[:200] + noise, "image/jpeg"), 400)
    assert_error(client.post("/v1/predict", noise, "application/octet-stream"), 400, says="neither")
    assert_error(client.post("/v1/predict", clip[: len(clip) // 3], "video/mp4"), 400)
    assert_error(client.post("/v1/predict", noise, "video/mp4"), 400)
    assert_error(client.post("/v1/predict?annotate=1", clip, "video/mp4"), 400, says="annotate")
    assert client.post("/v1/predict", good, "image/jpeg").status == 200
    assert list(client.tmp_dir.iterdir()) == []


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(client):
    # 16 clients at once, each with its own box: their faces share forward passes
    body = GRACE_PATH.read_bytes()
    boxes = [[150 + k, 120 + k, 350 + 2 * k, 330 + k] for k in range(16)]
    solo = {k: client.post(with_boxes([boxes[k]]), body, "image/jpeg").json()["faces"][0] for k in (0, 15)}
    before = client.get("/v1/stats").json()["model"]
    replies, barrier = {}, threading.Barrier(16)

    def one(k):
        barrier.wait()
        replies[k] = client.post(with_boxes([boxes[k]]), body, "image/jpeg")

    threads = [threading.Thread(target=one, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(replies) == list(range(16)) and all(r.status == 200 for r in replies.values())
    for k, r in replies.items():
        assert r.json()["faces"][0]["box"] == boxes[k]
    for k in (0, 15):
        got = replies[k].json()["faces"][0]["probs"]
        np.testing.assert_allclose(list(got.values()), list(solo[k]["probs"].values()), atol=2e-5)
    after = client.get("/v1/stats").json()["model"]
    assert after["faces"] - before["faces"] == 16
    assert after["batches"] - before["batches"] < 16 and after["largest_batch"] > 1


def test_upload_pixel_and_frame_limits_each_name_their_limit(engine, clip, tmp_path):
    big = np.zeros((600, 700, 3), np.uint8)
    ok, png = cv2.imencode(".png", big)  # 420,000 pixels in a few kB
    with running_server(engine, limits=_limits(max_upload_bytes=100_000, max_image_pixels=400_000,
                                               max_video_frames=5), tmp_dir=str(tmp_path)) as c:
        too_big = GRACE_PATH.read_bytes() + b"\0" * 100_000
        assert_error(c.post("/v1/predict", too_big, "image/jpeg"), 413, "max_upload_bytes")
        assert_error(c.post_file("/v1/predict", too_big, "a.jpg", "image/jpeg"), 413, "max_upload_bytes")
        assert_error(c.post("/v1/predict", png.tobytes(), "image/png"), 413, "max_image_pixels")
        assert_error(c.post("/v1/predict", clip, "video/mp4"), 413, "max_video_frames", "12 frames")
        assert c.post("/v1/predict", GRACE_PATH.read_bytes(), "image/jpeg").status == 200
        assert c.get("/v1/info").json()["limits"]["max_video_frames"] == 5
    assert list(tmp_path.iterdir()) == []


def test_a_request_over_its_time_gets_408_and_the_server_goes_on(engine, tmp_path):
    long_clip = moving_face_video(tmp_path / "long.mp4", frames=90, fps=30.0, step=2).read_bytes()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    with running_server(engine, limits=_limits(max_request_seconds=0.3), tmp_dir=str(uploads)) as c:
        body = assert_error(c.post("/v1/predict", long_clip, "video/mp4"), 408, "max_request_seconds")
        assert body["value"] == 0.3
        assert c.get("/health").status == 200
        assert c.post(with_boxes([list(GRACE_FACE)]), GRACE_PATH.read_bytes(), "image/jpeg").status == 200
        assert list(uploads.iterdir()) == []


def _limits(**kw):
    from glamor_fast.serve import Limits

    return Limits(**kw)
