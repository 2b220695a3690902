"""Python warnings raised while a command runs print as one line, ``glamor-fast COMMAND: warning: ...``."""
import warnings

import glamor_fast.cli.demo as demo
from glamor_fast.cli import main as cli_main


def test_a_warning_inside_any_command_is_one_line(monkeypatch, capsys):
    def warns(args):
        warnings.warn("first line\n  second line", UserWarning)
        return 0

    monkeypatch.setattr(demo, "main", warns)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli_main(["demo"]) == 0
    err = capsys.readouterr().err
    assert err == "glamor-fast demo: warning: first line second line\n"
    assert warnings.showwarning is before  # the hook is removed when the command ends


def test_errors_still_win_over_the_filter(monkeypatch):
    """``-W error`` (the filters) is left alone: the warning is raised, not printed."""
    import pytest

    monkeypatch.setattr(demo, "main", lambda args: warnings.warn("boom") or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="boom"):
            cli_main(["demo"])
