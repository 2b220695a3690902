"""Records (dicts of per-image or per-face results) as CSV, beside their JSON lines.

One row per record. Nested values are spread over flat columns so a spreadsheet or
``pandas.read_csv`` needs no parsing: a dict ``probs={"Happy": 0.9, ...}`` becomes columns
``probs.Happy, ...``, a list ``box=[x1, y1, x2, y2]`` becomes ``box.0 ... box.3``; None is an
empty cell. The columns are the union over the records, in order of first appearance.
The file is written to a temporary name beside the target and renamed when complete.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

from glamor_fast.training.logs import atomic_write_text

__all__ = ["flatten_record", "records_to_csv", "write_records_csv"]


def flatten_record(record: dict, prefix: str = "") -> dict:
    """``record`` with nested dicts and lists spread into ``parent.key`` / ``parent.i`` columns."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat.update(flatten_record({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = "" if value is None else value
    return flat


def records_to_csv(records: Iterable[dict]) -> str:
    """The CSV text (header + one row per record) of ``records``."""
    rows = [flatten_record(r) for r in records]
    columns: list[str] = []
    seen = set()
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_records_csv(path, records: Iterable[dict]) -> Path:
    """Write ``records`` as CSV to ``path`` (atomically); returns the path."""
    atomic_write_text(Path(path), records_to_csv(records))
    return Path(path)
