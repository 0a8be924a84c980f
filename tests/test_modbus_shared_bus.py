"""Several Modbus sensors on one RS-485 port, exactly as deploy/examples/station.toml lays them out
(an HMP and a barometer on /dev/ttyUSB2): one bus, one open of the port, one poller thread, many
addresses. A real pymodbus RTU server serves both sensors on one pty; the station's met service polls
them through the other end. When a sensor stops answering, the alarm says what was observed (no
reply from that address on that port), not "unplugged?"."""

from __future__ import annotations

import logging
import os
import time
import tomllib
from pathlib import Path

import pytest

from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from firmware_bridge.ptypair import NullModem
from fluxedge.common import messages
from fluxedge.common.configschema import ConfigError, build
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station import config as station_config
from station.acquisition.met import MetService
from station.acquisition.readers import InstrumentReader
from station.health.monitor import Monitor
from station.health.monitorconfig import ModbusDeviceConfig, check_buses
from station.outbox.spool import Spool

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "examples" / "station.toml"


def example_modbus(port: str, poll_interval_s: float = 0.5) -> list[dict]:
    """The example config's [[modbus]] tables, on ``port`` and polled faster (a test has no minutes)."""
    tables = tomllib.loads(EXAMPLE.read_text())["modbus"]
    return [{**t, "port": port, "poll_interval_s": poll_interval_s, "timeout_s": 0.3, "retries": 1} for t in tables]


def device_configs(tables: list[dict]) -> list[ModbusDeviceConfig]:
    return [build(ModbusDeviceConfig, t, "station.toml", f"modbus[{k}].") for k, t in enumerate(tables)]


def emulated_bus(tables: list[dict], cable: NullModem) -> ModbusEmulator:
    """One RTU server on the cable's other end, a device per table at its address, the maps' line."""
    cfgs = device_configs(tables)
    devices = [EmulatedDevice(c.map, device_id=c.line_settings()["device_id"]) for c in cfgs]
    line = cfgs[0].line_settings()
    return ModbusEmulator(devices, transport="rtu", serial_port=cable.a_path, baudrate=line["baud"],
                          parity=line["parity"], stopbits=line["stopbits"])


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_the_example_configs_two_sensors_share_one_port(caplog):
    caplog.set_level(logging.INFO)
    with NullModem() as cable:
        tables = example_modbus(cable.b_path)
        assert len(tables) == 2 and tables[0]["port"] == tables[1]["port"]
        assert check_buses(device_configs(tables)) == []
        with emulated_bus(tables, cable):
            service = MetService(device_configs(tables), period_s=60.0)
            service.start()
            try:
                assert wait_for(lambda: all(d.polls_ok >= 4 for d in service.devices), 30), \
                    [(d.name, d.polls, d.polls_ok, d.last_failure) for d in service.devices]
            finally:
                service.stop()
    for dev in service.devices:
        assert dev.polls_ok == dev.polls, (dev.name, dev.last_failure)  # every poll of both answered
        assert dev.poller.stats.timeouts == 0 and dev.poller.stats.crc_errors == 0
    # the port was opened once, by one bus, polled by one thread
    assert sum(d.poller.stats.connects for d in service.devices) == 1
    assert len({id(d.poller.bus) for d in service.devices}) == 1
    assert {n for n in ("TA", "RH", "PA") if service.latest(n) is not None} == {"TA", "RH", "PA"}
    assert 80 < service.latest("PA") < 120  # kPa, from the barometer at its own address
    assert not any("met_poll_failed" in r.getMessage() for r in caplog.records)


def test_a_silent_sensor_on_the_bus_raises_an_alarm_saying_what_was_seen(tmp_path):
    with NullModem() as cable:
        tables = example_modbus(cable.b_path, poll_interval_s=0.5)
        toml = tmp_path / "station.toml"
        toml.write_text(towerconfig.station_toml(
            "bus-tower", [Instrument("sonic", "csat3", str(tmp_path / "no-such-port"))], mqtt_port=1883,
            spool_path=tmp_path / "spool.sqlite", period_s=60, tables={"modbus": tables}))
        cfg, _ = station_config.load(toml)
        with emulated_bus(tables, cable) as emu:
            emu.devices[241].faults.silent = True  # the barometer stops answering; the HMP carries on
            service = MetService(cfg.modbus, period_s=60.0)
            reader = InstrumentReader(cfg.instruments[0], 20.0)  # its port does not exist
            spool = Spool(cfg.spool.path)
            monitor = Monitor(cfg, {"sonic": reader}, spool, None, service)
            reader.start()
            service.start()
            try:
                t0, m0 = time.time(), time.monotonic()
                monitor.diagnostics_tick(t0, m0)  # the interval starts
                monitor.fast_tick(t0, m0)
                assert wait_for(lambda: service.devices[1].polls >= 3 and reader.driver.last_error, 30)
                monitor.diagnostics_tick(t0 + 60, time.monotonic())  # a diagnostics interval later
                monitor.fast_tick(t0 + 61, time.monotonic())
            finally:
                service.stop()
                reader.stop(timeout_s=10)
    alarms = [e for m in spool.oldest(1000) if m.kind == "alarm"
              for e in messages.decode("fluxedge", m.topic, m.payload).records]
    raised = {(e.alarm, e.source): e.message for e in alarms if e.state == "raised"}
    baro = raised[("instrument_disconnected", "baro")]
    assert f"no reply from Modbus device 241 at {cable.b_path}" in baro and "timeout" in baro, baro
    assert "unplugged" not in baro and "port closed" not in baro
    assert ("instrument_disconnected", "hmp") not in raised  # the same port, answering: no alarm
    sonic = raised[("instrument_disconnected", "sonic")]
    assert f"port {tmp_path / 'no-such-port'} not open" in sonic and "No such file or directory" in sonic, sonic
    assert "unplugged" not in sonic
    spool.close()


def write_modbus_config(tmp_path, tables: list[dict]) -> Path:
    toml = tmp_path / "station.toml"
    toml.write_text(towerconfig.station_toml("bus", [Instrument("sonic", "csat3", "/dev/ttyUSB0")], mqtt_port=1883,
                                             spool_path=tmp_path / "spool.sqlite", period_s=1800,
                                             tables={"modbus": tables}))
    return toml


HMP = {"name": "hmp", "map": "vaisala_hmp", "points": [{"point": "t_air", "name": "TA"}]}
BARO = {"name": "baro", "map": "vaisala_barometer", "points": [{"point": "pressure", "name": "PA"}]}


@pytest.mark.parametrize(("tables", "key", "problem"), [
    # both maps' factory address is 240: on one bus one of them must be readdressed
    ([{**HMP, "port": "/dev/ttyUSB2"}, {**BARO, "port": "/dev/ttyUSB2"}], "modbus[1].device_id",
     "address 240 on /dev/ttyUSB2 is also modbus[0] 'hmp''s"),
    ([{**HMP, "port": "/dev/ttyUSB2"}, {**BARO, "port": "/dev/ttyUSB2", "device_id": 241, "baud": 9600}],
     "modbus[1].baud", "9600 differs from modbus[0] 'hmp' (19200) on the same port"),
    ([{**HMP, "port": "tcp://10.0.0.5:502"}, {**BARO, "port": "tcp://10.0.0.5:502"}], "modbus[1].device_id",
     "every sensor on one bus needs its own address"),
])
def test_sensors_sharing_a_bus_need_their_own_address_and_one_line_setting(tmp_path, tables, key, problem):
    toml = write_modbus_config(tmp_path, tables)
    with pytest.raises(ConfigError) as err:
        station_config.load(toml)
    message = str(err.value)
    assert message.startswith(f"{toml}: {key}: ") and problem in message and "\n" not in message


def test_a_port_named_through_a_link_is_the_same_bus(tmp_path):
    with NullModem() as cable:
        link = tmp_path / "fluxedge-met"
        os.symlink(cable.b_path, link)  # as /dev/serial/by-id/... names /dev/ttyUSB2
        tables = [{**HMP, "port": cable.b_path}, {**BARO, "port": str(link)}]
        with pytest.raises(ConfigError, match=r"modbus\[1\]\.device_id"):
            station_config.load(write_modbus_config(tmp_path, tables))
        tables[1]["device_id"] = 241
        cfg, _ = station_config.load(write_modbus_config(tmp_path, tables))
        assert len(MetService(cfg.modbus).buses) == 1
        # on different gateways the same address is fine
        cfg, _ = station_config.load(write_modbus_config(tmp_path, [{**HMP, "port": "tcp://10.0.0.5:502"},
                                                                     {**BARO, "port": "tcp://10.0.0.6:502"}]))
        assert len(MetService(cfg.modbus).buses) == 2
