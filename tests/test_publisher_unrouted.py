"""A message the broker accepts but routes to nobody (MQTT v5 PUBACK 0x10 "No matching subscribers",
as mosquitto 2.0 answers right after a restart, before the collectors of a shared subscription are
back) is not delivered: the publisher keeps it in the spool, pauses, and sends everything again,
oldest first, once somebody listens."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from fluxedge.common.mqttconfig import MqttConfig
from fluxedge.demo.servers import start_mosquitto
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool

TOPIC = "fluxedge/v1/unrouted-1/flux"
DIAG = "fluxedge/v1/unrouted-1/diag"


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def mosquitto(tmp_path):
    """A broker of its own: on the shared one, other tests' persistent sessions stay subscribed."""
    server = start_mosquitto(tmp_path / "broker")
    yield server
    server.stop()


def listen(port, topic, client_id):
    got, subscribed = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.payload.decode())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    assert subscribed.wait(10)
    return sub, got


def test_unrouted_messages_stay_spooled_and_arrive_in_order_once_subscribed(mosquitto, tmp_path):
    """Fluxes nobody takes are held; the diagnostics somebody takes flow past them meanwhile."""
    diag_sub, diag_got = listen(mosquitto.port, DIAG, "diag-listener")
    spool = Spool(tmp_path / "spool.sqlite")
    for i in range(5):
        spool.put("flux", TOPIC, f"m{i}".encode())
        spool.put("diag", DIAG, f"d{i}".encode())
    pub = Publisher(spool, MqttConfig(host="127.0.0.1", port=mosquitto.port, keepalive_s=5), "unrouted-station",
                    "fluxedge/v1/unrouted-1/status", b"online", b"offline")
    pub.start()
    try:
        assert wait_for(lambda: pub.unrouted >= 1, 10), "the broker never answered 'no matching subscribers'"
        assert wait_for(lambda: len(diag_got) == 5, 10), diag_got
        assert diag_got == [f"d{i}" for i in range(5)]
        time.sleep(1.0)
        assert spool.depth() == 5  # the fluxes: nothing deleted, nobody got them
        sub, got = listen(mosquitto.port, TOPIC, "unrouted-listener")
        try:
            assert wait_for(lambda: len(got) >= 5 and spool.depth() == 0, 20), (got, spool.depth())
        finally:
            sub.disconnect()
            sub.loop_stop()
        assert got == [f"m{i}" for i in range(5)]  # each once, oldest first
    finally:
        pub.stop(drain_s=0.5)
        diag_sub.disconnect()
        diag_sub.loop_stop()
