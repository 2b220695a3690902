"""Output folders are checked before the work; eval prints its results before writing files."""
from __future__ import annotations

import os

import pytest

from glamor_fast.cli import main
from tests.tiny_training import tiny_checkpoint

as_root = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def error_line(capsys, command):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"glamor-fast {command}: error: "), captured.err
    return captured.out, lines[0]


@pytest.mark.parametrize("command", ["eval", "visualize"])
def test_unusable_out_dir_fails_before_the_work(ckpt, tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = [command, str(ckpt), "--out-dir", str(blocker / "out")]
    assert main(args + (["--no-progress"] if command == "eval" else [])) == 1
    out, line = error_line(capsys, command)
    assert "--out-dir" in line and str(blocker) in line
    assert out == ""  # nothing computed


def test_eval_prints_results_before_writing(ckpt, tmp_path, capsys, monkeypatch):
    import glamor_fast.evaluate as ev

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ev, "atomic_write_text", refuse)  # e.g. the folder became read-only mid-run
    assert main(["eval", str(ckpt), "--out-dir", str(tmp_path / "o"), "--no-progress"]) == 1
    out, line = error_line(capsys, "eval")
    assert "accuracy" in out and "confusion matrix" in out
    assert "eval_test.json: permission denied" in line
    assert not list((tmp_path / "o").glob(".*tmp"))  # no half-written file left behind


@pytest.mark.skipif(as_root, reason="root can write into a read-only folder")
def test_read_only_out_dir_is_named(ckpt, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["eval", str(ckpt), "--out-dir", str(ro), "--no-progress"]) == 1
        _, line = error_line(capsys, "eval")
        assert "not writable" in line and "permission denied" in line
    finally:
        ro.chmod(0o700)


def test_detect_faces_missing_root_and_unwritable_root(tmp_path, capsys):
    assert main(["detect-faces", str(tmp_path / "nope"), "--no-progress"]) == 1
    _, line = error_line(capsys, "detect-faces")
    assert "dataset root not found" in line and "nope" in line
    assert not (tmp_path / "nope").exists()
