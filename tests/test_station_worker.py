"""The flux worker process: periods are archived and computed in a separate, long-lived process; a
killed worker is restarted, the period it was working on is reported as failed (its raw block still
archived) and the next periods are processed. Real processes throughout: multiprocessing 'spawn'
workers, the station's run loop on emulated instruments over ptys, a real mosquitto."""

import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_archive import START, TOWER, job_for, same, turbulence_block

from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station import config as station_config
from station.archive.writer import archive_path
from station.daemon import Station
from station.processing.fluxworker import FluxWorker
from station.reprocess.command import process_file

ROOT = Path(__file__).resolve().parents[1]
PERIOD_S = 5
RATE_HZ = 20


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_killed_worker_mid_period_is_reported_restarted_and_next_period_processed(tmp_path, caplog):
    outcomes = queue.Queue()
    worker = FluxWorker(job_for(tmp_path), outcomes.put)
    worker.start()
    try:
        first_pid = worker.pid
        assert first_pid is not None and first_pid != os.getpid()
        worker.submit(turbulence_block(start=START - 600, seconds=60, seed=9))  # warm-up: the worker is up
        warm = outcomes.get(timeout=60)
        assert warm.status == "ok" and warm.worker_pid == first_pid
        # a long block (2 h at 20 Hz: seconds of work) so that the kill lands while the worker is at it
        long_block = turbulence_block(seconds=7200, seed=1)
        worker.submit(long_block)
        assert wait_for(lambda: worker.pending() == 1, 5)
        time.sleep(0.5)
        os.kill(first_pid, signal.SIGKILL)
        failed = outcomes.get(timeout=60)
        assert failed.status == "failed" and failed.start_s == long_block.start_s
        assert "exit code -9" in failed.error
        # restarted, and the raw block was still archived by the new worker
        assert worker.restarts == 1 and worker.pid not in (None, first_pid)
        expected_file = archive_path(tmp_path, long_block.start_s, TOWER.station_id)
        assert failed.archive_path == str(expected_file) and expected_file.is_file()
        assert any("flux_worker_died" in r.getMessage() and str(first_pid) in r.getMessage() for r in caplog.records)
        # the next period is computed by the new worker, in its own process
        nxt = turbulence_block(start=long_block.end_s, seconds=300, seed=2)
        worker.submit(nxt)
        ok = outcomes.get(timeout=60)
        assert ok.status == "ok" and ok.start_s == nxt.start_s and math.isfinite(ok.results["FC"])
        assert ok.worker_pid == worker.pid != os.getpid()
    finally:
        worker.stop(timeout_s=30)
    assert worker.pid is None


def test_stop_gives_up_on_a_long_period_without_restarting_the_worker(tmp_path):
    outcomes = queue.Queue()
    worker = FluxWorker(job_for(tmp_path), outcomes.put)
    worker.start()
    pid = worker.pid
    worker.submit(turbulence_block(seconds=7200, seed=4))
    assert wait_for(lambda: worker.pending() == 1, 5)
    started = time.monotonic()
    worker.stop(timeout_s=0.3)
    assert time.monotonic() - started < 15
    failed = outcomes.get(timeout=1)
    assert failed.status == "failed" and "worker" in failed.error  # killed while computing, or still starting
    assert worker.pid is None and worker.restarts == 0 and not worker.alive()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped


def start_emulator():
    proc = subprocess.Popen([sys.executable, "-m", "fluxedge.cli", "bridge", "emulate", "csat3", "li7500",
                             "--rate", str(RATE_HZ), "--seed", "7"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    devices = dict(proc.stdout.readline().decode().split() for _ in range(2))
    return proc, devices


def test_station_run_loop_computes_in_worker_and_survives_its_death(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.INFO)
    emulator, devices = start_emulator()
    toml = tmp_path / "station.toml"
    toml.write_text(towerconfig.station_toml(
        "worker-test", [Instrument("sonic", "csat3", devices["csat3"]),
                        Instrument("irga", "li7500", devices["li7500"], {"northward_separation_m": 0.1})],
        mqtt_port=mosquitto.port, spool_path=tmp_path / "spool.sqlite", period_s=PERIOD_S, rate_hz=RATE_HZ,
        tables={"archive": {"directory": tmp_path / "archive", "max_disk_used_pct": 100}}))
    cfg, digest = station_config.load(toml)
    station = Station(cfg, digest)
    outcomes, spooled = [], []
    handle = station._on_outcome

    def recording(outcome):  # the station's own handler, with a note of what came back and what it spooled
        outcomes.append(outcome)
        record = handle(outcome)
        if record is not None:
            spooled.append(json.loads(record.encode()))
        return record

    station._on_outcome = recording
    runner = threading.Thread(target=station.run, daemon=True)
    runner.start()
    try:
        def ok():
            return [o for o in outcomes if o.status == "ok"]

        assert wait_for(lambda: len(ok()) >= 2, 8 * PERIOD_S), [(o.status, o.error) for o in outcomes]
        first_pid = station.worker.pid
        assert all(o.worker_pid == first_pid != os.getpid() for o in ok())
        os.kill(first_pid, signal.SIGKILL)
        seen = len(outcomes)
        assert wait_for(lambda: len([o for o in ok() if o.worker_pid != first_pid]) >= 2, 8 * PERIOD_S), \
            [(o.status, o.error) for o in outcomes[seen:]]
        assert station.worker.restarts >= 1 and station.worker.pid != first_pid
        assert any("flux_worker_died" in r.getMessage() for r in caplog.records)
        # acquisition carried on: no period after the first was lost
        starts = [o.start_s for o in outcomes]
        assert starts == list(range(starts[0], starts[0] + PERIOD_S * len(starts), PERIOD_S))
    finally:
        station.stop()
        runner.join(60)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)
    assert not runner.is_alive()
    # every flux record the station spooled (and published) is exactly what `fluxedge flux process`
    # gets from the period's archive file
    assert len(spooled) >= 4
    for rec in spooled:
        start = next(o.start_s for o in outcomes if o.status == "ok" and o.end_s // PERIOD_S == rec["seq"])
        path = archive_path(tmp_path / "archive", start, "worker-test")
        (row,) = process_file(str(path), options=station.job.options).rows
        for key, value in rec["values"].items():
            assert same(math.nan if value is None else value, row.results.get(key, math.nan)), (key, path.name)
