"""Python warnings as one line, ``glamor-fast COMMAND: warning: ...``, while a command runs.

Without this a ``warnings.warn`` from the library (a video cut short, an image without a face
box, ...) reaches the user as Python prints it: the source file, line number, category and the
code line, e.g. ``/.../run.py:212: UserWarning: ...``. The command line's ``main`` runs every
command inside ``one_line_warnings``; the warning filters (which warnings show, how often) are
Python's, untouched, so ``python -W error`` or ``-W ignore`` still work.
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Iterator


def warning_line(command: str, message) -> str:
    """``glamor-fast COMMAND: warning: MESSAGE`` with the message's whitespace folded to one line."""
    return f"glamor-fast {command}: warning: {' '.join(str(message).split())}"


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Print each warning shown inside the block as ``warning_line`` on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(warning_line(command, message), file=sys.stderr if file is None else file, flush=True)

    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved
