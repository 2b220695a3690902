"""eval and visualize read data; they never generate the built-in dataset anywhere."""
from __future__ import annotations

import shutil

import pytest

from glamor_fast.cli import main
from glamor_fast.training.checkpoint import load_checkpoint, save_checkpoint
from tests.tiny_training import tiny_checkpoint


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture()
def ckpt_without_data(tmp_path):
    """A checkpoint whose recorded data root (a relative path, as the default data/builtin) is absent."""
    path = tiny_checkpoint(tmp_path / "made")
    ckpt = load_checkpoint(path)
    ckpt["data_root"] = ckpt["config"]["data_root"] = "data/builtin"
    shutil.rmtree(tmp_path / "made" / "builtin")
    return save_checkpoint(tmp_path / "ckpt" / "best.pt", {k: v for k, v in ckpt.items() if k != "format"})


@pytest.mark.parametrize("command", ["eval", "visualize"])
def test_missing_builtin_data_is_an_error_not_a_download(ckpt_without_data, tmp_path, monkeypatch, capsys, command):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = [command, str(ckpt_without_data), "--out-dir", str(tmp_path / "out")]
    assert main(args + (["--no-progress"] if command == "eval" else [])) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "data/builtin" in err and "--data-root" in err
    assert files_under(cwd) == []


@pytest.mark.filterwarnings("ignore:CAERSDataset.*no face box")
@pytest.mark.parametrize("command", ["eval", "visualize"])
def test_a_real_dataset_folder_is_read_not_written(tmp_path, capsys, command):
    from matplotlib import cbook

    ckpt = tiny_checkpoint(tmp_path / "made")
    real = tmp_path / "my-dataset"
    for split in ("train", "test"):
        (real / split / "Happy").mkdir(parents=True)
        shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), real / split / "Happy" / "a.jpg")
    (real / "notes.txt").write_text("mine")
    before = files_under(real)
    # eval relies on the folder's layout; visualize is told with --dataset
    args = [command, str(ckpt), "--data-root", str(real), "--out-dir", str(tmp_path / "out")]
    if command == "eval":
        args.append("--no-progress")
    else:
        args += ["--num", "1", "--dataset", "caer-s"]
    rc = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert files_under(real) == before  # nothing generated into (or next to) the user's data
    assert rc == 0, captured.err
