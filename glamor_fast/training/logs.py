"""Output files: per-epoch metric logs (metrics.csv/json), atomic text writes, an early writability check."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename; a failure removes the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_savefig(fig, path) -> Path:
    """fig.savefig to a temporary name beside ``path`` (format from its suffix), then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_writable_dir(path, what: str = "--out-dir") -> Path:
    """Create folder ``path`` if needed and prove a file can be written there, before any work starts.

    Raises NotADirectoryError, PermissionError or another OSError naming ``what`` and the folder.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is not a folder", str(path)) from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"{what} is not writable ({exc.strerror})", str(path)) from None
    return path


def check_writable_file(path, what: str) -> Path:
    """Prove that file ``path`` can be written (its folder is created if needed), before any work starts.

    Refuses a path that is a folder; raises an OSError naming ``what`` and the path otherwise.
    Nothing is left behind: the probe is a temporary file in the folder, removed at once.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{what} is a folder, not a file name", str(path))
    check_writable_dir(path.parent, f"the folder of {what}")
    return path


def write_metric_logs(out_dir, history: list[dict], extra: dict) -> None:
    """metrics.csv (one row per epoch) and metrics.json ({**extra, "epochs": history})."""
    out_dir = Path(out_dir)
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out_dir / "metrics.csv", buf.getvalue())
    atomic_write_text(out_dir / "metrics.json", json.dumps({**extra, "epochs": history}, indent=2))
