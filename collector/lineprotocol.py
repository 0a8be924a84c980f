"""InfluxDB line protocol for contract records; timestamps in milliseconds (write precision "ms").

Every point is keyed by measurement + tags + timestamp, so a redelivered message overwrites its
earlier copy instead of duplicating it:

- flux: tag ``station``; one float field per value (nulls omitted), integer fields ``seq`` and
  ``period_s``; timestamp = period end (EddyPro's and the loggers' convention).
- met: tag ``station``; one float field per value; timestamp = record time.
- diag: tags ``station``, ``source``; one float field per value; timestamp = record time.
- alarm: tags ``station``, ``source``, ``alarm``; string fields ``state``, ``severity``,
  ``message``, float field ``value`` (if any); timestamp = record time.

Numbers are always written as floats (``repr``, full precision) so a field's type never changes.
"""

from __future__ import annotations

from station.messages import AlarmEvent, Batch, DiagRecord, FluxRecord, MetRecord

MEASUREMENT = "flux"
_TAG_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def _escape_tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def _ms(time_s: float) -> int:
    return round(time_s * 1000)


def _fields(values: dict[str, float | None]) -> str:
    return ",".join([f"{name}={value!r}" for name, value in values.items() if value is not None])


def flux_line(record: FluxRecord) -> str | None:
    fields = _fields(record.values)
    if not fields:
        return None
    return (f"{MEASUREMENT},station={_escape_tag(record.station)} {fields},seq={record.seq}i,"
            f"period_s={record.period_end - record.period_start}i {record.period_end * 1000}")


def met_lines(station: str, records: list[MetRecord]) -> list[str]:
    head = f"met,station={_escape_tag(station)} "
    return [f"{head}{fields} {_ms(r.time)}" for r in records if (fields := _fields(r.values))]


def diag_lines(station: str, records: list[DiagRecord]) -> list[str]:
    head = f"diag,station={_escape_tag(station)},source="
    return [f"{head}{_escape_tag(r.source)} {fields} {_ms(r.time)}" for r in records
            if (fields := _fields(r.values))]


def alarm_lines(station: str, records: list[AlarmEvent]) -> list[str]:
    head = f"alarm,station={_escape_tag(station)},source="
    lines = []
    for r in records:
        value = "" if r.value is None else f",value={r.value!r}"
        lines.append(f'{head}{_escape_tag(r.source)},alarm={_escape_tag(r.alarm)} state="{r.state}",'
                     f'severity="{r.severity}",message="{r.message.translate(_STRING_ESCAPES)}"{value} '
                     f"{_ms(r.time)}")
    return lines


_BATCH_LINES = {"met": met_lines, "diag": diag_lines, "alarm": alarm_lines}


def lines_for(decoded: FluxRecord | Batch) -> list[str]:
    """The points one decoded message carries (possibly none: all values null)."""
    if isinstance(decoded, FluxRecord):
        line = flux_line(decoded)
        return [] if line is None else [line]
    return _BATCH_LINES[decoded.kind](decoded.station, decoded.records)
