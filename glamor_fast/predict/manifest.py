"""Which files of an ``--out`` folder ``predict`` wrote: refusing a used folder, and cleaning it on ``--overwrite``.

Each run writes ``predictions.files.json`` beside ``predictions.jsonl``: the path (relative to the
folder), size and modification time of every file it wrote there (annotated images and videos,
timelines, attention panels, the JSON lines, a ``--csv`` file inside the folder).

- A folder is *used* when it holds ``predictions.jsonl``, ``predictions.files.json``, or a file at a
  path this run would write; ``predict`` refuses a used folder unless ``overwrite``.
- With ``overwrite``, once the run has finished, the files the previous run listed that this run
  did not write again are deleted, but only those still exactly as it left them (same size and
  modification time): a file the user edited or replaced since is kept (with a warning), and a
  file not listed (the user's own, or one written by a version without the list) is never
  touched. Folders left empty by the deletion are removed.
- A run that stops half-way lists the previous run's files and its own, so a later
  ``--overwrite`` still cleans both.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from .outputs import temp_name

MANIFEST_NAME = "predictions.files.json"


def used_by(out_dir: Path, planned: Iterable[Path], jsonl_name: str) -> list[Path]:
    """Files in ``out_dir`` that make it a used folder (empty list: free to write)."""
    marks = [out_dir / jsonl_name, out_dir / MANIFEST_NAME]
    return [p for p in [*marks, *planned] if p.is_file()]


def read_manifest(out_dir: Path) -> list[dict]:
    """The previous run's entries ({"path", "size", "mtime_ns"}), or [] when none or unreadable."""
    try:
        entries = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))["written"]
        return [e for e in entries if isinstance(e, dict) and {"path", "size", "mtime_ns"} <= set(e)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def entries_for(out_dir: Path, paths: Sequence[Path]) -> list[dict]:
    """Manifest entries of the files ``paths`` (those inside ``out_dir`` that exist)."""
    out, root = [], out_dir.resolve()
    for p in paths:
        p = Path(p)
        try:
            rel = p.resolve().relative_to(root)
            st = p.stat()
        except (ValueError, OSError):
            continue
        out.append({"path": rel.as_posix(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def write_manifest(out_dir: Path, entries: list[dict]) -> Path:
    path = out_dir / MANIFEST_NAME
    tmp = temp_name(path)
    try:
        tmp.write_text(json.dumps({"written": entries}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale(out_dir: Path, old: list[dict], keep: set[str]) -> list[Path]:
    """Delete the files of ``old`` entries not in ``keep`` (relative posix paths) that are unchanged
    since they were listed; returns the deleted paths. Changed ones are kept with a warning."""
    removed = []
    root = out_dir.resolve()
    for e in old:
        rel = e["path"]
        path = out_dir / rel
        if rel in keep or rel == MANIFEST_NAME or not path.is_file():
            continue
        try:
            if not path.resolve().is_relative_to(root):  # a listed path may never lead out of the folder
                continue
            st = path.stat()
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) != (e["size"], e["mtime_ns"]):
            warnings.warn(f"{path}: kept (--overwrite): an earlier predict run wrote it, but it has changed since")
            continue
        path.unlink()
        removed.append(path)
        parent = path.parent
        while parent.resolve() != root and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return removed


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` entries not rewritten by ``new``, then ``new``."""
    paths = {e["path"] for e in new}
    return [e for e in old if e["path"] not in paths] + new
