"""MQTT ingest: validate, write to InfluxDB in batches, and only then acknowledge.

The collector subscribes to ``PREFIX/v1/+/KIND`` for KIND in flux, met, diag, alarm (through
``$share/GROUP/...`` when ``share_group`` is set, so N collectors split the load) with a
persistent MQTT v5 session (clean start off, session expiry set), a Receive Maximum sized to the
batch and manual acknowledgement: a message is PUBACKed only after the points it carries are in
InfluxDB, so if the collector or InfluxDB dies first the broker delivers it again (points are
keyed, a redelivery overwrites). Subscriptions are renewed on every (re)connect.

Two threads: paho's network thread decodes each message as it arrives (on_message: CPU only,
never blocking) into line-protocol groups and closes a batch at ``batch_size`` messages or
``batch_points`` points; the writer thread also closes a batch at ``batch_age_s``, writes it
(:class:`collector.writer.BatchWriter`: retries, isolates refused messages), acknowledges it and
emits the metrics. While InfluxDB is away, at most ``receive_maximum`` unacknowledged messages
wait in memory; the broker keeps the rest in the persistent session. An invalid message, or one
whose points InfluxDB refuses on their own, goes to the dead-letter topic with its reason and is
acknowledged, so it never blocks what follows.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import CollectorConfig
from collector.deadletter import DeadLetters
from collector.lineprotocol import lines_for
from collector.metrics import Metrics, metrics_line
from collector.receiver import Receiver
from collector.sinks import SinkError, make_sink
from collector.writer import BatchWriter
from station import messages
from station.logs import event
from station.mqttclient import make_client

log = logging.getLogger("collector")


def ack_all(client, msgs: list) -> None:
    """PUBACK every QoS 1 message of ``msgs``, in one write to the socket where paho allows it.

    paho's ``ack()`` queues one packet and wakes its network thread per message (~17 us each,
    measured); here all PUBACKs (4 bytes each, reason omitted = success) go out as one queued
    packet. Falls back to ``ack()`` if this paho lacks the internal used."""
    queue_packet = getattr(client, "_packet_queue", None)
    mids = [m.mid for m in msgs if m.qos == 1]
    if queue_packet is None or not mids:
        for m in msgs:
            client.ack(m.mid, m.qos)
        return
    queue_packet(_PUBACK, b"".join([_PUBACK_HEAD + mid.to_bytes(2, "big") for mid in mids]), 0, 0)
    for m in msgs:
        if m.qos == 2:
            client.ack(m.mid, m.qos)


_PUBACK = 0x40
_PUBACK_HEAD = bytes([_PUBACK, 2])


@dataclass
class _Batch:
    started: float
    carriers: list = field(default_factory=list)  # (paho message, arrival monotonic s)
    groups: list[list[str]] = field(default_factory=list)
    points: int = 0


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.sink = make_sink(config.influxdb)
        self.client = make_client(config.mqtt, config.ingest.client_id, manual_ack=True, client_class=Receiver)
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
        self.writer = BatchWriter(self.sink.write, self._halt, config.ingest.retry_min_s, config.ingest.retry_max_s)
        self.points_written = 0
        self.messages_acked = 0

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

    def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.ingest.session_expiry_s
        props.ReceiveMaximum = self.config.ingest.receive_maximum
        mq = self.config.mqtt
        self.client.connect_async(mq.host, mq.port, mq.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)
        writer.start()
        event(log, "collector_started", influxdb=self.config.influxdb.url, api=self.config.influxdb.api,
              batch_size=self.config.ingest.batch_size, receive_maximum=self.config.ingest.receive_maximum)
        try:
            while not self._halt.wait(0.5):
                pass
        finally:
            self._halt.set()
            writer.join(timeout=30)
            self.client.disconnect()
            self.client.loop_stop()
            self.sink.close()
            event(log, "collector_stopped", points=self.points_written, acked=self.messages_acked,
                  dead_letters=sum(self.dead_letters.counts.values()))

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
            batch = self._next_batch()
            if batch is not None:
                self._write(batch)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + interval
                self._report()

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
        ack_all(self.client, [msg for msg, _ in batch.carriers])
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
