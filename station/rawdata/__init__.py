"""Readers of raw eddy-covariance files: pure I/O and unit conversion, no flux processing.

``read_raw(path, metadata=None)`` reads one file into a :class:`RawPeriod` (canonical column names,
SI-style units documented in :mod:`station.rawdata.units`), choosing the reader by content:

- ``.ghg`` (LI-COR SmartFlux zip): :func:`~station.rawdata.ghg.read_ghg`, metadata from inside the
  archive unless ``metadata`` overrides it;
- Campbell TOA5 (first line ``"TOA5"``): :func:`~station.rawdata.toa5.read_toa5`, ``metadata`` required;
- anything else: :func:`~station.rawdata.delimited.read_delimited`, laid out as ``metadata``'s
  ``[FileDescription]`` says, ``metadata`` required.

``read_metadata(path)`` parses an EddyPro ``.metadata`` file, or the one inside a ``.ghg``.
All bad input raises :class:`RawDataError` (a ``ValueError``) naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from station.rawdata._assemble import CANONICAL_NAMES, ambient_column
from station.rawdata._timestamps import localize, time_from_name
from station.rawdata.delimited import read_delimited
from station.rawdata.errors import RawDataError
from station.rawdata.ghg import is_ghg, read_ghg, read_ghg_metadata, read_ghg_timezone
from station.rawdata.metadata import Column, Instrument, Metadata, Site, Station, load_metadata, parse_metadata
from station.rawdata.period import RawPeriod
from station.rawdata.toa5 import is_toa5, read_toa5

__all__ = [
    "CANONICAL_NAMES",
    "Column",
    "Instrument",
    "Metadata",
    "RawDataError",
    "RawPeriod",
    "Site",
    "Station",
    "ambient_column",
    "localize",
    "parse_metadata",
    "read_delimited",
    "read_ghg",
    "read_ghg_timezone",
    "read_metadata",
    "read_raw",
    "read_toa5",
    "time_from_name",
]


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(16)
    except OSError as exc:
        raise RawDataError(path, f"cannot read: {exc.strerror or exc}") from None


def read_raw(path: str | Path, metadata: Metadata | str | Path | None = None, **options: Any) -> RawPeriod:
    """Read one raw file, dispatching on its content (see the module doc).

    ``options`` go to the reader: ``variables`` (limit the columns read: canonical or EddyPro names,
    a bare gas name selects its preferred measure type only, ``co2_molar_density`` that one too),
    ``gas_preference`` (which measure type gets the plain gas name: one order for every gas, one per gas, or
    None for EddyPro's choice by the path type of each gas's analyser), ``tz`` (zone of the times in
    file names and time stamps; .ghg: the header's), ``start`` (the period start, overriding the
    file name), ``prototype`` (TOA5 and delimited: EddyPro's file-name prototype,
    ``TOA5_x_yyyy_mm_dd_HHMM.dat``).
    """
    path = Path(path)
    head = _head(path)
    if is_ghg(head) or path.suffix.lower() == ".ghg":
        return read_ghg(path, metadata, **options)
    if is_toa5(head):
        return read_toa5(path, metadata, **options)
    return read_delimited(path, metadata, **options)


def read_metadata(path: str | Path) -> Metadata:
    """Parse an EddyPro ``.metadata`` file, or the metadata inside a ``.ghg`` archive."""
    path = Path(path)
    if path.suffix.lower() == ".ghg" or is_ghg(_head(path)):
        return read_ghg_metadata(path)
    return load_metadata(path)
