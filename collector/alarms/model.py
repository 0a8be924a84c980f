"""One alarm model for the station's own alarms and the collector's fleet alarms.

An alarm is identified by :class:`AlarmKey` (rule, station, source: the instrument, or
``"station"``), with the site it belongs to carried along. One occurrence of it (raised at a time)
has a short :attr:`Alarm.id` that people type (``fluxedge alarms ack 3f9a1c2e``). Its states run
raised -> acknowledged -> cleared; every transition is kept as history (InfluxDB measurement
``alarm_event``) and the current state of every active alarm is retained on the broker, so that a
restarted or failed-over collector neither forgets nor re-fires it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "critical")
STATES = ("raised", "acknowledged", "cleared")
ORIGINS = ("fleet", "station")


@dataclass(frozen=True, order=True)
class AlarmKey:
    rule: str
    station: str
    #: instrument name ("irga", "sonic", "ch4"), Modbus device, or "station"
    source: str

    def text(self) -> str:
        return f"{self.station}/{self.rule}/{self.source}"


def alarm_id(key: AlarmKey, raised_s: float) -> str:
    """8 hex digits naming one occurrence: the same on every collector that computes it."""
    return hashlib.sha1(f"{key.text()}@{round(raised_s * 1000)}".encode()).hexdigest()[:8]


@dataclass
class Alarm:
    id: str
    key: AlarmKey
    origin: str
    severity: str
    state: str
    #: Unix s the condition began (for fleet rules: when it first went bad, before raise_after_s)
    raised_s: float
    #: one line: what was observed
    what: str
    #: one line: what a technician should check
    check: str
    site: str | None = None
    value: float | None = None
    last_values: dict[str, float | None] = field(default_factory=dict)
    acked_s: float | None = None
    acked_by: str | None = None
    cleared_s: float | None = None
    #: Unix s of the last raised/reminder notification handed to the notifier; None: not yet
    notified_s: float | None = None
    flapping: bool = False

    @property
    def active(self) -> bool:
        return self.state != "cleared"

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["key"] = asdict(self.key)
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Alarm:
        doc = json.loads(payload)
        doc["key"] = AlarmKey(**doc["key"])
        alarm = cls(**doc)
        if alarm.state not in STATES or alarm.severity not in SEVERITIES or alarm.origin not in ORIGINS:
            raise ValueError(f"alarm {alarm.id}: state, severity or origin not known")
        return alarm


@dataclass(frozen=True)
class Silence:
    """A maintenance window: no notifications for ``station`` until ``until_s`` (alarms still kept)."""

    station: str
    until_s: float
    by: str = ""
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Silence:
        return cls(**json.loads(payload))


@dataclass(frozen=True)
class Transition:
    """What changed: ``kind`` is raised, acknowledged, cleared or reminder; ``notify`` says whether
    people are to be told (not while silenced, not for a flapping re-raise)."""

    kind: str
    alarm: Alarm
    time_s: float
    notify: bool
