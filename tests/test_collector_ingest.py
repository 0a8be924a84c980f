"""The collector's MQTT side on paho's public API only (``manual_ack=True``, ``on_message``,
``ack(mid, qos)``, ``loop_start``): no paho internals, a message acknowledged only once its points
are in InfluxDB, and the systemd watchdog fed only while ingestion is alive (real mosquitto, real
influxd, ``fluxedge collector run`` as a subprocess, a real NOTIFY_SOCKET datagram socket)."""

import ast
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fleet import fleet_messages
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fluxedge.demo.servers import free_port
from tests.collector_helpers import (
    CLI,
    Publisher,
    expected_counts,
    influx,
    point_counts,
    start_collector,
    stop,
    wait_for,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_795_341_600  # 2026-11-22T10:00:00Z


# ---------------------------------------------------------------- no paho internals


def _paho_private_names() -> set[str]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="names", protocol=mqtt.MQTTv5)
    names = set(dir(mqtt.Client)) | set(vars(client))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _internals_used(source: str, private: set[str]) -> list[str]:
    """Uses of paho's private names: ``client._x`` / ``self.client._x``, ``getattr(c, "_x")``, and
    in a subclass of a ``Client``, ``self._x`` or an overridden ``def _x``; imports of paho's
    private modules (``paho.mqtt._packet``)."""
    found = []

    def is_client(node: ast.AST, in_subclass: bool) -> bool:
        return (isinstance(node, ast.Name) and (node.id == "client" or (node.id == "self" and in_subclass))) or \
            (isinstance(node, ast.Attribute) and node.attr == "client")

    def visit(node: ast.AST, in_subclass: bool) -> None:
        if isinstance(node, ast.ClassDef):
            in_subclass = any((isinstance(b, ast.Name) and b.id.endswith("Client"))
                              or (isinstance(b, ast.Attribute) and b.attr.endswith("Client")) for b in node.bases)
        if isinstance(node, ast.FunctionDef) and in_subclass and node.name in private:
            found.append(f"line {node.lineno}: overrides {node.name}")
        if isinstance(node, ast.Attribute) and node.attr in private and is_client(node.value, in_subclass):
            found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1 and \
                isinstance(node.args[1], ast.Constant) and node.args[1].value in private:
            found.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("paho") and (
                any(part.startswith("_") for part in node.module.split("."))
                or any(alias.name.startswith("_") for alias in node.names)):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        if isinstance(node, ast.Import) and any(alias.name.startswith("paho") and "._" in alias.name
                                                for alias in node.names):
            found.append(f"line {node.lineno}: import of a private paho module")
        for child in ast.iter_child_nodes(node):
            visit(child, in_subclass)

    visit(ast.parse(source), False)
    return found


def test_the_checker_finds_the_internals_the_collector_used():
    """The old receive and ack paths, as they were: each use is found."""
    private = _paho_private_names()
    old = '''
from paho.mqtt import _packet
def ack_all(client, msgs):
    queue_packet = getattr(client, "_packet_queue", None)
class Receiver(Client):
    def _handle_publish(self):
        header = self._in_packet["command"]
        with self._in_callback_mutex:
            pass
'''
    found = _internals_used(old, private)
    assert len(found) == 5, found


def test_the_collector_uses_only_pahos_public_api():
    private = _paho_private_names()
    assert {"_packet_queue", "_handle_publish", "_in_packet", "_in_callback_mutex"} <= private
    sources = [*sorted((ROOT / "collector").rglob("*.py")), ROOT / "fluxedge" / "common" / "mqttclient.py",
               ROOT / "fluxedge" / "cli.py", ROOT / "station" / "outbox" / "publisher.py"]
    assert len(sources) > 10 and all(p.exists() for p in sources)
    found = {path.name: used for path in sources if (used := _internals_used(path.read_text(), private))}
    assert found == {}


# ---------------------------------------------------------------- acknowledged only after the write


def _session_messages(port: int, client_id: str, wait_s: float, expect: int) -> list[bytes]:
    """Resume ``client_id``'s persistent session without acknowledging anything (manual ack, the
    session kept): the payloads the broker still holds for it."""
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=True)
    client.on_message = lambda c, u, msg: got.append(msg.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and (expect == 0 or len(got) < expect):
            time.sleep(0.05)
        if expect:
            time.sleep(0.3)  # anything beyond the expected
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_a_message_is_acknowledged_only_once_its_points_are_stored(tmp_path, mosquitto, influxd):
    """InfluxDB unreachable: the collector receives the messages but acknowledges none, so its
    session still holds every one after it stops. InfluxDB back: every point is stored once
    (redeliveries overwrite keyed points) and nothing is left in the session."""
    prefix, client_id = "ackt", "ackt-collector"
    db = influx(influxd.port, "ackt")
    msgs = list(fleet_messages(10, T0, 10, prefix=prefix))
    down = write_config(tmp_path / "down.toml", mosquitto.port, f"http://127.0.0.1:{free_port()}", "ackt", prefix,
                        client_id, batch_size=20, batch_age_s=0.2, retry_min_s=0.1, retry_max_s=0.5)
    up = write_config(tmp_path / "up.toml", mosquitto.port, db.url, "ackt", prefix, client_id, batch_size=20,
                      batch_age_s=0.2)
    log = tmp_path / "collector.log"
    collector = start_collector(down, log)
    publisher = Publisher(mosquitto.port, "ackt-fleet")
    try:
        publisher.send(msgs)
        assert wait_for(lambda: "write_retry" in log.read_text(), 20, 0.05), log.read_text()[-2000:]
        time.sleep(1.0)  # every message has arrived at the collector (receive maximum 1000)
        stop(collector)
        assert collector.returncode == 0
        held = _session_messages(mosquitto.port, client_id, 15, len(msgs))
        assert sorted(held) == sorted(m.payload for m in msgs)
        assert point_counts(db) == {"flux": 0, "met": 0, "diag": 0, "alarm": 0}

        collector = start_collector(up, log)
        publisher.send(msgs[:5])  # a station resending: the same keys again
        want = expected_counts(msgs)
        assert wait_for(lambda: point_counts(db) == want, 30), (point_counts(db), want)
        time.sleep(1.0)
        stop(collector)
        assert point_counts(db) == want
        assert _session_messages(mosquitto.port, client_id, 2, 0) == []
    finally:
        publisher.close()
        stop(collector)
    text = log.read_text()
    assert "Traceback" not in text and "acked=0 " in text and f"acked={len(msgs) + 5} " in text


# ---------------------------------------------------------------- sd_notify watchdog


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield path, sock
    sock.close()


def _run_collector(config: Path, log: Path, notify_path: str) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "collector", "run", "-c", str(config)], stdout=out, stderr=out, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)


def _datagrams(sock: socket.socket, until, limit_s: float = 60) -> list[tuple[float, str]]:
    """(monotonic arrival, text) of each datagram until ``until(got)`` is true or ``limit_s`` passed."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + limit_s
    while not until(got) and time.monotonic() < deadline:
        got.append((time.monotonic(), sock.recv(4096).decode()))
    return got


def test_collector_notifies_ready_watchdog_and_stopping(tmp_path, mosquitto, influxd, notify_socket):
    """Under a fake systemd: READY=1 first, WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM, exit 0."""
    path, sock = notify_socket
    db = influx(influxd.port, "notify")
    config = write_config(tmp_path / "c.toml", mosquitto.port, db.url, "notify", "notify", "notify-collector")
    proc = _run_collector(config, tmp_path / "collector.log", path)
    try:
        got = _datagrams(sock, lambda g: len(g) >= 5)
        assert got[0][1].startswith("READY=1\nSTATUS=ingesting from 127.0.0.1:")
        assert [text for _, text in got[1:]] == ["WATCHDOG=1"] * 4
        assert got[-1][0] - got[1][0] < 10  # about every 0.5 s
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        sock.settimeout(2)
        rest = []
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert rest and rest[-1] == "STOPPING=1" and set(rest[:-1]) <= {"WATCHDOG=1"}
    finally:
        stop(proc)


class _TricklingServer:
    """An HTTP server that never finishes answering: one byte of its response every 0.2 s, so a
    client's socket timeout never fires (a wedged proxy in front of InfluxDB)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.halt = threading.Event()
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"a" * 100_000:
                    if self.halt.wait(0.2):
                        return
                    conn.send(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.halt.set()
        self.sock.close()


def test_watchdog_pings_stop_and_the_collector_exits_when_a_write_hangs(tmp_path, mosquitto, notify_socket):
    """A write that never returns (the server trickles its answer, so no timeout fires): the
    pings stop, ``collector_failed`` names the hung writer, STOPPING=1, exit status 1."""
    path, sock = notify_socket
    server = _TricklingServer()
    config = write_config(tmp_path / "c.toml", mosquitto.port, server.url, "hang", "hang", "hang-collector",
                          retry_min_s=0.1, retry_max_s=0.5, writer_hung_s=4.0, metrics_interval_s=0.5)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 1"))
    log = tmp_path / "collector.log"
    proc = _run_collector(config, log, path)
    try:
        got = _datagrams(sock, lambda g: bool(g) and g[-1][1] == "STOPPING=1", limit_s=60)
        texts = [text for _, text in got]
        assert texts[0].startswith("READY=1") and texts[-1] == "STOPPING=1", texts[-3:]
        assert set(texts[1:-1]) == {"WATCHDOG=1"}
        # pinged while the write was younger than writer_hung_s (4 s; it began after 0.5 s), then not
        assert got[-1][0] - got[0][0] > 3.5
        assert proc.wait(30) == 1
        assert server.requests >= 1
        text = log.read_text()
        assert "collector_failed" in text and "writer hung" in text and "Traceback" not in text
    finally:
        stop(proc)
        server.close()


def test_the_watchdog_covers_the_alarm_thread(tmp_path, mosquitto, notify_socket):
    """With ``[alarms]``, the alarm thread's write of a station's state never returns (the ingest
    writer, with nothing to write, stays healthy): the pings stop, ``collector_failed`` names the
    hung alarm thread, exit status 1."""
    path, sock = notify_socket
    server = _TricklingServer()
    config = write_config(tmp_path / "c.toml", mosquitto.port, server.url, "ahang", "ahang", "ahang-collector",
                          alarms="tick_s = 0.2\nsettle_s = 0.5\n", retry_min_s=0.1, retry_max_s=0.5,
                          writer_hung_s=4.0, metrics_interval_s=3600.0)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 1"))
    log = tmp_path / "collector.log"
    proc = _run_collector(config, log, path)
    station = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ahang-station", protocol=mqtt.MQTTv5)
    station.connect("127.0.0.1", mosquitto.port)
    station.loop_start()
    try:
        got = _datagrams(sock, lambda g: len(g) >= 3)  # READY and pings: healthy before any write
        assert got[0][1].startswith("READY=1") and got[-1][1] == "WATCHDOG=1"
        # once the alarm service leads (a status before that is only mirrored, not stored) ...
        deadline = time.monotonic() + 60
        while "alarms_leader" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        # ... a station comes online: the leader stores its state, and that write hangs
        station.publish("ahang/v1/tower-9/status", b'{"state":"online","station":"tower-9"}', qos=1,
                        retain=True).wait_for_publish(5)
        got += _datagrams(sock, lambda g: bool(g) and g[-1][1] == "STOPPING=1", limit_s=60)
        assert got[-1][1] == "STOPPING=1" and proc.wait(30) == 1
        text = log.read_text()
        assert "collector_failed" in text and "alarm thread hung" in text and "Traceback" not in text, text[-2000:]
        assert server.requests >= 1
    finally:
        station.publish("ahang/v1/tower-9/status", b"", qos=1, retain=True).wait_for_publish(5)
        station.loop_stop()
        station.disconnect()
        stop(proc)
        server.close()


def test_the_collector_unit_is_notify_with_a_watchdog():
    unit = (ROOT / "deploy/systemd/fluxedge-collector.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=always",
                 "ExecStart=/opt/fluxedge/venv/bin/fluxedge collector run -c /etc/fluxedge/collector.toml"):
        assert f"\n{line}" in unit, line
