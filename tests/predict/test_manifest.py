"""The list of files a predict run wrote, and what ``--overwrite`` may delete."""
import json

import pytest

from glamor_fast.predict import manifest


def test_only_listed_unchanged_files_inside_the_folder_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    for name in ("a/old.jpg", "kept.jpg", "changed.jpg"):
        (out / name).write_text("x")
    outside = tmp_path / "outside.txt"
    outside.write_text("user")
    entries = manifest.entries_for(out, [out / "a/old.jpg", out / "kept.jpg", out / "changed.jpg", outside])
    assert [e["path"] for e in entries] == ["a/old.jpg", "kept.jpg", "changed.jpg"]  # outside: not listed
    escape = {"path": "../outside.txt", "size": 4, "mtime_ns": outside.stat().st_mtime_ns}
    manifest.write_manifest(out, entries + [escape])
    (out / "changed.jpg").write_text("edited")
    with pytest.warns(UserWarning, match="changed.jpg: kept"):
        removed = manifest.remove_stale(out, manifest.read_manifest(out), keep={"kept.jpg"})
    assert removed == [out / "a/old.jpg"] and not (out / "a").exists()
    assert (out / "kept.jpg").exists() and (out / "changed.jpg").exists() and outside.read_text() == "user"


def test_an_unreadable_list_means_nothing_is_listed(tmp_path):
    assert manifest.read_manifest(tmp_path) == []
    (tmp_path / manifest.MANIFEST_NAME).write_text("{not json")
    assert manifest.read_manifest(tmp_path) == []
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps({"written": [{"path": "x"}, 3]}))
    assert manifest.read_manifest(tmp_path) == []
