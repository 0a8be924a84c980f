"""Generic delimited text files laid out as a metadata file's ``[FileDescription]`` says.

EddyPro's rules: skip ``header_rows`` lines; if ``data_label`` is set, only lines whose first field
is that label are records and the label is not counted in ``col_N``; fields are split on
``separator``. Such files carry no usable time stamps of their own, so the start of the period comes
from the caller (``start=``), from the file name through EddyPro's ``file_prototype`` (``prototype=``)
or from a date-time pattern found in the name (``2012_06_07_1245``, ``2016-12-11T200000``). A time in
the name is the start of the period unless the metadata says ``[Files] tstamp_end=1``.

Limitation: quoted fields must not contain the separator (true of TOA5 and LI-COR files).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from station.rawdata._assemble import DEFAULT_GAS_PREFERENCE, GasPreference, assemble
from station.rawdata._textparse import split_records
from station.rawdata._timestamps import localize, time_from_name
from station.rawdata.errors import RawDataError
from station.rawdata.metadata import Metadata, load_metadata
from station.rawdata.period import RawPeriod


def resolve_metadata(metadata: Metadata | str | Path | None, path: Path, kind: str) -> Metadata:
    if metadata is None:
        raise RawDataError(path, f"{kind} files do not describe their columns: give the EddyPro .metadata file "
                                 "(metadata=...)")
    if isinstance(metadata, Metadata):
        return metadata
    return load_metadata(metadata)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RawDataError(path, f"cannot read: {exc.strerror or exc}") from None


def period_bounds(path: Path, metadata: Metadata, n: int, *, start: datetime | None, prototype: str | None,
                  tz: tzinfo | None, first_sample: float | None = None) -> tuple[datetime, datetime, list[str]]:
    """Start and end (UTC) of a file's period: explicit start, else the file name, else the first sample
    time stamp minus one sample interval (loggers stamp the end of each sample interval)."""
    rate = metadata.acquisition_frequency_hz
    duration = timedelta(seconds=n / rate)
    notes: list[str] = []
    if start is not None:
        begin = start.astimezone(UTC) if start.tzinfo else localize(start, tz)
    else:
        named = time_from_name(path.name, prototype)
        if named is not None:
            begin = localize(named, tz)
            if metadata.timestamp_at_end:
                begin -= duration
        elif first_sample is not None:
            begin = datetime.fromtimestamp(first_sample - 1.0 / rate, UTC)
            notes.append("no time in the file name: period starts one sample before the first time stamp")
        else:
            why = f"with prototype {prototype!r}" if prototype else "(no date-time pattern in it)"
            raise RawDataError(path, f"cannot tell when the period starts from the file name {why}: "
                                     "pass start= or prototype=")
    return begin, begin + duration, notes


def read_delimited(path: str | Path, metadata: Metadata | str | Path | None, *, start: datetime | None = None,
                   prototype: str | None = None, tz: tzinfo | None = None,
                   gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE,
                   variables: Collection[str] | None = None) -> RawPeriod:
    """Read a delimited text file described by ``metadata`` (a :class:`Metadata` or a path to one).

    ``tz`` is the time zone of times in file names (default UTC); ``gas_preference`` orders the gas
    measure types for the plain gas names; ``variables`` limits the columns read (canonical or EddyPro
    names, a gas name selects all its measure types; None reads all).
    """
    path = Path(path)
    md = resolve_metadata(metadata, path, "delimited text")
    buf = read_bytes(path)
    records = split_records(buf, sep=md.separator, header_lines=md.header_rows, source=str(path),
                            label=md.data_label)
    if len(records) == 0:
        raise RawDataError(path, "no data records after the header")
    columns, units, gas_types, notes = assemble(records, md, field_offset=1 if md.data_label else 0,
                                                source=str(path), gas_preference=gas_preference,
                                                variables=variables)
    begin, end, more = period_bounds(path, md, len(records), start=start, prototype=prototype, tz=tz)
    return RawPeriod(source=path, start=begin, end=end, rate_hz=md.acquisition_frequency_hz, n_samples=len(records),
                     columns=columns,
                     units=units, gas_types=gas_types, metadata=md, notes=tuple(notes + more))
