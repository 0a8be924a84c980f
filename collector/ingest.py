"""MQTT ingest: validate, write to InfluxDB in batches, and only then acknowledge.

The collector subscribes to ``PREFIX/v1/+/KIND`` for KIND in flux, met, diag, alarm (through
``$share/GROUP/...`` when ``share_group`` is set, so N collectors split the load) with a
persistent MQTT v5 session (clean start off, session expiry set), a Receive Maximum sized to the
batch and manual acknowledgement: a message is PUBACKed only after the points it carries are in
InfluxDB, so if the collector or InfluxDB dies first the broker delivers it again (points are
keyed, a redelivery overwrites). Subscriptions are renewed on every (re)connect.

Only paho-mqtt's public API is used (``manual_ack=True``, ``on_message``, ``ack(mid, qos)``,
``loop_start``), so a paho update cannot break ingestion by changing its internals.

Two threads: paho's network thread (``loop_start``) decodes each message as it arrives
(on_message: CPU only, never blocking) into line-protocol groups and closes a batch at
``batch_size`` messages or ``batch_points`` points; the writer thread also closes a batch at
``batch_age_s``, writes it (:class:`collector.writer.BatchWriter`: retries, isolates refused
messages), acknowledges each of its messages with ``client.ack`` and emits the metrics. While
InfluxDB is away, at most ``receive_maximum`` unacknowledged messages wait in memory; the broker
keeps the rest in the persistent session. An invalid message, or one whose points InfluxDB refuses
on their own, goes to the dead-letter topic with its reason and is acknowledged, so it never
blocks what follows.

Under systemd (``Type=notify``, ``WatchdogSec``) the main thread says READY once both threads run,
WATCHDOG=1 every half watchdog interval (at most every second) only while both threads are alive
and the writer has come round its loop or attempted a write within ``writer_hung_s`` (and, with
``[alarms]``, while the alarm service's threads run and it is not hung: ``health_checks``), and
STOPPING=1 on the way out. Once unhealthy the collector stops pinging, logs why and exits with
status 1 (systemd restarts it; nothing unacknowledged is lost: the broker delivers it again).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import CollectorConfig
from collector.deadletter import DeadLetters
from collector.lineprotocol import lines_for
from collector.metrics import Metrics, metrics_line
from collector.sinks import SinkError, make_sink
from collector.writer import BatchWriter
from fluxedge.common import messages
from fluxedge.common.logs import event
from fluxedge.common.mqttclient import make_client
from fluxedge.common.sdnotify import Notifier, watchdog_interval_s

log = logging.getLogger("collector")


@dataclass
class _Batch:
    started: float
    carriers: list = field(default_factory=list)  # (paho message, arrival monotonic s)
    groups: list[list[str]] = field(default_factory=list)
    points: int = 0


class Collector:
    def __init__(self, config: CollectorConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        #: systemd's sd_notify (a no-op outside systemd unless given one)
        self.notifier = notifier if notifier is not None else Notifier()
        self.prefix = config.mqtt.topic_prefix
        self.sink = make_sink(config.influxdb)
        self.client = make_client(config.mqtt, config.ingest.client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: _Batch | None = None  # filling (network thread)
        self._ready: collections.deque[_Batch] = collections.deque()  # full, waiting for the writer
        self._waiting = 0  # messages in _pending and _ready
        self._halt = threading.Event()
        self.connected = threading.Event()
        self.metrics = Metrics()
        self.dead_letters = DeadLetters(self.prefix, lambda t, body: self.client.publish(t, body, qos=1))
        self.writer = BatchWriter(self._sink_write, self._halt, config.ingest.retry_min_s, config.ingest.retry_max_s)
        self.points_written = 0
        self.messages_acked = 0
        self._network: threading.Thread | None = None  # paho's, started by loop_start()
        self._writer: threading.Thread | None = None
        #: monotonic time the writer last came round its loop or attempted a write
        self._writer_beat = time.monotonic()
        #: why a thread died, once one has
        self.failure: str | None = None
        #: more health checks, each () -> problem or None (the alarm service adds its own)
        self.health_checks: list[Callable[[], str | None]] = []

    def subscriptions(self) -> list[str]:
        group = self.config.ingest.share_group
        topics = [messages.subscription(self.prefix, kind) for kind in self.config.ingest.kinds]
        return [f"$share/{group}/{t}" for t in topics] if group else topics

    # --- MQTT callbacks (network thread: never block) ---

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            event(log, "mqtt_refused", logging.WARNING, reason=str(reason_code))
            return
        # Subscribe on every connect: after a broker restart without our session, nothing else would.
        client.subscribe([(t, 1) for t in self.subscriptions()])
        self.connected.set()
        event(log, "mqtt_connected", broker=f"{self.config.mqtt.host}:{self.config.mqtt.port}",
              session_present=flags.session_present, subscriptions=",".join(self.subscriptions()))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [(t, c) for t, c in zip(self.subscriptions(), reason_codes, strict=False) if c.is_failure]
        for topic, code in refused:
            event(log, "subscribe_refused", logging.ERROR, topic=topic, reason=str(code))
        if not refused:
            event(log, "mqtt_subscribed", topics=len(reason_codes))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._halt.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, reason=str(reason_code))
        self.connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        arrived = time.monotonic()
        try:
            lines = lines_for(messages.decode(self.prefix, message.topic, message.payload))
        except messages.PayloadError as exc:
            self._reject(message, str(exc))
            return
        except Exception as exc:  # a bug must neither kill the network thread nor lose the message
            event(log, "decode_failed", logging.ERROR, topic=message.topic[:200], error=repr(exc)[:300])
            self._reject(message, f"collector error: {exc!r}"[:300])
            return
        ing = self.config.ingest
        with self._lock:
            batch = self._pending
            if batch is None:
                batch = self._pending = _Batch(arrived)
            batch.carriers.append((message, arrived))
            batch.groups.append(lines)
            batch.points += len(lines)
            self._waiting += 1
            if len(batch.carriers) >= ing.batch_size or batch.points >= ing.batch_points:
                self._ready.append(batch)
                self._pending = None
                self._wake.notify()

    def _reject(self, message, reason: str) -> None:
        self.dead_letters.send(message.topic, message.payload, reason)
        self.metrics.dead_letter()
        self.client.ack(message.mid, message.qos)

    # --- life cycle ---

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> int:
        """Ingest until :meth:`stop`: 0 then; 1 once a thread died or the writer hung."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.ingest.session_expiry_s
        props.ReceiveMaximum = self.config.ingest.receive_maximum
        mq = self.config.mqtt
        self.client.connect_async(mq.host, mq.port, mq.keepalive_s, clean_start=False, properties=props)
        # paho's own network thread: every socket write (PUBACKs included) happens there. It is the
        # one thread loop_start() adds (documented: "starts a new thread"), found without paho internals.
        before = set(threading.enumerate())
        self.client.loop_start()
        started = [t for t in threading.enumerate() if t not in before]
        self._network = started[0] if len(started) == 1 else None
        self._writer = threading.Thread(target=self._guarded_write_loop, name="collector-writer", daemon=True)
        self._writer.start()
        event(log, "collector_started", influxdb=self.config.influxdb.url, api=self.config.influxdb.api,
              batch_size=self.config.ingest.batch_size, receive_maximum=self.config.ingest.receive_maximum)
        notifier = self.notifier
        notifier.ready(f"ingesting from {mq.host}:{mq.port} into {self.config.influxdb.url}")
        every_s = min(watchdog_interval_s() or 1.0, 1.0)
        status = 0
        try:
            while True:
                problem = self.health_problem()
                if problem is not None:
                    if not self._halt.is_set():
                        event(log, "collector_failed", logging.ERROR, problem=problem,
                              note="exiting so that the service manager restarts the collector")
                        status = 1
                    break
                notifier.watchdog()
                if self._halt.wait(every_s):
                    break
        finally:
            notifier.stopping()
            self._halt.set()
            self._writer.join(timeout=30 if status == 0 else 1)  # a hung writer is not waited for
            self.client.disconnect()
            self.client.loop_stop()
            self.sink.close()
            event(log, "collector_stopped", points=self.points_written, acked=self.messages_acked,
                  dead_letters=sum(self.dead_letters.counts.values()))
        return status

    def health_problem(self) -> str | None:
        """None while paho's network thread and the writer thread run, the writer is not hung and
        every added check (:attr:`health_checks`, e.g. the alarm service's) says None."""
        if self.failure is not None:
            return self.failure
        for check in self.health_checks:
            problem = check()
            if problem is not None:
                return problem
        if self._network is not None and not self._network.is_alive():
            return "MQTT network thread ended"
        if self._writer is None or not self._writer.is_alive():
            return "writer thread ended"
        idle_s = time.monotonic() - self._writer_beat
        if idle_s > self.config.ingest.writer_hung_s:
            return f"writer hung for {idle_s:.0f} s (a write to InfluxDB did not return)"
        return None

    def _guarded_write_loop(self) -> None:
        try:
            self._write_loop()
        except Exception as exc:  # a bug: one log line (in run), exit 1, the broker redelivers
            self.failure = f"writer thread died: {exc!r}"[:300]
            return
        if not self._halt.is_set():
            self.failure = "writer thread ended"

    # --- writer thread: write, acknowledge, report ---

    def _next_batch(self) -> _Batch | None:
        """A full batch, or the filling one once it is ``batch_age_s`` old; None after ~0.2 s."""
        age_s = self.config.ingest.batch_age_s
        with self._wake:
            if not self._ready:
                pending = self._pending
                timeout = 0.2 if pending is None else max(0.0, min(0.2, pending.started + age_s - time.monotonic()))
                if timeout > 0:
                    self._wake.wait(timeout)
            if self._ready:
                batch = self._ready.popleft()
            elif self._pending is not None and time.monotonic() >= self._pending.started + age_s:
                batch, self._pending = self._pending, None
            else:
                return None
            self._waiting -= len(batch.carriers)
            return batch

    def _write_loop(self) -> None:
        interval = self.config.ingest.metrics_interval_s
        next_report = time.monotonic() + interval
        while not self._halt.is_set():
            self._writer_beat = time.monotonic()
            batch = self._next_batch()
            if batch is not None:
                self._write(batch)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + interval
                self._report()

    def _sink_write(self, lines: list[str]) -> None:
        self._writer_beat = time.monotonic()  # a write attempt (retries included) is progress
        self.sink.write(lines)

    def _write(self, batch: _Batch) -> None:
        began = time.monotonic()
        outcome = self.writer.write(batch.groups)
        if not outcome.completed:
            return  # stopping: the messages stay unacknowledged and will be delivered again
        now = time.monotonic()
        points = 0
        for i, (msg, _) in enumerate(batch.carriers):
            reason = outcome.rejected.get(i)
            if reason is not None:
                self.dead_letters.send(msg.topic, msg.payload, f"refused by InfluxDB: {reason}")
                self.metrics.dead_letter()
            else:
                points += len(batch.groups[i])
        ack = self.client.ack
        for msg, _ in batch.carriers:  # PUBACK only now that every point of the batch is stored
            ack(msg.mid, msg.qos)
        acked = len(batch.carriers) - len(outcome.rejected)
        self.messages_acked += acked
        self.points_written += points
        self.metrics.batch_done(acked, points, now - began, now - batch.carriers[0][1], outcome.retries,
                                outcome.splits)
        event(log, "batch_written", logging.DEBUG, messages=acked, points=points, write_s=now - began)

    def _report(self) -> None:
        snap = self.metrics.take(self._waiting)
        if snap.messages or snap.dead_letters or snap.retries or snap.inbox:
            event(log, "collector_metrics", **snap.fields())
        try:
            self.sink.write([metrics_line(self.config.ingest.client_id, snap, time.time())])
        except SinkError as exc:
            event(log, "metrics_not_written", logging.DEBUG, error=str(exc))
