"""InfluxDB line protocol for contract records.

A flux record becomes one point: measurement ``flux``, tag ``station``, one float field per
value (nulls omitted), integer fields ``seq`` and ``period_s``, timestamp = period end [s]
(EddyPro's and the loggers' convention). Station + time identify the point, so a redelivered
message overwrites its earlier copy instead of duplicating it.
"""

from __future__ import annotations

from station.messages import FluxRecord

MEASUREMENT = "flux"


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def flux_line(record: FluxRecord) -> str | None:
    fields = [f"{name}={value!r}" for name, value in record.values.items() if value is not None]
    if not fields:
        return None
    fields += [f"seq={record.seq}i", f"period_s={record.period_end - record.period_start}i"]
    return f"{MEASUREMENT},station={_escape_tag(record.station)} {','.join(fields)} {record.period_end}"
