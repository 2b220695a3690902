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
            "--batch-size", "8", "--gla-hidden", "16", "--backend", "reference", "--threads", "2",
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
