"""What every reader returns: one file's samples in canonical names and units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from station.rawdata.metadata import Metadata


@dataclass(frozen=True, eq=False)
class RawPeriod:
    """The samples of one raw file.

    ``columns`` maps canonical names to float64 arrays of ``n_samples`` values, NaN where the file had
    a missing marker, in the units of :mod:`station.rawdata.units` (listed per column in ``units``):

    - ``u``, ``v``, ``w`` [m s-1] as the anemometer gave them (no rotation), ``sos`` [m s-1]
    - ``ts`` sonic temperature [K] (from ``sos**2/403`` when the file only has the speed of sound)
    - gases ``co2``, ``h2o``, ``ch4``, ``n2o`` ...: each measure type present under
      ``<gas>_molar_density`` / ``<gas>_mole_fraction`` / ``<gas>_mixing_ratio``, and the preferred
      one also under the plain name, its measure type in ``gas_types[<gas>]``
    - ``tc`` cell temperature, ``tc_in``/``tc_out`` cell inlet/outlet temperature, ``ta`` air
      temperature [K]; ``pc`` cell pressure, ``pa`` air pressure [Pa]; ``flow_rate`` [l min-1]
    - ``diag_sonic``, ``diag_irga``, ``diag_ch4``: the instruments' diagnostic words, as numbers
    - any other variable under its EddyPro name (``dew_point`` [K], ``co2_signal_strength_7200`` ...)

    ``start`` and ``end`` are timezone-aware UTC datetimes bounding the file's period
    (``end = start + n_samples / rate_hz``). ``time`` holds per-sample UTC Unix seconds when the file
    carries time stamps (``.ghg``: Seconds + Nanoseconds; TOA5: TIMESTAMP), else None.
    """

    source: Path
    start: datetime
    end: datetime
    rate_hz: float
    #: number of records (every column has this length)
    n_samples: int
    columns: dict[str, np.ndarray]
    units: dict[str, str]
    gas_types: dict[str, str]
    metadata: Metadata
    time: np.ndarray | None = None
    #: header lines of the file as key -> value (``.ghg``: Model, SN, Timezone ...; TOA5: station, program ...)
    header: Mapping[str, str] = field(default_factory=dict)
    #: things the reader noticed but did not treat as errors (a cut-off last record, derived columns ...)
    notes: tuple[str, ...] = ()

    @property
    def start_unix(self) -> float:
        return self.start.timestamp()

    @property
    def end_unix(self) -> float:
        return self.end.timestamp()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __len__(self) -> int:
        return self.n_samples
