"""The collector's configuration file (TOML). Documented in deploy/examples/collector.toml."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from collector.alarms.notify import NotifyRoute
from collector.alarms.rules import FleetRuleConfig, effective_rules
from collector.alarms.tracker import STATION_RULE_CHECKS
from collector.lineprotocol import escape_tag
from fluxedge.common.configschema import between, build, check, positive, read_toml
from fluxedge.common.messages import DATA_KINDS
from fluxedge.common.mqttconfig import MqttConfig
from fluxedge.common.mqttnames import control_chars, host_problem, one_level
from fluxedge.common.sitetime import zone_problem

#: longest client id [bytes of UTF-8]. MQTT 5 allows 65,535 and obliges a broker to accept only 23;
#: mosquitto 2.0 sets no limit of its own. 128 holds any naming scheme (role, fully qualified host,
#: process number) while keeping the broker's log lines, its persistence file and the InfluxDB tag
#: ``collector`` (the metrics' series key) of sane size.
MAX_CLIENT_ID_BYTES = 128
def _url(value: str) -> str | None:
    if control_chars(value) or any(c.isspace() for c in value):
        return f"must not contain spaces or control characters, got {value[:80]!r}"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc}), got {value[:80]!r}"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https://, got {value[:80]!r}"
    if not parts.hostname:
        return f'names no host, e.g. "http://127.0.0.1:8086", got {value[:80]!r}'
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials: use username and password (api 1) or token (api 2)"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return f"must not have a query or fragment (the collector appends /write?...), got {value[:80]!r}"
    if port == 0:
        return "port must be 1..65535, got 0"
    problem = host_problem(parts.hostname)
    return None if problem is None else f"host {problem}"


_share_group = one_level("the GROUP of $share/GROUP/...; leave the key out for no shared subscription")
def _client_id(value: str) -> str | None:
    size = len(value.encode())
    if not 1 <= size <= MAX_CLIENT_ID_BYTES:
        return (f"must be 1 to {MAX_CLIENT_ID_BYTES} bytes, got {size}: a fixed id, unique per collector process, "
                "names its persistent session on the broker")
    if control_chars(value) or any(c in value for c in "+#/"):
        return (f"must not contain '+', '#', '/' or control characters (they break the broker's per-client-id "
                f"%c ACL patterns), got {value[:80]!r}")
    try:
        escape_tag(value)  # it also tags the collector's own metrics in InfluxDB
    except ValueError:
        return f"must not end in a backslash or have one before a comma, '=' or space, got {value[:80]!r}"
    return None


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
        problem = _url(self.url)
        if problem:
            return [("url", problem)]
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
    #: the MQTT client id: fixed and unique per collector process (the broker keeps this persistent
    #: session's messages); with several processes give each its own (and, if the broker wants it,
    #: its own [mqtt] username and password)
    client_id: str = field(default="fluxedge-collector", metadata=check(_client_id))
    #: several collectors with the same group split the load ($share/GROUP/...)
    share_group: str | None = field(default=None, metadata=check(_share_group))
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
    #: the writer counts as hung (watchdog pings stop, the collector exits with status 1) when it
    #: has neither come round its loop nor attempted a write for this long [s]; must exceed
    #: retry_max_s + 2 x influxdb.timeout_s, the longest a healthy writer goes between attempts
    writer_hung_s: float = field(default=120.0, metadata=check(between(1, 86400)))

    def validate(self) -> list[tuple[str, str]]:
        if self.receive_maximum < self.batch_size:
            return [("receive_maximum", f"must be at least batch_size ({self.batch_size}), got "
                                        f"{self.receive_maximum}: batches could never fill")]
        if self.retry_max_s < self.retry_min_s:
            return [("retry_max_s", f"must be at least retry_min_s ({self.retry_min_s})")]
        return []


@dataclass(frozen=True)
class AlarmsConfig:
    """``[alarms]``: fleet rules, notifications, and how the collectors share the work."""

    #: fleet alarms and notifications in this collector process (one of several is the leader)
    enabled: bool = True
    #: rules are evaluated this often [s]
    tick_s: float = field(default=1.0, metadata=check(between(0.05, 60)))
    #: after (re)connecting, a collector waits this long for the retained alarm state and the other
    #: collectors' presence before it may act as the leader [s]
    settle_s: float = field(default=3.0, metadata=check(between(0, 600)))
    #: delivery attempts per notification and URL, with the pause doubling between them [s]
    notify_attempts: int = field(default=5, metadata=check(between(1, 100)))
    notify_retry_min_s: float = field(default=2.0, metadata=check(between(0.001, 3600)))
    notify_retry_max_s: float = field(default=120.0, metadata=check(between(0.001, 86400)))
    #: the alarm service's own MQTT account (default: [mqtt]'s). A broker that uses the account name
    #: as client id (the shipped one) gives each account one connection: then it needs its own
    username: str | None = None
    password: str | None = None
    #: the account ``fluxedge alarms`` connects with (reads the fleet state, writes its commands)
    operator_username: str | None = None
    operator_password: str | None = None
    rule: list[FleetRuleConfig] = field(default_factory=list)
    notify: list[NotifyRoute] = field(default_factory=list)

    def validate(self) -> list[tuple[str, str]]:
        if self.password is not None and self.username is None:
            return [("password", "a password needs a username")]
        if self.operator_password is not None and self.operator_username is None:
            return [("operator_password", "a password needs a username")]
        names = [r.name for r in self.rule]
        for i, name in enumerate(names):
            if name in names[:i]:
                return [(f"rule[{i}].name", f"rule {name!r} is configured twice")]
        known = {r.name for r in effective_rules(self.rule)} | set(STATION_RULE_CHECKS)
        for i, route in enumerate(self.notify):
            unknown = [r for r in route.rules if r not in known]
            if unknown:
                return [(f"notify[{i}].rules", f"no rule named {unknown[0]!r} (fleet rules and the station's: "
                                               f"{', '.join(sorted(known))})")]
            if route.name in [r.name for r in self.notify[:i]]:
                return [(f"notify[{i}].name", f"route {route.name!r} is configured twice")]
        if self.notify_retry_max_s < self.notify_retry_min_s:
            return [("notify_retry_max_s", f"must be at least notify_retry_min_s ({self.notify_retry_min_s:g})")]
        return []


_AMERIFLUX_SITE_ID = re.compile(r"[A-Z]{2}-[A-Za-z0-9]{3}")


def _ameriflux_site_id(value: str) -> str | None:
    if _AMERIFLUX_SITE_ID.fullmatch(value):
        return None
    return f"an AmeriFlux/FLUXNET site id is CC-XXX (country code, dash, three letters or digits), got {value!r}"


def _standard_zone(value: str) -> str | None:
    """An IANA zone (its standard time is used: AmeriFlux stamps local standard time, no DST)."""
    return zone_problem(value)


@dataclass(frozen=True)
class SiteConfig:
    """``[[site]]``: what exports and budgets need to know of a station's site."""

    #: the station id (its MQTT topic level)
    station: str
    #: the AmeriFlux/FLUXNET site id, e.g. "US-Mg1": the export's file names
    id: str = field(metadata=check(_ameriflux_site_id))
    #: the site's time zone (IANA, e.g. "America/Belize"); exports use its standard time all year
    time_zone: str = field(default="UTC", metadata=check(_standard_zone))


def _user_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value):
        return None
    return f"1 to 64 of A-Z, a-z, 0-9, '_', '.', '@', '-', got {value[:80]!r}"


def _password_hash(value: str) -> str | None:
    if value.count("$") == 5 and value.startswith("scrypt$"):
        return None
    return "must be a hash from 'fluxedge web --hash-password' (scrypt$...), never the password itself"


@dataclass(frozen=True)
class WebUser:
    """``[[web.user]]``: someone who may acknowledge alarms and silence stations."""

    name: str = field(metadata=check(_user_name))
    password_hash: str = field(metadata=check(_password_hash))


@dataclass(frozen=True)
class WebConfig:
    """``[web]``: the fleet page (``fluxedge web``). Read-only for everyone who can reach it;
    acknowledging and silencing need a signed-in user."""

    #: the address to listen on: localhost unless you put it behind a proxy or a VPN on purpose
    bind: str = "127.0.0.1"
    port: int = field(default=8080, metadata=check(between(1, 65535)))
    #: the fleet page reloads its data this often [s]
    refresh_s: float = field(default=30.0, metadata=check(between(2, 3600)))
    #: a station without any message for this long shows as offline on the page [s]
    offline_after_s: float = field(default=300.0, metadata=check(between(5, 86400)))
    #: the station page's plots cover this many days
    station_days: float = field(default=7.0, metadata=check(between(0.01, 366)))
    user: list[WebUser] = field(default_factory=list)


@dataclass(frozen=True)
class CollectorConfig:
    mqtt: MqttConfig
    influxdb: InfluxConfig
    ingest: IngestConfig = field(default_factory=IngestConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    site: list[SiteConfig] = field(default_factory=list)
    web: WebConfig = field(default_factory=WebConfig)

    def site_of(self, station: str) -> SiteConfig | None:
        return next((s for s in self.site if s.station == station), None)

    def validate(self) -> list[tuple[str, str]]:
        """What ``[mqtt]`` (shared with the station's schema) and the sections together must hold."""
        # [mqtt] host and topic_prefix are checked by MqttConfig itself (fluxedge.common.mqttnames)
        stations = [s.station for s in self.site]
        for i, name in enumerate(stations):
            if name in stations[:i]:
                return [(f"site[{i}].station", f"station {name!r} has two [[site]] tables")]
        if self.mqtt.client_id is not None:
            return [("mqtt.client_id", "the collector's client id is ingest.client_id; remove this key")]
        al = self.alarms
        if al.enabled and self.mqtt.username is not None and al.username in (None, self.mqtt.username):
            return [("alarms.username", f"the alarm service needs an MQTT account of its own besides [mqtt] "
                                        f"username {self.mqtt.username!r}: a broker that uses account names as "
                                        f"client ids (the shipped one) gives each account one connection "
                                        f"(deploy/mosquitto/fluxedge.acl: collector-alarms); or [alarms] "
                                        f"enabled = false")]
        longest_s = self.ingest.retry_max_s + 2 * self.influxdb.timeout_s
        if self.ingest.writer_hung_s <= longest_s:
            return [("ingest.writer_hung_s", f"must exceed retry_max_s + 2 x influxdb.timeout_s ({longest_s:g} s), "
                                             f"the longest a healthy writer goes between write attempts, got "
                                             f"{self.ingest.writer_hung_s:g}")]
        return []


def alarms_mqtt(config: CollectorConfig) -> MqttConfig:
    """The alarm service's [mqtt] settings: its own account where one is configured."""
    al = config.alarms
    if al.username is None:
        return config.mqtt
    return replace(config.mqtt, username=al.username, password=al.password)


def operator_mqtt(config: CollectorConfig) -> MqttConfig:
    """What ``fluxedge alarms`` connects with: the operator account, else the alarm service's."""
    al = config.alarms
    if al.operator_username is None:
        return alarms_mqtt(config)
    return replace(config.mqtt, username=al.operator_username, password=al.operator_password)


def load(path: str | Path) -> CollectorConfig:
    raw, _ = read_toml(path)
    return build(CollectorConfig, raw, path)
