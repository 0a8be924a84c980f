"""``fluxedge station check`` tests everything the daemon needs, through the real command: emulated
CSAT3 and LI-7500 on ptys, an HMP and a barometer on one emulated RS-485 bus (a real pymodbus RTU
server), mosquitto started from the shipped deploy/mosquitto files (TLS listener, password file),
the spool, archive and status directories. While the daemon runs, the check leaves its ports alone
and reports its status file; a daemon that holds its lock but stopped writing its status is hung."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from firmware_bridge.ptypair import NullModem
from fluxedge.demo import towerconfig
from fluxedge.demo.servers import start_shipped_mosquitto
from fluxedge.demo.towerconfig import Instrument

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("fluxedge")
FLUXEDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "fluxedge.cli"]
SITE, PASSWORD = "chk-tower", "chk-pw-7"
MODBUS = [{"name": "hmp", "map": "vaisala_hmp", "device_id": 240, "poll_interval_s": 1,
           "points": [{"point": "t_air", "name": "TA"}, {"point": "rh", "name": "RH"}]},
          {"name": "baro", "map": "vaisala_barometer", "device_id": 241, "poll_interval_s": 1,
           "points": [{"point": "pressure", "name": "PA"}]}]


def fluxedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FLUXEDGE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = start_shipped_mosquitto(tmp_path_factory.mktemp("broker"), {SITE: PASSWORD})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tower():
    """Emulated sonic + analyser on ptys and two Modbus sensors on one emulated RS-485 bus."""
    emulator = subprocess.Popen([*FLUXEDGE, "bridge", "emulate", "csat3", "li7500", "--rate", "20", "--seed", "5"],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    ports = dict(emulator.stdout.readline().decode().split() for _ in range(2))
    with NullModem() as cable, ModbusEmulator([EmulatedDevice("vaisala_hmp", device_id=240),
                                               EmulatedDevice("vaisala_barometer", device_id=241)],
                                              transport="rtu", serial_port=cable.a_path, baudrate=19200,
                                              parity="N", stopbits=2) as bus:
        yield {"sonic": ports["csat3"], "irga": ports["li7500"], "bus": cable.b_path, "emulator": bus}
    emulator.send_signal(signal.SIGTERM)
    emulator.wait(10)


def write_config(tmp_path: Path, tower: dict, broker, *, password: str = PASSWORD, ca: Path | None = None,
                 archive: Path | None = None) -> Path:
    toml = tmp_path / "station.toml"
    toml.write_text(towerconfig.station_toml(
        SITE, [Instrument("sonic", "csat3", tower["sonic"]), Instrument("irga", "li7500", tower["irga"])],
        mqtt_port=broker.tls_port, spool_path=tmp_path / "spool.sqlite", period_s=1800,
        mqtt={"username": SITE, "password": password, "keepalive_s": 10, "reconnect_max_s": 2},
        tables={"mqtt.tls": {"ca_file": ca or broker.certs / "ca.crt"},
                "archive": {"directory": archive or tmp_path / "archive"},
                "status": {"interval_s": 0.5},
                "modbus": [{**m, "port": tower["bus"]} for m in MODBUS]}))
    return toml


def lines(output: str) -> dict[str, str]:
    """``  WHAT: OK|FAIL: text`` lines by what they check (``instrument sonic``, ``spool``)."""
    out = {}
    for line in output.splitlines():
        m = re.match(r"  (.*?): (OK|FAIL): (.*)$", line)
        if m:
            words = m.group(1).split()
            key = " ".join(words[:2]) if words[0] in ("instrument", "modbus", "mqtt", "status") else words[0]
            out[key] = f"{m.group(2)}: {m.group(3)}"
    return out


def test_check_tests_instruments_modbus_broker_and_paths(tmp_path, tower, broker):
    result = fluxedge("station", "check", "-c", str(write_config(tmp_path, tower, broker)), "--seconds", "1")
    got = lines(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    for what in ("instrument sonic", "instrument irga", "modbus hmp", "modbus baro", "mqtt broker", "spool",
                 "archive", "status file"):
        assert what in got and got[what].startswith("OK"), (what, result.stdout)
    assert "Hz" in got["instrument sonic"] and "TA 27" in got["modbus hmp"] and "PA 100" in got["modbus baro"]
    assert "TLS" in got["mqtt broker"] and f"user {SITE}" in got["mqtt broker"]
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def read_only_filesystem():
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="fluxedge-ro-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def test_check_says_what_is_wrong_with_each(tmp_path, tower, broker):
    tower["emulator"].devices[241].faults.silent = True  # the barometer stopped answering
    try:
        with read_only_filesystem() as ro:
            toml = write_config(tmp_path, tower, broker, password="wrong", archive=ro / "archive")
            result = fluxedge("station", "check", "-c", str(toml), "--seconds", "0.5")
    finally:
        tower["emulator"].devices[241].faults.clear()
    got = lines(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert got["mqtt broker"].startswith("FAIL: refused")  # mosquitto 2.0 says "Not authorized" for a bad password
    assert any(w in got["mqtt broker"].lower() for w in ("not authorized", "user name or password"))
    assert got["modbus baro"].startswith("FAIL") and "no response from device 241" in got["modbus baro"]
    assert got["modbus hmp"].startswith("OK")  # the same bus, answering
    assert got["archive"].startswith("FAIL") and "Read-only file system" in got["archive"]
    assert got["instrument sonic"].startswith("OK") and got["spool"].startswith("OK")
    assert "Traceback" not in result.stderr
    # an untrusted CA is a TLS failure, named
    other = tmp_path / "other-ca"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rogue",
                    "-keyout", str(other.with_suffix(".key")), "-out", str(other.with_suffix(".crt"))],
                   check=True, capture_output=True)
    toml = write_config(tmp_path, tower, broker, ca=other.with_suffix(".crt"))
    result = fluxedge("station", "check", "-c", str(toml), "--seconds", "0.5")
    assert result.returncode == 1 and "TLS" in lines(result.stdout)["mqtt broker"], result.stdout


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_check_reads_a_running_daemons_status_instead_of_opening_its_ports(tmp_path, tower, broker):
    toml = write_config(tmp_path, tower, broker)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([*FLUXEDGE, "station", "run", "-c", str(toml)], stdout=out, stderr=out,
                                  stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    status_file = tmp_path / "status.json"
    try:
        def ready():
            text = status_file.read_text() if status_file.exists() else ""
            return '"connected":true' in text and '"answered":true' in text and text.count('"connected":true') >= 3

        assert wait_for(ready, 60), log.read_text()[-3000:]
        time.sleep(2.0)  # both Modbus sensors answered at least once
        before = log.read_text()
        result = fluxedge("station", "check", "-c", str(toml), "--seconds", "2")
        time.sleep(1.5)
        during = log.read_text()[len(before):]
        got = lines(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"daemon: running (pid {daemon.pid})" in result.stdout
        for what in ("instrument sonic", "instrument irga", "modbus hmp", "modbus baro", "mqtt broker"):
            assert got[what].startswith("OK"), (what, result.stdout)
        assert "frames" not in result.stdout  # it did not listen on the ports itself
        # and the daemon kept its instruments: no port lost or reopened meanwhile
        for word in ("instrument_lost", "instrument_open", "instrument_unavailable"):
            assert word not in during, during
        # a second daemon on this spool refuses to start (one line, exit 2)
        second = fluxedge("station", "run", "-c", str(toml), timeout=60)
        assert second.returncode == 2 and f"another station daemon (pid {daemon.pid})" in second.stderr, \
            second.stderr
        # a daemon that holds its lock but stopped writing its status: hung, and its ports left alone
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)  # 3 x its status interval and more
            hung = fluxedge("station", "check", "-c", str(toml), "--seconds", "2")
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        assert hung.returncode == 1 and f"daemon (pid {daemon.pid})" in hung.stdout and "hung?" in hung.stdout, \
            hung.stdout
        assert "frames" not in hung.stdout and "instrument sonic" not in hung.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
