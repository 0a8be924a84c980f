"""Technician tools through the real CLI: emulate, sniff, decode, probe; and their building blocks
(fault specs, UART baud mismatch, addresses)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import csat3, uart
from firmware_bridge.emulator import TowerEmulator
from firmware_bridge.faults import FaultSpecError, parse_fault
from firmware_bridge.link import parse_address
from firmware_bridge.probe import explain, probe_port

FLUXEDGE = [sys.executable, "-m", "fluxedge.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*FLUXEDGE, *args], capture_output=True, text=True, timeout=timeout)


@given(st.binary(max_size=64), st.sampled_from([2400, 9600, 19200, 115200]))
@settings(max_examples=50, deadline=None)
def test_uart_same_rate_passes_bytes_unchanged(data, baud):
    assert uart.resample(data, baud, baud) == data


def test_uart_mismatch_gives_garbage_not_frames():
    frames = csat3.encode([1.0] * 20, [0.5] * 20, [0.1] * 20, [25.0] * 20, range(20))
    for tx, rx in ((9600, 19200), (19200, 9600), (115200, 9600)):
        parser = csat3.Parser()
        parser.feed(uart.resample(frames, tx, rx))
        assert parser.stats.frames_ok == 0, (tx, rx)
    # 8N1 timing: at half the rate each received byte spans two sent ones
    assert len(uart.resample(b"\xff" * 10, 19200, 9600)) <= 6


def test_fault_specs():
    f = parse_fault("silence@10+5")
    assert (f.kind, f.start_s, f.duration_s) == ("silence", 10.0, 5.0)
    assert not f.active(9.9) and f.active(10) and not f.active(15)
    assert parse_fault("bad_checksum:0.05").probability == 0.05
    for bad, why in (("hail", "unknown kind"), ("noise:2", "not between 0 and 1"), ("silence:0.5", "only to"),
                     ("noise@x", "expected KIND")):
        with pytest.raises(FaultSpecError, match=why):
            parse_fault(bad)


def test_addresses():
    assert parse_address("tcp://10.0.0.7:7700").port == 7700
    assert parse_address("/dev/ttyUSB0").path == "/dev/ttyUSB0"
    for bad in ("tcp://host", "tcp://host:99999", "udp://x:1", ""):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_probe_finds_family_and_baud():
    """A CSAT3 set to 19200 baud (``br 1``) is not heard at 9600 but is found at 19200."""
    tower = TowerEmulator(["csat3"], 20, devices={"csat3": {"baud": 19200}}, seed=1)
    tower.start()
    try:
        found, heard = probe_port(tower.ports["csat3"].path, listen_s=0.6, bauds=[9600, 19200, 115200])
    finally:
        tower.close()
    assert [(r.family, r.baud) for r in found] == [("csat3", 19200)]
    assert heard[0].baud == 9600 and heard[0].bytes_heard > 0 and heard[0].best.frames_ok < 3
    assert "csat3 answered at 19200 baud" in explain("X", found, heard)[0]


def test_probe_explains_silence():
    tower = TowerEmulator(["csat3"], 20, faults={"csat3": [parse_fault("silence")]}, seed=1)
    tower.start()
    try:
        found, heard = probe_port(tower.ports["csat3"].path, listen_s=0.3, bauds=[9600, 19200])
    finally:
        tower.close()
    assert found == []
    text = "\n".join(explain("PORT", found, heard))
    assert "no supported instrument answered" in text and "Nothing at any rate" in text


def test_emulate_then_sniff_through_the_cli():
    emu = subprocess.Popen([*FLUXEDGE, "bridge", "emulate", "csat3", "--seed", "4", "--fault", "rain@0+1.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        name, path = emu.stdout.readline().split()
        assert name == "csat3"
        sniff = run("bridge", "sniff", "--instrument", "csat3", "--port", path, "--duration", "3",
                    "--health-every", "1")
    finally:
        emu.terminate()
        emu.wait(5)
    assert sniff.returncode == 0, sniff.stderr
    rows = [json.loads(line) for line in sniff.stdout.splitlines()]
    assert len(rows) > 20 and all({"u", "v", "w", "t_sonic", "diag", "flags"} <= row.keys() for row in rows)
    rainy = [r for r in rows if "amplitude_low" in r["flags"]]
    assert rainy and len(rainy) < len(rows)  # rain for the first 1.5 s only
    health = [line for line in sniff.stderr.splitlines() if line.startswith("health")]
    assert health and "frames/s" in health[-1] and "checksum errors" in health[-1]


def test_decode_cli_reports_frames_events_and_summary(tmp_path):
    good = csat3.encode([1.0, 2.0, 3.0], [0.0] * 3, [0.1] * 3, [25.0] * 3, [1, 2, 5], flags=0b0001)
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"\x00garbage" + good)
    out = run("bridge", "decode", "--instrument", "csat3", str(capture))
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    frames = [o for o in objs if "u" in o]
    events = {o["event"]: o["count"] for o in objs if "event" in o}
    assert [f["u"] for f in frames] == [1.0, 2.0, 3.0]
    assert all(f["flags"] == ["amplitude_low"] for f in frames)
    assert events == {"resyncs": 1, "bytes_skipped": 8, "counter_gaps": 1, "samples_missed": 2}
    assert objs[-1]["summary"]["frames_ok"] == 3


def test_decode_cli_errors_are_clear(tmp_path):
    out = run("bridge", "decode", "--instrument", "csat3", str(tmp_path / "missing.bin"))
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr
    out = run("bridge", "emulate", "csat3", "--fault", "hail")
    assert out.returncode == 2 and "unknown kind 'hail'" in out.stderr
    out = run("bridge", "sniff", "--instrument", "csat3", "--port", "udp://x", "--duration", "1")
    assert out.returncode == 2 and "--port" in out.stderr


def test_sniff_reports_a_vanished_port(tmp_path):
    start = time.monotonic()
    out = run("bridge", "sniff", "--instrument", "csat3", "--port", str(tmp_path / "nothing"), "--duration", "1.5",
              "--health-every", "0.5")
    assert out.returncode == 0 and time.monotonic() - start < 10
    assert "instrument_unavailable" in out.stderr and "DISCONNECTED" in out.stderr


def test_modbus_emulate_and_sniff_through_the_cli():
    """A Vaisala HMP served over Modbus TCP, silent from 1.5 s to 3 s, polled by the sniffer."""
    emu = subprocess.Popen([*FLUXEDGE, "bridge", "emulate", "modbus", "--map", "vaisala_hmp", "--tcp", "0",
                            "--fault", "silence@1.5+1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = emu.stdout.readline().split()
        assert line[0] == "modbus" and line[2] == "map=vaisala_hmp" and line[3] == "device_id=240", line
        sniff = run("bridge", "sniff", "--instrument", "modbus", "--map", "vaisala_hmp", "--port", line[1],
                    "--duration", "4.5", "--every", "0.25", "--health-every", "1", "--timeout", "0.3", "--retries", "0")
    finally:
        emu.terminate()
        emu.wait(5)
    assert sniff.returncode == 0, sniff.stderr
    polls = [json.loads(x) for x in sniff.stdout.splitlines()]
    good = [p for p in polls if not p["errors"]]
    assert good and 0 < good[0]["rh"] < 100 and -40 < good[0]["t_air"] < 60
    assert not polls[-1]["errors"], "polling did not recover after the silence"
    assert any("timeout" in reason for p in polls for reason in p["errors"].values()), polls[:3]
    assert "Traceback" not in sniff.stderr
    final = sniff.stderr.strip().splitlines()[-1]
    assert final.startswith("health modbus vaisala_hmp") and "timeouts 0" not in final


def test_probe_asks_for_modbus_sensors_over_rtu():
    """A soil probe (address 1) on a real pymodbus RTU server behind a pty null-modem answers the
    probe's read for its own map; nobody answers at the Vaisala address 240."""
    from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
    from firmware_bridge.probe import probe_modbus
    from firmware_bridge.ptypair import NullModem

    with NullModem() as modem, ModbusEmulator(EmulatedDevice("soil_probe_layout_a"), transport="rtu",
                                              serial_port=modem.a_path, baudrate=9600):
        answers = probe_modbus(modem.b_path, timeout_s=0.3, serial_format="8N1")
    by_map = {a.map_name: a for a in answers}
    assert by_map["soil_probe_layout_a"].reply == "data" and by_map["soil_probe_layout_a"].device_id == 1
    assert "vaisala_hmp" not in by_map
    assert "answered at 9600 baud 8N1 (data)" in by_map["soil_probe_layout_a"].describe()


def test_modbus_emulator_serves_two_sensors_at_their_own_addresses():
    """Two maps with the same default address: a one-line error naming both and the fix; with
    NAME@ID each answers at its own address on the one bus."""
    clash = run("bridge", "emulate", "modbus", "--map", "vaisala_hmp", "--map", "vaisala_barometer", "--tcp", "0")
    assert clash.returncode == 2 and "Traceback" not in clash.stderr
    assert "both answer at device id 240" in clash.stderr and "@1" in clash.stderr
    emu = subprocess.Popen([*FLUXEDGE, "bridge", "emulate", "modbus", "--map", "vaisala_hmp@7", "--map",
                            "vaisala_barometer@9", "--tcp", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first, second = emu.stdout.readline().split(), emu.stdout.readline().split()
        assert (first[2], first[3], second[2], second[3]) == ("map=vaisala_hmp", "device_id=7",
                                                              "map=vaisala_barometer", "device_id=9")
        polls = {}
        for name, device_id in (("vaisala_hmp", "7"), ("vaisala_barometer", "9")):
            sniff = run("bridge", "sniff", "--instrument", "modbus", "--map", name, "--device-id", device_id,
                        "--port", first[1], "--duration", "1", "--every", "0.25", "--timeout", "0.5")
            assert sniff.returncode == 0, sniff.stderr
            polls[name] = [json.loads(x) for x in sniff.stdout.splitlines()]
    finally:
        emu.terminate()
        emu.wait(5)
    assert any(not p["errors"] and 0 < p["rh"] < 100 for p in polls["vaisala_hmp"])
    assert any(not p["errors"] for p in polls["vaisala_barometer"])
