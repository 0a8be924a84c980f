"""What crosses from the acquisition side to the flux worker: one closed period and the tower it
came from (plain, picklable dataclasses; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from station.flux.pipeline import Options

#: Block channels and their units (all float64 arrays on the sonic's grid, NaN = missing or screened):
#: ``u``, ``v``, ``w`` [m s-1], ``t_sonic`` [degC], ``diag_sonic`` (raw diagnostic word), ``co2``,
#: ``h2o``, ``ch4`` [mmol m-3], ``pressure`` [kPa], ``t_air`` [degC] (analyser thermistor), ``diag_gas``
#: (raw diagnostic value), ``signal_strength`` [%], ``ta_met`` [degC] (the met sensor's latest air
#: temperature, constant over the period; the engine's ambient Ta). The gas channels are those of the FIRST gas
#: analyser; every further analyser's channels carry its name as a prefix (``ch4irga:ch4``,
#: ``ch4irga:pressure``, see :meth:`AnalyserInfo.key`).
BLOCK_UNITS = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "t_sonic": "degC", "diag_sonic": "", "co2": "mmol m-3",
               "h2o": "mmol m-3", "ch4": "mmol m-3", "pressure": "kPa", "t_air": "degC", "diag_gas": "",
               "signal_strength": "%", "ta_met": "degC"}
#: The gas channels (densities [mmol m-3]) an analyser may give.
GAS_CHANNELS = ("co2", "h2o", "ch4")


@dataclass(frozen=True, eq=False)
class PeriodBlock:
    """One averaging period aligned on the master sonic's grid.

    ``time_s`` holds the grid slot times [Unix s]; ``columns`` the channels of :data:`BLOCK_UNITS`
    that the instruments gave (measurement channels already screened by the instruments' flags).
    ``present`` counts slots with finite ``w`` and ``t_sonic``; ``expected`` is the grid length.
    """

    start_s: int
    end_s: int
    rate_hz: float
    time_s: np.ndarray
    columns: dict[str, np.ndarray]
    expected: int
    present: int

    @property
    def missing_pct(self) -> float:
        return 100.0 * (self.expected - self.present) / self.expected if self.expected else 100.0

    def sanitized(self) -> PeriodBlock:
        """The same block with every non-finite value as NaN (an archive holds no infinities)."""
        cols = {k: np.where(np.isfinite(v), v, np.nan).astype(np.float64) for k, v in self.columns.items()}
        return PeriodBlock(self.start_s, self.end_s, self.rate_hz, self.time_s, cols, self.expected, self.present)


@dataclass(frozen=True)
class AnalyserInfo:
    """One gas analyser as the archive describes it: its configured name, fluxedge driver and position
    relative to the sonic (northward, eastward, vertical) [m]. ``index`` is its place among the
    tower's analysers (0: the first, whose block channels are unprefixed)."""

    name: str
    driver: str
    separation_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    index: int = 0

    def key(self, channel: str) -> str:
        """The block column holding this analyser's ``channel`` (``co2`` or ``ch4irga:ch4``)."""
        return channel if self.index == 0 else f"{self.name}:{channel}"


@dataclass(frozen=True)
class TowerInfo:
    """The site and instruments as the archive's metadata describes them (heights and separations
    in m, angles in degrees). ``sonic_driver`` / ``gas_driver`` are fluxedge driver names.
    ``gas_*`` describe the first gas analyser, ``more_analysers`` any further ones (e.g. an LI-7700
    beside an LI-7500): :attr:`analysers` lists them all."""

    station_id: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    canopy_height_m: float
    #: None: EddyPro's default (0.67 x canopy height)
    displacement_m: float | None
    measurement_height_m: float
    sonic_name: str
    sonic_driver: str
    north_offset_deg: float
    gas_name: str | None = None
    gas_driver: str | None = None
    #: analyser position relative to the sonic (northward, eastward, vertical) [m]
    gas_separation_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: further gas analysers as (name, driver, separation [m]) beyond the first
    more_analysers: tuple[tuple[str, str, tuple[float, float, float]], ...] = ()
    software: str = "fluxedge"
    #: the site's IANA time zone: the archive names its files in its clock and writes it as ``Timezone``
    time_zone: str = "UTC"

    @property
    def analysers(self) -> tuple[AnalyserInfo, ...]:
        """Every gas analyser, the first one first (index 0)."""
        first = [] if self.gas_driver is None else [(self.gas_name or self.gas_driver, self.gas_driver,
                                                     self.gas_separation_m)]
        return tuple(AnalyserInfo(name, driver, tuple(sep), i)  # type: ignore[arg-type]
                     for i, (name, driver, sep) in enumerate([*first, *self.more_analysers]))


@dataclass(frozen=True)
class ArchiveSettings:
    """Where and how to archive (resolved from :class:`station.config.ArchiveConfig`)."""

    root: str
    max_disk_used_pct: float = 90.0
    min_free_mb: float = 0.0


@dataclass(frozen=True)
class JobConfig:
    """Everything the worker needs besides the block."""

    tower: TowerInfo
    options: Options = field(default_factory=Options)
    archive: ArchiveSettings | None = None
    max_missing_pct: float = 10.0


@dataclass(frozen=True)
class PeriodOutcome:
    """What the worker reports for one period: ``status`` is ``ok`` (``results`` set), ``skipped``
    (too many missing samples) or ``failed`` (``error`` says why)."""

    start_s: int
    end_s: int
    status: str
    results: dict[str, float] | None = None
    archive_path: str | None = None
    error: str | None = None
    worker_pid: int = 0
    present: int = 0
    expected: int = 0
    compute_s: float = 0.0
