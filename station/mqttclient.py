"""paho-mqtt 2.x client set-up shared by the station and the collector: MQTT v5, VERSION2
callbacks, credentials, TLS and capped reconnect backoff."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from station.config import MqttConfig

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


def make_client(config: MqttConfig, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set(ca_certs=config.tls.ca_file, certfile=config.tls.cert_file, keyfile=config.tls.key_file)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client
