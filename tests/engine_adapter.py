"""Test adapter (tests/test_flux_engine.py): arrays in, the wire contract's results out: the engine
on one period of aligned samples, without the station's archive and metadata round trip.

The station itself no longer comes through here: its flux worker (:mod:`station.processing.fluxjob`)
archives each period and computes it through the ``.ghg`` metadata, :func:`station.reprocess.enginesetup.setup_for` and
:func:`station.flux.pipeline.process`, exactly as ``fluxedge flux process`` does. This adapter stays
for engine-level checks on synthetic arrays (tests/test_flux_engine.py): ``u``, ``v``, ``w``
[m s-1], ``t_sonic`` [degC], open-path ``co2``, ``h2o``, ``ch4`` [mmol m-3] and ``pressure`` [kPa]
in, every :data:`fluxedge.common.messages.FLUX_FIELDS` value out (NaN where not computed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fluxedge.common.messages import FLUX_FIELDS
from station.flux.pipeline import GasSetup, Options, Setup, process

#: Results the wire contract carries (a subset of the pipeline's; defined in fluxedge.common.messages).
CONTRACT_FIELDS = tuple(FLUX_FIELDS)


@dataclass(frozen=True)
class PeriodSite:
    """What the engine needs to know of the site (heights in m, angles in degrees, rate in Hz)
    and how to process (``options``; default: EddyPro's settings)."""

    measurement_height_m: float
    displacement_m: float
    altitude_m: float = 0.0
    north_offset_deg: float = 0.0
    rate_hz: float = 20.0
    latitude_deg: float = 0.0
    canopy_height_m: float = 0.0
    #: open-path analyser lag window (nominal, min, max) [s]; zeros: EddyPro's +-0.3 s
    lag_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    options: Options = field(default_factory=Options)


def process_period(samples: dict[str, np.ndarray], site: PeriodSite, expected_samples: int | None = None
                   ) -> dict[str, float]:
    """Contract results of one period from aligned samples (NaN = missing or screened)."""
    n = len(samples["u"])
    columns = {"u": samples["u"], "v": samples["v"], "w": samples["w"],
               "ts": np.asarray(samples["t_sonic"], dtype=float) + 273.15}
    gases = []
    for gas in ("co2", "h2o", "ch4"):
        if gas in samples and np.isfinite(samples[gas]).any():
            columns[gas] = samples[gas]
            gases.append(GasSetup(gas, lag_s=site.lag_s))
    pressure = samples.get("pressure")
    if pressure is not None and np.isfinite(pressure).any():
        columns["pa"] = np.asarray(pressure, dtype=float) * 1e3
    setup = Setup(rate_hz=site.rate_hz, period_s=n / site.rate_hz, measurement_height_m=site.measurement_height_m,
                  canopy_height_m=site.canopy_height_m, displacement_m=site.displacement_m or None,
                  latitude_deg=site.latitude_deg, altitude_m=site.altitude_m, north_offset_deg=site.north_offset_deg,
                  gases=tuple(gases))
    results = process(columns, setup, site.options)
    expected = expected_samples or n
    results["MISSING_PCT"] = 100.0 * max(expected - results["N_SAMPLES"], 0) / expected if expected else 100.0
    return {k: float(results.get(k, np.nan)) for k in CONTRACT_FIELDS}
