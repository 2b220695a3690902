"""`glamor-fast train` never replaces a run silently and checks --out-dir before working."""
from __future__ import annotations

import pytest

from glamor_fast.cli import main
from tests.tiny_training import tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data") / "builtin")


def tiny_train_args(data, out) -> list[str]:
    return ["train", "--dataset", "builtin", "--data-root", str(data), "--out-dir", str(out), "--epochs", "1",
            "--batch-size", "8", "--gla-hidden", "16", "--backend", "reference", "--threads", "2",
            "--no-progress", "--val-fraction", "0.15", "--max-batches-per-epoch", "1"]


def test_train_refuses_an_out_dir_that_holds_a_run(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"the user's weights")
    (out / "metrics.csv").write_text("epoch\n1\n")
    assert main(tiny_train_args(data, out)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "best.pt").read_bytes() == b"the user's weights"
    assert (out / "metrics.csv").read_text() == "epoch\n1\n"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "metrics.csv"]

    assert main([*tiny_train_args(data, out), "--overwrite"]) == 0
    assert (out / "best.pt").read_bytes() != b"the user's weights"


def test_train_checks_out_dir_is_writable_before_loading_data(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # the data root does not exist: the --out-dir error must come first, before any data work
    assert main(tiny_train_args(tmp_path / "no-data", blocker / "run")) == 1
    err = capsys.readouterr().err
    assert "glamor-fast train: error:" in err and "--out-dir" in err and "Traceback" not in err
    assert not (tmp_path / "no-data").exists()


def test_resume_without_model_flags_takes_the_checkpoints_settings(data, tmp_path, capsys):
    from glamor_fast.training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert main([*tiny_train_args(data, out), "--model", "face", "--optimizer", "adamw", "--dropout", "0.3"]) == 0
    resume = ["--resume", str(out / "last.pt"), "--epochs", "2"]
    capsys.readouterr()
    assert main([*tiny_train_args(data, out), *resume]) == 0  # no --model/--optimizer/--dropout
    assert "resuming with the checkpoint's model='face'" in capsys.readouterr().out
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2
    assert (ckpt["config"]["model"], ckpt["config"]["optimizer"], ckpt["config"]["dropout"],
            ckpt["config"]["gla_hidden"]) == ("face", "adamw", 0.3, 16)

    # a setting given on the command line that contradicts the checkpoint is still refused
    assert main([*tiny_train_args(data, out), *resume, "--model", "caernet-s"]) == 1
    assert "model settings differ" in capsys.readouterr().err
