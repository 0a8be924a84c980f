"""MQTT ingest: validate, write to InfluxDB, and only then acknowledge.

The collector subscribes with a persistent MQTT v5 session (clean start off, session expiry set)
and manual acknowledgement, so a message is PUBACKed only after the points it carries are in
InfluxDB: if the collector or InfluxDB dies first, the broker delivers the message again.
An invalid message is published to the dead-letter topic with its reason, counted, and acked, so
it never blocks the messages behind it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import CollectorConfig
from collector.lineprotocol import flux_line
from collector.sinks import SinkError, make_sink
from station import messages
from station.logs import event
from station.mqttclient import make_client

log = logging.getLogger("collector")
RETRY_MAX_S = 30.0


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.sink = make_sink(config.influxdb)
        self.client = make_client(config.mqtt, config.ingest.client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._halt = threading.Event()
        self.connected = threading.Event()
        self.points_written = 0
        self.messages_acked = 0
        self.dead_letters: dict[str, int] = {}

    def _subscription(self) -> str:
        topic = messages.subscription(self.prefix, "flux")
        group = self.config.ingest.share_group
        return f"$share/{group}/{topic}" if group else topic

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            event(log, "mqtt_refused", logging.WARNING, reason=str(reason_code))
            return
        # Subscribe on every connect: after a broker restart without our session, nothing else would.
        client.subscribe(self._subscription(), qos=1)
        self.connected.set()
        event(log, "mqtt_connected", broker=f"{self.config.mqtt.host}:{self.config.mqtt.port}",
              session_present=flags.session_present, subscription=self._subscription())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._halt.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, reason=str(reason_code))
        self.connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        self._inbox.put(message)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.ingest.session_expiry_s
        mq = self.config.mqtt
        self.client.connect_async(mq.host, mq.port, mq.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        event(log, "collector_started", influxdb=self.config.influxdb.url, api=self.config.influxdb.api)
        try:
            while not self._halt.is_set():
                batch = self._next_batch()
                if batch:
                    self._process(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.sink.close()
            event(log, "collector_stopped", points=self.points_written, acked=self.messages_acked)

    def _next_batch(self) -> list:
        try:
            first = self._inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.ingest.batch_age_s
        while len(batch) < self.config.ingest.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list) -> None:
        lines, carriers = [], []
        for msg in batch:
            try:
                record = messages.decode(self.prefix, msg.topic, msg.payload)
            except messages.PayloadError as exc:
                self._dead_letter(msg, str(exc))
                continue
            line = flux_line(record)
            if line is not None:
                lines.append(line)
            carriers.append(msg)
        if lines:
            try:
                if not self._write(lines):
                    return  # stopping: messages stay unacked and will be redelivered
            except SinkError as exc:  # the server refused the batch: retrying cannot help
                for msg in carriers:
                    self._dead_letter(msg, str(exc))
                return
        for msg in carriers:
            self.client.ack(msg.mid, msg.qos)
        self.messages_acked += len(carriers)
        self.points_written += len(lines)
        if lines:
            event(log, "points_written", points=len(lines), messages=len(carriers), total=self.points_written)

    def _write(self, lines: list[str]) -> bool:
        """Write, retrying what may pass by itself; False if stopped first. A non-retryable
        :class:`SinkError` propagates."""
        delay = 0.5
        while not self._halt.is_set():
            try:
                self.sink.write(lines)
                return True
            except SinkError as exc:
                if not exc.retryable:
                    raise
                event(log, "write_retry", logging.WARNING, error=str(exc), retry_s=delay)
                self._halt.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return False

    def _dead_letter(self, msg, reason: str) -> None:
        key = reason.split(":")[0][:80]
        self.dead_letters[key] = self.dead_letters.get(key, 0) + 1
        if self.dead_letters[key] == 1:
            event(log, "dead_letter", logging.WARNING, topic=msg.topic, reason=reason)
        body = json.dumps({"reason": reason, "topic": msg.topic,
                           "payload": msg.payload[:4096].decode("utf-8", errors="replace")})
        self.client.publish(messages.deadletter_topic(self.prefix), body, qos=1)
        self.client.ack(msg.mid, msg.qos)
