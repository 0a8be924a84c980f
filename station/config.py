"""The station's configuration file (TOML), validated on load. Documented in deploy/examples/station.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.families import FAMILIES, family, streaming_families
from firmware_bridge.link import parse_address
from fluxedge.common.configschema import ConfigError, between, build, check, non_negative, positive, read_toml
from fluxedge.common.mqttconfig import MqttConfig
from fluxedge.common.sitetime import daylight_saving_problem, zone_problem
from station.health.alarms import AlarmRuleConfig
from station.health.diagnostics import diag_source
from station.health.monitorconfig import DiagnosticsConfig, ModbusDeviceConfig, StatusConfig, check_buses

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _station_id(value: str) -> str | None:
    if not _ID.match(value):
        return "must be 1-64 letters, digits, '-' or '_' (it becomes part of MQTT topics)"
    return None


def _site_id(value: str) -> str | None:
    if value.startswith("_"):  # PREFIX/v1/_deadletter is the collector's dead-letter topic
        return f"{value!r} is reserved: topic levels starting with '_' are the network's own (the dead-letter " \
               f"topic is PREFIX/v1/_deadletter)"
    return _station_id(value)


def _driver(value: str) -> str | None:
    if value not in FAMILIES:
        return f"unknown driver {value!r}; known: {', '.join(sorted(FAMILIES))}"
    if family(value).TRANSPORT == "modbus":
        return f"{value!r} is a polled Modbus bus, not a streaming instrument; streaming drivers: " \
               f"{', '.join(sorted(streaming_families()))}"
    return None


def _port(value: str) -> str | None:
    try:
        parse_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def _time_zone(value: str) -> str | None:
    """A known IANA zone without daylight saving: the archive's file names are in its clock, which
    must not repeat an hour every autumn (AmeriFlux wants standard time anyway)."""
    return zone_problem(value) or daylight_saving_problem(value)


def _period(value: int) -> str | None:
    if value <= 0 or 86400 % value:
        return f"must divide a day evenly (e.g. 1800 for 30 min), got {value}"
    return None


@dataclass(frozen=True)
class SiteConfig:
    id: str = field(metadata=check(_site_id))
    latitude_deg: float = field(metadata=check(between(-90, 90)))
    longitude_deg: float = field(metadata=check(between(-180, 180)))
    altitude_m: float = 0.0
    canopy_height_m: float = field(default=0.0, metadata=check(non_negative))
    measurement_height_m: float = field(default=2.0, metadata=check(positive))
    #: zero-plane displacement; None means 0.67 x canopy height (EddyPro's default)
    displacement_height_m: float | None = None
    #: the site's time zone (IANA name without daylight saving): the raw archive's file names and its
    #: .ghg ``Timezone`` header, so that ``flux process`` stamps the archive in local standard time
    time_zone: str = field(default="UTC", metadata=check(_time_zone))

    def validate(self) -> list[tuple[str, str]]:
        if self.displacement_height_m is not None and self.displacement_height_m >= self.measurement_height_m:
            return [("displacement_height_m", "must be below measurement_height_m")]
        if self.displacement_height_m is None and 0.67 * self.canopy_height_m >= self.measurement_height_m:
            return [("canopy_height_m", "0.67 x canopy height (the displacement) must be below "
                                        "measurement_height_m")]
        return []

    @property
    def displacement_m(self) -> float:
        if self.displacement_height_m is not None:
            return self.displacement_height_m
        return 0.67 * self.canopy_height_m


@dataclass(frozen=True)
class AcquisitionConfig:
    averaging_period_s: int = field(default=1800, metadata=check(_period))
    sample_rate_hz: float = field(default=20.0, metadata=check(between(1, 100)))
    #: periods with more missing samples than this are not processed (EddyPro default 10 %)
    max_missing_pct: float = field(default=10.0, metadata=check(between(0, 100)))


#: largest separation of an analyser from the sonic [m] (a few tens of cm is usual, 1-2 m a lot)
MAX_SEPARATION_M = 10.0


@dataclass(frozen=True)
class InstrumentConfig:
    name: str = field(metadata=check(_station_id))
    driver: str = field(metadata=check(_driver))
    #: serial device path, or tcp://HOST:PORT for Ethernet instruments (LI-7550, LI-7700)
    port: str = field(metadata=check(_port))
    baud: int | None = None
    #: azimuth of the sonic's +x axis from true north [deg]
    north_offset_deg: float = field(default=0.0, metadata=check(between(-360, 360)))
    #: position relative to the sonic's centre [m]; an analyser further away sees other eddies
    northward_separation_m: float = field(default=0.0, metadata=check(between(-MAX_SEPARATION_M, MAX_SEPARATION_M)))
    eastward_separation_m: float = field(default=0.0, metadata=check(between(-MAX_SEPARATION_M, MAX_SEPARATION_M)))
    vertical_separation_m: float = field(default=0.0, metadata=check(between(-MAX_SEPARATION_M, MAX_SEPARATION_M)))

    def validate(self) -> list[tuple[str, str]]:
        if self.baud is not None and self.baud not in BAUD_RATES:
            return [("baud", f"must be a standard rate ({', '.join(map(str, BAUD_RATES))}), got {self.baud}")]
        return []

    @property
    def role(self) -> str:
        return family(self.driver).ROLE

    @property
    def baud_rate(self) -> int:
        return self.baud or getattr(family(self.driver), "DEFAULT_BAUD", 9600)


BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


@dataclass(frozen=True)
class SpoolConfig:
    path: str
    max_mb: float = field(default=512.0, metadata=check(positive))
    #: how long a message stays in the spool after the broker acknowledged it [s]; it is sent again
    #: if the link drops meanwhile (the broker may have died before saving it to disk). Must exceed
    #: the broker's autosave_interval + its longest save + 1.5 x keepalive (deploy/mosquitto/README.md)
    keep_acked_s: float = field(default=300.0, metadata=check(between(0, 86400)))


def _one_of(*choices: str):
    def check_choice(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"
    return check_choice


@dataclass(frozen=True)
class ProcessingConfig:
    """How the station processes each period; the defaults are EddyPro's (see station.flux.pipeline)."""

    despiking: str = field(default="vickers_mahrt", metadata=check(_one_of("vickers_mahrt", "mauder", "none")))
    statistical_tests: bool = True  # all Vickers & Mahrt (1997) tests
    rotation: str = field(default="double", metadata=check(_one_of("double", "triple")))
    detrending: str = field(default="block", metadata=check(_one_of("block", "linear", "running_mean",
                                                                    "exponential")))
    detrend_time_constant_s: float = field(default=250.0, metadata=check(positive))
    time_lag: str = field(default="covariance_max_default",
                          metadata=check(_one_of("covariance_max_default", "covariance_max", "fixed", "none")))
    spectral_corrections: str = field(default="moncrieff", metadata=check(_one_of("moncrieff", "horst", "none")))
    qc_flags: str = field(default="mauder_foken_2004",
                          metadata=check(_one_of("mauder_foken_2004", "foken_2003", "goeckede_2006")))
    footprint: str = field(default="kljun_2004", metadata=check(_one_of("kljun_2004", "kljun_2015", "none")))
    random_uncertainty: bool = True
    #: LI-7500 surface heating in the density corrections (Burba et al. 2008)
    self_heating: str = field(default="none", metadata=check(_one_of("none", "burba_linear")))


@dataclass(frozen=True)
class ArchiveConfig:
    """The raw archive: one LI-COR ``.ghg`` file per averaging period in ``<directory>/raw/YYYY/MM/``.
    After each write the oldest files are deleted while the file system holding them is fuller than
    ``max_disk_used_pct`` [%] or has less than ``min_free_mb`` [MiB] free (the newest file is kept)."""

    enabled: bool = True
    #: default: an ``archive`` directory next to the spool file
    directory: str | None = None
    max_disk_used_pct: float = field(default=90.0, metadata=check(between(1, 100)))
    min_free_mb: float = field(default=0.0, metadata=check(non_negative))

    def root(self, spool_path: str) -> Path:
        """The archive directory (``directory``, or ``archive`` beside the spool)."""
        if self.directory is not None:
            return Path(self.directory).expanduser()
        return Path(spool_path).expanduser().parent / "archive"


@dataclass(frozen=True)
class StationConfig:
    site: SiteConfig
    instruments: list[InstrumentConfig]
    mqtt: MqttConfig
    spool: SpoolConfig
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    #: diagnostics interval; alarm rule overrides; slow Modbus met sensors; the status file (station.health)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    alarm: list[AlarmRuleConfig] = field(default_factory=list)
    modbus: list[ModbusDeviceConfig] = field(default_factory=list)
    status: StatusConfig = field(default_factory=StatusConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)

    def validate(self) -> list[tuple[str, str]]:
        names = [i.name for i in self.instruments]
        if len(set(names)) != len(names):
            return [("instruments", "instrument names must be unique")]
        sources = [i.name.lower() for i in self.instruments] + ["station"]
        for k, dev in enumerate(self.modbus):
            if dev.name in sources:
                return [(f"modbus[{k}].name", f"{dev.name!r} is already an instrument, another Modbus sensor or "
                                              f"'station' (names identify diagnostics)")]
            sources.append(dev.name)
        shared_bus = check_buses(self.modbus)  # sensors on one port: one bus, own addresses
        if shared_bus:
            return shared_bus
        known = {diag_source(i.name) for i in self.instruments} | {dev.name for dev in self.modbus} | {"station"}
        for k, rule in enumerate(self.alarm):
            for source in rule.sources:
                if source not in known:
                    return [(f"alarm[{k}].sources", f"{source!r} is not an instrument, a Modbus sensor or 'station' "
                                                    f"of this config; sources: {', '.join(sorted(known))}")]
        sonics = [i for i in self.instruments if i.role == "sonic"]
        if len(sonics) != 1:
            return [("instruments", f"needs exactly one sonic anemometer, found {len(sonics)}")]
        for inst in self.instruments:
            try:
                family(inst.driver).command_start(self.acquisition.sample_rate_hz)
            except ValueError as exc:
                return [("acquisition.sample_rate_hz", f"instrument {inst.name!r}: {exc}")]
        return []

    @property
    def sonic(self) -> InstrumentConfig:
        return next(i for i in self.instruments if i.role == "sonic")

    @property
    def gas_analysers(self) -> list[InstrumentConfig]:
        return [i for i in self.instruments if i.role == "gas"]


def load(path: str | Path) -> tuple[StationConfig, str]:
    """The validated station config and its hash; raises :class:`ConfigError`."""
    raw, digest = read_toml(path)
    config = build(StationConfig, raw, path)
    spool = Path(config.spool.path).expanduser()
    problem = _file_path_problem(spool)
    if problem:
        raise ConfigError(path, "spool.path", problem)
    if not spool.parent.is_dir():
        raise ConfigError(path, "spool.path", f"directory {spool.parent} does not exist")
    if config.archive.enabled and config.archive.directory is not None:
        root = config.archive.root(config.spool.path)
        problem = _virtual_fs_problem(root)
        if problem:
            raise ConfigError(path, "archive.directory", problem)
        if root.exists() and not root.is_dir():
            raise ConfigError(path, "archive.directory", f"{root} exists and is not a directory")
        if not root.is_dir() and not root.parent.is_dir():
            raise ConfigError(path, "archive.directory", f"neither {root} nor its parent directory exists")
    if config.status.path is not None:  # its directory may not exist yet (systemd's RuntimeDirectory)
        problem = _file_path_problem(Path(config.status.path).expanduser())
        if problem:
            raise ConfigError(path, "status.path", problem)
    return config, digest


#: kernel file systems: a spool, archive or status file there cannot work (or harms the system)
_VIRTUAL_FS = (Path("/proc"), Path("/sys"))


def _virtual_fs_problem(path: Path) -> str | None:
    resolved = path.resolve()
    for virtual in _VIRTUAL_FS:
        if resolved == virtual or virtual in resolved.parents:
            return f"{path} is under {virtual}, a kernel file system, not storage"
    return None


def _file_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a data file the daemon writes (spool, status), or None."""
    problem = _virtual_fs_problem(path)
    if problem:
        return problem
    if path.is_dir():
        return f"{path} is a directory; give the path of a file in it"
    if path.exists() and not path.is_file():
        return f"{path} exists and is not a regular file"
    if path.parent.exists() and not path.parent.is_dir():
        return f"{path.parent} is not a directory"
    return None
