"""Expected failures of a command -> one line on stderr and a non-zero exit status.

Every command's ``main`` runs its work through ``run_reporting_errors``: a bad argument, a
missing or unreadable file, an unwritable output folder, a bad checkpoint, a GLA backend that
cannot run here, a missing optional dependency or a diverging loss is reported as
``glamor-fast COMMAND: error: ...`` (one line, exit status 1); Ctrl-C exits with 130. Anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from glamor_fast.training.logs import check_writable_dir

__all__ = ["check_writable_dir", "expected_errors", "one_line", "run_reporting_errors"]


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types a command reports as one line."""
    from glamor_fast.data.faces import MissingExtraError
    from glamor_fast.ops.registry import BackendUnavailableError
    from glamor_fast.training.checkpoint import CheckpointError
    from glamor_fast.training.loop import NonFiniteLossError

    # MissingExtraError: an optional dependency (dlib) is not installed; its message names the extra.
    # OSError covers FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError, disk full.
    return (CheckpointError, NonFiniteLossError, BackendUnavailableError, MissingExtraError, ValueError, OSError)


def one_line(exc: BaseException) -> str:
    """The exception as one line; an OSError names the file and what went wrong with it."""
    if isinstance(exc, OSError) and exc.strerror and (exc.filename or exc.filename2):
        text = f"{exc.filename}: {exc.strerror.lower()}"
        if exc.filename2:
            text = f"{exc.filename} -> {exc.filename2}: {exc.strerror.lower()}"
    else:
        text = str(exc) or type(exc).__name__
        if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the original message
            last = [ln for ln in text.splitlines() if ln.strip()][-1]
            text = last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    return " ".join(text.split())


def run_reporting_errors(command: str, job: Callable[[argparse.Namespace], object],
                         args: argparse.Namespace) -> int:
    """Exit status of ``job(args)``: its int result (0 for anything else), 130 on Ctrl-C, and 1
    after a one-line ``glamor-fast COMMAND: error: ...`` on stderr for an expected error."""
    try:
        result = job(args)
    except KeyboardInterrupt:
        return 130
    except expected_errors() as exc:
        print(f"glamor-fast {command}: error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
