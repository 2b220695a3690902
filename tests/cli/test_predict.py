"""``glamor-fast predict`` from the command line: outputs, --json, exit status, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glamor_fast.cli import main as cli_main
from tests.predict.footage import GRACE_PATH, grace, moving_face_video, write_rgb
from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("cli_predict"))


def run(capsys, *argv):
    rc = cli_main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_lines_on_stdout_and_files_in_out(ckpt, tmp_path, capsys):
    video = moving_face_video(tmp_path / "in/clip.webm", frames=5)
    rc, out, err = run(capsys, GRACE_PATH, video, "--checkpoint", ckpt, "--out", tmp_path / "out",
                       "--backend", "reference", "--every", "2", "--json", "--smooth")
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in records] == [0, 0, 1, 2, 3, 4]
    assert (tmp_path / "out/predictions.jsonl").read_text().count("\n") == 6
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "grace_hopper.jpg", "clip.mp4", "clip.timeline.png", "predictions.jsonl", "predictions.files.json"}
    assert "6 records" in err


def test_a_bad_input_is_reported_in_one_line_the_others_are_done_and_the_exit_is_non_zero(ckpt, tmp_path):
    """In a fresh process, as a user runs it: FFmpeg's and OpenCV's own warnings are silenced too."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    good = write_rgb(tmp_path / "ok.png", grace())
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "glamor_fast", "predict", str(bad), str(good), "--checkpoint", str(ckpt),
                           "--out", str(tmp_path / "out"), "--backend", "reference"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glamor-fast predict: error: ") and "broken.mp4" in lines[0], lines
    assert "1 records" in proc.stdout and "1 input(s) failed" in proc.stdout
    assert (tmp_path / "out/ok.png").is_file() and not (tmp_path / "out/broken.mp4").exists()


@pytest.mark.parametrize("extra, message", [
    (["--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["--backend", "foo"], "--backend foo: gla: unknown backend 'foo'"),
    (["--backend", "triton", "--device", "cpu"], "--backend triton"),
])
def test_setup_errors_are_one_line(ckpt, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    if "--backend" in extra and "triton" in extra:
        pytest.importorskip("triton")
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        import torch
        if torch.cuda.is_available():
            pytest.skip("triton is available on this machine")
    argv = [GRACE_PATH, "--out", tmp_path / "out"] + (["--checkpoint", ckpt] if "--checkpoint" not in extra else []) + extra
    rc, out, err = run(capsys, *argv)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_missing_dlib_names_the_extra(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    rc, _, err = run(capsys, GRACE_PATH, "--checkpoint", ckpt, "--out", tmp_path / "out", "--detector", "dlib-hog")
    assert rc == 1 and err.count("\n") == 1 and 'pip install ".[dlib]"' in err


def test_bad_option_values_are_argparse_errors(ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", str(GRACE_PATH), "--out", str(tmp_path), "--every", "0"])
    assert exc.value.code == 2 and "--every: expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_interrupt_is_one_line_and_exit_130(ckpt, tmp_path, capsys, monkeypatch):
    from glamor_fast.recognizer import EmotionRecognizer

    monkeypatch.setattr(EmotionRecognizer, "forward", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    rc, _, err = run(capsys, GRACE_PATH, "--checkpoint", ckpt, "--out", tmp_path / "out", "--backend", "reference")
    assert rc == 130 and err.count("\n") == 1 and "interrupted" in err
    assert list((tmp_path / "out").iterdir()) == []


def test_dlib_hog_detector_end_to_end(ckpt, tmp_path, capsys):
    pytest.importorskip("dlib", reason="optional extra: pip install '.[dlib]'")
    rc, out, err = run(capsys, GRACE_PATH, "--checkpoint", ckpt, "--out", tmp_path / "out", "--backend", "reference",
                       "--detector", "dlib-hog", "--json")
    assert rc == 0, err
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert r["detector_score"] > 0 and r["box"] is not None


def test_a_video_cut_short_is_one_warning_line_with_the_frames_read(ckpt, tmp_path, capsys):
    whole = moving_face_video(tmp_path / "clip.avi", frames=24)  # MJPG in AVI: frames decode up to the cut
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    rc, out, err = run(capsys, cut, "--checkpoint", ckpt, "--out", tmp_path / "out", "--backend", "reference")
    assert rc == 0, err
    (line,) = err.splitlines()
    assert line.startswith("glamor-fast predict: warning: ") and "cut.avi: the video ends after 1" in line
    assert "of the 24 frames" in line and "UserWarning" not in line


def test_overwrite_and_csv_from_the_command_line(ckpt, tmp_path, capsys):
    common = ["--checkpoint", ckpt, "--out", tmp_path / "out", "--backend", "reference"]
    assert run(capsys, GRACE_PATH, *common, "--csv", tmp_path / "p.csv")[0] == 0
    rc, out, err = run(capsys, GRACE_PATH, *common)
    assert rc == 1 and out == "" and err.count("\n") == 1 and "pass --overwrite" in err
    rc, out, err = run(capsys, moving_face_video(tmp_path / "clip.mp4", frames=2), *common, "--overwrite",
                       "--csv", tmp_path / "p.csv")
    assert rc == 0, err
    assert "2 records in" in out and "p.csv" in out and "1 files of the earlier run removed" in out
    assert not (tmp_path / "out/grace_hopper.jpg").exists()
    assert (tmp_path / "p.csv").read_text().count("\n") == 3  # header + 2 frames
