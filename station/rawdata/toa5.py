"""Campbell Scientific TOA5 ASCII files (4 header lines, comma-separated, quoted strings).

Line 1 is the environment (``"TOA5"``, station, logger model, serial, OS, program, signature, table),
lines 2-4 the field names, units and processing. The names are the logger program's, so the mapping to
physical variables comes from an EddyPro ``.metadata`` file given by the caller (its ``col_N`` is the
N-th field, TIMESTAMP and RECORD included).

The TIMESTAMP field gives ``RawPeriod.time`` (UTC Unix seconds; the logger clock's zone is ``tz``,
default UTC: TOA5 does not record it). Campbell stamps each record at the end of its scan interval,
so a 15-min file named ``..._1245.dat`` runs from 12:45:00.05 to 13:00:00.00 and its period is
12:45-13:00. Fields the metadata ignores but whose name is a known diagnostic word (``diag_csat`` ...)
are read anyway as ``diag_sonic`` / ``diag_irga``.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np

from station.rawdata._assemble import DEFAULT_GAS_PREFERENCE, GasPreference, assemble
from station.rawdata._textparse import split_records
from station.rawdata._timestamps import iso_column_to_unix
from station.rawdata.delimited import period_bounds, read_bytes, resolve_metadata
from station.rawdata.errors import RawDataError
from station.rawdata.metadata import Metadata
from station.rawdata.period import RawPeriod

HEADER_LINES = 4
_ENVIRONMENT_KEYS = ("format", "station", "logger", "serial", "os", "program", "signature", "table")
#: TOA5 field names (lower-case) of diagnostic words -> canonical column
DIAGNOSTIC_FIELDS = {
    "diag_csat": "diag_sonic", "diag_csat3": "diag_sonic", "csat_diag": "diag_sonic", "diag_sonic": "diag_sonic",
    "sonic_diag": "diag_sonic", "diag_irga": "diag_irga", "irga_diag": "diag_irga", "diag_7500": "diag_irga",
    "diag_li7500": "diag_irga", "diag_7200": "diag_irga",
}


def is_toa5(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").startswith(b'"TOA5"')


def _header(buf: bytes, path: Path) -> list[list[str]]:
    lines = buf.split(b"\n", HEADER_LINES)
    if len(lines) <= HEADER_LINES:
        raise RawDataError(path, f"TOA5 header is {HEADER_LINES} lines; the file has only {len(lines) - 1}")
    text = [line.decode("latin-1").rstrip("\r") for line in lines[:HEADER_LINES]]
    rows = list(csv.reader(text))
    if not rows[0] or rows[0][0] != "TOA5":
        raise RawDataError(path, f'not a TOA5 file: line 1 starts {text[0][:20]!r}, expected "TOA5"', line=1)
    if len(rows[2]) != len(rows[1]):
        raise RawDataError(path, f"TOA5 header: {len(rows[1])} field names but {len(rows[2])} units", line=3)
    return rows


def read_toa5(path: str | Path, metadata: Metadata | str | Path | None, *, tz: tzinfo | None = None,
              start: datetime | None = None, prototype: str | None = None,
              gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE,
              variables: Collection[str] | None = None) -> RawPeriod:
    """Read a TOA5 file whose columns ``metadata`` (a :class:`Metadata` or its path) describes."""
    path = Path(path)
    md = resolve_metadata(metadata, path, "TOA5")
    buf = read_bytes(path)
    rows = _header(buf, path)
    names = rows[1]
    notes: list[str] = []
    if md.header_rows != HEADER_LINES:
        notes.append(f"metadata says {md.header_rows} header rows; TOA5 has {HEADER_LINES}, used {HEADER_LINES}")
    if md.separator != ",":
        notes.append(f"metadata says separator {md.separator!r}; TOA5 is comma-separated, used ','")
    records = split_records(buf, sep=",", header_lines=HEADER_LINES, source=str(path), nfields=len(names))
    if len(records) == 0:
        raise RawDataError(path, "no data records after the TOA5 header")
    if len(md.columns) > len(names):
        raise RawDataError(path, f"metadata {md.source} describes {len(md.columns)} columns, the file has "
                                 f"{len(names)} ({', '.join(names)})")
    described = {c.index - 1 for c in md.read_columns}
    extra = {}
    for j, name in enumerate(names):
        canonical = DIAGNOSTIC_FIELDS.get(name.lower())
        if canonical and j not in described and canonical not in extra:
            extra[canonical] = (j, "")  # a bit field: the unit row says nothing useful
    columns, units, gas_types, more = assemble(records, md, field_offset=0, source=str(path),
                                               gas_preference=gas_preference, extra=extra,
                                               variables=variables)
    notes += more
    time = None
    if "TIMESTAMP" in names:
        starts, ends = records.field_span(names.index("TIMESTAMP"))
        time, bad = iso_column_to_unix(records.data, starts, ends, tz)
        if bad.all():
            notes.append("TIMESTAMP column unreadable: no sample times")
            time = None
        elif bad.any():
            notes.append(f"{int(bad.sum())} TIMESTAMP values unreadable (NaN in time)")
    first = float(time[np.isfinite(time)][0]) if time is not None else None
    begin, end, more = period_bounds(path, md, len(records), start=start, prototype=prototype, tz=tz,
                                     first_sample=first)
    notes += more
    if first is not None:
        dt = 1.0 / md.acquisition_frequency_hz
        lag = first - begin.timestamp()
        if not -0.5 * dt <= lag <= 1.5 * dt:
            notes.append(f"first time stamp is {lag:+.3f} s from the period start taken from the file name")
    header = dict(zip(_ENVIRONMENT_KEYS, rows[0], strict=False))
    return RawPeriod(source=path, start=begin, end=end, rate_hz=md.acquisition_frequency_hz, n_samples=len(records),
                     columns=columns,
                     units=units, gas_types=gas_types, metadata=md, time=time, header=header, notes=tuple(notes))
