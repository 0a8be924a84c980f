"""A checker of AmeriFlux BASE half-hourly/hourly files, written from AmeriFlux's published rules.

Rules (AmeriFlux "Half-Hourly/Hourly Data Upload Format", "Data Variables", "Data Variable
Qualifiers"; shared/reference/ec-methods.md f.8):

1. name ``<SITE_ID>_<HH|HR>_<YYYYMMDDHHMM>_<YYYYMMDDHHMM>.csv``, SITE_ID ``CC-XXX``; the two stamps
   are the file's first ``TIMESTAMP_START`` and last ``TIMESTAMP_END``;
2. comma-separated, a header row of variable names, ``TIMESTAMP_START``, ``TIMESTAMP_END`` first,
   each name once;
3. each other name an AmeriFlux base name, optionally with qualifiers: position ``_<H>_<V>_<R>`` or
   ``_<N>``, ``_F`` (gap-filled), ``_PI``, ``_QC``, ``_SD``, ``_N``, ``_SSITC_TEST``, ``_RANDUNC``;
4. stamps ``YYYYMMDDHHMM`` that are real times, ``END - START`` the resolution, each row starting
   where the previous ended (equally spaced, no missing rows);
5. every value a number; missing values exactly ``-9999`` (not empty, ``NA``, ``NaN``);
6. no variable missing in every row; values within the physical range of the variable.

:func:`check` returns the problems (empty: the file passes); ``fluxedge export --check FILE``.
"""

from __future__ import annotations

import csv
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

from fluxedge.common.ameriflux import COLUMNS
from fluxedge.common.messages import FLUX_FIELDS, MET_FIELDS, met_base

_NAME = re.compile(r"(?P<site>[A-Z]{2}-[A-Za-z0-9]{3})_(?P<res>HH|HR)_(?P<start>\d{12})_(?P<end>\d{12})\.csv")
STEP = {"HH": timedelta(minutes=30), "HR": timedelta(hours=1)}
#: base names: the fluxes this software writes, the met variables, and the network's derived ones
BASE_NAMES = frozenset(COLUMNS) | frozenset(MET_FIELDS) | frozenset(
    {"NEE", "GPP", "RECO", "SC", "SH", "SLE", "FETCH_80", "SW_DIF", "SW_DIR", "ALB", "TS", "SWC", "WTD"})
_QUALIFIERS = re.compile(r"(_\d+_\d+_\d+|_\d+|_F|_PI|_QC|_SD|_N|_SSITC_TEST|_RANDUNC|_UNC|_NT|_DT)*")
MISSING = "-9999"
#: most problems of one kind reported
MAX_REPORTED = 5


def _base_ok(name: str) -> bool:
    for base in sorted(BASE_NAMES, key=len, reverse=True):
        if name == base or (name.startswith(base + "_") and _QUALIFIERS.fullmatch(name[len(base):])):
            return True
    return False


def _range(name: str) -> tuple[float, float] | None:
    if name in FLUX_FIELDS:
        return FLUX_FIELDS[name][1], FLUX_FIELDS[name][2]
    base = met_base(name)
    return (MET_FIELDS[base][1], MET_FIELDS[base][2]) if base else None


def _stamp(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{12}", text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M")
    except ValueError:
        return None


def check(path: str | Path) -> list[str]:
    """The AmeriFlux format problems of the file at ``path`` (empty: none)."""
    path = Path(path)
    problems: list[str] = []
    m = _NAME.fullmatch(path.name)
    if not m:
        problems.append(f"file name {path.name!r} is not <SITE_ID>_<HH|HR>_<YYYYMMDDHHMM>_<YYYYMMDDHHMM>.csv")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [*problems, "the file is empty"]
    header, data = rows[0], rows[1:]
    if header[:2] != ["TIMESTAMP_START", "TIMESTAMP_END"]:
        problems.append(f"the first columns are {header[:2]}, not TIMESTAMP_START, TIMESTAMP_END")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        problems.append(f"columns named more than once: {', '.join(dupes)}")
    names = header[2:]
    problems += [f"{n!r} is no AmeriFlux variable name (base name + qualifiers)" for n in names if not _base_ok(n)]
    if not data:
        return [*problems, "no data rows"]
    step = STEP[m["res"]] if m else None
    bad_rows: list[str] = []
    previous_end = None
    for i, row in enumerate(data, start=2):
        if len(row) != len(header):
            bad_rows.append(f"line {i}: {len(row)} fields, the header has {len(header)}")
            continue
        start, end = _stamp(row[0]), _stamp(row[1])
        if start is None or end is None:
            bad_rows.append(f"line {i}: time stamps {row[0]!r}, {row[1]!r} are not YYYYMMDDHHMM")
            continue
        if step is not None and end - start != step:
            bad_rows.append(f"line {i}: TIMESTAMP_END - TIMESTAMP_START is {end - start}, not {step}")
        if previous_end is not None and start != previous_end:
            bad_rows.append(f"line {i}: starts at {row[0]}, the previous row ended at "
                            f"{previous_end:%Y%m%d%H%M} (rows must be consecutive)")
        previous_end = end
    problems += bad_rows[:MAX_REPORTED]
    if m and data and len(data[0]) >= 2 and (data[0][0] != m["start"] or data[-1][1] != m["end"]):
        problems.append(f"the file name says {m['start']}..{m['end']}, the rows {data[0][0]}..{data[-1][1]}")
    for j, name in enumerate(names, start=2):
        cells = [r[j] for r in data if len(r) == len(header)]
        values = []
        bad = []
        for cell in cells:
            try:
                v = float(cell)
            except ValueError:
                bad.append(cell)
                continue
            if not math.isfinite(v):
                bad.append(cell)
            elif cell != MISSING:
                if v == -9999:
                    bad.append(cell)
                else:
                    values.append(v)
        if bad:
            problems.append(f"{name}: values that are no number or a missing value other than -9999: "
                            f"{sorted(set(bad))[:MAX_REPORTED]}")
        if not values:
            problems.append(f"{name}: missing in every row (leave the variable out)")
            continue
        limits = _range(name)
        if limits:
            out = [v for v in values if not limits[0] <= v <= limits[1]]
            if out:
                problems.append(f"{name}: {len(out)} values outside {limits[0]:g}..{limits[1]:g}, e.g. {out[0]:g}")
    return problems
