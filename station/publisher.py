"""Publishes the spool to MQTT, oldest first, QoS 1; a row is deleted only after its PUBACK.

paho keeps unacknowledged QoS 1 messages in memory and re-sends them after a reconnect; the
spool covers what memory cannot (process restarts, power loss): anything not yet acknowledged is
sent again, so delivery is at least once and the collector's keyed writes make repeats harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import paho.mqtt.client as mqtt

from station.config import MqttConfig
from station.logs import event
from station.mqttclient import make_client
from station.spool import Spool

log = logging.getLogger("station.publisher")


class Publisher(threading.Thread):
    def __init__(self, spool: Spool, config: MqttConfig, client_id: str, status_topic: str,
                 online_payload: bytes, offline_payload: bytes, max_inflight: int = 20) -> None:
        super().__init__(name="publisher", daemon=True)
        self.spool = spool
        self.config = config
        self.status_topic = status_topic
        self.online_payload = online_payload
        self.offline_payload = offline_payload
        self.max_inflight = max_inflight
        self.published = 0
        self._inflight: dict[int, int] = {}  # MQTT message id -> spool row id
        self._lock = threading.Lock()
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._connected = threading.Event()
        self.client = make_client(config, client_id)
        self.client.will_set(status_topic, offline_payload, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wake(self) -> None:
        self._wake.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            event(log, "mqtt_refused", logging.WARNING, reason=str(reason_code))
            return
        client.publish(self.status_topic, self.online_payload, qos=1, retain=True)
        self._connected.set()
        event(log, "mqtt_connected", broker=f"{self.config.host}:{self.config.port}")
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._halt.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, reason=str(reason_code))
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            row = self._inflight.pop(mid, None)
        if row is not None:
            self._acked.put(row)
            self._wake.set()

    def run(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive_s, clean_start=True)
        self.client.loop_start()
        while not self._halt.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._delete_acked()
            if self._connected.is_set():
                self._send_more()
        self._delete_acked()

    def _delete_acked(self) -> None:
        ids = []
        while True:
            try:
                ids.append(self._acked.get_nowait())
            except queue.Empty:
                break
        self.spool.delete(ids)
        self.published += len(ids)

    def _send_more(self) -> None:
        with self._lock:
            room = self.max_inflight - len(self._inflight)
            busy = set(self._inflight.values())
        if room <= 0:
            return
        for msg in self.spool.oldest(room, exclude=busy):
            with self._lock:  # register before on_publish can run for this mid
                info = self.client.publish(msg.topic, msg.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                self._inflight[info.mid] = msg.id

    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def stop(self, drain_s: float = 5.0) -> None:
        """Send what is spooled for up to ``drain_s`` seconds, announce offline, disconnect."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._connected.is_set() and (self.spool.depth() or self.inflight()):
            self._wake.set()
            time.sleep(0.1)
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, self.offline_payload, qos=1, retain=True)
            info.wait_for_publish(2)
        self._halt.set()
        self._wake.set()
        self.join(5)
        self.client.disconnect()
        self.client.loop_stop()
