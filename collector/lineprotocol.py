r"""InfluxDB line protocol for contract records; timestamps in milliseconds (write precision "ms").

Every point is keyed by measurement + tags + timestamp, so a redelivered message overwrites its
earlier copy instead of duplicating it:

- flux: tag ``station``; one float field per value (nulls omitted), integer fields ``seq`` and
  ``period_s``; timestamp = period end (EddyPro's and the loggers' convention).
- met: tag ``station``; one float field per value; timestamp = record time.
- diag: tags ``station``, ``source``; one float field per value; timestamp = record time.
- alarm: tags ``station``, ``source``, ``alarm``; string fields ``state``, ``severity``,
  ``message``, float field ``value`` (if any); timestamp = record time.

Numbers are always written as floats (``repr``, full precision) so a field's type never changes.

Text is stored exactly as sent (checked by reading it back from a real influxd 1.6, through
``/write`` and ``/api/v2/write``: tests/test_collector_writes.py). InfluxDB 1.x unescapes only
what it must:

- tag values: ``\,``, ``\=`` and ``\ `` are unescaped, a backslash before anything else stays a
  backslash. So a backslash is written as it is (escaping it as ``\\`` would store two), and a value
  that ends in a backslash, has a backslash before a comma, ``=`` or space, holds a line break or is
  empty cannot be written faithfully at all: :func:`escape_tag` refuses it (ValueError). Station,
  source and alarm names (``fluxedge.common.messages.NAME_PATTERN``) never need it; the collector's own
  ``client_id`` tag is validated by its config for the same rule.
- string field values (alarm ``message``): ``\\`` and ``\"`` are unescaped, nothing else. Newline
  and carriage return are therefore written raw inside the quotes, not as ``\n``/``\r`` (InfluxDB
  would store those two characters). The InfluxDB 1.6 reference says line protocol "does not
  support the newline character in tag values or field values"; for string fields its parser does:
  the line scanner (``scanLine``, models/points.go) does not end a line at a newline inside a quoted
  field value, and influxdata's line-protocol grammar (line-protocol.ebnf: ``stringfield = '"'
  { not('"' | '\') | '\' any_char } '"'``) allows any character there. A raw newline is the only
  encoding that stores the sent text; the round-trip tests guard it on influxd 1.6 (run them
  against another server before relying on it there).
"""

from __future__ import annotations

import re

from fluxedge.common.messages import AlarmEvent, Batch, DiagRecord, FluxRecord, MetRecord

MEASUREMENT = "flux"
_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
#: what InfluxDB 1.x cannot store in a tag value as it is: a backslash before a comma, "=", space
#: or the end, and line breaks
_UNWRITABLE_TAG = re.compile(r"\\(?=[ ,=]|$)|[\n\r]")


def escape_tag(value: str) -> str:
    """A tag value for line protocol that InfluxDB stores exactly as ``value``, or ValueError."""
    if not value:
        raise ValueError("an empty tag value cannot be stored")
    if ("\\" in value or "\n" in value or "\r" in value) and _UNWRITABLE_TAG.search(value):
        raise ValueError(f"tag value {value[:80]!r} cannot be stored as it is: no backslash at its end or "
                         "before a comma, '=' or space, and no line breaks")
    return value.translate(_TAG_ESCAPES)



def time_ms(time_s: float) -> int:
    """Unix seconds -> the millisecond time stamp of a point (the writers use precision=ms)."""
    return round(time_s * 1000)


def string_field(value: str) -> str:
    """A string field value, quoted, stored exactly as ``value``."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _fields(values: dict[str, float | None]) -> str:
    return ",".join([f"{name}={value!r}" for name, value in values.items() if value is not None])


def flux_line(record: FluxRecord) -> str | None:
    fields = _fields(record.values)
    if not fields:
        return None
    return (f"{MEASUREMENT},station={escape_tag(record.station)} {fields},seq={record.seq}i,"
            f"period_s={record.period_end - record.period_start}i {record.period_end * 1000}")


def met_lines(station: str, records: list[MetRecord]) -> list[str]:
    head = f"met,station={escape_tag(station)} "
    return [f"{head}{fields} {time_ms(r.time)}" for r in records if (fields := _fields(r.values))]


def diag_lines(station: str, records: list[DiagRecord]) -> list[str]:
    head = f"diag,station={escape_tag(station)},source="
    return [f"{head}{escape_tag(r.source)} {fields} {time_ms(r.time)}" for r in records
            if (fields := _fields(r.values))]


def alarm_lines(station: str, records: list[AlarmEvent]) -> list[str]:
    head = f"alarm,station={escape_tag(station)},source="
    lines = []
    for r in records:
        value = "" if r.value is None else f",value={r.value!r}"
        lines.append(f'{head}{escape_tag(r.source)},alarm={escape_tag(r.alarm)} state="{r.state}",'
                     f'severity="{r.severity}",message={string_field(r.message)}{value} '
                     f"{time_ms(r.time)}")
    return lines


_BATCH_LINES = {"met": met_lines, "diag": diag_lines, "alarm": alarm_lines}


def lines_for(decoded: FluxRecord | Batch) -> list[str]:
    """The points one decoded message carries (possibly none: all values null)."""
    if isinstance(decoded, FluxRecord):
        line = flux_line(decoded)
        return [] if line is None else [line]
    return _BATCH_LINES[decoded.kind](decoded.station, decoded.records)
