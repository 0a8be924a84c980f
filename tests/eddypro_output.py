"""Reading EddyPro's output tables in tests (one reader for every test that compares with them)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def full_output_rows(path: Path, missing_as_nan: bool = False) -> list[dict[str, float | str]]:
    """Rows of an EddyPro ``*_full_output.csv`` (3 header rows: group, name, units) keyed by column
    name; numbers as floats (-9999 as NaN when ``missing_as_nan``), text fields as strings."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        rows = list(csv.reader(fh))
    out = []
    for row in rows[3:]:
        rec: dict[str, float | str] = {}
        for name, value in zip(rows[1], row, strict=False):
            try:
                number = float(value)
            except ValueError:
                rec[name] = value
                continue
            rec[name] = np.nan if missing_as_nan and number == -9999 else number
        out.append(rec)
    return out
