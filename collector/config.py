"""The collector's configuration file (TOML). Documented in deploy/examples/collector.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from station.config import MqttConfig
from station.configschema import between, build, check, positive, read_toml


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


@dataclass(frozen=True)
class IngestConfig:
    client_id: str = "fluxedge-collector"
    #: several collectors with the same group split the load ($share/GROUP/...)
    share_group: str | None = None
    batch_size: int = field(default=500, metadata=check(between(1, 100000)))
    batch_age_s: float = field(default=1.0, metadata=check(between(0.01, 60)))
    session_expiry_s: int = field(default=7 * 86400, metadata=check(between(0, 4294967295)))


@dataclass(frozen=True)
class CollectorConfig:
    mqtt: MqttConfig
    influxdb: InfluxConfig
    ingest: IngestConfig = field(default_factory=IngestConfig)


def load(path: str | Path) -> CollectorConfig:
    raw, _ = read_toml(path)
    return build(CollectorConfig, raw, path)
