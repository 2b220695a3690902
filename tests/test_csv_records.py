"""Records as CSV: nested values spread into columns, union of columns, None as an empty cell."""
from __future__ import annotations

import csv

from glamor_fast.csv_records import flatten_record, write_records_csv


def test_flatten_spreads_dicts_and_lists():
    rec = {"source": "a.png", "box": [1, 2, 3, 4], "probs": {"Happy": 0.75, "Sad": 0.25}, "score": None}
    assert flatten_record(rec) == {"source": "a.png", "box.0": 1, "box.1": 2, "box.2": 3, "box.3": 4,
                                   "probs.Happy": 0.75, "probs.Sad": 0.25, "score": ""}


def test_write_records_csv_takes_the_union_of_columns(tmp_path):
    path = write_records_csv(tmp_path / "r.csv", [{"a": 1, "b": {"x": 2}}, {"a": 3, "c": "four, five"}])
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"a": "1", "b.x": "2", "c": ""}, {"a": "3", "b.x": "", "c": "four, five"}]
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]
