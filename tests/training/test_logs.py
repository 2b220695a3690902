"""Atomic text writes leave no temporary file; output files are checked before the work."""
from __future__ import annotations

import pytest

from glamor_fast.training.logs import atomic_write_text, check_writable_file


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a_folder"
    target.mkdir()  # renaming a file over a folder fails after the temporary file was written
    with pytest.raises(OSError):
        atomic_write_text(target, "text")
    assert [p.name for p in tmp_path.iterdir()] == ["a_folder"]


def test_check_writable_file_refuses_folders_and_missing_parents_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(IsADirectoryError, match="--out X is a folder"):
        check_writable_file(tmp_path, "--out X")
    with pytest.raises(NotADirectoryError, match="the folder of --out Y"):
        check_writable_file(tmp_path / "file" / "out.jsonl", "--out Y")
    assert check_writable_file(tmp_path / "new" / "out.jsonl", "--out Z") == tmp_path / "new" / "out.jsonl"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "new"]
