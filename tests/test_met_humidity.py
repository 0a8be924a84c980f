"""Humidity from the met sensor: the emulated HMP's air is the turbulence model's air (so the flux
engine, taking the met air temperature as its ambient Ta, gets a relative humidity below 100 % at
any time of the emulated day), and a sensor's RH above 100 % is treated as EddyPro treats it
(FluxParams, RHmax = 130 %: saturation up to RHmax, missing beyond). Real pymodbus servers over TCP."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from test_archive import job_for, turbulence_block

from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from firmware_bridge.turbulence import TurbulenceSpec
from fluxedge.common import messages
from fluxedge.common.configschema import build
from station.acquisition.met import MetDevice, MinuteMeans
from station.acquisition.periodblock import PeriodBlock
from station.health.monitorconfig import ModbusDeviceConfig
from station.processing.fluxjob import run_job

HMP_POINTS = [{"point": "t_air", "name": "TA"}, {"point": "rh", "name": "RH"}]


def hmp_config(port: int) -> ModbusDeviceConfig:
    raw = {"name": "hmp", "map": "vaisala_hmp", "port": f"tcp://127.0.0.1:{port}", "points": HMP_POINTS,
           "timeout_s": 0.5, "retries": 0}
    return build(ModbusDeviceConfig, raw, "station.toml", "modbus[0].")


def test_emulated_met_air_is_the_turbulence_models_air_at_every_hour(tmp_path):
    now = {"t": 0.0}
    hmp = EmulatedDevice("vaisala_hmp", clock=lambda: now["t"])  # the emulator's own values
    spec = TurbulenceSpec()
    with ModbusEmulator(hmp) as emu:
        dev = MetDevice(hmp_config(emu.port), MinuteMeans())
        for k, t in enumerate(np.arange(0.0, 3600.0, 450.0)):  # one emulated day, every 3 "hours"
            now["t"] = float(t)
            met = dev.poll_once(float(t))
            assert dev.polls_ok == k + 1
            assert met["TA"] == pytest.approx(spec.t_mean_k - 273.15, abs=0.05), t
            assert 0 < met["RH"] < 100
            # the station gives the engine the met Ta; its RH from the analyser's water vapour agrees
            plain = turbulence_block(start=1_795_000_200 + 600 * k, seconds=300, seed=30 + k, gaps=False)
            block = PeriodBlock(plain.start_s, plain.end_s, plain.rate_hz, plain.time_s,
                                {**plain.columns, "ta_met": np.full(plain.expected, met["TA"])}, plain.expected,
                                plain.present)
            out = run_job(block, job_for(tmp_path / str(k)))
            assert out.status == "ok"
            assert out.results["TA"] == pytest.approx(met["TA"], abs=1e-6)
            assert out.results["RH"] < 100 and out.results["RH"] == pytest.approx(met["RH"], abs=2.0), t


@pytest.mark.parametrize(("sent", "reported"), [(99.5, 99.5), (100.0, 100.0), (100.4, 100.0), (104.0, 100.0),
                                                (129.0, 100.0), (130.0, None), (160.0, None)])
def test_sensor_humidity_above_100_is_handled_as_eddypro_does(sent, reported, caplog):
    caplog.set_level(logging.INFO)
    with ModbusEmulator(EmulatedDevice("vaisala_hmp", values={"rh": sent, "t_air": 12.0})) as emu:
        means = MinuteMeans()
        dev = MetDevice(hmp_config(emu.port), means)
        values = dev.poll_once(1_790_000_010.0)
    assert values["TA"] == pytest.approx(12.0)
    if reported is None:  # not a humidity: missing, and the log says why
        assert math.isnan(values["RH"])
        assert any("met_poll_failed" in r.getMessage() and ("not a relative humidity" in r.getMessage()
                                                            or "outside 0..130" in r.getMessage())
                   for r in caplog.records)
        return
    assert values["RH"] == pytest.approx(reported, abs=1e-4)
    # the minute mean travels the wire contract (RH 0..105) and is accepted by the collector's decoder
    [record] = means.close(1_790_000_100.0)
    payload = messages.encode_batch("met", "tower", [record])
    batch = messages.decode("fluxedge", "fluxedge/v1/tower/met", payload)
    assert batch.records[0].values["RH"] == pytest.approx(reported, abs=1e-4)
