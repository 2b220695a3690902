"""glamor-fast prepare and CachedDataset on generated full-size CAER-S frames."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

from glamor_fast.data import CAERSDataset
from glamor_fast.data import cache_build
from glamor_fast.data.cache import CONTEXTS, FACES, CachedDataset, StaleCacheError, load_index, partial_dir
from glamor_fast.data.cache_build import PrepareError, prepare_cache
from tests.data.conftest import write_image


def _on_the_fly(root, split, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CAERSDataset(root, split, **kw)


def _arrays(cache, split):
    return [np.load(cache / split / name) for name in (FACES, CONTEXTS)]


@pytest.mark.parametrize("normalize", [False, True])
def test_eval_items_bit_identical_to_on_the_fly(frames_tree, tmp_path, normalize):
    cache = tmp_path / "cache"
    summary = prepare_cache(frames_tree, cache, workers=1, progress=False)
    assert summary["test"]["decoded"] == 7 and summary["train"]["decoded"] == 14
    ref, cached = _on_the_fly(frames_tree, "test", normalize=normalize), CachedDataset(cache, "test", normalize=normalize)
    assert len(ref) == len(cached) == 7
    for i in range(len(ref)):
        a, b = ref[i], cached[i]
        assert torch.equal(a["face"], b["face"]) and torch.equal(a["context"], b["context"])
        assert (a["path"], a["label"], a["has_face"]) == (b["path"], b["label"], b["has_face"])
    index = load_index(cache, "test")
    entry = next(e for e in index["entries"] if e["source"] == "test/Happy/0000.png")
    assert entry["box"] is None and entry["box_origin"] == "none" and entry["size"] == [400, 712]
    assert set(entry["fingerprint"]) == {"bytes", "mtime_ns", "blake2b"}
    assert index["settings"]["face_visible"] is False and index["root"] == str(frames_tree.resolve())
    assert not any(p.name.startswith(".") for p in cache.iterdir())  # nothing half-built left behind


def test_parallel_build_equals_serial_and_second_run_is_a_no_op(frames_tree, tmp_path):
    prepare_cache(frames_tree, tmp_path / "serial", splits=["test"], workers=1, progress=False)
    prepare_cache(frames_tree, tmp_path / "par", splits=["test"], workers=2, progress=False)
    for a, b in zip(_arrays(tmp_path / "serial", "test"), _arrays(tmp_path / "par", "test")):
        assert np.array_equal(a, b)
    again = prepare_cache(frames_tree, tmp_path / "par", splits=["test"], workers=2, progress=False)
    assert again["test"]["up_to_date"]


def test_changed_sources_are_detected_and_rebuilt(frames_tree, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(frames_tree, cache, splits=["train"], workers=1, progress=False)
    touched = frames_tree / "train/Fear/0000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    CachedDataset(cache, "train")  # same content, new mtime: still fresh (the hash decides)
    write_image(frames_tree / "train/Sad/0001.png", h=400, w=712, seed=99)
    (frames_tree / "crop/train/Happy/0000.txt").write_text("10,10,200,200\n")
    write_image(frames_tree / "train/Happy/extra.png", h=400, w=712, seed=7)
    with pytest.raises(StaleCacheError, match=r"stale: 3 of its sources changed.*glamor-fast prepare") as err:
        CachedDataset(cache, "train")
    assert "train/Sad/0001.png: content changed" in str(err.value)
    summary = prepare_cache(frames_tree, cache, splits=["train"], workers=1, progress=False)["train"]
    assert (summary["entries"], summary["decoded"], summary["copied"]) == (15, 4, 11)  # touched one re-decoded
    ref, cached = _on_the_fly(frames_tree, "train"), CachedDataset(cache, "train")
    for i in range(len(ref)):
        assert torch.equal(ref[i]["context"], cached[i]["context"]) and torch.equal(ref[i]["face"], cached[i]["face"])
    (frames_tree / "train/Happy/extra.png").unlink()
    with pytest.raises(StaleCacheError, match="removed"):
        CachedDataset(cache, "train")


def test_other_settings_are_refused(frames_tree, tmp_path):
    prepare_cache(frames_tree, tmp_path / "cache", splits=["test"], workers=1, progress=False)
    with pytest.raises(StaleCacheError, match=r"face_visible: cache False, wanted True.*--face-visible"):
        CachedDataset(tmp_path / "cache", "test", face_visible=True)
    with pytest.raises(StaleCacheError, match="no complete cache of split 'val'"):
        CachedDataset(tmp_path / "cache", "val")


def test_interrupted_prepare_leaves_no_usable_cache_and_resumes(frames_tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real, calls = cache_build._process_one, []

    def dies_on_the_fifth(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(cache_build, "_process_one", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(frames_tree, cache, splits=["train"], workers=1, progress=False)
    assert not (cache / "train").exists() and partial_dir(cache, "train").is_dir()
    with pytest.raises(StaleCacheError, match="unfinished build"):
        CachedDataset(cache, "train")
    monkeypatch.setattr(cache_build, "_process_one", real)
    summary = prepare_cache(frames_tree, cache, splits=["train"], workers=1, progress=False)["train"]
    assert (summary["resumed"], summary["decoded"]) == (4, 10)
    prepare_cache(frames_tree, tmp_path / "fresh", splits=["train"], workers=1, progress=False)
    for a, b in zip(_arrays(cache, "train"), _arrays(tmp_path / "fresh", "train")):
        assert np.array_equal(a, b)
    assert not partial_dir(cache, "train").exists()


def test_corrupt_image_is_named_and_nothing_published(frames_tree, tmp_path, capsys):
    from glamor_fast.cli import main

    bad = frames_tree / "test/Sad/0000.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(PrepareError, match=f"1 of 7 images.*cannot decode image {bad}"):
        prepare_cache(frames_tree, tmp_path / "cache", splits=["test"], workers=1, progress=False)
    assert not (tmp_path / "cache" / "test").exists()
    assert main(["prepare", str(frames_tree), "--out", str(tmp_path / "cache"), "--workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]


def test_no_box_policies(frames_tree, tmp_path):
    with pytest.warns(UserWarning, match="1 of 7 images have no face box.*--no-box drop: left out, 6 images remain"):
        dropped = CAERSDataset(frames_tree, "test", no_box="drop")
    assert len(dropped) == 6 and all(dropped.boxes)
    prepare_cache(frames_tree, tmp_path / "cache", splits=["test"], no_box="drop", workers=1, progress=False)
    cached = CachedDataset(tmp_path / "cache", "test", no_box="drop")
    assert [s for s, _ in cached.samples] == [s for s, _ in dropped.samples]
    with pytest.warns(UserWarning, match=r"--no-box detect: the Haar detector found a face in \d+; the other \d+"):
        CAERSDataset(frames_tree, "test", no_box="detect")
    with pytest.raises(ValueError, match="no_box='guess'"):
        CAERSDataset(frames_tree, "test", no_box="guess")


@pytest.mark.parametrize("cached", [False, True])
def test_persistent_workers_follow_set_epoch(frames_tree, tmp_path, cached):
    from torch.utils.data import DataLoader

    if cached:
        prepare_cache(frames_tree, tmp_path / "cache", splits=["test"], workers=1, progress=False)
        ds = CachedDataset(tmp_path / "cache", "test", train=True)
        key = "aug"
    else:
        ds, key = _on_the_fly(frames_tree, "test", train=True), "context"
    loader = DataLoader(ds, batch_size=7, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader))[key])
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])
