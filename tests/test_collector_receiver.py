"""collector.receiver: the lean PUBLISH path must deliver exactly what paho's own path delivers."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.receiver import Receiver, _parse


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int, props: Properties | None,
                   dup: bool = False, retain: bool = False) -> tuple[int, bytes]:
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    body += (props or Properties(PacketTypes.PUBLISH)).pack()
    return header, body + payload


def full_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    props.ResponseTopic = "reply/here"
    props.CorrelationData = b"\x00\x01corr"
    props.UserProperty = ("station", "tower-0001")
    props.UserProperty = ("schema", "1")
    props.SubscriptionIdentifier = 200_000  # a 3-byte Variable Byte Integer
    return props


def same(ours, theirs) -> None:
    assert ours.topic == theirs.topic.decode()
    assert ours.payload == theirs.payload and type(ours.payload) is bytes
    assert (ours.qos, ours.mid, ours.dup, ours.retain) == (theirs.qos, theirs.mid, theirs.dup, theirs.retain)
    assert ours.properties.json() == theirs.properties.json()
    assert ours.properties.packetType == PacketTypes.PUBLISH


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("props", [None, "full"])
@pytest.mark.parametrize("payload", [b"", b'{"schema":1}', bytes(range(256)) * 600])
def test_parse_matches_paho(qos, props, payload):
    properties = full_properties() if props else None
    header, packet = publish_packet(b"fluxedge/v1/tower-0001/met", payload, qos, 4242, properties,
                                    dup=qos == 1, retain=True)
    theirs = _packet.decode_publish(header, bytearray(packet), mqtt.MQTTv5)
    same(_parse(bytearray(packet), header, qos), theirs)


def test_empty_properties_do_not_share_state():
    header, packet = publish_packet(b"a/b", b"x", 1, 1, None)
    one, two = _parse(packet, header, 1), _parse(packet, header, 1)
    one.properties.ContentType = "text/plain"
    assert two.properties.json() == {} and one.properties.json() == {"ContentType": "text/plain"}


@pytest.mark.parametrize("cut", [1, 3, 9, 11, 12])
def test_truncated_packets_are_refused(cut):
    """A packet cut inside its topic, packet id or properties raises, so the receiver hands it
    to paho, whose decoder names the error."""
    header, packet = publish_packet(b"fluxedge/v1", b"", 1, 7, full_properties())
    with pytest.raises((IndexError, ValueError)):
        _parse(packet[:cut], header, 1)
    with pytest.raises(Exception):  # noqa: B017 - paho raises struct.error / MalformedPacket variants
        _packet.decode_publish(header, packet[:cut], mqtt.MQTTv5)


def test_receiver_and_paho_receive_the_same_over_mosquitto(mosquitto):
    """Real broker: the lean receiver (manual ack) and a stock paho client subscribed side by side
    get the same messages, properties included; unacknowledged QoS 1 messages come back after a
    reconnect with a persistent session, acknowledged ones do not."""
    got: dict[str, list] = {"lean": [], "paho": []}
    events = {name: threading.Event() for name in got}
    n = 20

    def on_message(name):
        def handler(client, userdata, message):
            got[name].append(message)
            if len(got[name]) >= n:
                events[name].set()
        return handler

    def subscriber(cls, name, client_id):
        client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                     manual_ack=cls is Receiver)
        client.on_message = on_message(name)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        client.connect("127.0.0.1", mosquitto.port, clean_start=cls is not Receiver, properties=props)
        client.subscribe("recv-test/#", qos=1)
        client.loop_start()
        return client

    lean = subscriber(Receiver, "lean", "recv-test-lean")
    stock = subscriber(mqtt.Client, "paho", "recv-test-paho")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recv-test-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        time.sleep(0.3)
        props = full_properties()
        del props.SubscriptionIdentifier  # set by the broker, not the publisher
        infos = [pub.publish(f"recv-test/s{i % 3}/met", f'{{"i":{i}}}'.encode(), qos=i % 2,
                             properties=props if i % 4 == 0 else None) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)
        assert events["lean"].wait(10) and events["paho"].wait(10)
        key = lambda m: m.payload  # noqa: E731
        for ours, theirs in zip(sorted(got["lean"], key=key), sorted(got["paho"], key=key), strict=True):
            assert ours.topic == theirs.topic and ours.payload == theirs.payload and ours.qos == theirs.qos
            assert ours.properties.json() == theirs.properties.json()
        assert sum(1 for m in got["lean"] if "UserProperty" in m.properties.json()) == 5
        # acknowledge half of the QoS 1 messages, then reconnect: exactly the other half returns
        qos1 = sorted((m for m in got["lean"] if m.qos == 1), key=key)
        for m in qos1[::2]:
            lean.ack(m.mid, 1)
        time.sleep(0.3)
        lean.disconnect()
        lean.loop_stop()
        got["lean"].clear()
        events["lean"].clear()
        lean = subscriber(Receiver, "lean", "recv-test-lean")
        deadline = time.monotonic() + 10
        while len(got["lean"]) < len(qos1[1::2]) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert sorted(m.payload for m in got["lean"]) == [m.payload for m in qos1[1::2]]
        assert all(m.dup for m in got["lean"])
    finally:
        for client in (lean, stock, pub):
            client.disconnect()
            client.loop_stop()
