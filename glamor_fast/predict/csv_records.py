"""JSON-line records as a CSV table, written to a temporary name and renamed when complete.

Shared by ``predict --csv`` and ``eval --csv``. Each record (a dict) becomes one row with the same
fields as its JSON line, flattened so a spreadsheet or ``pandas.read_csv`` needs no parsing:

- a dict field (``probs``) becomes one column per key, ``<field>_<key>`` (``probs_Anger``, ...);
- a list field named in ``list_columns`` becomes one column per element (``box`` ->
  ``box_x1, box_y1, box_x2, box_y2``);
- None (JSON null) is an empty cell; everything else is written as ``str`` would.
"""
from __future__ import annotations

import csv
from typing import Mapping, Optional, Sequence

from .outputs import RecordFile

BOX_COLUMNS = {"box": ("x1", "y1", "x2", "y2")}


def csv_header(fields: Sequence[str], dict_columns: Mapping[str, Sequence[str]],
               list_columns: Mapping[str, Sequence[str]] = BOX_COLUMNS) -> list[str]:
    """The CSV column names of records with ``fields`` (dict fields expanded by their keys)."""
    header = []
    for name in fields:
        keys = dict_columns.get(name) or list_columns.get(name)
        header += [f"{name}_{k}" for k in keys] if keys else [name]
    return header


class CsvRecords(RecordFile):
    """``write(record)`` rows to ``path`` (under a temporary name until ``close()``; ``abort()``
    deletes it; ``mark()``/``rewind()`` as ``RecordFile``), after a header row.

    ``fields``: the record keys, in column order; ``dict_columns``: {dict field: its keys} (e.g.
    {"probs": class names}); ``list_columns``: {list field: names of its elements}.
    """

    def __init__(self, path, fields: Sequence[str], dict_columns: Mapping[str, Sequence[str]],
                 list_columns: Mapping[str, Sequence[str]] = BOX_COLUMNS):
        super().__init__(path, newline="")
        self.fields, self.dict_columns, self.list_columns = list(fields), dict(dict_columns), dict(list_columns)
        self.writer = csv.writer(self.file)
        self.writer.writerow(csv_header(self.fields, self.dict_columns, self.list_columns))

    def write(self, record: Mapping) -> None:
        row = []
        for name in self.fields:
            value = record.get(name)
            keys: Optional[Sequence] = self.dict_columns.get(name)
            if keys is not None:
                row += [_cell(None if value is None else value.get(k)) for k in keys]
            elif name in self.list_columns:
                n = len(self.list_columns[name])
                if value is not None and len(value) != n:
                    raise ValueError(f"{self.path}: field {name!r} has {len(value)} values, expected {n}")
                row += [""] * n if value is None else [_cell(v) for v in value]
            else:
                row.append(_cell(value))
        self.writer.writerow(row)
        self.count += 1


def _cell(value) -> str:
    return "" if value is None else str(value)
