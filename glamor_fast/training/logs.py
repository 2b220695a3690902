"""Per-epoch metric logs: metrics.csv and metrics.json, rewritten atomically after every epoch."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
