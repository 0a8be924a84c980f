"""The station's monitoring thread: diagnostics, alarms, met minutes and the status file.

One thread, ticking every ``[diagnostics] alarm_tick_s`` (1 s), so acquisition threads never wait
on any of this:

- every tick: silence / connection / clock-step metrics -> :class:`~station.health.alarms.AlarmEngine`;
  transitions are spooled at once (kind ``alarm``), logged (WARNING raised, INFO cleared) and the
  publisher woken; complete met minutes are spooled (kind ``met``);
- every ``interval_s`` (60 s): a ``diag`` batch (each instrument, each Modbus sensor, ``station``)
  and the interval metrics through the alarm rules;
- every ``[status] interval_s`` (5 s): the status file (:mod:`station.health.status`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from fluxedge import __version__
from fluxedge.common import messages
from fluxedge.common.logs import event
from station.archive.writer import archive_files
from station.health import sysprobe
from station.health.alarms import AlarmEngine, rules_from_config
from station.health.diagnostics import InstrumentInterval, InstrumentTap
from station.health.status import default_path, write_atomic
from station.outbox.spool import SpoolFullError

log = logging.getLogger("station.monitor")


def _link_state(publisher: Any) -> str | None:
    """The publisher's ``link_state`` ("connected", "connecting", "down: REASON") where it has one."""
    state = getattr(publisher, "link_state", None)
    if callable(state):
        state = state()
    return state if isinstance(state, str) else None


class Monitor(threading.Thread):
    """Watches ``readers`` (name -> InstrumentReader), the ``spool``, the ``publisher`` and ``met``."""

    def __init__(self, config: Any, readers: dict[str, Any], spool: Any, publisher: Any = None,
                 met: Any = None) -> None:
        super().__init__(name="monitor", daemon=True)
        self.config = config
        self.station_id = config.site.id
        self.spool = spool
        self.publisher = publisher
        self.met = met
        rate = config.acquisition.sample_rate_hz
        self.taps: dict[str, InstrumentTap] = {}
        for name, reader in readers.items():
            tap = InstrumentTap(name, reader.family, rate)
            tap.attach(reader.driver)
            self.taps[name] = tap
        self.drivers = {name: r.config.driver for name, r in readers.items()}
        self.alarms = AlarmEngine(rules_from_config(config.alarm))
        prefix = config.mqtt.topic_prefix
        self.topics = {k: messages.topic(prefix, self.station_id, k) for k in ("diag", "alarm", "met")}
        self.status_path = default_path(config)
        self.interval_s = config.diagnostics.interval_s
        self.tick_s = config.diagnostics.alarm_tick_s
        self.status_interval_s = config.status.interval_s
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.clock = sysprobe.ClockWatch(self.started_wall, self.started_mono)
        self.last_flux: dict[str, Any] | None = None
        self.events_spooled = 0
        self._status_frames = {name: 0 for name in self.taps}
        self._status_mono = self.started_mono
        self._halt = threading.Event()
        self._errors: set[str] = set()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(10)

    def note_flux(self, record: messages.FluxRecord) -> None:
        """The latest flux result, for the status file."""
        keep = ("H", "LE", "FC", "USTAR")
        self.last_flux = {"time": time.time(),
                          "period_end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.period_end)),
                          "values": {k: record.values.get(k) for k in keep}}

    # -- loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        next_diag = self.started_mono + self.interval_s
        next_status = self.started_mono
        while not self._halt.wait(self.tick_s):
            now, mono = time.time(), time.monotonic()
            self._guard("alarm_tick", self.fast_tick, now, mono)
            if self.met is not None:
                self._guard("met_flush", self.spool_met, now)
            if mono >= next_diag:
                next_diag += self.interval_s * max(1, int((mono - next_diag) // self.interval_s) + 1)
                self._guard("diagnostics", self.diagnostics_tick, now, mono)
            if mono >= next_status:
                next_status = mono + self.status_interval_s
                self._guard("status", self.write_status, now, mono)
        self._guard("status", self.write_status, time.time(), time.monotonic())

    def _guard(self, what: str, fn, *args) -> None:
        """Monitoring must never stop the station: log a failure once per kind and carry on."""
        try:
            fn(*args)
        except Exception as exc:
            key = f"{what}:{type(exc).__name__}"
            if key not in self._errors:
                self._errors.add(key)
                event(log, "monitor_error", logging.ERROR, task=what, error=f"{type(exc).__name__}: {exc}")

    def fast_tick(self, now: float, mono: float) -> None:
        step = self.clock.update(now, mono)
        events = []
        for tap in self.taps.values():
            connected = tap.connected
            events += self.alarms.observe(now, tap.name, {"SILENT_S": tap.silent_s(mono),
                                                      "CONNECTED": 1.0 if connected else 0.0},
                                          None if connected else {"CONNECTED": tap.link_observed()})
        events += self.alarms.observe(now, "station", {"CLOCK_STEP_S": abs(step)})
        self.spool_alarms(events)

    def spool_alarms(self, events: list[messages.AlarmEvent]) -> None:
        if not events:
            return
        for e in events:
            level = logging.WARNING if e.state == "raised" else logging.INFO
            event(log, f"alarm_{e.state}", level, alarm=e.alarm, source=e.source, severity=e.severity,
                  message=e.message)
        self._put("alarm", events)

    def _put(self, kind: str, records: list) -> None:
        for i in range(0, len(records), 200):
            payload = messages.encode_batch(kind, self.station_id, records[i:i + 200])
            try:
                self.spool.put(kind, self.topics[kind], payload)
            except SpoolFullError as exc:  # disk full: logged, acquisition and the other kinds go on
                event(log, "spool_full", logging.ERROR, kind=kind, records=len(records[i:i + 200]), error=str(exc))
                return
        if kind == "alarm":
            self.events_spooled += len(records)
        if self.publisher is not None:
            self.publisher.wake()

    def spool_met(self, now: float) -> None:
        records = self.met.flush(now)
        if records:
            self._put("met", records)

    def archive_state(self, now: float) -> dict[str, float]:
        """The raw archive: files, size [MB] and the age of the newest [s] (none while disabled)."""
        arc = self.config.archive
        if not arc.enabled:
            return {}
        files = archive_files(arc.root(self.config.spool.path))
        sizes, newest = 0, None
        for path in files:
            try:
                st = path.stat()
            except OSError:  # pruned meanwhile
                continue
            sizes += st.st_size
            newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
        state = {"ARCHIVE_FILES": float(len(files)), "ARCHIVE_MB": sizes / 2**20}
        if newest is not None:
            state["ARCHIVE_AGE_S"] = max(0.0, now - newest)
        return state

    def station_interval(self, now: float, mono: float) -> InstrumentInterval:
        values: dict[str, float | None] = {
            "CPU_TEMP_DEGC": sysprobe.cpu_temperature_degc(), "LOAD_1M": sysprobe.load_1m(),
            "MEM_USED_PCT": sysprobe.memory_used_pct()}
        disk = sysprobe.disk_free(os.path.dirname(os.path.abspath(self.spool.path)))
        values["DISK_FREE_MB"] = None if disk is None else disk[0]
        values.update(self.archive_state(now))
        values["SPOOL_DEPTH"] = self.spool.depth()
        values["SPOOL_OLDEST_S"] = self.spool.oldest_age_s() or 0.0
        values["SPOOL_DROPPED"] = self.spool.dropped()
        ntp = sysprobe.ntp_synchronized()
        values["NTP_SYNCED"] = None if ntp is None else int(ntp)
        values["CLOCK_JUMP_S"] = self.clock.take_interval()
        values["UPTIME_S"] = mono - self.started_mono
        values = {k: v for k, v in values.items() if v is not None}
        metrics = {"SPOOL_OLDEST_S": values["SPOOL_OLDEST_S"], "CPU_TEMP_DEGC": values.get("CPU_TEMP_DEGC"),
                   "DISK_FREE_PCT": None if disk is None else disk[1]}
        return InstrumentInterval("station", values, metrics)

    def diagnostics_tick(self, now: float, mono: float) -> list[messages.DiagRecord]:
        intervals = [tap.take_interval(mono) for tap in self.taps.values()]
        if self.met is not None:
            intervals += [dev.take_interval(mono) for dev in self.met.devices]
        intervals.append(self.station_interval(now, mono))
        records = [messages.DiagRecord(now, iv.source, iv.values) for iv in intervals]
        self._put("diag", records)
        events = []
        for iv in intervals:
            events += self.alarms.observe(now, iv.source, {**iv.values, **iv.metrics}, iv.details)
        self.spool_alarms(events)
        return records

    def status_document(self, now: float, mono: float) -> dict[str, Any]:
        elapsed = max(mono - self._status_mono, 1e-6)
        instruments = {}
        for name, tap in self.taps.items():
            snap = tap.snapshot()
            snap["rate_hz"] = round((snap["frames"] - self._status_frames[name]) / elapsed, 2)
            snap["driver"] = self.drivers.get(name, "")
            self._status_frames[name] = snap["frames"]
            instruments[name] = snap
        self._status_mono = mono
        pub = self.publisher
        mqtt = self.config.mqtt
        return {
            "station": self.station_id, "version": __version__, "pid": os.getpid(), "time": now,
            "interval_s": self.status_interval_s, "uptime_s": round(mono - self.started_mono, 1),
            "instruments": instruments,
            "spool": {"depth": self.spool.depth(), "oldest_age_s": self.spool.oldest_age_s(),
                      "dropped": self.spool.dropped()},
            "mqtt": {"connected": bool(pub is not None and pub.connected), "broker": f"{mqtt.host}:{mqtt.port}",
                     "state": _link_state(pub),
                     "published": getattr(pub, "published", 0)},
            "last_flux": self.last_flux,
            "met": self.met.snapshot() if self.met is not None else {},
            "modbus": {dev.name: dev.status() for dev in self.met.devices} if self.met is not None else {},
            "alarms": [{"alarm": a, "source": s} for a, s in self.alarms.active()],
        }

    def write_status(self, now: float, mono: float) -> None:
        write_atomic(self.status_path, self.status_document(now, mono))
