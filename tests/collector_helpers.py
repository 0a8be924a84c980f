"""Helpers for the collector integration tests: configs, collector subprocesses, a QoS 1
publisher, and point counts read back from the real influxd."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from fleet import SimMessage

from collector.config import InfluxConfig
from collector.query import create_database, influxql

CLI = [sys.executable, "-m", "fluxedge.cli"]


def write_config(path: Path, mqtt_port: int, influx_url: str, database: str, prefix: str, client_id: str,
                 mqtt_extra: str = "", alarms: str = "", **ingest: object) -> Path:
    ingest_lines = "".join(f"{k} = {v!r}\n" if not isinstance(v, str) else f'{k} = "{v}"\n'
                           for k, v in ingest.items())
    path.write_text(f'[mqtt]\nport = {mqtt_port}\ntopic_prefix = "{prefix}"\n{mqtt_extra}'
                    f'[influxdb]\nurl = "{influx_url}"\napi = 1\ndatabase = "{database}"\ntimeout_s = 5\n'
                    f'[ingest]\nclient_id = "{client_id}"\n{ingest_lines}'
                    + (f"[alarms]\n{alarms}" if alarms else ""))
    return path


def start_collector(config: Path, log: Path, wait_subscribed: bool = True) -> subprocess.Popen:
    """The collector as a subprocess (``fluxedge collector run``), once it has subscribed."""
    before = log.read_text().count("mqtt_subscribed") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen([*CLI, "collector", "run", "-c", str(config)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    if wait_subscribed:
        assert wait_for(lambda: proc.poll() is not None or log.read_text().count("mqtt_subscribed") > before, 20,
                        0.05), "the collector did not subscribe in 20 s"
        assert proc.poll() is None, log.read_text()[-2000:]
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def influx(port: int, database: str) -> InfluxConfig:
    config = InfluxConfig(url=f"http://127.0.0.1:{port}", database=database)
    create_database(config, database)
    return config


class Publisher:
    """A station-like QoS 1 publisher; :meth:`send` returns once the broker acknowledged all."""

    def __init__(self, port: int, client_id: str, username: str | None = None, password: str | None = None,
                 ca_file: str | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:  # TLS, trusting this CA (the shipped broker's station listener)
            self.client.tls_set(ca_certs=ca_file)
        self.client.max_inflight_messages_set(200)
        #: PUBACK reason of each message id ("Success", "No matching subscribers", ...)
        self.reasons: dict[int, str] = {}
        self.client.on_publish = lambda c, u, mid, reason, props: self.reasons.__setitem__(mid, str(reason))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, msgs: list[SimMessage] | list[tuple[str, bytes]], timeout_s: float = 60) -> list[str]:
        """The broker's PUBACK reasons, in order."""
        infos = [self.client.publish(m.topic, m.payload, qos=1) if isinstance(m, SimMessage)
                 else self.client.publish(m[0], m[1], qos=1) for m in msgs]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a publish in time"
        return [self.reasons.get(info.mid, "?") for info in infos]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Collects the messages of one topic filter (e.g. the dead-letter topic)."""

    def __init__(self, port: int, topic: str | list[str], client_id: str, username: str | None = None,
                 password: str | None = None, ca_file: str | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        #: SUBACK reason codes, as strings
        self.granted: list[str] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=ca_file)
        topics = [(t, 1) for t in ([topic] if isinstance(topic, str) else topic)]
        self.client.on_connect = lambda c, *_: c.subscribe(topics)
        self.client.on_subscribe = lambda c, u, mid, codes, props: (self.granted.extend(map(str, codes)),
                                                                     self.ready.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def point_counts(config: InfluxConfig) -> dict[str, int]:
    """Points per measurement (flux, met, diag, alarm) in the database."""
    queries = {"flux": "SELECT count(FC) FROM flux", "met": "SELECT count(TA) FROM met",
               "diag": "SELECT count(CONNECTED) FROM diag", "diag_station": "SELECT count(NTP_SYNCED) FROM diag",
               "alarm": "SELECT count(severity) FROM alarm"}
    counts = {}
    for name, q in queries.items():
        rows = influxql(config, q)
        counts[name] = int(rows[0]["count"]) if rows else 0
    counts["diag"] += counts.pop("diag_station")
    return counts


def expected_counts(msgs: list[SimMessage]) -> dict[str, int]:
    counts = {"flux": 0, "met": 0, "diag": 0, "alarm": 0}
    for m in msgs:
        counts[m.kind] += m.points
    return counts


def wait_for(check, timeout_s: float, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)
