"""Several gas analysers per station: CO2/H2O from an LI-7500 and CH4 from an LI-7700, each screened,
archived as its own instrument in the .ghg, read back with its own geometry, and FCH4 out of the
engine, bit-identical between the live computation, `flux process` and its CSV, and over MQTT."""

import configparser
import dataclasses
import json
import logging
import math
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from test_archive import START, TOWER, assert_identical, job_for, same, turbulence_block

from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe, true_fluxes
from fluxedge.common import messages
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station import config as station_config
from station.acquisition.periodblock import PeriodOutcome
from station.archive.writer import archive_path
from station.daemon import Station
from station.flux import spectral
from station.flux.pipeline import Options, process
from station.processing.fluxjob import run_job
from station.rawdata import read_raw
from station.reprocess.command import process_file
from station.reprocess.enginesetup import ENGINE_VARIABLES, setup_for

ROOT = Path(__file__).resolve().parents[1]
CH4 = "ch4irga"
CH4_SEPARATION_M = (0.3, -0.2, 0.1)
TOWER3 = dataclasses.replace(TOWER, more_analysers=((CH4, "li7700", CH4_SEPARATION_M),))


def three_instrument_block(seconds=600, seed=11):
    """The test_archive period (sonic + LI-7500 with gaps and flagged samples) plus an LI-7700 seeing the
    same turbulence: CH4 density correlated with w, its own pressure, temperature, RSSI and DIAG, and
    samples blanked during a mirror-cleaning spell (DIAG pump_on, as the station screens them)."""
    block = turbulence_block(seconds=seconds, seed=seed)
    n = block.expected
    spec = TurbulenceSpec()
    obs = observe(TurbulenceModel(spec, seed=seed).draw(n), spec.pressure_kpa)  # the same draws, with chi_m
    ch4 = np.asarray(obs["ch4"], dtype=float).copy()
    diag = np.zeros(n)
    washing = slice(n // 3, n // 3 + 40)
    diag[washing] = 256.0  # pump_on: invalid, screened to NaN
    ch4[washing] = np.nan
    block.columns.update({f"{CH4}:ch4": ch4, f"{CH4}:pressure": np.full(n, 100.4), f"{CH4}:t_air": np.full(n, 27.0),
                          f"{CH4}:diag_gas": diag, f"{CH4}:signal_strength": np.full(n, 71.5)})
    return block


def test_each_analyser_is_its_own_instrument_in_the_archive_and_engine(tmp_path):
    outcome = run_job(three_instrument_block(), job_for(tmp_path, TOWER3))
    assert outcome.status == "ok", outcome.error
    path = Path(outcome.archive_path)
    with zipfile.ZipFile(path) as zf:
        stem = path.name[:-4]
        names = zf.read(f"{stem}.data").decode("ascii").splitlines()[7].split("\t")
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read(f"{stem}.metadata").decode("utf-8"))
    ins, fd = meta["Instruments"], meta["FileDescription"]
    assert (ins["instr_2_model"], ins["instr_2_id"]) == ("li7500_1", "irga")
    assert (ins["instr_3_manufacturer"], ins["instr_3_model"], ins["instr_3_id"]) == ("licor", "li7700_1", CH4)
    assert [float(ins[f"instr_3_{d}_separation"]) for d in ("northward", "eastward", "vertical")] == [30.0, -20.0, 10.0]
    cols = {n: {k.split("_", 2)[2]: v for k, v in fd.items() if k.startswith(f"col_{n}_")}
            for n in range(1, len(names))}
    by_var = {}
    for n, c in cols.items():
        by_var.setdefault(c["variable"], []).append((names[n], c))
    (ch4_header, ch4_col), = by_var["ch4"]
    assert ch4_header == "CH4 (mmol/m^3)"
    assert (ch4_col["measure_type"], ch4_col["unit_in"], ch4_col["instrument"]) == ("molar_density", "mmol_m3",
                                                                                    "li7700_1")
    assert [h for h, _ in by_var["co2"]] == ["CO2 (mmol/m^3)"] and by_var["co2"][0][1]["instrument"] == "li7500_1"
    assert [h for h, _ in by_var["air_p"]] == ["Total Pressure (kPa)"]  # one pressure for EddyPro: the LI-7500's
    assert [h for h, _ in by_var["diag_77"]] == ["CH4 Diagnostic Value"]
    for header in ("CH4 Temperature", "CH4 Pressure", "CH4 Signal Strength"):
        assert header in names

    raw = read_raw(path)
    assert raw.gas_types == {"co2": "molar_density", "h2o": "molar_density", "ch4": "molar_density"}
    assert np.isnan(raw["ch4"]).sum() == 40  # the mirror-cleaning spell, as the station screened it
    gases = {g.name: g for g in setup_for(raw, 600.0).gases}
    assert set(gases) == {"co2", "h2o", "ch4"}
    li7500, li7700 = spectral.ANALYSERS["li7500"], spectral.ANALYSERS["li7700"]
    for name in ("co2", "h2o"):
        a = gases[name].analyser
        assert (a.path_length_m, a.horizontal_separation_m) == (li7500.path_length_m, math.hypot(0.15, 0.05))
        assert gases[name].self_heating
    a = gases["ch4"].analyser
    assert a.path_length_m == li7700.path_length_m == 0.5 and not gases["ch4"].self_heating
    assert (a.horizontal_separation_m, a.vertical_separation_m) == (math.hypot(0.3, -0.2), 0.1)
    # EddyPro's open-path window from each analyser's own separation, vertical included:
    # +-(2 s m-1 x sqrt(h^2 + v^2) + 0.3 s)
    reach = 2 * math.sqrt(0.3**2 + 0.2**2 + 0.1**2) + 0.3
    assert gases["ch4"].lag_s == pytest.approx((0.0, -reach, reach))
    assert gases["co2"].lag_s[2] == pytest.approx(2 * math.hypot(0.15, 0.05) + 0.3)

    # FCH4 [nmol m-2 s-1]: the emulator's densities carry no spectroscopic effect, so with the LI-7700
    # corrections of McDermitt et al. (2011) switched off the imposed flux comes back once the spectral
    # factor is taken out (white-noise turbulence needs none), within sampling error; with them on,
    # FCH4 is A [F1 + B E-term + C H-term]; CH4 [nmol mol-1] near the imposed 1.95 umol mol-1 times A
    r = outcome.results
    truth = true_fluxes(TurbulenceSpec())["FCH4"]
    assert r["FCH4_SCF"] > 1.0
    setup = setup_for(raw, 600.0)
    plain_setup = dataclasses.replace(setup, gases=tuple(dataclasses.replace(g, li7700=False) for g in setup.gases))
    columns = {c: raw.columns[c] for c in ENGINE_VARIABLES if c in raw.columns}
    plain = process(columns, plain_setup)
    assert abs(plain["FCH4"] / plain["FCH4_SCF"] - truth) < 0.1 * truth, (plain["FCH4"], truth)
    a, b, c = r["SPEC_CORR_LI7700_A"], r["SPEC_CORR_LI7700_B"], r["SPEC_CORR_LI7700_C"]
    assert 0.8 < a < 1.2 and b > 1.0 and c > 1.0 and r["FCH4"] != pytest.approx(plain["FCH4"], rel=1e-3)
    assert abs(r["CH4"] / a - 1950.0) < 0.05 * 1950.0
    assert math.isfinite(r["FCH4_SSITC_TEST"]) and math.isfinite(r["CH4_LAG"]) and r["FCH4_RANDUNC"] > 0


@pytest.mark.parametrize(("options", "flags"), [(Options(), ()),
                                                (Options(vm97_tests=False), ("--no-statistical-tests",))],
                         ids=["eddypro-defaults", "no-statistical-tests"])
def test_three_instruments_bit_identical_live_process_and_cli(tmp_path, options, flags):
    outcome = run_job(three_instrument_block(seconds=300, seed=5), job_for(tmp_path, TOWER3, options=options))
    assert outcome.status == "ok", outcome.error
    assert ("VM97_HARD_FLAGS" in outcome.results) == options.vm97_tests
    csv_row = assert_identical(outcome.results, Path(outcome.archive_path), tmp_path, options, flags)
    for column in ("FCH4", "CH4", "FCH4_SSITC_TEST", "CH4_LAG", "FCH4_RANDUNC"):
        assert csv_row[column] != "-9999", column
    assert same(float(csv_row["FCH4"]), outcome.results["FCH4"])


def test_cli_digits_option(tmp_path):
    outcome = run_job(three_instrument_block(seconds=120, seed=2), job_for(tmp_path, TOWER3))
    out = tmp_path / "three.csv"
    args = [sys.executable, "-m", "fluxedge.cli", "flux", "process", outcome.archive_path, "-o", str(out)]
    proc = subprocess.run([*args, "--digits", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    header, row = out.read_text().splitlines()
    value = dict(zip(header.split(","), row.split(","), strict=True))["FCH4"]
    assert value == f"{outcome.results['FCH4']:.3g}"
    bad = subprocess.run([*args, "--digits", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--digits" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------ daemon


def station_toml(tmp_path, devices, mqtt_port, period_s, rate_hz):
    path = tmp_path / "station.toml"
    path.write_text(towerconfig.station_toml(
        "ch4-tower", [Instrument("sonic", "csat3", devices["csat3"]),
                      Instrument("irga", "li7500", devices["li7500"], {"northward_separation_m": 0.1}),
                      Instrument(CH4, "li7700", devices["li7700"],
                                 {"northward_separation_m": 0.3, "eastward_separation_m": -0.2})],
        mqtt_port=mqtt_port, spool_path=tmp_path / "spool.sqlite", period_s=period_s, rate_hz=rate_hz,
        tables={"archive": {"directory": tmp_path / "archive", "max_disk_used_pct": 100}}))
    return path


def test_station_with_three_instruments_publishes_fch4(tmp_path, mosquitto):
    period_s, rate_hz = 5, 20
    emulator = subprocess.Popen([sys.executable, "-m", "fluxedge.cli", "bridge", "emulate", "csat3", "li7500", "li7700",
                                 "--rate", str(rate_hz), "--seed", "5"], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    devices = dict(emulator.stdout.readline().decode().split() for _ in range(3))
    assert devices["li7700"].startswith("tcp://")
    cfg, digest = station_config.load(station_toml(tmp_path, devices, mosquitto.port, period_s, rate_hz))
    station = Station(cfg, digest)
    published, lock = [], threading.Lock()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ch4-watcher", protocol=mqtt.MQTTv5)
    watcher.on_connect = lambda c, *_: c.subscribe(station.flux_topic, qos=1)

    def on_message(client, userdata, message):
        with lock:
            published.append(json.loads(message.payload))

    watcher.on_message = on_message
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    runner = threading.Thread(target=station.run, daemon=True)
    runner.start()
    try:
        def with_fch4():
            with lock:
                return [p for p in published if p["values"].get("FCH4") is not None]

        deadline = time.monotonic() + 10 * period_s + 30
        while time.monotonic() < deadline and len(with_fch4()) < 2:
            assert runner.is_alive()
            time.sleep(0.2)
        got = with_fch4()
        assert len(got) >= 2, published
    finally:
        station.stop()
        runner.join(60)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)
        watcher.loop_stop()
        watcher.disconnect()
    assert not runner.is_alive()
    for rec in got:
        values = rec["values"]  # 5-s periods: FCH4 is all sampling noise, but it is there and CH4 is right
        assert math.isfinite(values["FCH4"]) and 1800 < values["CH4"] < 2100, values
        for key in ("CH4_LAG", "FCH4_SSITC_TEST", "FCH4_RANDUNC"):
            assert key in values
        # what went over MQTT is what `flux process` computes from the period's archive file
        start = int(time.mktime(time.strptime(rec["period_start"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
        path = archive_path(tmp_path / "archive", start, "ch4-tower")
        raw = read_raw(path)
        assert raw.gas_types.get("ch4") == "molar_density" and raw.metadata.instrument("li7700_1") is not None
        (row,) = process_file(str(path), options=station.job.options).rows
        for key, value in values.items():
            assert same(math.nan if value is None else value, row.results.get(key, math.nan)), (key, path.name)


def test_spool_full_is_logged_and_the_station_keeps_going(tmp_path, caplog):
    devices = {"csat3": "/dev/null-sonic", "li7500": "/dev/null-irga", "li7700": "tcp://127.0.0.1:1"}
    cfg, digest = station_config.load(station_toml(tmp_path, devices, 1, 60, 20))
    # a really full database: small pages (a flux record needs overflow pages), other data fill every page
    # the file may have (max_page_count), and the spool holds nothing of lower priority to drop
    with sqlite3.connect(cfg.spool.path) as pre:
        pre.execute("PRAGMA page_size = 512")
        pre.execute("CREATE TABLE filler (b BLOB)")
    pre.close()
    station = Station(cfg, digest)  # not run: nothing opens the instruments
    results = {k: 1.0 for k in messages.FLUX_FIELDS}
    ok = PeriodOutcome(START, START + 60, "ok", results, archive_path="/archive/x.ghg", present=1200, expected=1200)
    db = station.spool._db()
    for _ in range(20):
        db.execute("INSERT INTO filler VALUES (randomblob(400))")
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for _ in range(10_000):
            db.execute("INSERT INTO filler VALUES (randomblob(16))")
    caplog.set_level(logging.INFO)
    assert station._on_outcome(ok) is None
    full = [r for r in caplog.records if r.getMessage().startswith("spool_full ")]
    assert len(full) == 1 and full[0].levelno == logging.ERROR and "2026-11-18T11:10:00Z" in full[0].getMessage()
    assert station.spool.depth() == 0
    # room again (data moved off the disk): the next period is spooled as usual
    db.execute("DROP TABLE filler")
    record = station._on_outcome(dataclasses.replace(ok, start_s=START + 60, end_s=START + 120))
    assert record is not None and station.spool.depth() == 1
    station.spool.close()


def test_unplugged_methane_analyser_leaves_co2_and_h2o_untouched(tmp_path):
    """An LI-7700 without a valid sample leaves no CH4 column; CO2/H2O are exactly those of a tower
    without it (the same engine input), and no FCH4 is reported."""
    block = three_instrument_block(seconds=120, seed=4)
    block.columns[f"{CH4}:ch4"][:] = np.nan
    block.columns[f"{CH4}:pressure"][:] = np.nan
    with_ch4 = run_job(block, job_for(tmp_path / "a", TOWER3))
    plain = turbulence_block(seconds=120, seed=4)
    without = run_job(plain, job_for(tmp_path / "b", TOWER))
    assert with_ch4.status == without.status == "ok"
    raw = read_raw(with_ch4.archive_path)
    assert "ch4" not in raw.columns and raw.metadata.instrument("li7700_1") is not None
    assert "FCH4" not in with_ch4.results
    assert all(same(with_ch4.results[k], without.results[k]) for k in without.results)
