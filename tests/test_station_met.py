"""Slow Modbus met sensors: real pymodbus servers over TCP, polled by the station's met service into
1-minute means (AmeriFlux names and units), the latest pressure for the flux engine, config errors."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import pytest

from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from fluxedge.common import messages
from fluxedge.common.configschema import ConfigError, build
from station import config as station_config
from station.acquisition.met import MetDevice, MetService, MinuteMeans, fill_air_temperature, fill_pressure
from station.health.monitorconfig import ModbusDeviceConfig

T0 = 1_790_000_080.0  # 40 s into a minute
assert T0 % 60 == 40
FAST = {"timeout_s": 0.3, "retries": 0}


def device_config(name: str, map_name: str, port: int, points: list[dict], **kw) -> ModbusDeviceConfig:
    raw = {"name": name, "map": map_name, "port": f"tcp://127.0.0.1:{port}", "points": points, **FAST, **kw}
    return build(ModbusDeviceConfig, raw, "station.toml", "modbus[0].")


@contextlib.contextmanager
def sensors(clock):
    """A Vaisala HMP (T, RH) and a barometer (hPa) whose values are linear in the shared ``clock``."""
    hmp = EmulatedDevice("vaisala_hmp", values=lambda t: {"t_air": 20.0 + 0.1 * (t - T0), "rh": 70.0},
                         clock=clock)
    baro = EmulatedDevice("vaisala_barometer", values=lambda t: {"pressure": 1000.0 + 0.05 * (t - T0)},
                          clock=clock)
    with ModbusEmulator(hmp) as e1, ModbusEmulator(baro) as e2:
        yield e1.port, e2.port


def test_one_minute_means_from_a_real_modbus_server():
    now = {"t": T0}
    with sensors(lambda: now["t"]) as (hmp_port, baro_port):
        means = MinuteMeans(60.0, grace_s=5.0)
        hmp = MetDevice(device_config("hmp", "vaisala_hmp", hmp_port,
                                      [{"point": "t_air", "name": "TA"}, {"point": "rh", "name": "RH"}]), means)
        baro = MetDevice(device_config("baro", "vaisala_barometer", baro_port, [{"point": "pressure", "name": "PA"}],
                                       poll_interval_s=10), means)
        polled_at = np.arange(T0, T0 + 110, 5.0)  # 40 s into minute 0 .. 30 s into minute 2
        for t in polled_at:
            now["t"] = float(t)
            hmp.poll_once(float(t))
            if int(t - T0) % 10 == 0:
                baro.poll_once(float(t))
        assert hmp.polls_ok == len(polled_at) and baro.polls_ok == 11
        assert means.close(T0 + 24.9) == []  # minute 0 ends at T0 + 20; closes 5 s later
        [m0] = means.close(T0 + 25.0)
        [m1] = means.close(T0 + 90.0)
        assert means.close(T0 + 90.0) == []  # each minute once
    minute0 = polled_at[polled_at < T0 + 20]
    minute1 = polled_at[(polled_at >= T0 + 20) & (polled_at < T0 + 80)]
    assert m0.time == T0 + 20 and m1.time == T0 + 80  # stamped with the minute's end
    assert m1.values["TA"] == pytest.approx(np.mean(20.0 + 0.1 * (minute1 - T0)), abs=1e-4)
    assert m0.values["TA"] == pytest.approx(np.mean(20.0 + 0.1 * (minute0 - T0)), abs=1e-4)
    assert m1.values["RH"] == pytest.approx(70.0, abs=1e-4)
    baro_times = minute1[(minute1 - T0) % 10 == 0]
    assert m1.values["PA"] == pytest.approx(np.mean(100.0 + 0.005 * (baro_times - T0)), abs=1e-5)  # hPa -> kPa
    # the latest values for the flux engine, and the contract round trip of a met batch
    latest = means.latest("PA")
    assert latest.time == polled_at[-2] and latest.value == pytest.approx(100.0 + 0.005 * 100, abs=1e-5)
    payload = messages.encode_batch("met", "tower", [m0, m1])
    batch = messages.decode("fluxedge", "fluxedge/v1/tower/met", payload)
    assert [r.time for r in batch.records] == [m0.time, m1.time] and batch.records[1].values == pytest.approx(m1.values)


def test_a_silent_sensor_gives_nan_counts_missing_polls_and_recovers():
    now = {"t": T0}
    with sensors(lambda: now["t"]) as (hmp_port, _):
        means = MinuteMeans()
        dev = MetDevice(device_config("hmp", "vaisala_hmp", hmp_port, [{"point": "t_air", "name": "TA"}]), means)
        dev.poller.backoff_s = dev.poller.backoff_max_s = 0.01
        assert dev.poll_once(T0)["TA"] == pytest.approx(20.0, abs=1e-5)
        dev.take_interval()
        dev.poller.close()
    # the server is gone: polls fail quietly (NaN), the interval counts them missing
    time.sleep(0.02)
    assert math.isnan(dev.poll_once(T0 + 1)["TA"])
    assert not dev.answered
    iv = dev.take_interval()
    assert iv.values["SAMPLES_RECEIVED"] == 0 and iv.values["CONNECTED"] == 0 and iv.values["SAMPLES_MISSING"] >= 1
    [rec] = means.close(T0 + 100)
    assert rec.values == {"TA": pytest.approx(20.0, abs=1e-5)}  # the NaN did not enter the mean


def test_service_threads_poll_on_their_interval_and_feed_the_flux_engine_pressure_and_ta():
    with sensors(lambda: T0 + 30) as (hmp_port, baro_port):
        cfgs = [device_config("hmp", "vaisala_hmp", hmp_port, [{"point": "t_air", "name": "TA"}], poll_interval_s=0.5),
                device_config("baro", "vaisala_barometer", baro_port, [{"point": "pressure", "name": "PA"}],
                              poll_interval_s=0.5)]
        service = MetService(cfgs, period_s=1.0)
        service.start()
        try:
            deadline = time.monotonic() + 10
            while service.latest("PA") is None or service.latest("TA") is None:
                assert time.monotonic() < deadline, "no met values polled"
                time.sleep(0.05)
            time.sleep(2.0)
        finally:
            service.stop()
    assert all(d.polls >= 3 for d in service.devices)
    records = service.flush(time.time() + 10)
    assert len(records) >= 2 and all(set(r.values) <= {"TA", "PA"} for r in records)
    pa = service.latest("PA")
    assert 40 < pa < 120  # kPa
    samples = {"w": np.zeros(5), "pressure": np.full(5, np.nan)}
    assert fill_pressure(samples, service, 5) and np.all(samples["pressure"] == pa)
    own = {"pressure": np.full(5, 99.0)}
    assert not fill_pressure(own, service, 5) and np.all(own["pressure"] == 99.0)  # the analyser's own wins
    assert not fill_pressure({}, None, 5)
    ta = service.latest("TA")
    assert -40 < ta < 60  # degC
    assert fill_air_temperature(samples, service, 5) and np.all(samples["ta_met"] == ta)
    assert not fill_air_temperature({}, None, 5)


def station_toml(tmp_path, modbus: str) -> str:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[site]
id = "met-tower"
latitude_deg = 1.0
longitude_deg = 100.0
[[instruments]]
name = "sonic"
driver = "csat3"
port = "/dev/ttyUSB0"
[mqtt]
[spool]
path = "{tmp_path / 'spool.sqlite'}"
{modbus}""")
    return str(path)


GOOD = """[[modbus]]
name = "hmp"
map = "vaisala_hmp"
port = "/dev/ttyUSB1"
device_id = 240
poll_interval_s = 10
points = [{point = "t_air", name = "TA"}, {point = "rh", name = "RH"}]
"""


def test_modbus_config_loads(tmp_path):
    cfg, _ = station_config.load(station_toml(tmp_path, GOOD))
    [dev] = cfg.modbus
    assert (dev.name, dev.map, dev.device_id, [p.name for p in dev.points]) == ("hmp", "vaisala_hmp", 240, ["TA", "RH"])
    assert dev.factor(dev.points[0]) == (1.0, 0.0)


@pytest.mark.parametrize("change, key, words", [
    (('"t_air"', '"t_airr"'), "modbus[0].points[0].point", "no point 't_airr'"),
    (('name = "TA"', 'name = "TAIR"'), "modbus[0].points[0].name", "not an AmeriFlux met name"),
    (('map = "vaisala_hmp"', 'map = "no_such_map"'), "modbus[0].map", "no_such_map"),
    (('port = "/dev/ttyUSB1"', 'port = "tcp://host"'), "modbus[0].port", "tcp://HOST:PORT"),
    (('device_id = 240', 'device_id = 300'), "modbus[0].device_id", "between 1 and 247"),
    (('{point = "rh", name = "RH"}', '{point = "abs_humidity", name = "RH"}'), "modbus[0].points[1].scale",
     "no known conversion"),
    (('{point = "rh", name = "RH"}', '{point = "rh", name = "TA"}'), "modbus[0].points[1].name", "mapped twice"),
    (('name = "hmp"', 'name = "sonic"'), "modbus[0].name", "already an instrument"),
    (('name = "hmp"', 'name = "HMP"'), "modbus[0].name", "lower-case"),
])
def test_modbus_config_errors_name_the_key(tmp_path, change, key, words):
    path = station_toml(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        station_config.load(path)
    assert err.value.key == key and words in err.value.problem, str(err.value)
