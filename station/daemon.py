"""``fluxedge station run``: acquisition threads, period closing on the clock, spool, publisher.

Each closed period is aligned here (cheap NumPy) and handed to the flux worker process
(:mod:`station.processing.fluxworker`), which archives it (:mod:`station.archive.writer`) and computes its fluxes;
the outcome comes back to this process, which spools it.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from fluxedge import __version__
from fluxedge.common import messages
from fluxedge.common.logs import event
from fluxedge.common.sdnotify import Notifier, watchdog_interval_s
from station.acquisition.align import assign_slots, place_on_grid, regular_grid
from station.acquisition.hostclock import HostClock
from station.acquisition.met import MetService, fill_air_temperature, fill_pressure
from station.acquisition.periodblock import GAS_CHANNELS as GASES
from station.acquisition.periodblock import ArchiveSettings, JobConfig, PeriodBlock, PeriodOutcome, TowerInfo
from station.acquisition.readers import InstrumentReader, SampleBlock
from station.config import StationConfig
from station.flux.pipeline import Options
from station.health.monitor import Monitor
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool, SpoolError, SpoolFullError
from station.processing.fluxjob import run_job
from station.processing.fluxworker import FluxWorker
from station.runlock import RunLock

log = logging.getLogger("station")
#: Wait this long after a period boundary for the boundary's last bytes to arrive.
CLOSE_GRACE_S = 0.3
#: On shutdown, wait at most this long for each reader thread to end (a TCP connect takes up to 3 s).
READER_JOIN_S = 10.0
#: the wire contract's flux values (fluxedge.common.messages), in its order
CONTRACT_FIELDS = tuple(messages.FLUX_FIELDS)
SONIC_CHANNELS = ("u", "v", "w", "t_sonic")
#: screened analyser channels (the gases an analyser gives, and its pressure)
GAS_CHANNELS = (*GASES, "pressure")
#: instrument channels archived as they came (not screened): block name <- instrument channel
SONIC_AUX = {"diag_sonic": "diag"}
GAS_AUX = {"diag_gas": "diag", "t_air": "temperature", "signal_strength": "signal_strength"}


def _slots(grid: np.ndarray, block: SampleBlock, reader, tolerance_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's slot on the period's grid, by the instrument's record counter where its family
    has one (:func:`station.acquisition.align.assign_slots`); samples that belong to the next period (stamped
    before the boundary, or taken within the close grace) go back to the reader's buffer."""
    counter = getattr(reader.family, "RECORD_COUNTER", None)
    values = block.columns.get(counter[0]) if counter else None
    idx, ok = assign_slots(grid, block.t, tolerance_s, values, counter[1] if values is not None else None)
    later = idx >= len(grid)
    if later.any():
        reader.buffer.put_back(SampleBlock(block.t[later], {k: v[later] for k, v in block.columns.items()}))
    return idx, ok


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
        self.lock = RunLock(config.spool.path)
        self.clock = HostClock()  # continuous time stamps; follows wall-clock steps explicitly
        self.readers = {i.name: InstrumentReader(i, self.rate_hz, self.clock) for i in config.instruments}
        prefix, sid = config.mqtt.topic_prefix, config.site.id
        self.flux_topic = messages.topic(prefix, sid, "flux")
        status_topic = messages.topic(prefix, sid, "status")
        # the instruments' families let the collector's fleet rules pick each one's defaults
        families = {i.name: i.driver for i in config.instruments} | {m.name: "modbus" for m in config.modbus}
        online = messages.status_payload(sid, "online", __version__, config_hash, time.time(), site=sid,
                                         instruments=families)
        offline = messages.status_payload(sid, "offline", __version__, config_hash, time.time(), site=sid,
                                          instruments=families)
        self.publisher = Publisher(self.spool, config.mqtt, config.mqtt.client_id or f"fluxedge-station-{sid}",
                                   status_topic, online, offline, keep_acked_s=config.spool.keep_acked_s)
        # slow Modbus met sensors, and diagnostics / alarms / status file (taps the readers' drivers)
        self.met = MetService(config.modbus) if config.modbus else None
        self.monitor = Monitor(config, self.readers, self.spool, self.publisher, self.met)
        sonic = config.sonic
        proc = config.processing
        options = Options(despiking=proc.despiking, vm97_tests=proc.statistical_tests, rotation=proc.rotation,
                          detrending=proc.detrending, detrend_time_constant_s=proc.detrend_time_constant_s,
                          lag=proc.time_lag, spectral=proc.spectral_corrections, qc_system=proc.qc_flags,
                          footprint=proc.footprint, random_uncertainty=proc.random_uncertainty,
                          self_heating=proc.self_heating)
        site = config.site
        analysers = [(g.name, g.driver, (g.northward_separation_m, g.eastward_separation_m, g.vertical_separation_m))
                     for g in config.gas_analysers]
        first = analysers[0] if analysers else (None, None, (0.0, 0.0, 0.0))
        tower = TowerInfo(site.id, site.latitude_deg, site.longitude_deg, site.altitude_m, site.canopy_height_m,
                          site.displacement_height_m, site.measurement_height_m, sonic.name, sonic.driver,
                          sonic.north_offset_deg, *first, more_analysers=tuple(analysers[1:]),
                          software=f"fluxedge {__version__}", time_zone=site.time_zone)
        arc = config.archive
        archive = ArchiveSettings(str(arc.root(config.spool.path)), arc.max_disk_used_pct, arc.min_free_mb) \
            if arc.enabled else None
        self.job = JobConfig(tower, options, archive, config.acquisition.max_missing_pct)
        measured: dict[str, str] = {}
        for info in tower.analysers:  # the engine takes one analyser per gas: the first that gives it
            for gas in GASES:
                if gas in self.readers[info.name].family.CHANNELS and measured.setdefault(gas, info.name) != info.name:
                    event(log, "gas_measured_twice", logging.WARNING, gas=gas, used=measured[gas],
                          archived_only=info.name)
        self.worker: FluxWorker | None = None  # started by run(); close_period() works without it
        self._halt = threading.Event()
        self.periods_closed = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        """Acquire, close periods and publish until :meth:`stop`. Holds the spool's run lock
        (:mod:`station.runlock`) throughout: a second daemon on the same spool refuses to start, and
        ``fluxedge station check`` leaves this one's ports alone."""
        other = self.lock.acquire()
        if other is not None:
            raise SpoolError(self.config.spool.path, f"another station daemon (pid {other or '?'}) is running with "
                                                     "this spool; stop it first (systemctl stop fluxedge-station)")
        try:
            self._run()
        finally:
            self.lock.release()

    def _run(self) -> None:
        for reader in self.readers.values():
            reader.start()
        self.publisher.start()
        if self.met is not None:
            self.met.start()
        self.monitor.start()
        event(log, "station_started", station=self.config.site.id, period_s=self.period_s,
              instruments=",".join(self.readers), spooled=self.spool.depth())
        notifier = Notifier()  # systemd Type=notify; a no-op outside systemd
        notifier.ready(f"acquiring from {len(self.readers)} instruments")
        self.worker = FluxWorker(self.job, self._on_outcome, job_timeout_s=max(self.period_s, 60))
        self.worker.start()
        try:
            while not self._halt.is_set():
                now = self.clock.wall()
                boundary = (math.floor(now / self.period_s) + 1) * self.period_s
                if self._wait_watched(boundary + CLOSE_GRACE_S, notifier):
                    break
                self.worker.submit(self.take_block(boundary - self.period_s, boundary))
        finally:
            notifier.stopping()
            self.worker.stop(timeout_s=30.0)  # results of periods already closed are still spooled
            for reader in self.readers.values():
                reader.stop()
            for reader in self.readers.values():  # joined: no port is left open when run() returns
                reader.stop(timeout_s=READER_JOIN_S)
                if reader.is_alive():
                    event(log, "reader_stop_timeout", logging.WARNING, instrument=reader.config.name)
            if self.met is not None:
                self.met.stop()
            self.monitor.stop()
            self.publisher.stop()
            event(log, "station_stopped", station=self.config.site.id, spooled=self.spool.depth())
            self.spool.close()

    def healthy(self) -> bool:
        """The threads the main loop relies on are alive (systemd's watchdog is fed only then)."""
        return self.publisher.is_alive() and all(r.is_alive() for r in self.readers.values()) \
            and (self.worker is None or self.worker.alive())

    def _wait_watched(self, until: float, notifier: Notifier) -> bool:
        """Sleep until Unix time ``until`` feeding the watchdog while healthy; True if stopped."""
        every_s = min(watchdog_interval_s(), 1.0) if notifier.enabled else 1.0
        while True:
            if notifier.enabled and self.healthy():
                notifier.watchdog()
            step = self.clock.check()
            if step is not None:  # the wall clock was stepped: stamps follow from here on
                event(log, "clock_step", logging.WARNING, step_s=round(step, 3), steps=self.clock.steps)
            remaining = until - self.clock.wall()
            if remaining <= 0:
                return False
            if self._halt.wait(min(remaining, every_s)):
                return True

    def take_block(self, start: float, end: float) -> PeriodBlock:
        """Take the period's samples from the readers and align them on the sonic's grid."""
        sonic_cfg = self.config.sonic
        sonic_reader = self.readers[sonic_cfg.name]
        sonic = sonic_reader.buffer.take_period(start, end + CLOSE_GRACE_S, keep_from=start - CLOSE_GRACE_S)
        grid = regular_grid(sonic.t, start, end, self.rate_hz)
        tolerance = 0.5 / self.rate_hz
        slots = _slots(grid, sonic, sonic_reader, tolerance)
        samples = place_on_grid(grid, sonic.t, screened(sonic, sonic_reader.family, SONIC_CHANNELS), tolerance,
                                slots=slots)
        samples.update(place_on_grid(grid, sonic.t, {k: sonic.columns[c] for k, c in SONIC_AUX.items()
                                                     if c in sonic.columns}, tolerance, slots=slots))
        for info in self.job.tower.analysers:  # every analyser: screened by its family, on the sonic's grid
            reader = self.readers[info.name]
            gas = reader.buffer.take_period(start, end + CLOSE_GRACE_S, keep_from=start - CLOSE_GRACE_S)
            slots = _slots(grid, gas, reader, tolerance)
            placed = place_on_grid(grid, gas.t, screened(gas, reader.family, GAS_CHANNELS), tolerance, slots=slots)
            placed.update(place_on_grid(grid, gas.t, {k: gas.columns[c] for k, c in GAS_AUX.items()
                                                      if c in gas.columns}, tolerance, slots=slots))
            samples.update({info.key(k): v for k, v in placed.items()})
        fill_pressure(samples, self.met, len(grid))  # met pressure when the analyser has none
        fill_air_temperature(samples, self.met, len(grid))  # met Ta: the engine's ambient temperature
        n = len(grid)
        present = int(np.sum(np.isfinite(samples.get("w", np.zeros(n))) & np.isfinite(samples.get("t_sonic",
                                                                                                   np.zeros(n)))))
        columns = {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()}
        return PeriodBlock(int(start), int(end), float(self.rate_hz), grid, columns, n, present)

    def close_period(self, start: float, end: float) -> messages.FluxRecord | None:
        """Close one period synchronously in this process (tests; the run loop uses the worker)."""
        return self._on_outcome(run_job(self.take_block(start, end), self.job))

    def _on_outcome(self, outcome: PeriodOutcome) -> messages.FluxRecord | None:
        """Spool a period's result (called by the worker's dispatcher thread, or by close_period)."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outcome.start_s))
        if outcome.status == "skipped":
            missing = 100.0 * (outcome.expected - outcome.present) / outcome.expected if outcome.expected else 100.0
            event(log, "period_skipped", period_start=when, reason=outcome.error, samples=outcome.present,
                  expected=outcome.expected, missing_pct=round(missing, 1),
                  limit_pct=self.config.acquisition.max_missing_pct, archive=outcome.archive_path)
            return None
        if outcome.status != "ok" or outcome.results is None:
            event(log, "period_failed", logging.ERROR, period_start=when, error=outcome.error,
                  archive=outcome.archive_path)
            return None
        results = {k: float(outcome.results.get(k, math.nan)) for k in CONTRACT_FIELDS}
        record = messages.FluxRecord(self.config.site.id, int(outcome.end_s // self.period_s), int(outcome.start_s),
                                     int(outcome.end_s), results)
        try:
            self.spool.put("flux", self.flux_topic, record.encode())
        except SpoolFullError as exc:  # disk full, nothing of lower priority left to drop: keep acquiring
            event(log, "spool_full", logging.ERROR, period_start=when, error=str(exc), archive=outcome.archive_path)
            return None
        self.publisher.wake()
        self.monitor.note_flux(record)
        self.periods_closed += 1
        event(log, "period_closed", period_start=when, samples=outcome.present, H=results["H"], LE=results["LE"],
              FC=results["FC"], USTAR=results["USTAR"], compute_s=round(outcome.compute_s, 2),
              worker=outcome.worker_pid, spooled=self.spool.depth(),
              archive=outcome.archive_path.rsplit("/", 1)[-1] if outcome.archive_path else None)
        return record
