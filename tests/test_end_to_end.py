"""A whole tower end to end: emulated instruments on real ptys (CSAT3, LI-7500) and TCP (LI-7700) ->
station -> real mosquitto -> collectors (InfluxDB v1 /write, and v2 /api/v2/write through the translating
shim) -> real influxd. Every published period is also exactly what `fluxedge flux process` computes
from the raw archive file the station wrote."""

import calendar
import csv
import json
import math
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt

from collector.config import InfluxConfig
from collector.query import create_database, influxql
from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe, true_fluxes
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from fluxedge.demo.v2shim import V2WriteShim
from station.acquisition.periodblock import PeriodBlock, TowerInfo
from station.archive.writer import archive_path
from station.flux.pipeline import Options
from station.outbox.spool import Spool
from station.processing.fluxjob import compute
from station.reprocess.command import process_file

PERIOD_S = 15
RATE_HZ = 60
PERIODS = 3
CLI = [sys.executable, "-m", "fluxedge.cli"]
CHECKED = ("W_TS_COV", "FC", "FH2O", "H")
#: the station's [processing] below, as engine options and as `flux process` flags
OPTIONS = Options(despiking="none", vm97_tests=False, spectral="none")
FLAGS = ("--despiking", "none", "--no-statistical-tests", "--spectral", "none", "--digits", "full")
#: the tower of the station config below, as the archive describes it
TOWER = TowerInfo("e2e-tower", 1.35, 103.8, 0.0, 3.0, 5.0, 20.0, "sonic", "csat3", 0.0, "irga", "li7500",
                  more_analysers=(("ch4irga", "li7700", (0.0, 0.0, 0.0)),))


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


def sampling_spread(n_samples, blocks=300):
    """Standard deviation of each checked result over periods of ``n_samples`` drawn from the
    emulator's model and computed as the station computes them (:func:`station.processing.fluxjob.compute`):
    the sampling error the e2e values must fall within."""
    spec = TurbulenceSpec()
    model = TurbulenceModel(spec, seed=99)
    t = np.arange(n_samples) / RATE_HZ
    results = []
    for k in range(blocks):
        obs = observe(model.draw(n_samples), spec.pressure_kpa)
        cols = {c: np.asarray(obs[c], dtype=float) for c in ("u", "v", "w", "t_sonic", "co2", "h2o", "pressure")}
        cols["ch4irga:ch4"] = np.asarray(obs["ch4"], dtype=float)
        start = 1_795_000_200 + k * PERIOD_S
        block = PeriodBlock(start, start + PERIOD_S, float(RATE_HZ), start + t, cols, n_samples, n_samples)
        results.append(compute(block, TOWER, OPTIONS))
    return {name: float(np.std([r[name] for r in results])) for name in (*CHECKED, "FCH4")}


def write_configs(tmp_path, mosquitto_port, sonic, irga, ch4, v1_url, v2_url):
    (tmp_path / "station.toml").write_text(towerconfig.station_toml(
        "e2e-tower", [Instrument("sonic", "csat3", sonic), Instrument("irga", "li7500", irga),
                      Instrument("ch4irga", "li7700", ch4)],
        mqtt_port=mosquitto_port, spool_path=tmp_path / "spool.sqlite", period_s=PERIOD_S, rate_hz=RATE_HZ,
        site={"displacement_height_m": 5.0},
        processing={"despiking": "none", "statistical_tests": False, "spectral_corrections": "none"}))
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
        emulator = start("bridge", "emulate", "csat3", "li7500", "li7700", "--rate", str(RATE_HZ), "--seed", "11",
                         stdout=subprocess.PIPE)
        procs.append(emulator)
        devices = dict(emulator.stdout.readline().decode().split() for _ in range(3))
        write_configs(tmp_path, mosquitto.port, devices["csat3"], devices["li7500"], devices["li7700"], v1.url,
                      shim.url)
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
        # everything was acknowledged by the broker: what the spool still holds are fluxes already
        # published, kept [spool] keep_acked_s after their PUBACK in case the broker dies unsaved
        spooled = [json.loads(m.payload) for m in Spool(tmp_path / "spool.sqlite").oldest(1000)]
        assert {r["seq"] for r in spooled if "seq" in r} <= {r["seq"] for r in records}

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

        # Each published period is what `fluxedge flux process` gets from the station's archive file:
        # every value, bit for bit, in the engine and in the CLI's full-precision CSV.
        files = []
        records.sort(key=lambda r: r["period_start"])
        for rec in records:
            start_s = calendar.timegm(time.strptime(rec["period_start"], "%Y-%m-%dT%H:%M:%SZ"))
            path = archive_path(tmp_path / "archive", start_s, "e2e-tower")
            (row,) = process_file(str(path), options=OPTIONS).rows
            for name, value in rec["values"].items():
                got = row.results.get(name, math.nan)
                assert (value is None and math.isnan(got)) or value == got, (name, value, got)
            files.append(path)
        out = tmp_path / "reprocessed.csv"
        cli = subprocess.run([*CLI, "flux", "process", *map(str, files), "-o", str(out), *FLAGS],
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        with open(out, newline="") as fh:
            csv_rows = list(csv.DictReader(fh))  # in period order, as the records now are
        assert len(csv_rows) == len(records)
        for csv_row, rec in zip(csv_rows, records, strict=True):
            assert csv_row["TIMESTAMP_START"] == "".join(ch for ch in rec["period_start"] if ch.isdigit())[:12]
            for name in ("FC", "FH2O", "LE", "H", "USTAR", "FCH4", "CH4", "FCH4_SSITC_TEST"):
                assert float(csv_row[name]) == rec["values"][name], (rec["period_start"], name)

        # The imposed covariances come back within sampling error.
        n = int(np.median([r["values"]["N_SAMPLES"] for r in records]))
        assert n >= 0.9 * PERIOD_S * RATE_HZ
        spread = sampling_spread(n)
        truth = true_fluxes(TurbulenceSpec())
        expected = {"W_TS_COV": truth["W_TS"], "FC": truth["FC"], "FH2O": truth["FH2O"], "FCH4": truth["FCH4"]}
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
