"""Progress bars only on a terminal unless --progress; quickstart reports the device, threads and backend that ran."""
from __future__ import annotations

import io

import pytest

from glamor_fast.cli import build_parser
from glamor_fast.cli.progress import show_progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("command", [["train"], ["eval", "c.pt"], ["quickstart"], ["detect-faces", "root"],
                                     ["build-ncaer", "a", "b"]])
def test_progress_follows_the_terminal_unless_asked(monkeypatch, command, tty):
    monkeypatch.setattr("sys.stderr", _Stream(tty))
    parser = build_parser()
    assert show_progress(parser.parse_args(command).progress) is tty
    assert show_progress(parser.parse_args([*command, "--progress"]).progress) is True
    assert show_progress(parser.parse_args([*command, "--no-progress"]).progress) is False


def test_train_config_gets_the_resolved_value(monkeypatch):
    from glamor_fast.cli.train import config_from_args

    monkeypatch.setattr("sys.stderr", _Stream(False))
    assert config_from_args(build_parser().parse_args(["train"])).progress is False
    monkeypatch.setattr("sys.stderr", _Stream(True))
    assert config_from_args(build_parser().parse_args(["train"])).progress is True


def test_quickstart_uses_the_machines_threads_by_default():
    args = build_parser().parse_args(["quickstart"])
    assert args.threads is None
