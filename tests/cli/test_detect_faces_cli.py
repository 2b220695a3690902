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
