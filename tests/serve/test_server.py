"""``glamor-fast serve`` as a process: where it listens, SIGTERM while busy, a port already taken."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glamor_fast.cli import build_parser
from tests.helpers import free_port
from tests.predict.footage import moving_face_video

from .conftest import Client

ROOT = Path(__file__).resolve().parents[2]


def start(ckpt, *args) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "glamor_fast", "serve", str(ckpt), "--port", "0", "--threads", "1",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    if "listening on http://127.0.0.1:" not in line:
        proc.kill()
        pytest.fail(f"serve did not start: {line}{proc.communicate(timeout=30)[1]}")
    return proc, int(line.split("127.0.0.1:")[1].split()[0])


def test_it_listens_on_127_0_0_1_unless_told_otherwise():
    args = build_parser("serve").parse_args(["serve", "x.pt"])
    assert args.host == "127.0.0.1" and args.max_batch == 16


def test_sigterm_while_busy_finishes_the_request_refuses_new_ones_and_exits_0(ckpt, tmp_path):
    clip = moving_face_video(tmp_path / "clip.mp4", frames=60, fps=30.0, step=2).read_bytes()
    proc, port = start(ckpt)
    try:
        client = Client(port)
        replies = []
        busy = threading.Thread(target=lambda: replies.append(client.post("/v1/predict", clip, "video/mp4")))
        busy.start()
        deadline = time.monotonic() + 60
        while client.get("/v1/stats").json()["stages_s"]["decode"] == 0:  # the video is being processed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert busy.is_alive()
        proc.send_signal(signal.SIGTERM)
        busy.join(60)
        assert proc.wait(60) == 0
        (reply,) = replies
        assert reply.status == 200 and len(reply.lines()) == 60
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_and_a_bad_checkpoint_are_one_line_errors(ckpt, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        run = subprocess.run([sys.executable, "-m", "glamor_fast", "serve", str(ckpt), "--port", str(port)],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f"glamor-fast serve: error: cannot listen on 127.0.0.1:{port}: address already in use"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    run = subprocess.run([sys.executable, "-m", "glamor_fast", "serve", str(tmp_path / "bad.pt")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and run.stderr.startswith("glamor-fast serve: error:") and "bad.pt" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
