"""Must show (issue 5): an instrument unplugged from a running station.

A real ``fluxedge station run`` subprocess reads an emulated CSAT3 and LI-7500 on real ptys and
publishes to a real mosquitto. The LI-7500's pty vanishes (a USB adapter pulled out): an
``instrument_silent`` alarm is raised over MQTT within seconds while the sonic's diagnostics keep
counting samples; the pty reappears: the driver re-opens it, samples flow again and the alarm
clears - each transition exactly once, with the time it happened.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

from firmware_bridge.emulator import TowerEmulator
from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument

RATE_HZ = 20
DIAG_S = 3
SILENT_S = 3
CLI = [sys.executable, "-m", "fluxedge.cli"]


class Watcher:
    """A subscriber to the station's alarm and diag topics, noting when each message arrived."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.alarms: list[tuple[float, dict]] = []
        self.diags: list[tuple[float, dict]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unplug-watcher", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe([("fluxedge/v1/unplug-tower/alarm", 1),
                                                            ("fluxedge/v1/unplug-tower/diag", 1)])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            target = self.alarms if doc["kind"] == "alarm" else self.diags
            target.extend((time.time(), rec) for rec in doc["records"])

    def alarm(self, name: str, source: str, state: str) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, r) for t, r in self.alarms if (r["alarm"], r["source"], r["state"]) == (name, source, state)]

    def diag(self, source: str, after: float) -> list[dict]:
        with self.lock:
            return [r for t, r in self.diags if r["source"] == source and t > after]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(condition, what: str, timeout_s: float, station: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert station.poll() is None, f"station exited while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.1)


def write_config(tmp_path, mosquitto_port: int, sonic: str, irga: str, baro_port: int) -> str:
    path = tmp_path / "station.toml"
    path.write_text(towerconfig.station_toml(
        "unplug-tower", [Instrument("sonic", "csat3", sonic), Instrument("irga", "li7500", irga)],
        mqtt_port=mosquitto_port, spool_path=tmp_path / "spool.sqlite", period_s=15, rate_hz=RATE_HZ,
        site={"canopy_height_m": 0.0},
        processing={"despiking": "none", "statistical_tests": False, "spectral_corrections": "none"},
        tables={"diagnostics": {"interval_s": DIAG_S}, "status": {"interval_s": 1},
                "alarm": [{"name": "instrument_silent", "above": SILENT_S}],
                "modbus": [{"name": "baro", "map": "vaisala_barometer", "port": f"tcp://127.0.0.1:{baro_port}",
                            "poll_interval_s": 1, "points": [{"point": "pressure", "name": "PA"}]}]}))
    return str(path)


def test_unplugged_instrument_raises_then_clears_an_alarm(tmp_path, mosquitto):
    emu = TowerEmulator(["csat3", "li7500"], rate_hz=RATE_HZ, seed=21)
    emu.start()
    baro = ModbusEmulator(EmulatedDevice("vaisala_barometer", values={"pressure": 1008.5})).start()
    watcher = Watcher(mosquitto.port)
    config = write_config(tmp_path, mosquitto.port, emu.ports["csat3"].path, emu.ports["li7500"].path, baro.port)
    station = subprocess.Popen([*CLI, "station", "run", "-c", config], stdin=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    irga = emu.instruments["li7500"]
    try:
        # both instruments deliver
        started = time.time()
        wait_for(lambda: watcher.diag("irga", started) and watcher.diag("irga", started)[-1]["values"]
                 ["SAMPLES_RECEIVED"] > 0, "irga diagnostics", 30, station)
        shown = subprocess.run([*CLI, "station", "status", "-c", config], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "sonic" in shown.stdout and "irga" in shown.stdout and "li7500" in shown.stdout
        assert "PA 101" in shown.stdout  # the Modbus barometer polled by the station, hPa -> kPa

        # unplug: the pty and its symlink vanish
        unplugged = time.time()
        irga.inject("disconnect", emu.t_s)
        wait_for(lambda: not irga.port.up, "the pty to vanish", 5, station)
        raised = wait_for(lambda: watcher.alarm("instrument_silent", "irga", "raised"), "alarm raised", 20, station)
        t_received, rec = raised[0]
        print(f"alarm raised {t_received - unplugged:.1f} s after the unplug: {rec['message']}")
        assert t_received - unplugged < 10
        assert rec["severity"] == "critical" and rec["value"] > SILENT_S
        assert rec["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unplugged))

        # the sonic carries on: a whole diagnostics interval inside the outage counts its samples
        after_raise = time.time()
        sonic_diag = wait_for(lambda: watcher.diag("sonic", after_raise), "sonic diagnostics while unplugged",
                              3 * DIAG_S + 5, station)[0]["values"]
        irga_diag = wait_for(lambda: watcher.diag("irga", after_raise), "irga diagnostics", 5, station)[0]["values"]
        assert sonic_diag["SAMPLES_RECEIVED"] >= 0.8 * sonic_diag["SAMPLES_EXPECTED"] > 0, sonic_diag
        assert irga_diag["SAMPLES_RECEIVED"] == 0 and irga_diag["SAMPLES_MISSING"] == irga_diag["SAMPLES_EXPECTED"]
        assert watcher.alarm("instrument_silent", "irga", "cleared") == []

        # plug back in: the driver re-opens the new pty behind the same path, samples flow, the alarm clears
        replugged = time.time()
        irga.clear(emu.t_s)
        cleared = wait_for(lambda: watcher.alarm("instrument_silent", "irga", "cleared"), "alarm cleared", 40,
                           station)
        print(f"alarm cleared {cleared[0][0] - replugged:.1f} s after the replug")
        flowing = wait_for(lambda: [d for d in watcher.diag("irga", cleared[0][0])
                                    if d["values"]["SAMPLES_RECEIVED"] > 0], "irga samples after replug",
                           3 * DIAG_S + 5, station)
        assert flowing[0]["values"]["CONNECTED"] == 1
        assert any(d["values"]["RECONNECTS"] >= 1 for d in watcher.diag("irga", unplugged))
        time.sleep(1.5)
    finally:
        if station.poll() is None:
            station.send_signal(signal.SIGTERM)
        try:
            _, stderr = station.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            station.kill()
            _, stderr = station.communicate()
        watcher.close()
        emu.close()
        baro.stop()
    assert station.returncode == 0, stderr.decode()[-2000:]
    log = stderr.decode()
    assert "monitor_error" not in log and "Traceback" not in log
    assert "WARNING station.monitor alarm_raised alarm=instrument_silent source=irga" in log
    assert "INFO station.monitor alarm_cleared alarm=instrument_silent source=irga" in log
    # exactly one raise and one clear for the outage, the sonic never alarmed
    assert len(watcher.alarm("instrument_silent", "irga", "raised")) == 1
    assert len(watcher.alarm("instrument_silent", "irga", "cleared")) == 1
    assert watcher.alarm("instrument_silent", "sonic", "raised") == []
    # the daemon is down: once its status file is older than 3 x 1 s, `station status` says so
    time.sleep(3.2)
    gone = subprocess.run([*CLI, "station", "status", "-c", config], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "not running" in gone.stderr and "Traceback" not in gone.stderr
