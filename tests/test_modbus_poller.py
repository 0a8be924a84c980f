"""ModbusPoller against the real pymodbus server (ModbusEmulator) over TCP and over RTU on a pty pair.

No mocks: every test runs a pymodbus 3.12 server in a thread and polls it with the pymodbus sync
clients. Ptys have no parity: some kernels refuse PARENB on a pty (EINVAL on the second
tcsetattr), so RTU tests open both ends 8N1 whatever the map says.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time

import pytest

from firmware_bridge.modbus.maps import Point, RegisterMap, load_map, parse_map, shipped_maps
from firmware_bridge.modbus.poller import ModbusPoller
from firmware_bridge.modbus.server import EmulatedDevice, ModbusEmulator
from firmware_bridge.ptypair import NullModem

FAST = {"timeout_s": 0.2, "retries": 0, "backoff_s": 0.05, "backoff_max_s": 0.2, "pause_s": 0.0}


def chosen_values(m: RegisterMap) -> dict[str, float]:
    """A value for every point, inside its range, not on a round number."""
    out = {}
    for p in m.points:
        if p.default is not None:
            out[p.name] = p.default
        elif p.min is not None and p.max is not None:
            out[p.name] = p.min + 0.3719 * (p.max - p.min)
        else:
            out[p.name] = 3.0
    return out


def tolerance(m: RegisterMap, p: Point, values: dict[str, float]) -> float:
    if p.type == "float32":
        return abs(values[p.name]) * 1e-6 + 1e-9
    step = abs(p.scale)
    if p.scale_register is not None:
        step /= 10 ** values[m.at(p.kind, p.scale_register).name]
    return step / 2 + 1e-9


def assert_round_trip(m: RegisterMap, result, values: dict[str, float]) -> None:
    assert result.ok, result.errors
    for p in m.points:
        assert result.values[p.name] == pytest.approx(values[p.name], abs=tolerance(m, p, values)), p.name


@contextlib.contextmanager
def tcp_setup(map_name: str | RegisterMap, values=None, **poller_kw):
    dev = EmulatedDevice(map_name, values=values)
    with ModbusEmulator(dev) as emu:
        kw = {**FAST, **poller_kw}
        with ModbusPoller(dev.map, "tcp", host="127.0.0.1", port=emu.port, **kw) as poller:
            yield emu, dev, poller


@contextlib.contextmanager
def rtu_setup(map_name: str | RegisterMap, values=None, **poller_kw):
    dev = EmulatedDevice(map_name, values=values)
    with NullModem(capture=True) as cable, \
            ModbusEmulator(dev, transport="rtu", serial_port=cable.a_path, parity="N", stopbits=1) as emu:
        kw = {**FAST, "parity": "N", "stopbits": 1, **poller_kw}
        with ModbusPoller(dev.map, "rtu", port=cable.b_path, **kw) as poller:
            yield emu, dev, poller, cable


def poll_until_ok(poller: ModbusPoller, deadline_s: float = 3.0):
    end = time.monotonic() + deadline_s
    while True:
        result = poller.poll()
        if result.ok or time.monotonic() > end:
            return result
        time.sleep(0.02)


# -- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", shipped_maps())
def test_every_shipped_map_round_trips_over_tcp(name):
    m = load_map(name)
    values = chosen_values(m)
    with tcp_setup(name, values) as (_emu, dev, poller):
        result = poller.poll()
        assert_round_trip(m, result, values)
        assert len(dev.requests) == len(poller.plan) == poller.stats.requests
        assert poller.stats.polls_ok == 1 and poller.stats.replies_ok == len(poller.plan)


@pytest.mark.parametrize("name", shipped_maps())
def test_every_shipped_map_round_trips_over_rtu(name):
    m = load_map(name)
    values = chosen_values(m)
    with rtu_setup(name, values) as (_emu, dev, poller, cable):
        for _ in range(2):
            assert_round_trip(m, poller.poll(), values)
        assert poller.stats.polls_ok == 2 and poller.stats.connects == 1
        assert cable.bytes_a_to_b > 0 and cable.bytes_b_to_a == 8 * len(poller.plan) * 2  # 8-byte read requests
        assert dev.device_id == m.device.address


def test_vaisala_vector_values_over_rtu_bytes():
    """The emulator sends the instruments.md 7.2 reply bytes for RH 30.56 / T 21.5."""
    with rtu_setup("vaisala_hmp", {"rh": 30.56, "t_air": 21.5}) as (_emu, _dev, poller, cable):
        result = poller.poll()
        assert result.values["rh"] == pytest.approx(30.56, abs=1e-5) and result.values["t_air"] == 21.5
        bus = cable.bus_bytes()
        assert bus.startswith(bytes.fromhex("F0 03 00 00 00 04 51 28"))
        assert bytes.fromhex("F0 03 08 7A E1 41 F4 00 00 41 AC 6A 94") in bus


def test_time_varying_values_follow_the_source():
    clock = {"t": 0.0}
    dev_values = {}
    with tcp_setup("soil_probe_layout_a", lambda t: dict(dev_values)) as (_emu, dev, poller):
        dev.clock = lambda: clock["t"]
        dev_values["soil_moisture"] = 10.0
        first = poller.poll().values["soil_moisture"]
        dev_values["soil_moisture"] = 40.2
        second = poller.poll().values["soil_moisture"]
        assert (first, second) == (pytest.approx(10.0), pytest.approx(40.2))
        # unset points come from the synthetic met source (physically plausible)
        assert -40 < poller.poll().values["soil_temperature"] < 80


ALL_KINDS = {
    "device": {"model": "every kind, type and order", "address": 17},
    "points": [
        {"name": "coil_a", "kind": "coil", "address": 0}, {"name": "coil_b", "kind": "coil", "address": 1},
        {"name": "di_a", "kind": "discrete", "address": 5},
        *[{"name": f"h_{t}_{o.lower()}", "kind": "holding", "address": 10 + 2 * k + 10 * j, "type": t, "order": o}
          for j, t in enumerate(("int16", "uint16", "int32", "uint32", "float32"))
          for k, o in enumerate(("ABCD", "CDAB", "BADC", "DCBA"))],
        {"name": "in_scaled", "kind": "input", "address": 0, "type": "int32", "order": "CDAB", "scale": 0.001,
         "offset": -50.0},
    ],
}


def test_every_kind_type_and_order_round_trips():
    m = parse_map(ALL_KINDS, "all_kinds.toml")
    values = {"coil_a": 1.0, "coil_b": 0.0, "di_a": 1.0, "in_scaled": 1234.567}
    big = {"int16": -12345, "uint16": 54321, "int32": -1234567890, "uint32": 3_456_789_012, "float32": -1.5e-3}
    values |= {p.name: float(big[p.type]) for p in m.points if p.kind == "holding"}
    with tcp_setup(m, values) as (_emu, _dev, poller):
        kinds = sorted({r.kind for r in poller.plan})
        assert kinds == ["coil", "discrete", "holding", "input"]
        assert_round_trip(m, poller.poll(), values)


# -- exceptions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@pytest.mark.parametrize(("code", "text"), [(4, "device failure"), (6, "device busy")])
def test_exception_replies_are_counted_named_and_recover(transport, code, text):
    setup = tcp_setup if transport == "tcp" else rtu_setup
    with setup("vaisala_hmp") as (emu, *_rest):
        poller = _rest[1]
        emu.faults.exception = code
        result = poller.poll()
        reasons = result.reasons()
        assert set(reasons) == set(poller.map.names) and all(math.isnan(v) for v in result.values.values())
        assert reasons["rh"] == f"exception 0x{code:02X} {text} at holding 0x0000 (4 registers) from device 240"
        assert reasons["td"] == f"exception 0x{code:02X} {text} at holding 0x0006 (16 registers) from device 240"
        assert poller.stats.exceptions == 2 and poller.stats.timeouts == 0
        emu.faults.clear()
        assert poller.poll().ok  # the device answered: no backoff, the next poll works at once
        assert poller.stats.polls_skipped == 0


def test_illegal_address_for_one_point_costs_only_that_point():
    with tcp_setup("vaisala_hmp") as (emu, dev, poller):
        emu.faults.point_exceptions = {"abs_humidity": 2}
        result = poller.poll()
        assert result.errors == [("abs_humidity",
                                  "exception 0x02 illegal data address at holding 0x000E (2 registers) "
                                  "from device 240")]
        assert not math.isnan(result.values["mixing_ratio"]) and math.isnan(result.values["abs_humidity"])
        assert poller.single_points == {"abs_humidity"}
        # the next poll reads around it: 0-3, 6-13, 16-21, and the bad one alone
        plan = [(r.address, r.count) for r in poller.plan]
        assert plan == [(0, 4), (6, 8), (16, 6), (14, 2)]
        n = len(dev.requests)
        assert poller.poll().errors == result.errors
        assert len(dev.requests) - n == 4
        emu.faults.clear()
        assert poller.poll().ok
        assert poller.single_points == set() and [(r.address, r.count) for r in poller.plan] == [(0, 4), (6, 16)]


# -- timeouts, silence, backoff ------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_lost_reply_is_retried_by_pymodbus(transport):
    setup = tcp_setup if transport == "tcp" else rtu_setup
    with setup("soil_probe_layout_a", retries=1) as (emu, *rest):
        poller = rest[1]
        emu.faults.drop_next = 1
        assert poller.poll().ok
        assert poller.stats.retried == 1 and poller.stats.timeouts == 0 and emu.device.replies_dropped == 1


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_timeout_message_skip_backoff_and_recovery(transport):
    setup = tcp_setup if transport == "tcp" else rtu_setup
    with setup("vaisala_hmp", retries=1) as (emu, dev, poller, *_):
        emu.faults.silent = True
        t0 = time.monotonic()
        result = poller.poll()
        assert 0.35 < time.monotonic() - t0 < 1.5  # one request x 2 attempts x 0.2 s, the rest skipped
        where = f"127.0.0.1:{emu.port}" if transport == "tcp" else poller.port
        assert result.reasons()["rh"] == (f"timeout: no response from device 240 at {where} after 1 retries "
                                          "(holding 0x0000 (4 registers), 0.2 s each)")
        assert result.reasons()["td"] == "skipped: timeout earlier in this poll"
        assert poller.stats.timeouts == 1 and poller.stats.requests == 1 and len(dev.requests) == 2
        skipped = poller.poll()  # within the backoff: no I/O at all
        assert skipped.reasons()["rh"].startswith("backoff: device 240 at ")
        assert poller.stats.polls_skipped == 1 and len(dev.requests) == 2
        emu.faults.clear()
        result = poll_until_ok(poller)
        assert result.ok and result.values["rh"] == pytest.approx(dev.current_values()["rh"], abs=0.5)
        assert poller.stats.connects == 2  # the link was closed after the failure and reopened


def test_timeout_after_a_good_reply_reopens_the_port_without_backoff():
    with rtu_setup("vaisala_hmp", {"rh": 33.0}) as (_emu, _dev, poller, cable):
        cable.a_to_b = lambda data: b"" if data[2:3] == b"\x20" else data  # lose the 16-register replies
        result = poller.poll()
        assert result.values["rh"] == 33.0 and result.reasons()["td"].startswith("timeout: no response")
        assert poller.stats.timeouts == 1 and poller.stats.connects == 1
        assert not poller.poll().reasons()["td"].startswith("backoff")  # the device answered: no backoff
        assert poller.stats.connects == 2 and poller.stats.polls_skipped == 0
        cable.a_to_b = None
        assert poller.poll().ok


def test_backoff_doubles_and_is_capped():
    with tcp_setup("soil_probe_layout_a", backoff_s=0.05, backoff_max_s=0.12) as (emu, _dev, poller):
        emu.faults.silent = True
        delays = []
        for _ in range(4):
            while poller.poll().reasons()["soil_ph"].startswith("backoff"):
                time.sleep(0.005)
            delays.append(poller._next_attempt - time.monotonic())
        assert delays[0] == pytest.approx(0.05, abs=0.03)
        assert delays[1] == pytest.approx(0.10, abs=0.03)
        assert delays[2] == pytest.approx(0.12, abs=0.03) and delays[3] == pytest.approx(0.12, abs=0.03)
        assert poller.stats.timeouts == 4


def test_late_reply_times_out_and_does_not_poison_the_next_poll():
    with tcp_setup("soil_probe_layout_a", {"soil_ph": 6.1}) as (emu, _dev, poller):
        emu.faults.delay_s = 0.3
        assert poller.poll().reasons()["soil_ph"].startswith("timeout: ")
        emu.faults.clear()
        time.sleep(0.35)
        result = poll_until_ok(poller)
        assert result.ok and result.values["soil_ph"] == pytest.approx(6.1)


def test_connection_refused_is_a_connection_error_not_an_exception():
    with ModbusEmulator(EmulatedDevice("soil_probe_layout_a")) as emu:
        port = emu.port
    poller = ModbusPoller("soil_probe_layout_a", "tcp", host="127.0.0.1", port=port, **FAST)
    result = poller.poll()
    assert result.reasons()["soil_ec"] == f"connection: cannot connect to 127.0.0.1:{port} (Connection refused)"
    assert poller.stats.connect_failures == 1 and poller.stats.requests == 0


def test_missing_serial_port_is_a_connection_error():
    poller = ModbusPoller("soil_probe_layout_a", "rtu", port="/dev/does-not-exist-modbus", **FAST)
    assert poller.poll().reasons()["soil_ph"] == (
        "connection: cannot open serial port /dev/does-not-exist-modbus (could not open port "
        "/dev/does-not-exist-modbus: [Errno 2] No such file or directory: '/dev/does-not-exist-modbus')")


def test_open_errors_name_the_os_reason():
    """On this kernel a pty refuses PARENB: the message says so instead of a bare "cannot open"."""
    with NullModem() as cable:
        reason = ModbusPoller("apogee_sq422x", "rtu", port=cable.b_path, **FAST).poll().reasons()["ppfd"]
        assert reason.startswith(f"connection: cannot open serial port {cable.b_path}")
        assert reason.endswith(")") and len(reason) > len(f"connection: cannot open serial port {cable.b_path}") + 3


def test_unknown_device_id_on_the_bus_times_out():
    with rtu_setup("soil_probe_layout_a", device_id=99) as (_emu, dev, poller, cable):
        result = poller.poll()
        assert result.reasons()["soil_moisture"].startswith("timeout: no response from device 99 at ")
        assert len(dev.requests) == 0 and cable.bytes_a_to_b == 0  # nobody answered


# -- word order, CRC, noise ---------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_wrong_word_order_gives_different_values_and_range_errors(transport):
    setup = tcp_setup if transport == "tcp" else rtu_setup
    with setup("vaisala_hmp", {"rh": 30.56, "t_air": 21.5}) as (emu, *rest):
        poller = rest[1]
        emu.faults.word_order = "ABCD"  # the device sends MSW first, the map says LSW first
        result = poller.poll()
        reasons = result.reasons()
        assert reasons["rh"].startswith("out of range: 5.") and reasons["rh"].endswith(
            "%RH outside 0..130 (wrong word order?)")
        assert math.isnan(result.values["rh"])
        # 21.5 = 0x41AC0000 swapped is a denormal: in range, but not 21.5
        assert result.values["t_air"] != pytest.approx(21.5, abs=1)
        assert poller.stats.range_errors >= 1
        emu.faults.clear()
        result = poller.poll()
        assert result.ok and result.values["rh"] == pytest.approx(30.56, abs=1e-5)


def test_bad_crc_on_rtu_is_a_crc_error_and_recovers():
    with rtu_setup("vaisala_hmp", retries=1) as (emu, _dev, poller, cable):
        emu.faults.bad_crc = True
        result = poller.poll()
        reason = result.reasons()["rh"]
        assert reason.startswith(f"crc error: reply from device 240 at {cable.b_path} failed the CRC-16 check "
                                 "(2 attempts; last 13 bytes: f0 03 08 ")
        assert poller.stats.crc_errors == 1 and poller.stats.timeouts == 0
        emu.faults.clear()
        assert poll_until_ok(poller).ok


def test_noise_around_a_valid_reply_is_survived_and_counted():
    with rtu_setup("soil_probe_layout_a", {"soil_ec": 1000.0}) as (emu, _dev, poller, _cable):
        emu.faults.noise_before = b"\x00\xff\x00"
        result = poller.poll()
        assert result.ok and result.values["soil_ec"] == 1000.0
        assert poller.stats.noise_bytes == 3


def test_line_noise_instead_of_a_reply_is_reported_as_noise():
    with rtu_setup("soil_probe_layout_a") as (_emu, _dev, poller, cable):
        cable.a_to_b = lambda data: b"\xaa\x55" * 7  # every reply replaced on the wire
        reason = poller.poll().reasons()["soil_ph"]
        assert reason.startswith(f"crc error: reply from device 1 at {cable.b_path} was noise "
                                 "(no Modbus frame for this request) (1 attempts; last 14 bytes: aa 55 aa 55")
        assert poller.stats.crc_errors == 1
        cable.a_to_b = None
        assert poll_until_ok(poller).ok


# -- settings that must be observable ----------------------------------------------------------------
@pytest.mark.parametrize("close_after_poll", [False, True])
def test_close_after_poll_tcp(close_after_poll):
    with tcp_setup("vaisala_hmp", close_after_poll=close_after_poll) as (emu, _dev, poller):
        for _ in range(3):
            assert poller.poll().ok
        time.sleep(0.05)
        assert emu.connections == (3 if close_after_poll else 1)
        assert poller.stats.connects == emu.connections


def test_close_after_poll_lets_two_pollers_share_one_rs485_port():
    """Two devices on one bus (one emulator, device ids 240 and 1), two pollers taking turns."""
    hmp = EmulatedDevice("vaisala_hmp", values={"rh": 55.5})
    soil = EmulatedDevice("soil_probe_layout_a", values={"soil_ec": 777.0})
    with NullModem() as cable, ModbusEmulator([hmp, soil], transport="rtu", serial_port=cable.a_path):
        kw = {**FAST, "parity": "N", "stopbits": 1, "close_after_poll": True}
        p1 = ModbusPoller("vaisala_hmp", "rtu", port=cable.b_path, **kw)
        p2 = ModbusPoller("soil_probe_layout_a", "rtu", port=cable.b_path, **kw)
        for _ in range(2):
            assert p1.poll().values["rh"] == pytest.approx(55.5, abs=1e-5)
            assert p2.poll().values["soil_ec"] == 777.0
        assert p1.stats.connects == 2 and p2.stats.connects == 2
        assert len(hmp.requests) == 4 and len(soil.requests) == 2


@pytest.mark.parametrize("pause_s", [0.0, 0.12])
def test_pause_between_requests(pause_s):
    with tcp_setup("vaisala_hmp", pause_s=pause_s) as (_emu, dev, poller):
        poller.poll()
        poller.poll()
        times = [t for t, *_ in dev.requests]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 3
        if pause_s:
            assert min(gaps) >= pause_s - 0.005
        else:
            assert max(gaps) < 0.1


# -- configuration errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"transport": "udp"}, "ModbusPoller(vaisala_hmp): transport='udp': must be 'tcp' or 'rtu'"),
    ({"transport": "tcp"}, "host=None: transport 'tcp' needs a host name or IP address"),
    ({"transport": "tcp", "host": "h", "port": "502"}, "port='502': a TCP port must be an integer 1..65535"),
    ({"transport": "rtu"}, "port=None: transport 'rtu' needs the serial device path"),
    ({"transport": "rtu", "port": "/dev/x", "parity": "X"}, "parity='X': must be one of N, E, O"),
    ({"transport": "rtu", "port": "/dev/x", "stopbits": 3}, "stopbits=3: must be 1 or 2"),
    ({"transport": "rtu", "port": "/dev/x", "device_id": 0}, "device_id=0: must be an integer 1..247"),
    ({"transport": "rtu", "port": "/dev/x", "timeout_s": 0}, "timeout_s=0: must be a number > 0"),
    ({"transport": "rtu", "port": "/dev/x", "retries": -1}, "retries=-1: must be an integer >= 0"),
    ({"transport": "rtu", "port": "/dev/x", "max_registers": 126}, "max_registers=126: must be 1..125"),
])
def test_configuration_errors_raise_clear_messages(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       if message.startswith("ModbusPoller") else message.replace("(", r"\(")):
        ModbusPoller("vaisala_hmp", **kwargs)


def test_map_defaults_are_used_and_overridable():
    p = ModbusPoller("vaisala_hmp", "rtu", port="/dev/x")
    assert (p.device_id, p.baudrate, p.parity, p.stopbits, p.timeout_s, p.retries) == (240, 19200, "N", 2, 1.0, 2)
    p = ModbusPoller("apogee_sq422x", "rtu", port="/dev/x", baudrate=9600, device_id=5)
    assert (p.device_id, p.baudrate, p.parity) == (5, 9600, "E")
    assert ModbusPoller("apogee_sq422x", "tcp", host="gw").port == 502
