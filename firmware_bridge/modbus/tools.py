"""``bridge emulate modbus`` and ``bridge sniff --instrument modbus``: a Modbus sensor served from a
shipped register map, and a poller printing what a real one answers.

Modbus faults use the same ``--fault KIND[@START_S[+DURATION_S]]`` syntax as the streaming
instruments, with Modbus meanings: ``silence`` (no replies: a dead sensor or cut cable),
``exception`` (device failure, 04) and ``busy`` (06), ``bad_checksum`` (corrupted CRC), ``noise``
(bytes around the replies), ``word_order`` (32-bit values sent word-swapped), ``timeout``
(replies later than the poller waits).
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time

from firmware_bridge.modbus.maps import MapError, load_map, shipped_maps
from firmware_bridge.modbus.poller import ModbusPoller
from firmware_bridge.modbus.server import EmulatedDevice, Faults, ModbusEmulator

FAULTS = {
    "silence": "no replies (dead sensor, cut cable)",
    "exception": "every read answered with exception 04 device failure",
    "busy": "every read answered with exception 06 device busy",
    "bad_checksum": "replies with a corrupted CRC",
    "noise": "noise bytes around the replies",
    "word_order": "32-bit values sent with the words swapped",
    "timeout": "replies sent after the poller's timeout",
}
_SPEC = re.compile(r"^(?P<kind>[a-z_]+)(?:@(?P<start>[0-9.]+)(?:\+(?P<dur>[0-9.]+))?)?$")


class ModbusToolError(ValueError):
    """A bad ``--map``, ``--fault`` or port; the message names it."""


def parse_fault(text: str) -> tuple[str, float, float]:
    m = _SPEC.match(text.strip())
    if not m or m["kind"] not in FAULTS:
        raise ModbusToolError(f"fault {text!r}: expected KIND[@START_S[+DURATION_S]] with KIND one of "
                              f"{', '.join(FAULTS)}")
    start = float(m["start"]) if m["start"] else 0.0
    return m["kind"], start, float(m["dur"]) if m["dur"] else math.inf


def apply_faults(faults: Faults, kinds: set[str], swapped_order: str = "DCBA") -> None:
    """Set the emulator's fault switches to exactly ``kinds``."""
    faults.silent = "silence" in kinds
    faults.exception = 4 if "exception" in kinds else 6 if "busy" in kinds else None
    faults.bad_crc = "bad_checksum" in kinds
    faults.noise_before = b"\x00\xff\x13" if "noise" in kinds else b""
    faults.word_order = swapped_order if "word_order" in kinds else None
    faults.delay_s = 2.0 if "timeout" in kinds else 0.0


def _load(name: str):
    try:
        return load_map(name)
    except MapError as exc:
        raise ModbusToolError(f"--map: {exc}") from None
    except (OSError, KeyError):
        raise ModbusToolError(f"--map {name!r}: no such map; shipped: {', '.join(shipped_maps())}") from None


def _map_spec(text: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@ID`` (the device id the emulated sensor answers at)."""
    name, sep, device_id = text.rpartition("@")
    if not sep:
        return text, None
    if not device_id.isdigit() or not 1 <= int(device_id) <= 247:
        raise ModbusToolError(f"--map {text!r}: the device id after '@' must be 1..247")
    return name, int(device_id)


def emulate(map_names: list[str], tcp_port: int | None, fault_specs: list[str], stop: threading.Event,
            out=sys.stdout) -> int:
    """Serve the maps (one device each, at its default address or at ``NAME@ID``) until ``stop`` is set."""
    from firmware_bridge.ptypair import NullModem

    specs = [_map_spec(text) for text in map_names or ["vaisala_hmp"]]
    maps = [_load(name) for name, _ in specs]
    faults = [parse_fault(spec) for spec in fault_specs]
    devices = [EmulatedDevice(m, device_id=device_id) for m, (_, device_id) in zip(maps, specs, strict=True)]
    seen: dict[int, str] = {}
    for m, d in zip(maps, devices, strict=True):
        if d.device_id in seen:
            raise ModbusToolError(f"--map {m.name} and --map {seen[d.device_id]} both answer at device id "
                                  f"{d.device_id}; give each its own: --map {seen[d.device_id]}@1 --map {m.name}@2")
        seen[d.device_id] = m.name
    modem = None
    if tcp_port is not None:
        emulator = ModbusEmulator(devices, transport="tcp", port=tcp_port)
        where = None
    else:
        modem = NullModem()
        emulator = ModbusEmulator(devices, transport="rtu", serial_port=modem.a_path,
                                  baudrate=maps[0].device.baudrate)
        where = modem.b_path
    try:
        emulator.start()
    except RuntimeError as exc:
        if modem:
            modem.close()
        raise ModbusToolError(str(exc)) from None
    for m, d in zip(maps, devices, strict=True):
        print(f"modbus {where or emulator.address} map={m.name} device_id={d.device_id}", file=out, flush=True)
    if modem:
        print("note: a pty has no parity; poll it as 8N1 (--parity N --stopbits 1)", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        while not stop.wait(0.05):
            t = time.monotonic() - started
            kinds = {kind for kind, start, dur in faults if start <= t < start + dur}
            for d in devices:
                apply_faults(d.faults, kinds)
    finally:
        emulator.stop()
        if modem:
            modem.close()
    return 0


def sniff(map_name: str, port: str, device_id: int | None, baud: int | None, parity: str | None,
          stopbits: int | None, every_s: float, duration_s: float | None, health_every_s: float,
          health_only: bool, stop: threading.Event, timeout_s: float | None = None, retries: int | None = None) -> int:
    """Poll a Modbus device with a shipped map; JSON values per poll, a health line on stderr."""
    register_map = _load(map_name)
    if port.startswith("tcp://"):
        host, _, tcp_port = port[6:].rpartition(":")
        kw = {"host": host, "port": int(tcp_port)} if tcp_port.isdigit() else None
        transport = "tcp"
    else:
        kw, transport = {"port": port}, "rtu"
    if kw is None:
        raise ModbusToolError(f"--port {port!r}: expected a serial device or tcp://HOST:PORT")
    try:
        poller = ModbusPoller(register_map, transport, device_id=device_id, baudrate=baud, parity=parity,
                              stopbits=stopbits, timeout_s=timeout_s, retries=retries,
                              backoff_s=min(every_s, 1.0), **kw)
    except ValueError as exc:
        raise ModbusToolError(str(exc)) from None
    started = last_health = time.monotonic()
    polls_at_health = 0
    with poller:
        while not stop.is_set():
            result = poller.poll()
            if not health_only:
                values = {k: (None if v != v else round(v, 6)) for k, v in result.values.items()}
                print(json.dumps({"t": round(result.timestamp, 3), **values,
                                  "errors": result.reasons()}), flush=True)
            now = time.monotonic()
            if now - last_health >= health_every_s:
                print(health_line(poller, polls_at_health, now - last_health), file=sys.stderr, flush=True)
                polls_at_health, last_health = poller.stats.polls, now
            if duration_s and now - started >= duration_s:
                break
            stop.wait(max(0.0, every_s - result.duration_s))
    print(health_line(poller, polls_at_health, max(time.monotonic() - last_health, 1e-3)), file=sys.stderr, flush=True)
    return 0


def health_line(poller: ModbusPoller, polls_before: int, window_s: float) -> str:
    s = poller.stats
    rate = (s.polls - polls_before) / window_s
    return (f"health modbus {poller.map.name} {poller.where} id {poller.device_id}: {rate:.1f} polls/s, "
            f"ok {s.polls_ok}/{s.polls}, timeouts {s.timeouts}, exceptions {s.exceptions}, crc errors {s.crc_errors}, "
            f"out of range {s.range_errors}, noise bytes {s.noise_bytes}, reconnects {s.connects}")
