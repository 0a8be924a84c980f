"""The alarm service inside ``fluxedge collector run``: one leader evaluates, stores and notifies.

Exactly once with several collectors: every collector process runs this service with its own MQTT
session (not in the ingest's shared subscription, so each sees every station's status, flux, diag
and alarm messages and keeps the same view), and announces itself with a retained presence message
``PREFIX/v1/_fleet/collectors/<client_id>`` whose last will deletes it. The leader is the lowest
client id present: the only one that evaluates rules, publishes alarm state and notifies. The
state of every active alarm is retained on the broker (``PREFIX/v1/_fleet/alarm/<station>/<rule>/<source>``),
so a restarted collector, or the next leader after a failover, starts from it: an alarm people were
told of is neither told again nor forgotten. Why the broker and not a lease in InfluxDB: the broker
already tells every collector within one keepalive that a leader died (its last will), needs no
clock agreement between machines, and every collector already holds a session there.

Commands (``fluxedge alarms ack``/``silence``) arrive on ``PREFIX/v1/_fleet/command``; silences are
retained on ``PREFIX/v1/_fleet/silence/<station>``. Every transition goes to InfluxDB (measurement
``alarm_event``), every station status change too (``station_state``), and every delivery attempt
(``notification``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from collector.alarms.model import Alarm, Silence, Transition
from collector.alarms.notify import DeliveryRecord, Notice, Notifier
from collector.alarms.tracker import FleetTracker
from collector.lineprotocol import escape_tag, string_field, time_ms
from fluxedge.common import messages
from fluxedge.common.logs import event
from fluxedge.common.messages import fleet_topic
from fluxedge.common.mqttclient import make_client
from fluxedge.common.mqttconfig import MqttConfig

log = logging.getLogger("collector.alarms")


def transition_line(t: Transition) -> str:
    a = t.alarm
    tags = (f"alarm_event,station={escape_tag(a.key.station)},rule={escape_tag(a.key.rule)},"
            f"source={escape_tag(a.key.source)},origin={a.origin}")
    fields = [f"id={string_field(a.id)}", f"state={string_field(t.kind)}", f"severity={string_field(a.severity)}",
              f"what={string_field(a.what[:500])}", f"notified={'true' if t.notify else 'false'}"]
    if a.value is not None:
        fields.append(f"value={float(a.value)!r}")
    if a.site:
        fields.append(f"site={string_field(a.site)}")
    if a.acked_by:
        fields.append(f"by={string_field(a.acked_by)}")
    return f"{tags} {','.join(fields)} {time_ms(t.time_s)}"


def state_line(station: str, state: str, time_s: float) -> str:
    return f"station_state,station={escape_tag(station)} state={string_field(state)},online={state == 'online'} " \
           f"{time_ms(time_s)}"


def delivery_line(r: DeliveryRecord) -> str:
    fields = [f"ok={'true' if r.ok else 'false'}", f"attempt={r.attempt}i", f"kind={string_field(r.kind)}",
              f"scheme={string_field(r.scheme)}"]
    if r.error:
        fields.append(f"error={string_field(r.error[:300])}")
    return (f"notification,alarm_id={escape_tag(r.alarm_id)},route={escape_tag(r.route)},url={r.url_index} "
            f"{','.join(fields)} {time_ms(r.time_s)}")


def notice_for(t: Transition) -> Notice:
    a = t.alarm
    return Notice(kind=t.kind, alarm_id=a.id, rule=a.key.rule, severity=a.severity, station=a.key.station,
                  site=a.site, source=a.key.source, since_s=a.raised_s, time_s=t.time_s, what=a.what, check=a.check,
                  last_values=dict(a.last_values), origin=a.origin)


class AlarmService:
    def __init__(self, mqtt: MqttConfig, client_id: str, tracker: FleetTracker, notifier: Notifier | None,
                 write: Callable[[list[str]], None], tick_s: float = 1.0, settle_s: float = 3.0,
                 clock: Callable[[], float] = time.time, hung_s: float = 120.0) -> None:
        self.mqtt = mqtt
        self.prefix = mqtt.topic_prefix
        self.client_id = client_id
        self.tracker = tracker
        self.notifier = notifier
        self._write = write
        self.tick_s = tick_s
        self.settle_s = settle_s
        self.clock = clock
        self.members: set[str] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._connected_at: float | None = None
        self._pending_lines: list[str] = []
        self.was_leader = False
        self.client = make_client(mqtt, f"{client_id}-alarms")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.presence = fleet_topic(self.prefix, "collectors", client_id)
        self.client.will_set(self.presence, b"", qos=1, retain=True)
        self._thread: threading.Thread | None = None
        self._network: threading.Thread | None = None
        self._beat = time.monotonic()  # the alarm thread came round its loop
        #: the alarm thread counts as hung after this long without coming round (a write to
        #: InfluxDB that never returns); the collector then stops its watchdog pings and exits
        self.hung_s = hung_s

    # --- MQTT (network thread) ---

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            event(log, "alarms_mqtt_refused", logging.WARNING, reason=str(reason_code))
            return
        subs = [messages.subscription(self.prefix, k) for k in ("status", "flux", "diag", "alarm")]
        subs.append(fleet_topic(self.prefix, "#"))
        client.subscribe([(t, 1) for t in subs])
        client.publish(self.presence, b"online", qos=1, retain=True)
        self._connected_at = time.monotonic()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected_at = None

    def _on_message(self, client, userdata, message) -> None:
        now = self.clock()
        try:
            with self._lock:
                self._observe(message.topic, message.payload, now)
        except Exception as exc:  # one bad message must not stop the alarms
            event(log, "alarms_message_skipped", logging.DEBUG, topic=message.topic[:200], error=str(exc)[:200])

    def _observe(self, topic: str, payload: bytes, now: float) -> None:
        fleet = fleet_topic(self.prefix, "")
        if topic.startswith(fleet):
            self._fleet_message(topic[len(fleet):].split("/"), payload, now)
            return
        station, kind = messages.parse_topic(self.prefix, topic)
        if kind == "status":
            doc = json.loads(payload) if payload else {}
            state = doc.get("state")
            if state in ("online", "offline") and doc.get("station") == station:
                before = self.tracker.stations.get(station)
                changed = before is None or before.online != (state == "online")
                self.tracker.on_status(station, state, now, site=doc.get("site"), families=doc.get("instruments"))
                if changed and self.is_leader():  # a retained status delivered again is no change
                    self._pending_lines.append(state_line(station, state, now))
            return
        decoded = messages.decode(self.prefix, topic, payload)
        if isinstance(decoded, messages.FluxRecord):
            self.tracker.on_flux(decoded, now)
        elif decoded.kind == "diag":
            self.tracker.on_diag(station, decoded.records, now)
        elif decoded.kind == "alarm":
            transitions = self.tracker.on_station_alarm(station, decoded.records, now)
            if self.is_leader():
                self._act(transitions)
        else:
            self.tracker.seen(station, now)

    def _fleet_message(self, levels: list[str], payload: bytes, now: float) -> None:
        what = levels[0]
        if what == "collectors" and len(levels) == 2:
            (self.members.add if payload else self.members.discard)(levels[1])
        elif what == "alarm" and payload and not self.is_leader():
            # followers mirror the leader's state, so that they take over from it
            self.tracker.restore(Alarm.from_json(payload))
        elif what == "alarm" and not payload and not self.is_leader():
            key_parts = levels[1:]
            if len(key_parts) == 3:
                self.tracker.forget(*key_parts)
        elif what == "silence" and payload and len(levels) == 2:
            self.tracker.silence(Silence.from_json(payload))
        elif what == "command" and self.is_leader():
            self._command(json.loads(payload), now)

    def _command(self, doc: dict, now: float) -> None:
        op = doc.get("op")
        if op == "ack":
            t = self.tracker.acknowledge(str(doc.get("id", "")), str(doc.get("by", "")), now)
            if t is not None:
                self._act([t])
        elif op == "silence":
            s = Silence(str(doc["station"]), float(doc["until_s"]), str(doc.get("by", "")), str(doc.get("reason", "")))
            self.tracker.silence(s)
            self.client.publish(fleet_topic(self.prefix, "silence", s.station), s.to_json(), qos=1, retain=True)
            event(log, "alarms_silenced", station=s.station, until_s=s.until_s, by=s.by)

    # --- leadership and the tick ---

    def is_leader(self) -> bool:
        if self._connected_at is None or time.monotonic() - self._connected_at < self.settle_s:
            return False
        return not self.members or min(self.members | {self.client_id}) == self.client_id

    def _act(self, transitions: list[Transition]) -> None:
        for t in transitions:
            a = t.alarm
            topic = fleet_topic(self.prefix, "alarm", a.key.station, a.key.rule, a.key.source)
            self.client.publish(topic, b"" if t.kind == "cleared" else a.to_json(), qos=1, retain=True)
            self.client.publish(fleet_topic(self.prefix, "events"), json.dumps(
                {"kind": t.kind, "time_s": t.time_s, "alarm": json.loads(a.to_json())}).encode(), qos=1)
            self._pending_lines.append(transition_line(t))
            event(log, f"alarm_{t.kind}", logging.WARNING if t.kind == "raised" else logging.INFO, id=a.id,
                  station=a.key.station, rule=a.key.rule, source=a.key.source, notify=t.notify)
            if t.notify and self.notifier is not None:
                self.notifier.submit(notice_for(t))

    def tick(self) -> None:
        now = self.clock()
        with self._lock:
            leader = self.is_leader()
            if leader and not self.was_leader:
                event(log, "alarms_leader", collector=self.client_id, members=len(self.members))
                # statuses taken while following (a collector's settle_s after its start, or before a
                # failover) were mirrored, not stored: the new leader stores every station's state now
                self._pending_lines.extend(state_line(name, "online" if v.online else "offline", now)
                                           for name, v in self.tracker.stations.items() if v.online is not None)
            self.was_leader = leader
            if leader:
                self._act(self.tracker.evaluate(now))
            lines, self._pending_lines = self._pending_lines, []
        if lines:
            try:
                self._write(lines)
            except Exception as exc:  # kept for the next tick
                with self._lock:
                    self._pending_lines[:0] = lines[-10000:]
                event(log, "alarms_not_written", logging.WARNING, error=str(exc)[:200])

    def record_delivery(self, record: DeliveryRecord) -> None:
        with self._lock:
            self._pending_lines.append(delivery_line(record))

    def _loop(self) -> None:
        while not self._halt.wait(self.tick_s):
            self._beat = time.monotonic()
            try:
                self.tick()
            except Exception as exc:
                event(log, "alarms_tick_failed", logging.ERROR, error=repr(exc)[:300])

    def health_problem(self) -> str | None:
        """None while the alarm thread, its MQTT network thread and the notifier's workers run and
        the alarm thread is not hung; else what is wrong (the collector's watchdog checks this)."""
        if self._thread is None:
            return None
        if not self._thread.is_alive() and not self._halt.is_set():
            return "alarm thread ended"
        if self._network is not None and not self._network.is_alive():
            return "alarms MQTT network thread ended"
        idle_s = time.monotonic() - self._beat
        if idle_s > self.hung_s + self.tick_s:
            return f"alarm thread hung for {idle_s:.0f} s (a write to InfluxDB did not return)"
        return self.notifier.health_problem() if self.notifier is not None else None

    def start(self) -> None:
        mq = self.mqtt
        self.client.connect_async(mq.host, mq.port, mq.keepalive_s)
        # paho's network thread: the one thread loop_start() adds (as in collector.ingest)
        before = set(threading.enumerate())
        self.client.loop_start()
        started = [t for t in threading.enumerate() if t not in before]
        self._network = started[0] if len(started) == 1 else None
        self._beat = time.monotonic()
        if self.notifier is not None:
            self.notifier.start()
        self._thread = threading.Thread(target=self._loop, name="collector-alarms", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.notifier is not None:
            self.notifier.stop(timeout_s=10.0)
        try:
            self.tick()
        except Exception:
            pass
        self.client.publish(self.presence, b"", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()


def build_service(config) -> AlarmService | None:
    """The alarm service of a collector config (:class:`collector.config.CollectorConfig`), or
    None when ``[alarms] enabled = false``."""
    from collector.alarms.rules import effective_rules
    from collector.config import alarms_mqtt
    from collector.sinks import make_sink

    al = config.alarms
    if not al.enabled:
        return None
    sink = make_sink(config.influxdb)
    service: AlarmService | None = None

    def record(r: DeliveryRecord) -> None:
        if service is not None:
            service.record_delivery(r)

    notifier = Notifier(list(al.notify), attempts=al.notify_attempts, retry_min_s=al.notify_retry_min_s,
                        retry_max_s=al.notify_retry_max_s, record=record) if al.notify else None
    tracker = FleetTracker(effective_rules(al.rule))
    service = AlarmService(alarms_mqtt(config), config.ingest.client_id, tracker, notifier, sink.write,
                           tick_s=al.tick_s, settle_s=al.settle_s, hung_s=config.ingest.writer_hung_s)
    return service
