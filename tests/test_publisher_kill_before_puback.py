"""A spool row is deleted only after its PUBACK: the publishing process is killed with SIGKILL while
the broker withholds every PUBACK (a real mosquitto paused with SIGSTOP after the messages went out
on the wire), and every row is still in the spool; after a restart they are all delivered and the
spool empties. Real processes: the station's Spool and Publisher in a child interpreter, mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fluxedge.common.mqttconfig import MqttConfig
from fluxedge.demo.servers import start_mosquitto
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "fluxedge/v1/kill-tower/flux"
ROWS = 12

CHILD = r"""
import sys, time
from fluxedge.common.mqttconfig import MqttConfig
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool

spool = Spool(sys.argv[1])
pub = Publisher(spool, MqttConfig(host="127.0.0.1", port=int(sys.argv[2])), "kill-tower-station",
                "fluxedge/v1/kill-tower/status", b"online", b"offline")
pub.start()
deadline = time.monotonic() + 30
while not pub.connected and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # the retained status went out and was acknowledged
print("connected", pub.connected, flush=True)
sys.stdin.readline()  # the test has paused the broker: nothing will be acknowledged from now on
for i in range(int(sys.argv[3])):
    spool.put("flux", "fluxedge/v1/kill-tower/flux", f"period-{i:03d}".encode())
pub.wake()
while pub.inflight() < int(sys.argv[3]):
    time.sleep(0.01)
print("inflight", pub.inflight(), spool.depth(), flush=True)
time.sleep(600)
"""


@pytest.fixture
def broker(tmp_path):
    server = start_mosquitto(tmp_path / "broker")
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def subscriber(port: int) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kill-test-watch", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10)
    return client, got


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_kill_9_while_pubacks_are_withheld_keeps_every_row_and_restart_sends_them(tmp_path, broker):
    path = tmp_path / "spool.sqlite"
    watch, got = subscriber(broker.port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(broker.port), str(ROWS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert child.stdout.readline().split() == [b"connected", b"True"]
        os.kill(broker.process.pid, signal.SIGSTOP)  # from here on no PUBACK can come back
        child.stdin.write(b"go\n")
        child.stdin.flush()
        line = child.stdout.readline().split()
        assert line[:2] == [b"inflight", str(ROWS).encode()], line  # every row was published, none acknowledged
        time.sleep(0.5)
        child.kill()  # SIGKILL: no clean shutdown, no last chance to touch the spool
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    # every row is still in the spool: none was deleted without its PUBACK
    spool = Spool(path)
    assert spool.integrity_ok()
    assert [m.payload for m in spool.oldest(100)] == [f"period-{i:03d}".encode() for i in range(ROWS)]
    # the broker resumes (it may now pass on what reached it before the kill), the station restarts:
    # every row is delivered (at least once) and the spool empties
    os.kill(broker.process.pid, signal.SIGCONT)
    pub = Publisher(spool, MqttConfig(host="127.0.0.1", port=broker.port), "kill-tower-station",
                    "fluxedge/v1/kill-tower/status", b"online", b"offline")
    pub.start()
    try:
        assert wait_for(lambda: spool.depth() == 0, 30), spool.depth()
        assert wait_for(lambda: {f"period-{i:03d}".encode() for i in range(ROWS)} <= set(got), 10), got
    finally:
        pub.stop()
        watch.disconnect()
        watch.loop_stop()
        spool.close()
