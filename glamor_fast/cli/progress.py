"""``--progress/--no-progress``: progress bars only on a terminal unless asked for.

In a log file or a pipe a tqdm bar is a stream of carriage returns; commands there print their
plain per-epoch / summary lines only.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional


def add_progress_argument(parser, what: str = "progress bars") -> None:
    """--progress / --no-progress, default None (= on when stderr is a terminal)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"{what} (default: only when stderr is a terminal)")


def show_progress(flag: Optional[bool]) -> bool:
    """The --progress value, with None meaning "stderr is a terminal"."""
    if flag is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(flag)
