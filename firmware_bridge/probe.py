"""``bridge probe``: which instrument is on this serial port, and at which baud rate?

The port is opened at each candidate rate in turn and listened to; the same bytes go to every
family's parser (they are passive), and a family "answered" when its parser decodes several
frames and rejects few. Instruments that stream unprompted (CSAT3, CSAT3B, WindMaster, LI-7550)
are found this way without sending them anything that could change their settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from firmware_bridge.families import family, streaming_families
from firmware_bridge.link import LinkError, SerialLink

#: Rates tried first: the factory defaults of the supported instruments.
COMMON_BAUDS = (9600, 19200, 115200, 38400, 57600, 4800, 2400)
MIN_FRAMES = 3


@dataclass(frozen=True)
class ProbeResult:
    family: str
    baud: int
    frames_ok: int
    errors: int
    listen_s: float

    def describe(self) -> str:
        return (f"{self.family} answered at {self.baud} baud: {self.frames_ok} frames decoded, "
                f"{self.errors} rejected in {self.listen_s:.1f} s ({self.frames_ok / self.listen_s:.1f} frames/s)")


@dataclass(frozen=True)
class BaudReport:
    """What was heard at one rate, for the 'nothing answered' explanation."""

    baud: int
    bytes_heard: int
    best: ProbeResult | None


def serial_families() -> list[str]:
    return [name for name in streaming_families() if family(name).TRANSPORT == "serial"]


def candidate_bauds(families: list[str]) -> list[int]:
    rates = {b for name in families for b in getattr(family(name), "BAUDS", (family(name).DEFAULT_BAUD,))}
    return [b for b in COMMON_BAUDS if b in rates] + sorted(rates - set(COMMON_BAUDS))


def listen(path: str, baud: int, listen_s: float) -> bytes:
    link = SerialLink(path, baud)
    link.open()
    chunks = []
    try:
        deadline = time.monotonic() + listen_s
        while time.monotonic() < deadline:
            chunks.append(link.read())
    finally:
        link.close()
    return b"".join(chunks)


def score(name: str, data: bytes, baud: int, listen_s: float) -> ProbeResult:
    parser = family(name).Parser()
    parser.feed(data)
    s = parser.stats
    return ProbeResult(name, baud, s.frames_ok, s.checksum_errors + s.malformed, listen_s)


def probe_port(path: str, listen_s: float = 1.2, families: list[str] | None = None, bauds: list[int] | None = None,
               stop_at_first: bool = True) -> tuple[list[ProbeResult], list[BaudReport]]:
    """Listen at each rate; returns the families that answered and what each rate sounded like.
    ``LinkError`` if the port cannot be opened at all."""
    families = families or serial_families()
    found: list[ProbeResult] = []
    heard: list[BaudReport] = []
    for baud in bauds or candidate_bauds(families):
        data = listen(path, baud, listen_s)
        results = sorted((score(name, data, baud, listen_s) for name in families),
                         key=lambda r: (r.frames_ok - 2 * r.errors), reverse=True)
        best = results[0] if results else None
        heard.append(BaudReport(baud, len(data), best))
        hits = [r for r in results if r.frames_ok >= MIN_FRAMES and r.errors * 2 <= r.frames_ok]
        if hits:
            found.append(hits[0])
            if stop_at_first:
                break
    return found, heard


def explain(path: str, found: list[ProbeResult], heard: list[BaudReport]) -> list[str]:
    """Lines a technician can act on."""
    if found:
        return [f"{path}: {r.describe()}" for r in found]
    lines = [f"{path}: no supported instrument answered."]
    for report in heard:
        if report.bytes_heard == 0:
            lines.append(f"  {report.baud} baud: silence")
        else:
            lines.append(f"  {report.baud} baud: {report.bytes_heard} bytes, none decodable "
                         f"(wrong rate, wrong serial format, or an unsupported output mode)")
    if all(r.bytes_heard == 0 for r in heard):
        lines.append("  Nothing at any rate: check power, cabling (TX/RX, RS-485 A/B), and that the "
                     "instrument is set to stream (CSAT3 '&', WindMaster continuous mode M1).")
    return lines


@dataclass(frozen=True)
class ModbusAnswer:
    map_name: str
    device_id: int
    baud: int
    serial_format: str
    reply: str  # "data" or "exception 0xNN"

    def describe(self) -> str:
        return (f"modbus device {self.device_id} answered at {self.baud} baud {self.serial_format} "
                f"({self.reply}) to a read from register map {self.map_name!r}")


def probe_modbus(path: str, timeout_s: float = 0.3, serial_format: str | None = None) -> list[ModbusAnswer]:
    """Ask at each shipped map's default address, rate and serial format for its first point (a
    read: harmless); a CRC-valid reply from that address, data or exception, means a device is
    there. ``serial_format`` (e.g. ``"8N1"``) overrides the maps' (ptys accept no parity)."""
    from firmware_bridge.modbus import rtu
    from firmware_bridge.modbus.maps import load_map, shipped_maps

    answers = []
    tried = set()
    for name in shipped_maps():
        m = load_map(name)
        d, point = m.device, m.points[0]
        fmt = serial_format or f"{d.bytesize}{d.parity}{d.stopbits}"
        key = (d.address, d.baudrate, fmt, point.kind, point.address)
        if key in tried:
            continue
        tried.add(key)
        function = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[point.kind]
        link = SerialLink(path, d.baudrate, fmt)
        link.open()
        try:
            link.write(rtu.read_request(d.address, function, point.address, point.count))
            parser = rtu.Parser()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batch = parser.feed(link.read())
                hits = [(int(a), int(e)) for a, k, e in zip(batch.columns["address"], batch.columns["kind"],
                                                           batch.columns["exception"], strict=True)
                        if a == d.address and k == 1]
                if hits:
                    code = hits[0][1]
                    answers.append(ModbusAnswer(name, d.address, d.baudrate, fmt,
                                                f"exception 0x{code:02X}" if code else "data"))
                    break
        finally:
            link.close()
    return answers


__all__ = ["LinkError", "ModbusAnswer", "ProbeResult", "explain", "probe_modbus", "probe_port"]
