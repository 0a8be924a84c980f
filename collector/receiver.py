"""A paho client with a lean receive path for a collector's QoS 0/1 PUBLISH stream.

paho 2.x spends about a third of a collector's CPU on each incoming message before our callback
runs (profiled with py-spy on ``bench/collector.py``): ``decode_publish`` builds a ``Properties``
object whose constructor fills two 27-entry tables, ``MQTTMessage`` creates a
``threading.Condition`` that only outgoing messages use, and ``_handle_on_message`` walks the
topic-filter trie even when no filtered callback exists. :class:`Receiver` does the same work
without those costs: it parses the variable header itself (MQTT 5.0 section 3.3.2), shares
``Properties``'s constant tables, and calls ``on_message`` directly. Anything else (QoS 2, MQTT
3.x, a packet it cannot parse, or once ``message_callback_add`` is used) goes through paho's own
code, so behaviour (including errors on malformed packets) stays paho's.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.mqttclient import Client

_TEMPLATE = Properties(PacketTypes.PUBLISH).__dict__  # packetType, types, names, properties: read-only tables


def publish_properties() -> Properties:
    """An empty PUBLISH ``Properties`` sharing the class's constant tables (about 1 us instead of 8)."""
    props = object.__new__(Properties)
    props.__dict__.update(_TEMPLATE)
    return props


class ReceivedMessage(mqtt.MQTTMessage):
    """An incoming message: ``MQTTMessage`` without the ``MQTTMessageInfo`` (a Condition) that
    only outgoing messages use."""

    __slots__ = ()

    def __init__(self, mid: int, topic: bytes) -> None:
        self.timestamp = 0.0
        self.state = mqtt.mqtt_ms_invalid
        self.dup = False
        self.mid = mid
        self._topic = topic
        self.payload = b""
        self.qos = 0
        self.retain = False
        self.info = None
        self.properties = None


class Receiver(Client):
    """``station.mqttclient.Client`` with the lean PUBLISH receive path described above."""

    _lean = True

    def message_callback_add(self, sub, callback) -> None:  # filtered callbacks need paho's path
        self._lean = False
        super().message_callback_add(sub, callback)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if not self._lean or qos == 2 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            message = _parse(packet, header, qos)
        except (IndexError, ValueError):
            return super()._handle_publish()  # malformed: paho raises its own error for it
        message.timestamp = time.monotonic()
        on_message = self._on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


def _parse(packet: bytes | bytearray, header: int, qos: int) -> ReceivedMessage:
    """A PUBLISH's topic, packet id, properties and payload (MQTT 5.0, section 3.3.2)."""
    topic_len = (packet[0] << 8) | packet[1]
    pos = 2 + topic_len
    if pos > len(packet):
        raise ValueError("topic runs past the packet")
    topic = bytes(packet[2:pos])
    mid = 0
    if qos:
        mid = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
    props_at = pos
    props_len, shift = 0, 0
    while True:  # Variable Byte Integer (section 1.5.5)
        byte = packet[pos]
        pos += 1
        props_len |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError("properties length longer than 4 bytes")
    if pos + props_len > len(packet):
        raise ValueError("properties run past the packet")
    properties = publish_properties()
    if props_len:
        properties.unpack(bytes(packet[props_at:pos + props_len]))  # bytes values, as paho gives
    message = ReceivedMessage(mid, topic)
    message.dup = bool(header & 0x08)
    message.qos = qos
    message.retain = bool(header & 0x01)
    message.properties = properties
    message.payload = bytes(packet[pos + props_len:])
    return message
