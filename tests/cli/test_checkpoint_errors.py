"""What eval says about files that are not checkpoints, unsafe pickles, and checkpoint file modes."""
from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

from glamor_fast.cli import main
from glamor_fast.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def eval_error(capsys, path) -> str:
    assert main(["eval", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_jpeg_renamed_pt_is_not_a_checkpoint(tmp_path, capsys):
    from matplotlib import cbook

    fake = tmp_path / "best.pt"
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), fake)
    err = eval_error(capsys, fake)
    assert "not a checkpoint" in err and "JPEG" in err
    assert "arbitrary code" not in err and "file an issue" not in err


@pytest.mark.parametrize("content", [b"", b"hello world\n", b"PK\x03\x04truncated"])
def test_empty_text_and_truncated_files_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_pytorchs_advice(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "glamor_fast.checkpoint", "payload": _RunsCode(marker)}, evil)
    err = eval_error(capsys, evil)
    assert "refusing to load" in err and "arbitrary code" in err
    assert "weights_only" not in err and "file an issue" not in err
    assert not marker.exists()


def test_checkpoints_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "a.pt", {"model": {}})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = save_checkpoint(tmp_path / "b.pt", {"model": {}})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_checkpoint_says_permission_denied(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", {"model": {}})
    path.chmod(0)
    with pytest.raises(CheckpointError, match="permission denied"):
        load_checkpoint(path)


def test_permission_error_is_reported_as_such(tmp_path, monkeypatch):
    """Runs as root too: the read is made to fail the way it does for another user's 0600 file."""
    import glamor_fast.training.checkpoint as checkpoint

    path = save_checkpoint(tmp_path / "a.pt", {"model": {}})

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*a.pt: permission denied"):
        load_checkpoint(path)
