"""Expected failures give one line on stderr and exit status 1, never a traceback."""
from __future__ import annotations

import argparse

import pytest

from glamor_fast.cli import main
from glamor_fast.cli.errors import check_writable_dir, one_line, run_reporting_errors
from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith(f"glamor-fast {command}: error: "), err
    return lines[-1]


def test_helper_maps_expected_errors_and_keeps_bugs(capsys):
    args = argparse.Namespace()

    def raises(exc):
        def job(_):
            raise exc
        return job

    assert run_reporting_errors("x", lambda a: None, args) == 0
    assert run_reporting_errors("x", lambda a: 3, args) == 3
    assert run_reporting_errors("x", raises(KeyboardInterrupt()), args) == 130
    assert run_reporting_errors("x", raises(PermissionError(13, "Permission denied", "/out/a.pt")), args) == 1
    assert one_error_line(capsys, "x") == "glamor-fast x: error: /out/a.pt: permission denied"
    assert run_reporting_errors("x", raises(ValueError("bad\n  value")), args) == 1
    assert one_error_line(capsys, "x") == "glamor-fast x: error: bad value"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_reporting_errors("x", raises(ZeroDivisionError()), args)


def test_one_line_of_an_os_error_without_a_file():
    assert one_line(OSError("disk on fire")) == "disk on fire"


def test_one_line_of_an_error_from_a_dataloader_worker():
    from torch.utils.data import DataLoader, Dataset

    from glamor_fast.data.caer import CorruptImageError

    class Broken(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise CorruptImageError("cannot decode image /data/x.png: the file is corrupt")

    with pytest.raises(CorruptImageError) as info:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert one_line(info.value) == "cannot decode image /data/x.png: the file is corrupt"


@pytest.mark.parametrize("backend", ["foo", "triton"])
def test_unknown_and_unavailable_backends_give_the_same_kind_of_message(ckpt, backend, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # as on a CPU-only machine outside the test suite
    rc = main(["eval", str(ckpt), "--backend", backend, "--device", "cpu", "--no-progress",
               "--out-dir", str(tmp_path)])
    assert rc == 1
    line = one_error_line(capsys, "eval")
    assert f"backend {backend!r}" in line


def test_missing_and_non_checkpoint_files(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.pt"), "--no-progress"]) == 1
    assert "nope.pt" in one_error_line(capsys, "eval")
    assert main(["visualize", str(tmp_path / "nope.pt"), "--out-dir", str(tmp_path / "v")]) == 1
    assert "nope.pt" in one_error_line(capsys, "visualize")


def test_check_writable_dir(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="--out-dir"):
        check_writable_dir(tmp_path / "file")
    with pytest.raises(OSError, match="--out-dir"):
        check_writable_dir(tmp_path / "file" / "sub")


def test_an_unavailable_backend_is_reported_like_an_unknown_one():
    """Callers that catch ValueError for --backend foo also catch an unavailable --backend triton."""
    import torch

    from glamor_fast.ops.registry import BackendUnavailableError, choose_backend

    assert issubclass(BackendUnavailableError, ValueError) and issubclass(BackendUnavailableError, RuntimeError)
    with pytest.raises(ValueError, match="backend 'cuda' is not available for cpu"):
        choose_backend("cuda", torch.device("cpu"), torch.float32)
