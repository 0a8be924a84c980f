"""A period without a single sonic sample (sonic silent or unplugged, analysers streaming): skipped with
its reason (in the outcome and the log), the analysers' raw block still archived, and the flux worker
process does not crash. Real processes: the flux worker, the station's run loop on an emulated
LI-7500 over a pty with the sonic's port silent, a real mosquitto."""

from __future__ import annotations

import logging
import math
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from test_archive import START, job_for, turbulence_block

from firmware_bridge.ptypair import NullModem
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station import config as station_config
from station.acquisition.periodblock import JobConfig, PeriodBlock
from station.daemon import Station
from station.processing.fluxworker import FluxWorker
from station.rawdata import read_raw

ROOT = Path(__file__).resolve().parents[1]
SONIC = ("u", "v", "w", "t_sonic", "diag_sonic")


def gas_only(block: PeriodBlock) -> PeriodBlock:
    """The block as the station aligns it when the sonic sent nothing: no sonic channel at all."""
    cols = {k: v for k, v in block.columns.items() if k not in SONIC}
    return PeriodBlock(block.start_s, block.end_s, block.rate_hz, block.time_s, cols, block.expected, 0)


def test_worker_skips_a_period_without_sonic_samples_and_archives_the_analyser(tmp_path):
    outcomes = queue.Queue()
    job = job_for(tmp_path)
    lenient = JobConfig(job.tower, job.options, job.archive, max_missing_pct=100.0)  # the % rule alone would not skip
    for config in (job, lenient):
        worker = FluxWorker(config, outcomes.put)
        worker.start()
        try:
            block = gas_only(turbulence_block(seconds=60, seed=5))
            worker.submit(block)
            out = outcomes.get(timeout=120)
            assert out.status == "skipped", (out.status, out.error)
            assert "no sonic samples" in out.error and "'sonic'" in out.error
            assert worker.restarts == 0  # the worker did not die
            raw = read_raw(out.archive_path)  # the raw block is still there, as EddyPro reads it
            assert raw.n_samples == block.expected
            assert np.allclose(raw["co2"], block.columns["co2"], equal_nan=True)
            assert not np.isfinite(raw["w"]).any()  # the sonic's columns: missing throughout
            # and the next period (with its sonic) is computed by the same worker
            worker.submit(turbulence_block(start=START + 60, seconds=120, seed=6))
            ok = outcomes.get(timeout=120)
            assert ok.status == "ok" and math.isfinite(ok.results["H"]) and worker.restarts == 0
        finally:
            worker.stop(timeout_s=30)


def test_station_with_a_silent_sonic_logs_why_each_period_is_skipped(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.INFO)
    emulator = subprocess.Popen([sys.executable, "-m", "fluxedge.cli", "bridge", "emulate", "li7500", "--rate", "20",
                                 "--seed", "3"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=ROOT)
    irga = emulator.stdout.readline().decode().split()[1]
    silent = NullModem()  # the sonic's port: open, nothing ever arrives
    toml = tmp_path / "station.toml"
    toml.write_text(towerconfig.station_toml(
        "nosonic", [Instrument("sonic", "csat3", silent.b_path), Instrument("irga", "li7500", irga)],
        mqtt_port=mosquitto.port, spool_path=tmp_path / "spool.sqlite", period_s=5, rate_hz=20,
        tables={"archive": {"directory": tmp_path / "archive", "max_disk_used_pct": 100}}))
    cfg, digest = station_config.load(toml)
    station = Station(cfg, digest)
    outcomes = []
    handle = station._on_outcome

    def recording(outcome):
        outcomes.append(outcome)
        return handle(outcome)

    station._on_outcome = recording
    runner = threading.Thread(target=station.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len([o for o in outcomes if o.archive_path]) < 2:
            assert time.monotonic() < deadline, [(o.status, o.error) for o in outcomes]
            time.sleep(0.1)
    finally:
        station.stop()
        runner.join(60)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)
        silent.close()
    assert not runner.is_alive()
    assert station.worker.restarts == 0
    assert all(o.status == "skipped" and "no sonic samples" in o.error for o in outcomes), \
        [(o.status, o.error) for o in outcomes]
    skipped = [r.getMessage() for r in caplog.records if "period_skipped" in r.getMessage()]
    assert len(skipped) == len(outcomes) and all("no sonic samples" in m for m in skipped)
    assert not any("period_failed" in r.getMessage() or "flux_worker_died" in r.getMessage() for r in caplog.records)
    archived = [o for o in outcomes if o.archive_path]
    raw = read_raw(archived[-1].archive_path)
    assert np.isfinite(raw["co2"]).sum() > 0.5 * raw.n_samples and not np.isfinite(raw["w"]).any()
