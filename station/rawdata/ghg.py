"""LI-COR SmartFlux / LI-7x00 ``.ghg`` archives.

A ``.ghg`` is a zip holding ``<name>.data`` and ``<name>.metadata`` (and sometimes ``-biomet`` files,
which are not read here). The ``.data`` is tab-separated text: ``Key:<TAB>value`` header lines
(Model, SN, Instrument, Timestamp, Timezone ...), a ``DATAH`` line of field names and ``DATA`` records;
``col_N`` of the metadata counts fields after the ``DATA`` label.

Times: the file name (``2016-12-11T200000_AIU-1359.ghg``) gives the START of the period in the
logger's local time, whose zone is the header's ``Timezone`` (an IANA name such as Europe/Berlin);
``start`` and ``end`` are converted to UTC. The ``Seconds`` and ``Nanoseconds`` fields are UTC Unix
time and become ``RawPeriod.time``. Beware: the metadata's ``file_duration`` is the SmartFlux
setting, not necessarily the length of the file; the period length is the number of records over
the rate.
"""

from __future__ import annotations

import itertools
import zipfile
import zlib
from collections.abc import Collection
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from fluxedge.common import sitetime
from station.rawdata._assemble import DEFAULT_GAS_PREFERENCE, GasPreference, assemble, convert, plan_columns
from station.rawdata._chunked import CHUNK_BYTES, INFLATE_BYTES, NotChunkableError, line_chunks, parse_chunked
from station.rawdata._textparse import split_records
from station.rawdata.delimited import period_bounds
from station.rawdata.errors import RawDataError
from station.rawdata.inflate import iter_member, read_member
from station.rawdata.metadata import Metadata, decode_text, load_metadata, parse_metadata
from station.rawdata.period import RawPeriod

DATA_LABEL = "DATA"
HEADER_LABEL = "DATAH"


def is_ghg(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise RawDataError(path, "no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RawDataError(path, f"not a readable .ghg archive (zip): {exc}; truncated or corrupt?") from None


def _member(zf: zipfile.ZipFile, path: Path, suffix: str, *, required: bool) -> str | None:
    names = [n for n in zf.namelist() if n.endswith(suffix) and not PurePosixPath(n).stem.endswith("-biomet")]
    if len(names) == 1:
        return names[0]
    if not names and not required:
        return None
    listing = ", ".join(zf.namelist()) or "nothing"
    problem = "no" if not names else f"{len(names)}"
    raise RawDataError(path, f"{problem} {suffix} files in the archive (it holds: {listing})")


def _read_member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return read_member(zf, name)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError) as exc:
        raise RawDataError(path, f"archive member {name} is truncated or corrupt: {exc}") from None


def read_ghg_metadata(path: str | Path) -> Metadata:
    """The metadata inside a ``.ghg`` archive (its source reads ``archive.ghg!member.metadata``)."""
    path = Path(path)
    with _open(path) as zf:
        name = _member(zf, path, ".metadata", required=True)
        assert name is not None
        return parse_metadata(decode_text(_read_member(zf, path, name)), f"{path}!{name}")


def _data_header(buf: bytes, path: Path) -> tuple[dict[str, str], list[str], int]:
    """Header ``key: value`` pairs, the DATAH field names, and the number of lines before the first record."""
    header: dict[str, str] = {}
    pos = 0
    for lineno in range(1, 200):
        nl = buf.find(b"\n", pos)
        line = buf[pos:nl if nl >= 0 else len(buf)].decode("latin-1").rstrip("\r")
        if line.startswith(HEADER_LABEL + "\t"):
            return header, line.split("\t"), lineno
        if line.startswith(DATA_LABEL + "\t"):
            return header, [], lineno - 1
        key, _, value = line.partition(":")
        if key:
            header[key.strip()] = value.strip()
        if nl < 0:
            break
        pos = nl + 1
    raise RawDataError(path, f"no {HEADER_LABEL} or {DATA_LABEL} line in the .data header")


def read_ghg_timezone(path: str | Path, fileobj: BinaryIO | None = None) -> str | None:
    """The ``Timezone:`` of a ``.ghg``'s ``.data`` header, inflating only its first 4 KiB (cheap enough
    to plan work over many files); None for other files and files without one. ``fileobj``: read
    the archive from this open, seekable binary file (a file in object storage) named ``path``."""
    path = Path(path)
    try:
        with _open(path) if fileobj is None else zipfile.ZipFile(fileobj) as zf:
            name = _member(zf, path, ".data", required=False)
            if name is None:
                return None
            with zf.open(name) as fh:
                head = fh.read(4096)
        header, _, _ = _data_header(head, path)
    except (RawDataError, zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError):
        return None
    return header.get("Timezone") or None


def _zone(name: str | None) -> tzinfo | None:
    return sitetime.zone(name)


def _time_fields(names: list[str]) -> dict[str, tuple[int, str]]:
    """The ``Seconds`` and ``Nanoseconds`` fields (UTC Unix time) as extra columns, if the file has them."""
    if "Seconds" in names and "Nanoseconds" in names:
        return {"_seconds": (names.index("Seconds"), "s"), "_nanoseconds": (names.index("Nanoseconds"), "ns")}
    return {}


def _read_whole(buf: bytes, path: Path, source: str, md: Metadata, gas_preference: GasPreference,
                variables: Collection[str] | None) -> tuple[dict[str, str], int, tuple]:
    """Header, number of records and :func:`assemble`'s result of the whole inflated ``.data`` text."""
    header, names, header_lines = _data_header(buf, path)
    records = split_records(buf, sep="\t", header_lines=header_lines, source=source, label=DATA_LABEL,
                            nfields=len(names) if names else None)
    if len(records) == 0:
        raise RawDataError(source, "no DATA records")
    return header, len(records), assemble(records, md, field_offset=1, source=source, gas_preference=gas_preference,
                                          extra=_time_fields(names), variables=variables)


def _read_chunked(zf: zipfile.ZipFile, name: str, path: Path, source: str, md: Metadata, gas_preference: GasPreference,
                  variables: Collection[str] | None) -> tuple[dict[str, str], int, tuple]:
    """As :func:`_read_whole`, inflating and parsing :data:`~station.rawdata._chunked.CHUNK_BYTES` of text at
    a time; raises :class:`~station.rawdata._chunked.NotChunkableError` (or the archive's error) where the text
    must be read whole."""
    chunks = line_chunks(iter_member(zf, name, INFLATE_BYTES), CHUNK_BYTES)
    first = next(chunks, b"")
    try:
        header, names, header_lines = _data_header(first, path)
    except RawDataError:
        raise NotChunkableError from None  # a header longer than a chunk, or none
    extra = _time_fields(names)
    plans = []

    def plan_fields(records) -> list[int]:
        plans.append(plan_columns(md, nfields=records.nfields, field_offset=1, source=source,
                                  first_line=int(records.line[0]), gas_preference=gas_preference, extra=extra,
                                  variables=variables))
        return plans[0].fields

    parsed, n = parse_chunked(itertools.chain((first,), chunks), header_lines=header_lines, source=source,
                              label=DATA_LABEL, nfields=len(names) if names else None, plan_fields=plan_fields)
    return header, n, convert(parsed, plans[0], md, source=source, gas_preference=gas_preference)


def read_ghg(path: str | Path, metadata: Metadata | str | Path | None = None, *,
             gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE, tz: tzinfo | None = None,
             start: datetime | None = None, variables: Collection[str] | None = None) -> RawPeriod:
    """Read a ``.ghg`` archive. The metadata inside is used unless ``metadata`` overrides it;
    ``tz`` overrides the header's time zone."""
    path = Path(path)
    notes: list[str] = []
    with _open(path) as zf:
        data_name = _member(zf, path, ".data", required=True)
        assert data_name is not None
        if metadata is None:
            meta_name = _member(zf, path, ".metadata", required=False)
            if meta_name is None:
                raise RawDataError(path, "no .metadata file in the archive: pass metadata=")
            md = parse_metadata(decode_text(_read_member(zf, path, meta_name)), f"{path}!{meta_name}")
        else:
            md = metadata if isinstance(metadata, Metadata) else load_metadata(metadata)
        source = f"{path}!{data_name}"
        if md.separator != "\t":
            notes.append(f"metadata separator {md.separator!r} ignored: .ghg data are tab-separated")
        try:  # a few MiB of text at a time (station.rawdata._chunked)
            header, n_records, (columns, units, gas_types, more) = _read_chunked(zf, data_name, path, source, md,
                                                                                 gas_preference, variables)
        except (NotChunkableError, RawDataError, zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError):
            # read whole: what the text or the archive has wrong is reported as always
            buf = _read_member(zf, path, data_name)
            header, n_records, (columns, units, gas_types, more) = _read_whole(buf, path, source, md,
                                                                               gas_preference, variables)
            del buf
    notes += more
    time = None
    if "_seconds" in columns:
        time = columns.pop("_seconds") + columns.pop("_nanoseconds") * 1e-9
        units.pop("_seconds")
        units.pop("_nanoseconds")
    zone = tz or _zone(header.get("Timezone"))
    if zone is None and tz is None:
        notes.append(f"time zone {header.get('Timezone')!r} unknown: file name time taken as UTC")
        zone = UTC
    first = float(time[0]) if time is not None and np.isfinite(time[0]) else None
    begin, end, more = period_bounds(path, md, n_records, start=start, prototype=None, tz=zone,
                                     first_sample=first)
    notes += more
    if first is not None and abs(first - begin.timestamp()) > 1.0 / md.acquisition_frequency_hz:
        notes.append(f"first sample time {datetime.fromtimestamp(first, UTC).isoformat()} differs from the "
                     f"period start {begin.isoformat()} taken from the file name")
    return RawPeriod(source=path, start=begin, end=end, rate_hz=md.acquisition_frequency_hz, n_samples=n_records,
                     columns=columns,
                     units=units, gas_types=gas_types, metadata=md, time=time, header=header, notes=tuple(notes))

