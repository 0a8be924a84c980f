"""``fluxedge station run``: acquisition threads, period closing on the clock, spool, publisher."""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from station import __version__, messages
from station.acquisition import InstrumentReader, SampleBlock
from station.align import place_on_grid, regular_grid
from station.config import StationConfig
from station.flux import PeriodSite, process_period
from station.flux.pipeline import Options
from station.logs import event
from station.publisher import Publisher
from station.spool import Spool

log = logging.getLogger("station")
#: Wait this long after a period boundary for the boundary's last bytes to arrive.
CLOSE_GRACE_S = 0.3
SONIC_CHANNELS = ("u", "v", "w", "t_sonic")
GAS_CHANNELS = ("co2", "h2o", "pressure")


def screened(block: SampleBlock, fam, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The block's measurement channels with samples the instrument flagged as bad set to NaN."""
    ok = fam.valid(block.columns) if block.n else np.zeros(0, bool)
    return {c: np.where(ok, block.columns[c], np.nan) for c in channels if c in block.columns}


class Station:
    def __init__(self, config: StationConfig, config_hash: str) -> None:
        self.config = config
        self.period_s = config.acquisition.averaging_period_s
        self.rate_hz = config.acquisition.sample_rate_hz
        self.spool = Spool(config.spool.path, int(config.spool.max_mb * 2**20))
        self.readers = {i.name: InstrumentReader(i, self.rate_hz) for i in config.instruments}
        prefix, sid = config.mqtt.topic_prefix, config.site.id
        self.flux_topic = messages.topic(prefix, sid, "flux")
        status_topic = messages.topic(prefix, sid, "status")
        online = messages.status_payload(sid, "online", __version__, config_hash, time.time())
        offline = messages.status_payload(sid, "offline", __version__, config_hash, time.time())
        self.publisher = Publisher(self.spool, config.mqtt, config.mqtt.client_id or f"fluxedge-station-{sid}",
                                   status_topic, online, offline)
        sonic = config.sonic
        proc = config.processing
        options = Options(despiking=proc.despiking, vm97_tests=proc.statistical_tests, rotation=proc.rotation,
                          detrending=proc.detrending, detrend_time_constant_s=proc.detrend_time_constant_s,
                          lag=proc.time_lag, spectral=proc.spectral_corrections, qc_system=proc.qc_flags,
                          footprint=proc.footprint, random_uncertainty=proc.random_uncertainty)
        self.site = PeriodSite(config.site.measurement_height_m, config.site.displacement_m,
                               config.site.altitude_m, sonic.north_offset_deg, rate_hz=self.rate_hz,
                               latitude_deg=config.site.latitude_deg, canopy_height_m=config.site.canopy_height_m,
                               options=options)
        self._halt = threading.Event()
        self.periods_closed = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        for reader in self.readers.values():
            reader.start()
        self.publisher.start()
        event(log, "station_started", station=self.config.site.id, period_s=self.period_s,
              instruments=",".join(self.readers), spooled=self.spool.depth())
        try:
            while not self._halt.is_set():
                now = time.time()
                boundary = (math.floor(now / self.period_s) + 1) * self.period_s
                if self._halt.wait(boundary + CLOSE_GRACE_S - now):
                    break
                self.close_period(boundary - self.period_s, boundary)
        finally:
            for reader in self.readers.values():
                reader.stop()
            self.publisher.stop()
            event(log, "station_stopped", station=self.config.site.id, spooled=self.spool.depth())
            self.spool.close()

    def close_period(self, start: float, end: float) -> messages.FluxRecord | None:
        """Align the period's samples, compute fluxes and spool the result."""
        sonic_cfg = self.config.sonic
        sonic_reader = self.readers[sonic_cfg.name]
        sonic = sonic_reader.buffer.take_period(start, end)
        grid = regular_grid(sonic.t, start, end, self.rate_hz)
        tolerance = 0.5 / self.rate_hz
        samples = place_on_grid(grid, sonic.t, screened(sonic, sonic_reader.family, SONIC_CHANNELS), tolerance)
        for gas_cfg in self.config.gas_analysers[:1]:
            reader = self.readers[gas_cfg.name]
            gas = reader.buffer.take_period(start, end)
            samples.update(place_on_grid(grid, gas.t, screened(gas, reader.family, GAS_CHANNELS), tolerance))
        for other in self.config.gas_analysers[1:]:
            self.readers[other.name].buffer.take_before(end)  # not used by the engine yet
        expected = len(grid)
        present = int(np.sum(np.isfinite(samples.get("w", np.zeros(0))) & np.isfinite(samples.get("t_sonic",
                                                                                                   np.zeros(0)))))
        missing_pct = 100.0 * (expected - present) / expected if expected else 100.0
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
        if missing_pct > self.config.acquisition.max_missing_pct:
            event(log, "period_skipped", period_start=when, samples=present, expected=expected,
                  missing_pct=round(missing_pct, 1), limit_pct=self.config.acquisition.max_missing_pct)
            return None
        results = process_period(samples, self.site, expected)
        record = messages.FluxRecord(self.config.site.id, int(end // self.period_s), int(start), int(end), results)
        self.spool.put("flux", self.flux_topic, record.encode())
        self.publisher.wake()
        self.periods_closed += 1
        event(log, "period_closed", period_start=when, samples=present, H=results["H"], LE=results["LE"],
              FC=results["FC"], USTAR=results["USTAR"], spooled=self.spool.depth())
        return record
