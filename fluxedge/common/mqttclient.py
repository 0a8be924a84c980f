"""paho-mqtt 2.x client set-up shared by the station and the collector: MQTT v5, VERSION2
callbacks, credentials, TLS and capped reconnect backoff.

paho retries failed connections silently (``on_connect_fail`` gets no reason); the client made
here keeps the last connection error in ``last_connect_error`` so callers can log why (refused,
TLS certificate not trusted, host unreachable).
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from fluxedge.common.mqttconfig import MqttConfig

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


class Client(mqtt.Client):
    """A paho client that remembers why its last connection attempt failed."""

    last_connect_error: str | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_connect_error = describe_error(exc)
            raise
        self.last_connect_error = None
        return rc


def describe_error(exc: OSError) -> str:
    """One line naming why a connection failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: broker certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def make_client(config: MqttConfig, client_id: str, manual_ack: bool = False,
                client_class: type[Client] = Client) -> Client:
    client = client_class(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    manual_ack=manual_ack)
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set(ca_certs=config.tls.ca_file, certfile=config.tls.cert_file, keyfile=config.tls.key_file)
    client.reconnect_delay_set(RECONNECT_MIN_S, getattr(config, "reconnect_max_s", RECONNECT_MAX_S))
    return client
