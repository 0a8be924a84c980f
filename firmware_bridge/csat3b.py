"""Campbell Scientific CSAT3B (and CSAT3BH) 3-D sonic anemometer, unprompted RS-485/USB ASCII.

One record per line, CR LF terminated (instruments.md section 2; CSAT3B manual pp. 57-58; LSST
``ts_ess_common`` driver)::

    Ux,Uy,Uz,Ts,diag,counter,signature        e.g. 0.08945,0.06552,0.05726,19.69336,0,5,c3a6

wind in m s-1, sonic temperature in degC, the diagnostic word in decimal, a 0..63 record counter
and a 16-bit Campbell signature (4 hex digits). The manual says the signature covers everything
up to the end of the counter; real units sign ``Ux..diag`` only (without ``,counter``). The parser
accepts either; the emulator signs ``Ux..diag`` unless told otherwise.

Parsing is per line. A line that is not a signed record as a whole is searched for a signed record
at its end, so a truncated record (or noise without a line feed) in front of a good record costs
only the damaged bytes: they are counted as one resync with their length in ``bytes_skipped``.
Lines holding no signed record count as ``checksum_errors`` when a record-shaped text with a wrong
signature is in them, else as ``malformed``; lines longer than :data:`MAX_LINE_BYTES` are skipped
as garbage (a resync) whether they arrive in one chunk or many.
"""

from __future__ import annotations

import re

import numpy as np

from firmware_bridge import device
from firmware_bridge.frames import Batch, CounterTracker, ParseStats

NAME = "csat3b"
ROLE = "sonic"
TRANSPORT = "serial"
#: RS-485 default, 8N1, no flow control (instruments.md section 2, LSST configuration).
DEFAULT_BAUD = 115200
#: Rates ``bridge probe`` tries (RS-485 baud is selectable in Device Configuration Utility).
BAUDS = (9600, 19200, 38400, 57600, 115200)
HAS_COUNTER = True

CHANNELS = ("u", "v", "w", "t_sonic", "diag", "counter")
RECORD_COUNTER = ("counter", 64)
UNITS = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "t_sonic": "degC", "diag": "diagnostic bit field",
         "counter": "0..63"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): the ASCII record's 5 decimals.
RESOLUTION = {"u": ".5f", "v": ".5f", "w": ".5f", "t_sonic": ".5f"}

#: Diagnostic word bits (instruments.md section 2, CSAT3B manual "diagnostic word").
FLAG_BITS = {"amplitude_low": 0, "amplitude_high": 1, "poor_lock": 2, "delta_c_high": 3, "acquiring": 4,
             "supply_low": 5, "trigger_error": 6, "humidity_high": 7, "signature_error": 8}
#: Bits that make a sample unusable for flux statistics: the measurement itself is suspect (low or
#: high amplitude, poor lock, paths disagree, still acquiring, trigger lost, calibration memory bad).
#: Supply below 9 V (bit 5) and internal RH > 80 % (bit 7) are housekeeping warnings: the record is
#: still a valid measurement, the site needs a visit.
INVALID_MASK = sum(1 << FLAG_BITS[name] for name in ("amplitude_low", "amplitude_high", "poor_lock",
                                                    "delta_c_high", "acquiring", "trigger_error",
                                                    "signature_error"))
#: Diagnostic bits raised by each emulated sensor condition (as on the CSAT3: rain = low amplitude
#: and poor lock, obstruction = poor lock, low signal = low amplitude).
CONDITION_DIAG = {"rain": 0b101, "obstruction": 0b100, "low_signal": 0b001}

MAX_LINE_BYTES = 2048
#: Bytes of an over-long line kept while waiting for its end: more than the longest record
#: (bounded by :data:`_NUM`), so a record ending such a line is still found.
_KEEP_BYTES = 256
#: How far before the Uy comma a record's first field may start (longest Ux text + slack).
_MAX_FIELD = 24
_SEED = 0xAA

_NUM = rb"[-+]?(?:\d{1,9}(?:\.\d{0,9})?|\.\d{1,9})(?:[eE][-+]?\d{1,3})?|[-+]?[nN][aA][nN]"
RECORD = re.compile(rb"(%s),(%s),(%s),(%s),(\d{1,10}),(\d{1,3}),([0-9A-Fa-f]{4})" % ((_NUM,) * 4))
#: ROTL[x]: x rotated left by one bit, the "+1 when the high bit of lsb is set" of the algorithm.
_ROTL = bytes(((x << 1) & 0xFF) | (x >> 7) for x in range(256))


def _sig_step(data: bytes, msb: int, lsb: int) -> tuple[int, int]:
    rotl = _ROTL
    for byte in data:
        msb, lsb = lsb, (rotl[lsb] + msb + byte) & 0xFF
    return msb, lsb


def signature(data: bytes) -> int:
    """Campbell 16-bit signature of ``data`` (seed 0xAAAA), as printed in the record's last field.

    Per byte: ``b = (lsb << 1) + msb + byte`` (mod 256), plus 1 when the high bit of lsb is set;
    then ``msb, lsb = lsb, b``; the signature is ``msb << 8 | lsb`` (instruments.md section 2,
    re-checked there against three real CSAT3B records).
    """
    msb, lsb = _sig_step(bytes(data), _SEED, _SEED)
    return (msb << 8) | lsb


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """The nine diagnostic bits (:data:`FLAG_BITS`) as boolean arrays, True = condition present."""
    diag = np.asarray(diag, dtype=np.int64)
    return {name: (diag >> bit) & 1 == 1 for name, bit in FLAG_BITS.items()}


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Samples with none of the :data:`INVALID_MASK` bits set and finite u, v, w."""
    diag = np.asarray(columns["diag"], dtype=np.int64)
    ok = diag & INVALID_MASK == 0
    for name in ("u", "v", "w"):
        if name in columns:
            ok &= np.isfinite(np.asarray(columns[name], dtype=float))
    return ok


class Parser:
    """Streaming CSAT3B ASCII parser: ``feed(bytes) -> Batch``; never raises on input bytes."""

    family = NAME

    def __init__(self) -> None:
        self._buf = b""
        #: Bytes of the current (unfinished) line already dropped as over-long.
        self._dropped = 0
        self.stats = ParseStats()
        self._counter = CounterTracker(self.stats, 64)

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        lines = buf.split(b"\n")
        tail = lines.pop()
        rows: list[tuple[float, float, float, float, int, int]] = []
        ends: list[int] = []
        pos = 0
        for line in lines:
            pos += len(line) + 1
            row = self._line(line)
            if row is not None:
                rows.append(row)
                ends.append(pos - carried)
        if len(tail) > MAX_LINE_BYTES:  # no line feed for far too long: drop all but the end
            cut = len(tail) - _KEEP_BYTES
            if self._dropped == 0:
                self.stats.resyncs += 1
            self._dropped += cut
            self.stats.bytes_skipped += cut
            tail = tail[cut:]
        self._buf = tail
        if not rows:
            return Batch.empty(CHANNELS)
        table = np.array([r[:4] for r in rows], dtype=float)
        diag = np.array([r[4] for r in rows], dtype=np.int64)
        counter = np.array([r[5] for r in rows], dtype=np.int64)
        self._counter.update(counter)
        self.stats.frames_ok += len(rows)
        self.stats.nan_records += int(np.isnan(table).any(axis=1).sum())
        columns = {"u": table[:, 0], "v": table[:, 1], "w": table[:, 2], "t_sonic": table[:, 3],
                   "diag": diag, "counter": counter}
        return Batch(columns, np.array(ends, dtype=np.int64))

    def _line(self, raw: bytes) -> tuple[float, float, float, float, int, int] | None:
        """One line (without its LF): the record it ends with, counting what it rejects."""
        dropped, self._dropped = self._dropped, 0
        line = raw[:-1] if raw.endswith(b"\r") else raw
        overlong = dropped + len(raw) > MAX_LINE_BYTES
        if not line and not dropped:
            return None
        if not overlong:
            m = RECORD.fullmatch(line)
            if m is not None and self._signed(line, 0, m):
                return self._values(m)
            shaped = m is not None
        else:
            shaped = False
        found, shaped_tail = self._search_tail(line)
        if found is not None:
            start, m = found
            if start or dropped:
                if not dropped:
                    self.stats.resyncs += 1
                self.stats.bytes_skipped += start
            return self._values(m)
        if overlong:
            if not dropped:
                self.stats.resyncs += 1
            self.stats.bytes_skipped += len(raw) + 1
        elif shaped or shaped_tail:
            self.stats.checksum_errors += 1
        else:
            self.stats.malformed += 1
        return None

    def _search_tail(self, line: bytes) -> tuple[tuple[int, re.Match[bytes]] | None, bool]:
        """A correctly signed record ending ``line`` but starting after its first byte; tries the
        first-field starts from the longest candidate. Also says if any record-shaped text was seen."""
        c6 = len(line)
        for _ in range(6):
            c6 = line.rfind(b",", 0, c6)
            if c6 < 0:
                return None, False
        first = max(line.rfind(b",", 0, c6) + 1, c6 - _MAX_FIELD, 1)
        shaped = False
        for start in range(first, c6):
            m = RECORD.fullmatch(line, start)
            if m is None:
                continue
            shaped = True
            if self._signed(line, start, m):
                return (start, m), True
        return None, shaped

    @staticmethod
    def _signed(line: bytes, start: int, m: re.Match[bytes]) -> bool:
        """Signature over ``Ux..diag`` (real units) or over ``Ux..counter`` (the manual's wording)."""
        expected = int(m.group(7), 16)
        msb, lsb = _sig_step(line[start:m.end(5)], _SEED, _SEED)
        if (msb << 8) | lsb == expected:
            return True
        msb, lsb = _sig_step(line[m.end(5):m.end(6)], msb, lsb)
        return (msb << 8) | lsb == expected

    def _values(self, m: re.Match[bytes]) -> tuple[float, float, float, float, int, int] | None:
        counter = int(m.group(6))
        if counter > 63:  # signed, yet no CSAT3B counter: count it, do not trust it
            self.stats.malformed += 1
            return None
        return (float(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)),
                int(m.group(5)), counter)


def _field(x: float) -> str:
    """Five decimals, as the example record of a real unit; NaN as Campbell's ``NAN``."""
    return "NAN" if x != x else f"{x:.5f}"


def encode_record(u: float, v: float, w: float, t_sonic: float, diag: int, counter: int,
                  signature_covers_counter: bool = False) -> bytes:
    """One record exactly as a CSAT3B prints it (instruments.md section 2), CR LF included."""
    body = f"{_field(u)},{_field(v)},{_field(w)},{_field(t_sonic)},{int(diag)}"
    counted = f"{body},{int(counter) % 64}"
    sig = signature((counted if signature_covers_counter else body).encode("ascii"))
    return f"{counted},{sig:04x}\r\n".encode("ascii")


def encode(u: np.ndarray, v: np.ndarray, w: np.ndarray, t_sonic: np.ndarray, diag: np.ndarray | int,
           counter: np.ndarray, signature_covers_counter: bool = False) -> list[bytes]:
    """Records for the given samples (one ``bytes`` per record)."""
    u, v, w, t_sonic = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (u, v, w, t_sonic))
    diag = np.broadcast_to(np.asarray(diag, dtype=np.int64), u.shape)
    counter = np.broadcast_to(np.asarray(counter, dtype=np.int64), u.shape)
    return [encode_record(*values, signature_covers_counter=signature_covers_counter)
            for values in zip(u.tolist(), v.tolist(), w.tolist(), t_sonic.tolist(), diag.tolist(),
                              counter.tolist(), strict=True)]


def command_start(rate_hz: int) -> bytes:
    """Nothing: in modes 2/3 the CSAT3B streams unprompted on RS-485/USB (rate and mode are set with
    Campbell's Device Configuration Utility, not over this line)."""
    return b""


class Device(device.Device):
    """A CSAT3B in unprompted mode 2 on RS-485: one signed record per sample.

    It takes no commands on this line (configuration is done with Device Configuration Utility),
    so :meth:`reply` answers nothing and streaming never stops.
    """

    family = NAME

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD,
                 signature_covers_counter: bool = False) -> None:
        super().__init__(rate_hz, seed, baud)
        self.signature_covers_counter = signature_covers_counter

    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        """Records of ``obs``; the counter is ``first_index + i`` mod 64. An optional ``sonic_flags``
        (the CSAT3's 4 warning flags, same order as CSAT3B bits 0-3) is OR-ed into the diagnostics."""
        n = len(obs["u"])
        diag = CONDITION_DIAG.get(self.condition or "", 0) | (np.asarray(obs.get("sonic_flags", 0),
                                                                         dtype=np.int64) & 0xF)
        counter = (first_index + np.arange(n)) % 64
        return encode(obs["u"], obs["v"], obs["w"], obs["t_sonic"], diag, counter,
                      self.signature_covers_counter)

    def corrupt(self, frame: bytes) -> bytes:
        """The record with its signature off by one bit (framing and field count intact)."""
        m = re.search(rb",([0-9A-Fa-f]{4})\r\n$", frame)
        if m is None:
            return super().corrupt(frame)
        return frame[:m.start(1)] + f"{int(m.group(1), 16) ^ 1:04x}".encode("ascii") + b"\r\n"
