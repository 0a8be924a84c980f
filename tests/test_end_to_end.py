"""A whole tower end to end: emulated instruments on real ptys -> station -> real mosquitto ->
collectors (InfluxDB v1 /write, and v2 /api/v2/write through the translating shim) -> real influxd."""

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt

from collector.config import InfluxConfig
from collector.query import create_database, influxql
from collector.v2shim import V2WriteShim
from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe, true_fluxes
from station.flux import PeriodSite, process_period
from station.flux.pipeline import Options
from station.spool import Spool

PERIOD_S = 15
RATE_HZ = 60
PERIODS = 3
CLI = [sys.executable, "-m", "station.cli"]
CHECKED = ("W_TS_COV", "FC", "FH2O", "H")


def start(*args, **kw):
    return subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sampling_spread(n_samples, site, blocks=300):
    """Standard deviation of each checked result over periods of ``n_samples`` drawn from the
    emulator's model: the sampling error the e2e values must fall within."""
    spec = TurbulenceSpec()
    model = TurbulenceModel(spec, seed=99)
    results = [process_period(observe(model.draw(n_samples), spec.pressure_kpa), site) for _ in range(blocks)]
    return {name: float(np.std([r[name] for r in results])) for name in CHECKED}


def write_configs(tmp_path, mosquitto_port, sonic, irga, v1_url, v2_url):
    (tmp_path / "station.toml").write_text(f"""
[site]
id = "e2e-tower"
latitude_deg = 1.35
longitude_deg = 103.8
canopy_height_m = 3.0
measurement_height_m = 20.0
displacement_height_m = 5.0
[acquisition]
averaging_period_s = {PERIOD_S}
sample_rate_hz = {RATE_HZ}
[processing]
despiking = "none"
statistical_tests = false
spectral_corrections = "none"
[[instruments]]
name = "sonic"
driver = "csat3"
port = "{sonic}"
[[instruments]]
name = "irga"
driver = "li7500"
port = "{irga}"
[mqtt]
port = {mosquitto_port}
[spool]
path = "{tmp_path / 'spool.sqlite'}"
""")
    base = f"[mqtt]\nport = {mosquitto_port}\n"
    (tmp_path / "collector-v1.toml").write_text(
        base + f'[influxdb]\nurl = "{v1_url}"\napi = 1\ndatabase = "e2e_v1"\n'
               '[ingest]\nclient_id = "e2e-v1"\nbatch_age_s = 0.1\n')
    (tmp_path / "collector-v2.toml").write_text(
        base + f'[influxdb]\nurl = "{v2_url}"\napi = 2\nbucket = "e2e_v2/autogen"\ntoken = "u:p"\n'
               '[ingest]\nclient_id = "e2e-v2"\nbatch_age_s = 0.1\n')


def test_tower_end_to_end(tmp_path, mosquitto, influxd):
    v1 = InfluxConfig(url=f"http://127.0.0.1:{influxd.port}", database="e2e_v1")
    create_database(v1, "e2e_v1")
    create_database(v1, "e2e_v2")
    shim = V2WriteShim(v1.url)

    published, lock = [], threading.Lock()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-watcher", protocol=mqtt.MQTTv5)
    watcher.on_connect = lambda c, *_: c.subscribe("fluxedge/v1/+/flux", qos=1)
    watcher.on_message = lambda c, u, m: (lock.acquire(), published.append(json.loads(m.payload)), lock.release())
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()

    procs = []
    try:
        emulator = start("bridge", "emulate", "csat3", "li7500", "--rate", str(RATE_HZ), "--seed", "11",
                         stdout=subprocess.PIPE)
        procs.append(emulator)
        devices = dict(emulator.stdout.readline().decode().split() for _ in range(2))
        write_configs(tmp_path, mosquitto.port, devices["csat3"], devices["li7500"], v1.url, shim.url)
        for name in ("collector-v1", "collector-v2"):
            procs.append(start("collector", "run", "-c", str(tmp_path / f"{name}.toml")))
        station = start("station", "run", "-c", str(tmp_path / "station.toml"))
        procs.append(station)

        deadline = time.monotonic() + (PERIODS + 2) * PERIOD_S + 10
        while time.monotonic() < deadline and len(published) < PERIODS:
            assert station.poll() is None, "station exited"
            time.sleep(0.5)
        stop(station)
        with lock:
            records = list(published)
        assert len(records) >= PERIODS, f"only {len(records)} periods published"
        assert Spool(tmp_path / "spool.sqlite").depth() == 0  # everything acknowledged by the broker

        # The rows in InfluxDB are exactly what the station computed, through both write APIs.
        for db in ("e2e_v1", "e2e_v2"):
            deadline = time.monotonic() + 15
            rows = []
            while time.monotonic() < deadline and len(rows) < len(records):
                rows = influxql(v1, "SELECT * FROM flux", database=db)
                time.sleep(0.3)
            by_time = {row["time"]: row for row in rows}
            assert len(rows) == len(records), db
            for rec in records:
                end = int(time.mktime(time.strptime(rec["period_end"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
                row = by_time[end]
                assert row["station"] == "e2e-tower" and row["seq"] == rec["seq"]
                for name, value in rec["values"].items():
                    assert row.get(name) == value, (db, name)  # null (not computed) is not written

        # The imposed covariances come back within sampling error.
        site = PeriodSite(20.0, 5.0, rate_hz=RATE_HZ, latitude_deg=1.35, canopy_height_m=3.0,
                          options=Options(despiking="none", vm97_tests=False, spectral="none"))
        n = int(np.median([r["values"]["N_SAMPLES"] for r in records]))
        assert n >= 0.9 * PERIOD_S * RATE_HZ
        spread = sampling_spread(n, site)
        truth = true_fluxes(TurbulenceSpec())
        expected = {"W_TS_COV": truth["W_TS"], "FC": truth["FC"], "FH2O": truth["FH2O"]}
        for name, target in expected.items():
            got = np.array([r["values"][name] for r in records])
            assert np.all(np.abs(got - target) < 4.5 * spread[name]), (name, got, target, spread[name])
            assert abs(got.mean() - target) < 4 * spread[name] / np.sqrt(len(got)), name
    finally:
        for proc in reversed(procs):
            stop(proc)
        watcher.loop_stop()
        watcher.disconnect()
        shim.stop()
