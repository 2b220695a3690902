"""Live streams, with a video file opened as one (a ``file:`` URL, paced at its frame rate)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from argparse import Namespace
from pathlib import Path

import pytest

from glamor_fast.cli.predict_stream import stream_source
from glamor_fast.predict.stream import is_stream, predict_stream, stream_name

from .footage import count_frames, moving_face_video

ROOT = Path(__file__).resolve().parents[2]


def test_a_stream_faster_than_the_model_drops_frames_and_every_output_is_complete(ckpt, tmp_path):
    clip = moving_face_video(tmp_path / "in/fast.avi", frames=60, fps=500.0, step=2)
    seen = []
    res = predict_stream(f"file:{clip}", ckpt, tmp_path / "out", device="cpu", backend="reference",
                         on_record=seen.append)
    assert res.frames_read == 60 and not res.interrupted
    assert res.dropped > 0 and res.frames_done + res.dropped == 60  # 2 ms a frame: the model cannot keep up
    lines = [json.loads(line) for line in (tmp_path / "out/fast.jsonl").read_text().splitlines()]
    assert lines == seen and len(lines) == res.records
    frames = [r["frame"] for r in lines]
    assert frames == sorted(frames) and len(set(frames)) == res.frames_done and frames[0] == 0
    assert sum(r["box"] is not None for r in lines) >= res.frames_done // 2
    assert all(r["source"] == f"file:{clip}" and r["time_s"] == pytest.approx(r["frame"] / 500.0) for r in lines)
    n, fps, size = count_frames(tmp_path / "out/fast.mp4")
    assert n == res.frames_done and size == (320, 240) and fps == pytest.approx(500.0)
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]


def test_ctrl_c_ends_the_stream_with_a_playable_video_and_complete_json_lines(ckpt, tmp_path):
    clip = moving_face_video(tmp_path / "in/long.mp4", frames=300, fps=25.0, step=0)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "glamor_fast", "predict", f"file:{clip}", "--checkpoint", str(ckpt),
                             "--out", str(tmp_path / "out"), "--json", "--backend", "reference"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    printed = []
    for line in proc.stdout:  # records are printed as frames are processed
        printed.append(json.loads(line))
        if len(printed) == 5:
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    printed += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0, err
    assert "stopped (Ctrl-C)" in err and "dropped" in err
    written = [json.loads(line) for line in (tmp_path / "out/long.jsonl").read_text().splitlines()]
    assert written == printed and printed[-1]["frame"] < 299  # it stopped early, and nothing is cut
    n, _, _ = count_frames(tmp_path / "out/long.mp4")
    assert n == len({r["frame"] for r in written})


def test_which_inputs_are_streams_and_what_they_are_called():
    assert is_stream("rtsp://cam.local:554/live/ch1") and is_stream("file:/tmp/a.mp4") and not is_stream("a.mp4")
    assert stream_name(0) == "camera0" and stream_name("rtsp://cam.local:554/live/ch1") == "ch1"
    assert stream_name("file:/x/clip.mp4") == "clip" and stream_name("http://host/") == "host"
    args = dict(camera=None, inputs=[])
    assert stream_source(Namespace(**{**args, "inputs": ["a.jpg"]})) is None
    assert stream_source(Namespace(**{**args, "camera": 2})) == 2
    assert stream_source(Namespace(**{**args, "inputs": ["rtsp://h/x"]})) == "rtsp://h/x"
    for bad in ({"inputs": []}, {"inputs": ["rtsp://h/x", "a.jpg"]}, {"camera": 0, "inputs": ["http://h/y"]}):
        with pytest.raises(ValueError):
            stream_source(Namespace(**{**args, **bad}))


def test_a_stream_that_does_not_open_is_one_line(ckpt, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "glamor_fast", "predict", f"file:{tmp_path}/none.mp4", "--checkpoint",
                          str(ckpt), "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 1 and run.stderr.strip() == (
        f"glamor-fast predict: error: file:{tmp_path}/none.mp4: cannot open the stream (no frame could be read)")
