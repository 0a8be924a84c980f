"""The ``[mqtt]`` section both the station and the collector read: broker address, credentials,
TLS (:class:`TlsConfig`), keepalive, topic prefix and reconnect backoff."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fluxedge.common.configschema import between, check
from fluxedge.common.mqttnames import host_problem, topic_prefix_problem


def _readable_file(value: str) -> str | None:
    path = Path(value).expanduser()
    if not path.is_file():
        return f"file {value} does not exist"
    try:
        path.open("rb").close()
    except OSError as exc:
        return f"cannot read {value}: {exc.strerror}"
    return None


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker: the CA that signed the broker's certificate, and optionally this
    client's own certificate and key (PEM files) for brokers that require client certificates."""

    ca_file: str = field(metadata=check(_readable_file))
    cert_file: str | None = field(default=None, metadata=check(_readable_file))
    key_file: str | None = field(default=None, metadata=check(_readable_file))

    def validate(self) -> list[tuple[str, str]]:
        if (self.cert_file is None) != (self.key_file is None):
            return [("cert_file" if self.cert_file is None else "key_file",
                     "cert_file and key_file go together (client certificate and its key)")]
        import ssl

        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError) as exc:
            return [("ca_file", f"not a PEM CA certificate: {exc}")]
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                return [("cert_file", f"certificate and key do not load together: {exc}")]
        return []


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=check(between(1, 65535)))
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    #: mosquitto >= 2.0.12 rejects a keepalive of 0
    keepalive_s: int = field(default=60, metadata=check(between(5, 65535)))
    topic_prefix: str = "fluxedge"
    #: reconnect backoff doubles from 1 s up to this cap
    reconnect_max_s: int = field(default=30, metadata=check(between(1, 3600)))
    tls: TlsConfig | None = None

    def validate(self) -> list[tuple[str, str]]:
        problem = host_problem(self.host)
        if problem:
            return [("host", problem)]
        problem = topic_prefix_problem(self.topic_prefix)
        if problem:
            return [("topic_prefix", problem)]
        if self.password is not None and self.username is None:
            return [("password", "a password needs a username")]
        return []
