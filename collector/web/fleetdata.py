"""What the pages show, from InfluxDB (InfluxQL): the fleet's stations, a station's periods, alarms.

- a station's state: its last ``station_state`` (written by the leading collector's alarm service
  from the station's retained status and last will), or offline when nothing came for
  ``offline_after_s``;
- last contact: the newest of its last flux, diag and met points;
- last flux and its QC: the newest ``flux`` point; spool backlog and disk: the newest ``diag``
  record of source ``station``;
- alarms: ``alarm_event``, the newest event of each (station, rule, source): active unless cleared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from collector.config import InfluxConfig
from collector.query import QueryError, influxql, quote_string

ALARM_DAYS = 90
QC = ("FC_SSITC_TEST", "LE_SSITC_TEST", "H_SSITC_TEST", "FCH4_SSITC_TEST")


@dataclass
class StationRow:
    station: str
    state: str = "unknown"  # online | offline | unknown
    state_since_s: float | None = None
    last_contact_s: float | None = None
    last_flux_s: float | None = None
    flux: dict[str, float | None] = field(default_factory=dict)
    worst_qc: float | None = None
    spool_depth: float | None = None
    spool_oldest_s: float | None = None
    disk_free_mb: float | None = None
    archive_files: float | None = None
    archive_mb: float | None = None
    archive_age_s: float | None = None
    active_alarms: int = 0


@dataclass
class AlarmRow:
    id: str
    station: str
    rule: str
    source: str
    state: str
    severity: str
    what: str
    time_s: float
    by: str | None = None


def _newest(config: InfluxConfig, query: str) -> dict[str, dict]:
    try:
        rows = influxql(config, query)
    except QueryError as exc:
        if "not found" in str(exc) or "measurement" in str(exc):
            return {}
        raise
    return {str(r["station"]): r for r in rows if r.get("station")}


def alarms(config: InfluxConfig, station: str | None = None, days: float = ALARM_DAYS) -> list[AlarmRow]:
    """Every alarm transition of the last ``days``, oldest first."""
    where = f"time > now() - {int(days * 86400)}s" + (f" AND station = {quote_string(station)}" if station else "")
    rows = influxql(config, f"SELECT * FROM alarm_event WHERE {where}")
    return [AlarmRow(str(r.get("id")), str(r.get("station")), str(r.get("rule")), str(r.get("source")),
                     str(r.get("state")), str(r.get("severity")), str(r.get("what") or ""), float(r["time"]),
                     r.get("by")) for r in rows]


def active_alarms(config: InfluxConfig, station: str | None = None) -> list[AlarmRow]:
    """The newest transition of each (station, rule, source) that is not a clearing, newest first."""
    newest: dict[tuple[str, str, str], AlarmRow] = {}
    for a in alarms(config, station):
        newest[(a.station, a.rule, a.source)] = a
    return sorted((a for a in newest.values() if a.state != "cleared"), key=lambda a: -a.time_s)


def fleet(config: InfluxConfig, offline_after_s: float, now: float | None = None) -> list[StationRow]:
    now = time.time() if now is None else now
    last = "GROUP BY station ORDER BY time DESC LIMIT 1"
    flux = _newest(config, f"SELECT * FROM flux {last}")
    diag = _newest(config, f"SELECT * FROM diag WHERE source = 'station' {last}")
    met = _newest(config, f"SELECT * FROM met {last}")
    state = _newest(config, f"SELECT * FROM station_state {last}")
    active = active_alarms(config)
    out = []
    for name in sorted(set(flux) | set(diag) | set(met) | set(state)):
        row = StationRow(name)
        times = [float(d[name]["time"]) for d in (flux, diag, met) if name in d]
        row.last_contact_s = max(times) if times else None
        if name in flux:
            f = flux[name]
            row.last_flux_s = float(f["time"])
            row.flux = {k: f.get(k) for k in ("FC", "LE", "H", "FCH4", "USTAR")}
            flags = [f[k] for k in QC if f.get(k) is not None]
            row.worst_qc = max(flags) if flags else None
        if name in diag:
            d = diag[name]
            row.spool_depth, row.spool_oldest_s = d.get("SPOOL_DEPTH"), d.get("SPOOL_OLDEST_S")
            row.disk_free_mb = d.get("DISK_FREE_MB")
            row.archive_files, row.archive_mb = d.get("ARCHIVE_FILES"), d.get("ARCHIVE_MB")
            row.archive_age_s = d.get("ARCHIVE_AGE_S")
        if name in state:
            row.state, row.state_since_s = str(state[name]["state"]), float(state[name]["time"])
        stale = row.last_contact_s is None or now - row.last_contact_s > offline_after_s
        came_back = (row.state == "offline" and not stale and row.state_since_s is not None
                     and row.last_contact_s is not None and row.last_contact_s > row.state_since_s + 5)
        if came_back:  # data after the last will: back, before the alarm service wrote "online"
            row.state, row.state_since_s = "online", row.last_contact_s
        elif stale and row.state != "offline":
            row.state, row.state_since_s = "offline", row.last_contact_s
        elif row.state == "unknown":
            row.state = "online"
        row.active_alarms = sum(a.station == name for a in active)
        out.append(row)
    return out
