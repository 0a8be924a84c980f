"""Publishes the spool to MQTT, oldest first, QoS 1; a row is deleted only after its PUBACK, and
then only ``keep_acked_s`` later if the link stayed up meanwhile.

paho keeps unacknowledged QoS 1 messages in memory and re-sends them (same message id, in order)
after a reconnect; the spool covers what memory cannot (process restarts, power loss): anything
not yet acknowledged is sent again, so delivery is at least once and the collector's keyed writes
make repeats harmless.

A PUBACK means the broker has the message in memory, not on disk: mosquitto 2.0 writes its
persistence file every ``autosave_interval`` seconds, so a broker killed with SIGKILL (or a crash, a
power cut) loses what it acknowledged since its last save. The station therefore keeps each
acknowledged row ``keep_acked_s`` longer (longer than the broker's autosave interval plus the time
to notice a dead broker, deploy/mosquitto/README.md) and deletes it only if the connection stayed
up all that time; after any disconnect the rows it still keeps are sent again, oldest first.

The retained status topic says ``online`` (with version and config hash) after each connect; the
last will, registered with the broker at connect, says ``offline`` if the station vanishes (kill,
power cut, link loss: after 1.5 x keepalive), and a clean stop publishes ``offline`` itself.

Connection problems are logged once per distinct reason (``mqtt_connect_failed`` for network and
TLS errors, ``mqtt_refused`` for a broker's refusal such as a bad password) and again when the
link comes back (``mqtt_connected attempts=N``); paho retries with capped exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from fluxedge.common.logs import event
from fluxedge.common.mqttclient import make_client
from fluxedge.common.mqttconfig import MqttConfig
from station.outbox.spool import Spool, SpoolError

log = logging.getLogger("station.publisher")
#: After a reconnect paho first re-sends what was in flight; new rows wait this long so they
#: cannot overtake those re-sends on the wire.
RESEND_SETTLE_S = 0.2
#: A message the broker refused (MQTT v5 PUBACK with an error reason, e.g. "Not authorized" by an
#: ACL) stays in the spool and is offered again after this long; the rest keep flowing meanwhile.
REJECTED_RETRY_S = 60.0
#: MQTT v5 PUBACK reason 0x10 "No matching subscribers": the broker took the message but nobody
#: was subscribed (mosquitto 2.0 right after a restart, before the collectors of a shared
#: subscription are back; or no collector takes that kind), so it reached no one. The row stays,
#: and that topic pauses this long and then resumes oldest first, so that nothing is lost and its
#: order holds; the other topics keep flowing.
NO_SUBSCRIBERS = 0x10
#: an early PUBACK (see Publisher._on_publish) not claimed within this long was not for a spool row
EARLY_ACK_KEEP_S = 30.0
NO_SUBSCRIBER_PAUSE_S = 5.0


class Publisher(threading.Thread):
    def __init__(self, spool: Spool, config: MqttConfig, client_id: str, status_topic: str,
                 online_payload: bytes, offline_payload: bytes, max_inflight: int = 20,
                 keep_acked_s: float = 0.0) -> None:
        super().__init__(name="publisher", daemon=True)
        self.spool = spool
        self.config = config
        self.status_topic = status_topic
        self.online_payload = online_payload
        self.offline_payload = offline_payload
        self.max_inflight = max_inflight
        self.keep_acked_s = keep_acked_s
        self.published = 0
        self.connects = 0
        self.failed_attempts = 0
        self.last_error: str | None = None
        self._inflight: dict[int, tuple[int, str]] = {}  # MQTT message id -> (spool row id, topic)
        self._lock = threading.Lock()
        #: spool rows acknowledged -> monotonic time of the PUBACK; deleted keep_acked_s later, sent
        #: again if the link drops before that
        self._acked: dict[int, float] = {}
        self.resent_after_disconnect = 0
        self._held: dict[int, float] = {}  # spool rows the broker refused -> monotonic retry time
        self._paused: dict[str, float] = {}  # topics nobody took -> monotonic time to try them again
        self.unrouted = 0
        self.rejected = 0
        self._last_reject: str | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._connected = threading.Event()
        self._connected_at = 0.0
        self.client = make_client(config, client_id)
        #: PUBACKs that came before publish() returned and their mid was registered: mid ->
        #: (reason code, monotonic arrival); taken by _send_more, forgotten after EARLY_ACK_KEEP_S
        self._early: dict[int, tuple[object, float]] = {}
        self.client.max_inflight_messages_set(max_inflight)
        self.client.will_set(status_topic, offline_payload, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def link_state(self) -> str:
        """``connected``, ``connecting`` or ``down: REASON`` (for status and diagnostics)."""
        if self._connected.is_set():
            return "connected"
        return f"down: {self.last_error}" if self.last_error else "connecting"

    def wake(self) -> None:
        self._wake.set()

    def _failed(self, name: str, reason: str) -> None:
        self.failed_attempts += 1
        level = logging.WARNING if reason != self.last_error else logging.DEBUG
        self.last_error = reason
        event(log, name, level, broker=f"{self.config.host}:{self.config.port}", reason=reason,
              attempts=self.failed_attempts)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # e.g. "Bad user name or password", "Not authorized"
            self._failed("mqtt_refused", str(reason_code))
            return
        client.publish(self.status_topic, self.online_payload, qos=1, retain=True)
        self._connected_at = time.monotonic()
        self._connected.set()
        self.connects += 1
        event(log, "mqtt_connected", broker=f"{self.config.host}:{self.config.port}",
              attempts=self.failed_attempts + 1, tls=self.config.tls is not None)
        self.failed_attempts = 0
        self.last_error = None
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._failed("mqtt_connect_failed", getattr(client, "last_connect_error", None) or "connection failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._halt.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, reason=str(reason_code),
                  inflight=self.inflight())
        self._connected.clear()
        kept = self._release_kept()
        if kept and not self._halt.is_set():
            event(log, "mqtt_resend_kept", rows=kept, keep_acked_s=self.keep_acked_s)

    def _release_kept(self) -> int:
        """The broker may have lost what it acknowledged before its last save: rows still kept go
        back to the spool's queue and are sent again after the reconnect."""
        due = time.monotonic() - self.keep_acked_s
        with self._lock:
            kept = [row for row, at in self._acked.items() if at > due]
            for row in kept:
                del self._acked[row]
            self.resent_after_disconnect += len(kept)
        return len(kept)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                # paho's network thread can see the PUBACK before publish() has returned the mid to
                # _send_more (or it is the status message's): kept for _send_more to take
                now = time.monotonic()
                self._early[mid] = (reason_code, now)
                for old in [m for m, (_, at) in self._early.items() if at < now - EARLY_ACK_KEEP_S]:
                    del self._early[old]
                return
        self._settle(entry, reason_code)

    def _settle(self, entry: tuple[int, str], reason_code) -> None:
        """The broker's answer for spool row ``entry`` = (row, topic)."""
        refused = reason_code is not None and reason_code.is_failure
        unrouted = reason_code is not None and not refused and reason_code.value == NO_SUBSCRIBERS
        new_pause = False
        with self._lock:
            row, topic = entry
            if row is not None and refused:
                self._held[row] = time.monotonic() + REJECTED_RETRY_S  # kept: never deleted unacknowledged
            elif row is not None and unrouted:
                now = time.monotonic()
                new_pause = now >= self._paused.get(topic, 0.0)
                self._paused[topic] = now + NO_SUBSCRIBER_PAUSE_S
                self._held[row] = self._paused[topic]
                self.unrouted += 1
            elif row is not None:
                self._acked[row] = time.monotonic()
        if row is not None and unrouted and new_pause:  # once per pause, not per message
            event(log, "mqtt_no_subscribers", logging.WARNING, topic=topic, row=row, retry_s=NO_SUBSCRIBER_PAUSE_S,
                  unrouted=self.unrouted)
        if row is not None and refused:
            self.rejected += 1
            reason = str(reason_code)
            event(log, "mqtt_publish_refused", logging.WARNING if reason != self._last_reject else logging.DEBUG,
                  reason=reason, row=row, retry_s=REJECTED_RETRY_S, refused=self.rejected)
            self._last_reject = reason
        if row is not None:
            self._wake.set()

    def run(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive_s, clean_start=True)
        self.client.loop_start()
        while not self._halt.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._delete_acked()
            if self._connected.is_set():
                settle = self._connected_at + RESEND_SETTLE_S - time.monotonic()
                if settle > 0:
                    self._halt.wait(settle)
                self._send_more()
        self._delete_acked()

    def _delete_acked(self) -> None:
        due = time.monotonic() - self.keep_acked_s
        with self._lock:
            ids = [row for row, at in self._acked.items() if at <= due]
        if not ids:
            return
        try:
            self.spool.delete(ids)
        except SpoolError as exc:  # a full disk even beyond the spool's reserve: kept (not re-sent), retried
            event(log, "spool_delete_failed", logging.ERROR, rows=len(ids), error=str(exc))
            return
        with self._lock:
            for row in ids:
                self._acked.pop(row, None)
        self.published += len(ids)

    def _send_more(self) -> None:
        with self._lock:
            room = self.max_inflight - len(self._inflight)
            now = time.monotonic()
            for row in [r for r, at in self._held.items() if at <= now]:
                del self._held[row]
            for topic in [t for t, at in self._paused.items() if at <= now]:
                del self._paused[topic]
            paused = frozenset(self._paused)
            busy = {r for r, _ in self._inflight.values()} | set(self._acked) | set(self._held)
        if room <= 0:
            return
        for msg in self.spool.oldest(room, exclude=busy, exclude_topics=paused):
            # publish() is called holding none of our locks (paho calls on_publish holding its own
            # lock, so holding ours here could deadlock); a PUBACK that beats the registration of its
            # mid waits in _early and is settled here. paho's public API only.
            info = self.client.publish(msg.topic, msg.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break
            # NO_CONN: paho queued it and sends it after the reconnect; its PUBACK deletes the row
            with self._lock:
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = (msg.id, msg.topic)
            if early is not None:
                self._settle((msg.id, msg.topic), early[0])
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                break

    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def kept(self) -> int:
        """Rows acknowledged by the broker that the spool still keeps (``keep_acked_s``)."""
        with self._lock:
            return len(self._acked)

    def stop(self, drain_s: float = 5.0) -> None:
        """Send what is spooled for up to ``drain_s`` seconds, announce offline, disconnect."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._connected.is_set() and (
                self.spool.depth() > self.kept() or self.inflight()):
            self._wake.set()
            time.sleep(0.1)
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, self.offline_payload, qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass  # the link dropped meanwhile: the broker publishes the will instead
        self._halt.set()
        self._wake.set()
        self.join(5)
        self.client.disconnect()
        self.client.loop_stop()
