"""`glamor-fast detect-faces` reports bad datasets in one line, on a real photograph."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from glamor_fast.cli import main


def photo_tree(root: Path) -> Path:
    from matplotlib import cbook

    happy = root / "train" / "Happy"
    happy.mkdir(parents=True)
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), happy / "hopper.jpg")
    return root


def run(capsys, root, *extra):
    rc = main(["detect-faces", str(root), "--no-progress", *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured


def test_detect_faces_on_a_real_photo(tmp_path, capsys):
    root = photo_tree(tmp_path / "ds")
    rc, captured = run(capsys, root)
    assert rc == 0 and "1 images: 1 faces found" in captured.out
    assert (root / "crop" / "train" / "Happy").is_dir()


@pytest.mark.parametrize("case, expected", [
    ("corrupt", "cannot decode image"),
    ("unknown-class", "Bored"),
    ("empty-split", "no images"),
    ("missing-root", "dataset root not found"),
])
def test_bad_datasets_give_one_line(tmp_path, capsys, case, expected):
    root = tmp_path / "ds"
    if case == "corrupt":
        photo_tree(root)
        (root / "train" / "Happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    elif case == "unknown-class":
        photo_tree(root)
        (root / "train" / "Bored").mkdir()
    elif case == "empty-split":
        (root / "train" / "Happy").mkdir(parents=True)
    rc, captured = run(capsys, root)
    assert rc == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glamor-fast detect-faces: error: ") and expected in lines[0]


def corrupt_jpeg(path: Path) -> Path:
    """Random bytes under a .jpg name: what a download cut to garbage looks like."""
    import numpy as np

    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def left_behind(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_skip_bad_reports_each_bad_image_and_boxes_the_rest(tmp_path, capsys, caplog):
    import logging

    root = photo_tree(tmp_path / "ds")
    corrupt_jpeg(root / "train" / "Happy" / "broken.jpg")  # sorts first: without --skip-bad it stops the run
    rc, captured = run(capsys, root)
    assert rc == 1 and "broken.jpg" in captured.err and captured.err.count("\n") == 1
    assert not (root / "crop" / "train" / "Happy" / "broken.txt").exists() and not left_behind(root)

    with caplog.at_level(logging.WARNING, logger="glamor_fast"):
        rc, captured = run(capsys, root, "--skip-bad")
    assert rc == 0, captured.err
    reports = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(reports) == 1 and "broken.jpg" in reports[0] and "cannot decode" in reports[0]
    assert "2 images: 1 faces found, 0 without a face" in captured.out
    assert "skipped 1 unreadable image(s)" in captured.out
    box = root / "crop" / "train" / "Happy" / "hopper.txt"
    assert len(box.read_text().strip().split(",")) == 4  # Grace Hopper's face was found and written
    assert not (root / "crop" / "train" / "Happy" / "broken.txt").exists()  # retried by the next run
    assert not left_behind(root)


def test_skip_bad_with_nothing_readable_is_an_error(tmp_path, capsys):
    root = tmp_path / "ds"
    (root / "train" / "Sad").mkdir(parents=True)
    corrupt_jpeg(root / "train" / "Sad" / "a.jpg")
    rc, captured = run(capsys, root, "--skip-bad")
    assert rc == 1 and captured.err.strip().splitlines()[-1].startswith("glamor-fast detect-faces: error: none of")


def test_skip_bad_lines_as_a_user_sees_them(tmp_path):
    """In a fresh process: one line per bad image on stderr, the count on stdout, exit status 0."""
    import subprocess
    import sys

    root = photo_tree(tmp_path / "ds")
    corrupt_jpeg(root / "train" / "Happy" / "broken.jpg")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "glamor_fast", "detect-faces", str(root), "--skip-bad"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    bad_lines = [ln for ln in proc.stderr.splitlines() if "broken.jpg" in ln]
    assert len(bad_lines) == 1 and "skipped" in bad_lines[0] and "Traceback" not in proc.stderr
    assert "skipped 1 unreadable image(s)" in proc.stdout
