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


def test_resume_takes_the_runs_settings_and_lists_the_flags_that_override_them(data, tmp_path, capsys,
                                                                               monkeypatch):
    import os

    from glamor_fast.training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    first = [a for a in tiny_train_args(data, out) if a not in ("--backend", "reference")]
    assert main([*first, "--model", "face", "--optimizer", "adamw", "--lr", "0.002", "--dropout", "0.3"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    # nothing but the checkpoint and a longer schedule: data, output folder, model and recipe are the run's
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "except, as given: epochs=2 (was 1)" in printed and "resumed from" in printed
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    cfg = ckpt["config"]
    assert (cfg["model"], cfg["optimizer"], cfg["lr"], cfg["dropout"], cfg["gla_hidden"], cfg["data_root"],
            cfg["max_batches_per_epoch"], cfg["out_dir"]) == ("face", "adamw", 0.002, 0.3, 16, str(data), 1, str(out))
    assert os.listdir(tmp_path / "elsewhere") == []  # no runs/train, no data/builtin

    # complete: nothing to do, nothing touched
    mtime = (out / "last.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(out / "last.pt")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (out / "last.pt").stat().st_mtime_ns == mtime

    # a model setting given on the command line that contradicts the checkpoint is still refused
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "3", "--model", "caernet-s"]) == 1
    assert "model settings differ" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--backend", "cuda"], ["--model", "face", "--backend", "cpp"],
                                   ["--device", "cuda:7"]])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, capsys, extra):
    out = tmp_path / "run"
    args = [a for a in tiny_train_args(tmp_path / "data", out) if a not in ("--backend", "reference")]
    assert main([*args, *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("glamor-fast train: error:") and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "data").exists()
