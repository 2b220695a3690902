"""--skip-bad: one corrupt image no longer stops train/eval; without it, one line names the file."""
from __future__ import annotations

import logging
import shutil

import pytest

from glamor_fast.cli import main
from tests.tiny_training import tiny_checkpoint, tiny_dataset


@pytest.fixture()
def corrupt_data(tmp_path):
    root = tiny_dataset(tmp_path / "builtin")
    for split in ("train", "test"):
        (root / split / "Happy" / "zz_broken.png").write_bytes(b"\x89PNG but cut short")
    return root


def train_args(data, out):
    return ["train", "--dataset", "caer-s", "--data-root", str(data), "--out-dir", str(out), "--epochs", "1",
            "--batch-size", "8", "--gla-hidden", "16", "--threads", "2",
            "--no-progress", "--val-fraction", "0.15", "--max-batches-per-epoch", "1", "--model", "face"]


@pytest.mark.filterwarnings("ignore:CAERSDataset.*no face box")
def test_train_stops_with_one_line_or_skips(corrupt_data, tmp_path, capsys, caplog):
    rc = main([*train_args(corrupt_data, tmp_path / "a"), "--val-fraction", "0"])  # every train image is read
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and "zz_broken.png" in err and "cannot decode" in err

    with caplog.at_level(logging.WARNING, logger="glamor_fast"):
        assert main([*train_args(corrupt_data, tmp_path / "b"), "--skip-bad"]) == 0
    assert "skipped 1 unreadable image(s)" in caplog.text and "zz_broken.png" in caplog.text


@pytest.mark.filterwarnings("ignore:CAERSDataset.*no face box")
def test_eval_skip_bad(corrupt_data, tmp_path, capsys, caplog):
    ckpt = tiny_checkpoint(tmp_path / "made")
    args = ["eval", str(ckpt), "--data-root", str(corrupt_data), "--out-dir", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == 1
    assert "zz_broken.png" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING, logger="glamor_fast"):
        assert main([*args, "--skip-bad"]) == 0
    assert "skipped 1 unreadable image(s) of 15" in caplog.text
    assert "(14 images)" in capsys.readouterr().out


def photo_tree_with_a_corrupt_jpeg(root):
    """train/Happy/{broken,hopper}.jpg and train/Sad/hopper.jpg: Grace Hopper twice, random bytes once."""
    import numpy as np
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    for cls in ("Happy", "Sad"):
        (root / "train" / cls).mkdir(parents=True)
        shutil.copy(photo, root / "train" / cls / "hopper.jpg")
    (root / "train" / "Happy" / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(4096))
    return root


def prepare_args(root, cache, *extra):
    return ["prepare", str(root), "--out", str(cache), "--workers", "1", "--no-progress", *extra]


@pytest.mark.filterwarnings("ignore:CAERSDataset.*no face box", "ignore:CachedDataset.*no face box")
def test_prepare_skip_bad_leaves_out_the_corrupt_jpeg_and_stays_fresh(tmp_path, capsys, caplog):
    import numpy as np

    from glamor_fast.data.cache import CachedDataset, StaleCacheError, partial_dir, split_dir

    root = photo_tree_with_a_corrupt_jpeg(tmp_path / "ds")
    cache = tmp_path / "cache"
    assert main(prepare_args(root, cache)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0] and "--skip-bad" in err[0]
    assert not split_dir(cache, "train").exists()  # nothing published

    with caplog.at_level(logging.WARNING, logger="glamor_fast"):
        assert main(prepare_args(root, cache, "--skip-bad")) == 0
    out = capsys.readouterr().out
    assert "train: 2 entries" in out and "skipped 1 unreadable image(s)" in out
    reports = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(reports) == 1 and "broken.jpg" in reports[0]
    assert not partial_dir(cache, "train").exists() and not list(cache.rglob("*.tmp"))

    # the arrays are the good images' rows, as a build without the corrupt file gives them
    ds = CachedDataset(cache, "train")  # fresh although broken.jpg is still there
    assert [rel for rel, _ in ds.samples] == ["train/Happy/hopper.jpg", "train/Sad/hopper.jpg"]
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    (clean / "train" / "Happy" / "broken.jpg").unlink()
    assert main(prepare_args(clean, tmp_path / "clean-cache")) == 0
    for name in ("faces.npy", "contexts.npy"):
        assert np.array_equal(np.load(split_dir(cache, "train") / name),
                              np.load(split_dir(tmp_path / "clean-cache", "train") / name))

    assert main(prepare_args(root, cache, "--skip-bad")) == 0  # unchanged: nothing to redo
    assert "up to date" in capsys.readouterr().out

    # once the file is fixed, the cache is stale and a rebuild takes it in
    shutil.copy(root / "train" / "Sad" / "hopper.jpg", root / "train" / "Happy" / "broken.jpg")
    with pytest.raises(StaleCacheError, match="changed since prepare --skip-bad left it out"):
        CachedDataset(cache, "train")
    assert main(prepare_args(root, cache)) == 0
    assert "train: 3 entries (1 decoded, 2 copied" in capsys.readouterr().out


def test_prepare_skip_bad_with_nothing_readable_is_an_error(tmp_path, capsys):
    import numpy as np

    root = tmp_path / "ds"
    (root / "train" / "Sad").mkdir(parents=True)
    (root / "train" / "Sad" / "a.jpg").write_bytes(np.random.default_rng(1).bytes(4096))
    assert main(prepare_args(root, tmp_path / "cache", "--skip-bad")) == 1
    assert "none of the 1 images" in capsys.readouterr().err
