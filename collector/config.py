"""The collector's configuration file (TOML). Documented in deploy/examples/collector.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from station.config import MqttConfig
from station.configschema import between, build, check, positive, read_toml
from station.messages import DATA_KINDS


@dataclass(frozen=True)
class InfluxConfig:
    url: str
    #: 1: POST /write (InfluxDB 1.x natively, 2.x/3.x through their v1 compatibility API);
    #: 2: POST /api/v2/write through influxdb-client (InfluxDB 1.8+, 2.x, 3.x)
    api: Literal[1, 2] = 1
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    org: str = "-"
    bucket: str | None = None
    timeout_s: float = field(default=10.0, metadata=check(positive))

    def validate(self) -> list[tuple[str, str]]:
        if not self.url.startswith(("http://", "https://")):
            return [("url", f"must start with http:// or https://, got {self.url!r}")]
        if self.api == 1 and not self.database:
            return [("database", "required when api = 1")]
        if self.api == 2 and not self.bucket:
            return [("bucket", "required when api = 2 (for InfluxDB 1.8 use 'database/retention_policy')")]
        if self.api == 2 and not self.token:
            return [("token", "required when api = 2 (for InfluxDB 1.8 use 'username:password')")]
        return []

    @property
    def query_database(self) -> str:
        """The database InfluxQL queries name (for api 2, the bucket's database part)."""
        return self.database or (self.bucket or "").split("/")[0]


def _kinds(value: list[str]) -> str | None:
    unknown = [k for k in value if k not in DATA_KINDS]
    if unknown or not value:
        return f"must be a non-empty list of {', '.join(DATA_KINDS)}, got {value!r}"
    return None


@dataclass(frozen=True)
class IngestConfig:
    client_id: str = "fluxedge-collector"
    #: several collectors with the same group split the load ($share/GROUP/...)
    share_group: str | None = None
    #: message kinds to subscribe to (PREFIX/v1/+/KIND)
    kinds: list[str] = field(default_factory=lambda: list(DATA_KINDS), metadata=check(_kinds))
    #: a write holds at most this many messages ...
    batch_size: int = field(default=500, metadata=check(between(1, 65535)))
    #: ... or this many points ...
    batch_points: int = field(default=10000, metadata=check(between(1, 1_000_000)))
    #: ... or what arrived within this time [s] after the batch's first message
    batch_age_s: float = field(default=1.0, metadata=check(between(0.01, 60)))
    #: MQTT v5 Receive Maximum: unacknowledged messages the broker may send us. It must be at least
    #: batch_size or batches can never fill (the broker stops at this many); 2 x batch_size lets
    #: the next batch fill while the previous one is being written.
    receive_maximum: int = field(default=1000, metadata=check(between(1, 65535)))
    session_expiry_s: int = field(default=7 * 86400, metadata=check(between(0, 4294967295)))
    #: first and longest pause between write retries [s] (doubling in between)
    retry_min_s: float = field(default=0.5, metadata=check(between(0.01, 60)))
    retry_max_s: float = field(default=30.0, metadata=check(between(0.1, 3600)))
    #: how often the collector logs and writes its own metrics (measurement "collector") [s]
    metrics_interval_s: float = field(default=60.0, metadata=check(between(0.1, 86400)))

    def validate(self) -> list[tuple[str, str]]:
        if self.receive_maximum < self.batch_size:
            return [("receive_maximum", f"must be at least batch_size ({self.batch_size}), got "
                                        f"{self.receive_maximum}: batches could never fill")]
        if self.retry_max_s < self.retry_min_s:
            return [("retry_max_s", f"must be at least retry_min_s ({self.retry_min_s})")]
        return []


@dataclass(frozen=True)
class CollectorConfig:
    mqtt: MqttConfig
    influxdb: InfluxConfig
    ingest: IngestConfig = field(default_factory=IngestConfig)


def load(path: str | Path) -> CollectorConfig:
    raw, _ = read_toml(path)
    return build(CollectorConfig, raw, path)
