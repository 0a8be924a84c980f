"""No sample lost or shifted: real 20 Hz CSAT3 + LI-7500 data (shared/data/ec, fluxpart TOA5) replayed as
instrument bytes in real time through the emulators (``bridge emulate --replay --start-at-boundary``)
into the running station, with period closes and diagnostics ticks happening meanwhile. The raw
archive holds the file's records sample by sample: the same count, in the same order, with the values
the instruments' encodings give (each record through the emulator's bytes and the station's parser).

The finding this guards: frames stamped 25-50 ms late by the station's own work landed one slot late
and the frame of that slot was dropped; the station now places frames by the instruments' own record
counters (CSAT3 counter, LI-7500 Ndx) and repairs collisions (station/acquisition/align.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import EC_DATA

from firmware_bridge import csat3, li7500
from firmware_bridge.replay import read_toa5
from firmware_bridge.resolution import at_resolution
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station.archive.writer import archive_path
from station.rawdata import read_raw
from tests.collector_helpers import stop

TOA5 = sorted((EC_DATA / "fluxpart-csat3-openpath-20hz" / "raw").glob("TOA5_*.dat"))[0]
RATE_HZ = 20
PERIOD_S = 30
PERIODS = 2
N = PERIOD_S * RATE_HZ
CLI = [sys.executable, "-m", "fluxedge.cli"]


def encoded(obs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` records as the station keeps them: through the emulated instruments' bytes
    and the station's parsers, at the instruments' resolution (their families' ``RESOLUTION``)."""
    part = {k: v[:n] for k, v in obs.items()}
    sonic = csat3.Parser().feed(b"".join(csat3.Device(rate_hz=RATE_HZ).frames(part, 0))).columns
    gas = li7500.Parser().feed(b"".join(li7500.Device(rate_hz=RATE_HZ).frames(part, 0))).columns
    assert len(sonic["u"]) == n and len(gas["co2"]) == n
    sonic = {k: at_resolution(sonic[k], csat3.RESOLUTION[k]) for k in ("u", "v", "w", "t_sonic")}
    gas = {k: at_resolution(gas[k], li7500.RESOLUTION[k]) for k in ("co2", "h2o")}
    return {"u": sonic["u"], "v": sonic["v"], "w": sonic["w"], "ts": sonic["t_sonic"] + 273.15,
            "co2": gas["co2"], "h2o": gas["h2o"]}


def test_replayed_file_is_archived_sample_by_sample(tmp_path, mosquitto):
    obs = read_toa5(TOA5)
    expected = encoded(obs, PERIODS * N)
    # start when the next period boundary is far enough for the station to be up before the first record
    while (-time.time()) % PERIOD_S < 12:
        time.sleep(0.2)
    procs = []
    try:
        emulator = subprocess.Popen([*CLI, "bridge", "emulate", "csat3", "li7500", "--rate", str(RATE_HZ),
                                     "--replay", str(TOA5), "--start-at-boundary", str(PERIOD_S)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        procs.append(emulator)
        ports = dict(emulator.stdout.readline().decode().split() for _ in range(2))
        first = float(emulator.stderr.readline().decode().split()[-1])
        config = tmp_path / "station.toml"
        config.write_text(towerconfig.station_toml(
            "replay-tower",
            [Instrument("sonic", "csat3", ports["csat3"]), Instrument("irga", "li7500", ports["li7500"])],
            mqtt_port=mosquitto.port, spool_path=tmp_path / "spool.sqlite", period_s=PERIOD_S, rate_hz=RATE_HZ,
            processing={"despiking": "none", "statistical_tests": False},
            tables={"diagnostics": {"interval_s": 2.0}}))  # diagnostics ticks all through the periods
        station = subprocess.Popen([*CLI, "station", "run", "-c", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        procs.append(station)
        paths = [archive_path(tmp_path / "archive", first + k * PERIOD_S, "replay-tower") for k in range(PERIODS)]
        deadline = first + PERIODS * PERIOD_S + 45
        while time.time() < deadline and not all(p.exists() for p in paths):
            assert station.poll() is None, station.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        assert all(p.exists() for p in paths), f"archive files missing: {[str(p) for p in paths if not p.exists()]}"
    finally:
        for proc in reversed(procs):
            stop(proc)
    for k, path in enumerate(paths):
        raw = read_raw(path, variables=("u", "v", "w", "ts", "co2", "h2o"))
        assert raw.n_samples == N
        rows = slice(k * N, (k + 1) * N)
        for name in ("u", "v", "w", "ts", "co2", "h2o"):
            got, want = raw.columns[name], expected[name][rows]
            missing = np.flatnonzero(~np.isfinite(got))
            assert len(missing) == 0, f"period {k}: {name}: {len(missing)} samples missing, first at {missing[:5]}"
            shifted = np.flatnonzero(got != want)
            assert len(shifted) == 0, f"period {k}: {name}: {len(shifted)} samples differ, first at {shifted[:5]}"


@pytest.mark.parametrize("value", ["0", "-5", "x"])
def test_start_at_boundary_rejects_nonsense(value):
    proc = subprocess.run([*CLI, "bridge", "emulate", "csat3", "--start-at-boundary", value],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "start-at-boundary" in proc.stderr
