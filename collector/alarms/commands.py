"""``fluxedge alarms list | ack | silence | history``: what a person on call types.

Active alarms are read from the broker's retained alarm state (what the leading collector holds);
cleared ones and the history from InfluxDB (measurement ``alarm_event``). ``ack`` and ``silence``
are published on the fleet command topic; the leading collector applies them and its retained state
update is the confirmation waited for.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, datetime

from collector.alarms.model import Alarm, Silence
from collector.config import CollectorConfig, operator_mqtt
from collector.query import QueryError, influxql
from fluxedge.common.messages import fleet_topic
from fluxedge.common.mqttclient import describe_error, make_client

CONFIRM_S = 10.0
NOT_CONFIRMED = (f"fluxedge: error: no collector confirmed within {CONFIRM_S:g} s (is 'fluxedge collector run' "
                 "running with [alarms] enabled?)")
NO_COLLECTOR = ("no collector with [alarms] enabled is connected to the broker ('fluxedge collector run')")


class _Watch:
    """A short-lived MQTT session over the fleet topics: retained state in, commands out."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.alarms: dict[str, Alarm] = {}
        self.silences: dict[str, Silence] = {}
        #: collectors whose alarm service is connected (their retained presence)
        self.collectors: set[str] = set()
        self.changed = threading.Condition()
        self.last_message = time.monotonic()
        self.ready = threading.Event()
        self.mqtt = operator_mqtt(config)
        self.client = make_client(self.mqtt, f"{config.ingest.client_id}-cli-{os.getpid()}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(fleet_topic(self.prefix, "#"), qos=1)
            self.ready.set()

    def _on_message(self, client, userdata, message) -> None:
        levels = message.topic[len(fleet_topic(self.prefix, "")):].split("/")
        with self.changed:
            self.last_message = time.monotonic()
            try:
                if levels[0] == "alarm" and len(levels) == 4:
                    key = "/".join(levels[1:])
                    if message.payload:
                        self.alarms[key] = Alarm.from_json(message.payload)
                    else:
                        self.alarms.pop(key, None)
                elif levels[0] == "silence" and len(levels) == 2 and message.payload:
                    self.silences[levels[1]] = Silence.from_json(message.payload)
                elif levels[0] == "collectors" and len(levels) == 2:
                    (self.collectors.add if message.payload else self.collectors.discard)(levels[1])
            except (ValueError, TypeError, KeyError):
                pass
            self.changed.notify_all()

    def open(self) -> None:
        mq = self.mqtt
        try:
            self.client.connect(mq.host, mq.port, mq.keepalive_s)
        except OSError as exc:
            raise SystemExit(f"fluxedge: error: broker {mq.host}:{mq.port}: {describe_error(exc)}") from None
        self.client.loop_start()
        if not self.ready.wait(10):
            raise SystemExit(f"fluxedge: error: broker {mq.host}:{mq.port} did not accept the connection")
        # retained messages arrive right after the subscription: wait until they stop coming
        start = self.last_message = time.monotonic()
        while time.monotonic() - start < 5.0 and time.monotonic() - self.last_message < 0.5:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def command(self, doc: dict) -> bool:
        """Send ``doc`` to the leading collector; False if none is present (:data:`NO_COLLECTOR`)."""
        if not self.collectors:
            return False
        self.client.publish(fleet_topic(self.prefix, "command"), json.dumps(doc).encode(), qos=1).wait_for_publish(5)
        return True

    def wait(self, predicate, timeout_s: float = CONFIRM_S) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


def _utc(t_s: float | None) -> str:
    return "-" if t_s is None else datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d %H:%M")


def _table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)


def cmd_list(config: CollectorConfig, active_only: bool, hours: float) -> int:
    watch = _Watch(config)
    watch.open()
    try:
        alarms = sorted(watch.alarms.values(), key=lambda a: (a.raised_s, a.id))
        silences = {s: v for s, v in watch.silences.items() if v.until_s > time.time()}
    finally:
        watch.close()
    rows = [[a.id, a.state, a.severity, a.key.station, a.key.source, a.key.rule, _utc(a.raised_s), "-", a.what]
            for a in alarms]
    if not active_only:
        try:
            cleared = influxql(config.influxdb, "SELECT * FROM alarm_event WHERE state = 'cleared' AND "
                                                f"time > now() - {int(hours * 3600)}s")
        except QueryError as exc:
            print(f"fluxedge: cleared alarms not read: {exc}", file=sys.stderr)
            cleared = []
        for r in cleared:
            rows.append([str(r.get("id")), "cleared", str(r.get("severity")), str(r.get("station")),
                         str(r.get("source")), str(r.get("rule")), "-", _utc(float(r["time"])), str(r.get("what"))])
    if not rows:
        print("no alarms" + ("" if active_only else f" in the last {hours:g} h"))
    else:
        print(_table(rows, ["ID", "STATE", "SEVERITY", "STATION", "SOURCE", "RULE", "SINCE (UTC)", "CLEARED",
                            "WHAT"]))
    for station, s in sorted(silences.items()):
        print(f"silenced: {station} until {_utc(s.until_s)} UTC" + (f" by {s.by}" if s.by else "")
              + (f" ({s.reason})" if s.reason else ""))
    return 0


def ack_alarm(config: CollectorConfig, ident: str, by: str) -> tuple[bool, str]:
    """Acknowledge the active alarm whose id starts with ``ident``: (done, what to tell the user)."""
    watch = _Watch(config)
    watch.open()
    try:
        matches = [a for a in watch.alarms.values() if a.id.startswith(ident)]
        if len(matches) != 1:
            known = ", ".join(sorted(a.id for a in watch.alarms.values())) or "none"
            what = "no active alarm" if not matches else "more than one active alarm"
            return False, f"{what} with id {ident!r} (active: {known})"
        alarm = matches[0]
        if alarm.state == "acknowledged":
            return True, f"{alarm.id} was already acknowledged by {alarm.acked_by or '?'} at {_utc(alarm.acked_s)} UTC"
        if not watch.command({"op": "ack", "id": alarm.id, "by": by}):
            return False, NO_COLLECTOR
        ok = watch.wait(lambda: (a := watch.alarms.get(alarm.key.text())) is None or a.state == "acknowledged")
    finally:
        watch.close()
    if not ok:
        return False, NOT_CONFIRMED
    return True, f"acknowledged {alarm.id}: {alarm.key.station} {alarm.key.source} {alarm.key.rule}"


def silence_station(config: CollectorConfig, station: str, duration_s: float, by: str, reason: str
                    ) -> tuple[bool, str]:
    """Silence ``station``'s notifications for ``duration_s`` (0 ends a silence): (done, message)."""
    until = time.time() + duration_s
    watch = _Watch(config)
    watch.open()
    try:
        if not watch.command({"op": "silence", "station": station, "until_s": until, "by": by, "reason": reason}):
            return False, NO_COLLECTOR
        ok = watch.wait(lambda: (s := watch.silences.get(station)) is not None and abs(s.until_s - until) < 1e-3)
    finally:
        watch.close()
    if not ok:
        return False, NOT_CONFIRMED
    return True, (f"{station}: notifications silenced until {_utc(until)} UTC" if duration_s
                  else f"{station}: silence ended")


def _report(done: tuple[bool, str]) -> int:
    ok, message = done
    if ok:
        print(message)
        return 0
    print(message if message.startswith("fluxedge: error:") else f"fluxedge: error: {message}", file=sys.stderr)
    return 1


def cmd_ack(config: CollectorConfig, ident: str, by: str) -> int:
    return _report(ack_alarm(config, ident, by))


def cmd_silence(config: CollectorConfig, station: str, duration_s: float, by: str, reason: str) -> int:
    return _report(silence_station(config, station, duration_s, by, reason))


def cmd_history(config: CollectorConfig, station: str | None, hours: float) -> int:
    where = f"time > now() - {int(hours * 3600)}s"
    if station:
        where += " AND station = '" + station.replace("\\", "\\\\").replace("'", "\\'") + "'"
    try:
        rows = influxql(config.influxdb, f"SELECT * FROM alarm_event WHERE {where}")
    except QueryError as exc:
        print(f"fluxedge: error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print("no alarm events" + (f" for {station}" if station else "") + f" in the last {hours:g} h")
        return 0
    table = [[_utc(float(r["time"])), str(r.get("state")), str(r.get("id")), str(r.get("severity")),
              str(r.get("station")), str(r.get("source")), str(r.get("rule")),
              "yes" if r.get("notified") else "no", str(r.get("what"))] for r in rows]
    print(_table(table, ["TIME (UTC)", "EVENT", "ID", "SEVERITY", "STATION", "SOURCE", "RULE", "NOTIFIED", "WHAT"]))
    return 0


def main(config: CollectorConfig, args) -> int:
    if args.alarms_command == "list":
        return cmd_list(config, args.active, args.hours)
    if args.alarms_command == "ack":
        return cmd_ack(config, args.id, args.by)
    if args.alarms_command == "silence":
        return cmd_silence(config, args.station, args.duration, args.by, args.reason)
    return cmd_history(config, args.station, args.hours)
