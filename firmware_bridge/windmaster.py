"""Gill WindMaster / WindMaster Pro (and R3-family ASCII) 3-D sonic anemometer, ASCII UVW output.

Mode M1 (ASCII, UVW, continuous), comma separated (O1), CR LF terminated (L1); manual 1561-PS-0001
iss. 11 section 7.1, instruments.md section 3::

    <STX>Q,+001.23,-000.57,+000.09,M,+347.12,+026.08,00,<ETX>2B<CR><LF>

node ID letter, U, V, W (0.01 m s-1; 0.001 with J2 high resolution), units letter (M m/s, N knots,
P mph, K km/h), speed of sound [m s-1], sonic temperature [degC], status code (hex 00..0B), then
optional analogue inputs and PRT temperature depending on the unit's settings: pass the field list
(:data:`DEFAULT_FIELDS` matches the line above). Checksum: XOR of every byte strictly between STX
and ETX, two hex digits. Error data: empty fields (CSV output) or fields padded with 9s (fixed
field output) -> NaN.

Everything outside STX..ETX frames is either text the unit prints (the power-on banner after ``Q``,
``CONFIGURATION MODE``, the ``D3`` settings: printable lines, neither errors nor resyncs; kept in
:attr:`Parser.text_lines`) or garbage (lines with unprintable bytes, or bytes run straight into an
STX): one resync per contiguous run, its length in ``bytes_skipped``. A frame start (STX) that is
not followed by a well-formed ``ETX hh`` on the same line counts as ``malformed`` and never swallows
the next frame, whose STX always starts a new one.

EddyPro "w-boost": WindMaster/Pro units with firmware ``2329.x.y``, x < 700 (built 2006-2015)
under-report w (instruments.md section 3, EddyPro note). The parser reads the firmware from the
power-on banner (or ``Parser(firmware=...)``), exposes :attr:`Parser.firmware`,
:attr:`Parser.w_boost` and adds a boolean ``w_boost`` column to every batch; correcting w is left to
the flux software.
"""

from __future__ import annotations

import re
from collections import deque

import numpy as np

from firmware_bridge import device
from firmware_bridge.frames import Batch, ParseStats

NAME = "windmaster"
ROLE = "sonic"
TRANSPORT = "serial"
#: Factory setting B4, 8N1, no handshake (manual section 10.2).
DEFAULT_BAUD = 19200
#: ``Bx`` baud codes B1..B6 (instruments.md section 3, Makani table).
BAUD_CODES = {2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6}
BAUDS = tuple(BAUD_CODES)
#: ``Px`` output rate codes [Hz] (instruments.md section 3, marked [?] there; P9 = 32 Hz Pro only).
RATE_CODES = {1: 1, 2: 2, 4: 3, 5: 4, 8: 5, 10: 6, 16: 7, 20: 8, 32: 9}
#: No record counter in Gill ASCII output: dropped records cannot be counted.
HAS_COUNTER = False
RECORD_COUNTER = None

CHANNELS = ("u", "v", "w", "t_sonic", "speed_of_sound", "diag", "w_boost")
UNITS = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "t_sonic": "degC", "speed_of_sound": "m s-1",
         "diag": "Gill status code (00..0B)", "w_boost": "bool (firmware 2329.x.y, x < 700)",
         "analog1": "V", "analog2": "V", "analog3": "V", "analog4": "V", "prt": "degC"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): wind in 0.01 (J1) or 0.001 m s-1
#: (J2), c in 0.01 m s-1; Ts, sent with 2 decimals or derived from c (steps of about 17 mK), to 3.
RESOLUTION = {"u": ".3f", "v": ".3f", "w": ".3f", "t_sonic": ".3f", "speed_of_sound": ".2f"}
#: M1 with speed of sound and sonic temperature, no analogue inputs or PRT.
DEFAULT_FIELDS = ("u", "v", "w", "units", "speed_of_sound", "t_sonic", "status")
#: Field kinds a field list may name, with the column they fill.
FIELD_KINDS = ("u", "v", "w", "units", "speed_of_sound", "t_sonic", "status", "status_address",
               "analog1", "analog2", "analog3", "analog4", "prt")
#: Gill R3-50/R3-100 ASCII UVW: ``<STX>StaA,StaD,Wc1,Wc2,Wc3,C,T<ETX>cc`` with no node ID; StaA
#: says which status word StaD shows (instruments.md section 3, R3 [S]/[?]). Use with
#: ``Parser(fields=R3_FIELDS, node_id=False)``; ``diag`` is then StaD whatever StaA is.
R3_FIELDS = ("status_address", "status", "u", "v", "w", "speed_of_sound", "prt")
#: Units letter -> m s-1 per unit (manual section 7.1 "Units"; knot = 1852/3600 m s-1 exactly).
UNIT_FACTORS = {b"M": 1.0, b"N": 1852.0 / 3600.0, b"P": 0.44704, b"K": 1.0 / 3.6}

#: Status codes 01..0B (instruments.md section 3: Makani enum, manual "codes 00 to 0B").
STATUS_CODES = {0x01: "sample_failure_pair1", 0x02: "sample_failure_pair2", 0x03: "sample_failure_pair3",
                0x04: "sample_failure_pairs12", 0x05: "sample_failure_pairs13", 0x06: "sample_failure_pairs23",
                0x07: "all_pairs_failed", 0x08: "nvm_checksum_failed", 0x09: "rom_checksum_failed",
                0x0A: "gain_at_maximum", 0x0B: "retries_used"}
#: 00 OK, 0A system gain at maximum and 0B retries used are warnings with good data; 01-09 are bad.
VALID_STATUS = (0x00, 0x0A, 0x0B)
#: Status codes of each emulated sensor condition: rain wets the transducers (random pair
#: failures), an obstruction blocks one path (pair 1), a lost signal fails every pair (a real unit
#: shows 0A, gain at maximum, before it gets there). Failed samples carry empty fields.
CONDITION_STATUS = {"rain": tuple(range(0x01, 0x08)), "obstruction": (0x01,), "low_signal": (0x07,)}

STX, ETX = b"\x02", b"\x03"
MAX_LINE_BYTES = 2048
#: gamma * R_d [m2 s-2 K-1]: sonic temperature from speed of sound when the unit reports only c
#: (NIDAS constant, instruments.md section 1; Gill's own constant is not documented).
GAMMA_RD = 402.684
DEFAULT_FIRMWARE = "2329-701-01"
#: A Gill firmware number in a banner line: part number, issue, revision; dots, dashes or spaces
#: (``2329.602.1``, ``2329-602-01``, WindSonic ``2368-110-01``, old ``FIRMWARE: 2231 - 102``).
FIRMWARE_RE = re.compile(rb"(?<![\d.])(\d{4})\s*[-.]\s*(\d{3})(?:\s*[-.]\s*(\d{1,3}))?(?!\d|[-.]\d)")

_FRAME = re.compile(rb"\x02([^\x02\x03\r\n]{0,%d})\x03([0-9A-Fa-f]{2})(?:\r\n|\r|\n)?" % MAX_LINE_BYTES)
#: Outside frames: an STX that started no frame (to the end of its line), a terminated line, or
#: an unterminated run of bytes (at the end of the buffer or straight before an STX).
_GAP = re.compile(rb"(\x02[^\x02\r\n]*(?:\r\n|\r|\n)?)|([^\x02\r\n]*(?:\r\n|\r|\n))|([^\x02\r\n]+)")
_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")
_NUM = rb"([-+]?(?:\d+(?:\.\d*)?|\.\d+)?)"
_FIELD_RE = {"units": rb"([A-Z])", "status": rb"([0-9A-Fa-f]{2})", "status_address": rb"([0-9A-Fa-f]{2})",
             "prt": _NUM + rb"C?"}


def firmware_w_boost(firmware: str | None) -> bool:
    """True for WindMaster/Pro firmware ``2329.x.y`` with x < 700 (EddyPro w-boost note,
    instruments.md section 3)."""
    if not firmware:
        return False
    m = FIRMWARE_RE.search(firmware.encode("ascii", "replace"))
    return bool(m) and m.group(1) == b"2329" and int(m.group(2)) < 700


def checksum(body: bytes) -> int:
    """XOR of the bytes strictly between STX and ETX (manual section 7.1 "Checksum")."""
    out = 0
    for byte in body:
        out ^= byte
    return out


def t_sonic_degc(speed_of_sound_m_s: np.ndarray) -> np.ndarray:
    """Ts = c^2 / (gamma R_d) - 273.15 [degC] (Kaimal & Gaynor 1991, NIDAS gamma R_d)."""
    return np.asarray(speed_of_sound_m_s, dtype=float) ** 2 / GAMMA_RD - 273.15


def speed_of_sound_m_s(t_sonic: np.ndarray) -> np.ndarray:
    """Inverse of :func:`t_sonic_degc`."""
    return np.sqrt(GAMMA_RD * (np.asarray(t_sonic, dtype=float) + 273.15))


def decode_flags(diag: np.ndarray, w_boost: np.ndarray | bool = False) -> dict[str, np.ndarray]:
    """One boolean array per status code (:data:`STATUS_CODES`; a code, not a bit field), True where
    the status equals that code, plus ``w_boost``: pass the batch's ``w_boost`` column, since the
    status alone cannot tell the firmware."""
    diag = np.asarray(diag, dtype=np.int64)
    flags = {name: diag == code for code, name in STATUS_CODES.items()}
    flags["w_boost"] = np.broadcast_to(np.asarray(w_boost, dtype=bool), diag.shape).copy()
    return flags


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Status 00, 0A or 0B (0A/0B are warnings with good data) and finite u, v, w (instruments.md
    section 3: "Treat 01-09 as bad data; 0A/0B as warnings"); unknown codes are invalid."""
    diag = np.asarray(columns["diag"], dtype=np.int64)
    ok = np.isin(diag, VALID_STATUS)
    for name in ("u", "v", "w"):
        if name in columns:
            ok &= np.isfinite(np.asarray(columns[name], dtype=float))
    return ok


def _number(text: bytes) -> float:
    """A numeric field; empty (CSV error data) or 9-padded with 3+ integer digits (fixed-field error
    data, e.g. ``+999.99``) is NaN (instruments.md section 3, "Error data")."""
    if not text:
        return float("nan")
    digits = text.lstrip(b"+-")
    whole = digits.split(b".")[0]
    if len(whole) >= 3 and not digits.replace(b".", b"").strip(b"9"):
        return float("nan")
    return float(text)


class Parser:
    """Streaming WindMaster ASCII parser: ``feed(bytes) -> Batch``; never raises on input bytes.

    ``fields`` lists the fields after the node ID as the unit is configured (:data:`FIELD_KINDS`);
    a frame with another field count is malformed. ``firmware`` is the unit's firmware string if
    known; a power-on banner on the line replaces it.
    """

    family = NAME

    def __init__(self, fields: tuple[str, ...] = DEFAULT_FIELDS, firmware: str | None = None,
                 node_id: bool = True) -> None:
        unknown = [f for f in fields if f not in FIELD_KINDS]
        if unknown or len(set(fields)) != len(fields):
            raise ValueError(f"WindMaster fields must be distinct names from {FIELD_KINDS}; got {fields}")
        self.fields = tuple(fields)
        parts = [_FIELD_RE.get(name, _NUM) for name in self.fields]
        self._body = re.compile((rb"[A-Za-z]," if node_id else b"") + b",".join(parts) + rb",?")
        self._index = {name: i + 1 for i, name in enumerate(self.fields)}
        self._extras = tuple(f for f in self.fields if f.startswith("analog") or f == "prt")
        self.channels = CHANNELS + self._extras
        self.firmware: str | None = firmware
        #: Recent printable lines outside frames (banner, ``D3`` settings, replies), newest last.
        self.text_lines: deque[str] = deque(maxlen=32)
        self.stats = ParseStats()
        self._buf = b""
        self._run_open = False  # a garbage run is in progress (a later garbage line extends it)
        self._mid_line = False  # garbage was counted before the end of its line: the rest is garbage
        self._skip_line = False  # an over-long STX segment was counted: skip silently to its line end

    @property
    def w_boost(self) -> bool:
        """Whether the known firmware has the w-boost problem (see module docstring)."""
        return firmware_w_boost(self.firmware)

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        matches = list(_FRAME.finditer(buf))
        sums = self._checksums(buf, matches)
        rows: list[tuple] = []
        ends: list[int] = []
        pos = 0
        for m, xor in zip(matches, sums, strict=True):
            self._gap(buf, pos, m.start(), final=True)
            pos = m.end()
            # a frame ends any garbage run; bytes after it on its own line are garbage, not text
            self._run_open = self._skip_line = False
            self._mid_line = m.group(0)[-1:] not in (b"\r", b"\n")
            if int(m.group(2), 16) != xor:
                self.stats.checksum_errors += 1
                continue
            row = self._decode(m.group(1))
            if row is None:
                self.stats.malformed += 1
                continue
            rows.append(row)
            ends.append(pos - carried)
        keep = self._gap(buf, pos, len(buf), final=False)
        self._buf = buf[keep:]
        return self._batch(rows, ends)

    @staticmethod
    def _checksums(buf: bytes, matches: list[re.Match[bytes]]) -> list[int]:
        """XOR of each frame body, all frames at once (``np.bitwise_xor.reduceat``)."""
        if not matches:
            return []
        bounds = np.array([(m.start(1), m.end(1)) for m in matches], dtype=np.int64)
        arr = np.frombuffer(buf, dtype=np.uint8)
        xor = np.bitwise_xor.reduceat(arr, bounds.ravel())[0::2].astype(np.int64)
        xor[bounds[:, 0] == bounds[:, 1]] = 0  # empty body: reduceat would return the ETX byte
        return xor.tolist()

    def _gap(self, buf: bytes, i: int, end: int, final: bool) -> int:
        """Account for ``buf[i:end]`` (no frame in it); returns where the unconsumed tail starts
        (``end`` when ``final``, i.e. when an STX or a frame follows)."""
        while i < end:
            m = _GAP.match(buf, i, end)
            if m is None:  # cannot happen: one alternative always matches a non-empty region
                break
            token = m.group(0)
            terminated = token.endswith((b"\r", b"\n"))
            if m.group(1) is not None:  # an STX that started no frame (ends a skipped line too)
                self._skip_line = False
                if not terminated and m.end() == end and not final:
                    if len(token) <= MAX_LINE_BYTES:
                        return i  # maybe a frame still arriving
                    self._skip_line = True  # counted now; the rest of its line is part of it
                self.stats.malformed += 1
                self._run_open = self._mid_line = False
            elif self._skip_line:
                self._skip_line = not terminated and m.end() == end and not final
            elif m.group(2) is not None:  # a whole line
                content = token.rstrip(b"\r\n")
                if not content:  # a bare line end: part of a garbage run if one is open
                    if self._run_open:
                        self.stats.bytes_skipped += len(token)
                elif not self._mid_line and len(content) <= MAX_LINE_BYTES and _PRINTABLE.fullmatch(content):
                    self._text(content)
                    self._run_open = False
                else:
                    self._garbage(len(token))
                self._mid_line = False
            else:  # an unterminated run: garbage before an STX, else maybe a line still arriving
                at_end = m.end() == end and not final
                if at_end and not self._mid_line and len(token) <= MAX_LINE_BYTES and _PRINTABLE.fullmatch(token):
                    return i
                self._garbage(len(token))
                self._mid_line = at_end
            i = m.end()
        return end

    def _garbage(self, n: int) -> None:
        if not self._run_open:
            self.stats.resyncs += 1
            self._run_open = True
        self.stats.bytes_skipped += n

    def _text(self, line: bytes) -> None:
        """A printable line outside frames: remember it; a firmware number sets :attr:`firmware`."""
        self.text_lines.append(line.decode("ascii"))
        m = FIRMWARE_RE.search(line)
        if m is not None:
            self.firmware = re.sub(rb"\s+", b"", m.group(0)).decode("ascii")

    def _decode(self, body: bytes) -> tuple | None:
        m = self._body.fullmatch(body)
        if m is None:
            return None
        idx = self._index
        try:
            values = {name: _number(m.group(i)) for name, i in idx.items()
                      if name not in ("units", "status", "status_address")}
        except ValueError:
            return None
        factor = 1.0
        if "units" in idx:
            factor = UNIT_FACTORS.get(m.group(idx["units"]), 0.0)
            if not factor:
                return None
        nan = float("nan")
        u, v, w = (values.get(name, nan) * factor for name in ("u", "v", "w"))
        c = values.get("speed_of_sound", nan)
        ts = values["t_sonic"] if "t_sonic" in values else c * c / GAMMA_RD - 273.15
        status = int(m.group(idx["status"]), 16) if "status" in idx else 0
        return (u, v, w, ts, c, status, self.w_boost, *(values[name] for name in self._extras))

    def _batch(self, rows: list[tuple], ends: list[int]) -> Batch:
        if not rows:
            cols = {name: np.zeros(0) for name in self.channels}
            cols["diag"] = np.zeros(0, np.int64)
            cols["w_boost"] = np.zeros(0, bool)
            return Batch(cols, np.zeros(0, np.int64))
        table = np.array(rows, dtype=float)
        cols = {name: table[:, i] for i, name in enumerate(self.channels)}
        cols["diag"] = table[:, 5].astype(np.int64)
        cols["w_boost"] = table[:, 6] != 0
        present = [i for i, name in enumerate(("u", "v", "w", "t_sonic", "speed_of_sound"))
                   if name in self._index or (name == "t_sonic" and "speed_of_sound" in self._index)]
        self.stats.frames_ok += len(rows)
        self.stats.nan_records += int(np.isnan(table[:, present]).any(axis=1).sum())
        return Batch(cols, np.array(ends, dtype=np.int64))


def _fixed(x: float, decimals: int) -> str:
    """``+001.23``: sign, three integer digits, 2 (J1) or 3 (J2) decimals; NaN as an empty field."""
    return "" if x != x else f"{x:+0{5 + decimals}.{decimals}f}"


def encode_frame(u: float, v: float, w: float, speed_of_sound: float, t_sonic: float, status: int = 0,
                 unit_id: str = "Q", high_resolution: bool = False) -> bytes:
    """One M1 frame in m s-1 (:data:`DEFAULT_FIELDS`), exactly as the unit sends it with CR LF."""
    d = 3 if high_resolution else 2
    body = (f"{unit_id},{_fixed(u, d)},{_fixed(v, d)},{_fixed(w, d)},M,{_fixed(speed_of_sound, 2)},"
            f"{_fixed(t_sonic, 2)},{int(status):02X},").encode("ascii")
    return STX + body + ETX + f"{checksum(body):02X}\r\n".encode("ascii")


def command_config_mode() -> bytes:
    """``*``: enter configuration mode from continuous mode (no CR); the unit answers
    ``CONFIGURATION MODE`` and stops sending data (manual section 10.2)."""
    return b"*"


def command_query_settings() -> bytes:
    """``D3`` + CR in configuration mode: print the current settings (manual section 10.2)."""
    return b"D3\r"


def command_measure() -> bytes:
    """``Q`` + CR: back to measurement mode; the unit prints its power-on banner (with ``H1``)."""
    return b"Q\r"


def command_start(rate_hz: int) -> bytes:
    """Nothing: a WindMaster streams M1 continuously once configured, and the configuration (mode,
    rate, fields) is the site's to set; the driver learns the firmware from the banner."""
    return b""


class Device(device.Device):
    """A WindMaster (Pro) in continuous M1 mode with speed of sound and sonic temperature.

    Commands (manual section 10.2): ``*`` (no CR) enters configuration mode; there ``D3`` prints the
    settings, ``D2`` the firmware, a setting such as ``P8`` is echoed and stored, and ``Q`` returns
    to measurement mode printing the power-on banner.
    """

    family = NAME
    MODEL = "WINDMASTER PRO"

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD,
                 firmware: str = DEFAULT_FIRMWARE, unit_id: str = "Q", high_resolution: bool = False) -> None:
        super().__init__(rate_hz, seed, baud)
        self.firmware = firmware
        self.unit_id = unit_id
        self.high_resolution = high_resolution
        self.settings = {"M": "1", "U": "1", "O": "1", "L": "1", "P": str(RATE_CODES.get(int(rate_hz), 8)),
                         "B": str(BAUD_CODES.get(baud or DEFAULT_BAUD, 4)), "H": "1", "N": unit_id, "E": "1",
                         "T": "1", "S": "1", "C": "2", "A": "1", "I": "1", "J": "2" if high_resolution else "1",
                         "V": "1", "X": "1", "G": "0", "K": "50"}
        self._line = b""

    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        """M1 frames of ``obs``; under a condition (:data:`CONDITION_STATUS`) every sample fails
        with one of that condition's status codes and empty data fields."""
        u, v, w, ts = (np.atleast_1d(np.asarray(obs[k], dtype=float)) for k in ("u", "v", "w", "t_sonic"))
        c = speed_of_sound_m_s(ts)
        n = len(u)
        codes = CONDITION_STATUS.get(self.condition or "")
        if codes:
            status = self.rng.choice(codes, n)
            u = v = w = c = ts = np.full(n, np.nan)
        else:
            status = np.zeros(n, np.int64)
        return [encode_frame(*row, unit_id=self.unit_id, high_resolution=self.high_resolution)
                for row in zip(u.tolist(), v.tolist(), w.tolist(), c.tolist(), ts.tolist(), status.tolist(),
                               strict=True)]

    def corrupt(self, frame: bytes) -> bytes:
        """One data digit changed (a bit error on the line): framing and field count intact, the
        XOR checksum no longer matches."""
        etx = frame.find(ETX)
        digits = [i for i in range(1, max(etx, 1)) if 0x30 <= frame[i] <= 0x39]
        if not digits:
            return super().corrupt(frame)
        i = digits[len(digits) // 2]
        return frame[:i] + bytes([0x30 + (frame[i] - 0x30 + 1) % 10]) + frame[i + 1:]

    def banner(self) -> bytes:
        """The power-on message (``H1``), in the format of Gill's manuals (section "Power-up
        message"): model, firmware number, interface, four checksum lines."""
        lines = [f"{self.MODEL} (Gill Instruments Ltd)", self.firmware, "RS422 (CFG)",
                 "CHECKSUM ROM:9F5E 9F5E *PASS*", "CHECKSUM FAC:04F4 04F4 *PASS*",
                 "CHECKSUM ENG:0824 0824 *PASS*", "CHECKSUM CAL:C980 C980 *PASS*"]
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    def settings_text(self) -> bytes:
        """The ``D3`` line, e.g. ``M1,U1,O1,L1,P8,B4,H1,NQ,E1,T1,S1,C2,A1,I1,J1,V1,X1,G0,K50``."""
        return ",".join(k + v for k, v in self.settings.items()).encode("ascii")

    def receive(self, data: bytes) -> bytes:
        """``*`` needs no CR; commands in configuration mode end with CR (or LF)."""
        out = []
        for byte in data:
            ch = bytes([byte])
            if self.streaming:
                if ch == b"*":
                    self.streaming = False
                    self._line = b""
                    out.append(b"CONFIGURATION MODE\r\n")
            elif ch == b"*":
                continue  # already in configuration mode
            elif ch in (b"\r", b"\n"):
                if self._line:
                    out.append(self.reply(self._line))
                self._line = b""
            else:
                self._line = (self._line + ch)[-64:]
        return b"".join(out)

    def reply(self, command: bytes) -> bytes:
        cmd = command.replace(b" ", b"").upper().decode("ascii", "replace")
        if cmd == "Q":
            self.streaming = True
            return self.banner()
        if cmd == "D3":
            return self.settings_text() + b"\r\n"
        if cmd == "D2":
            return self.firmware.encode("ascii") + b"\r\n"
        if len(cmd) >= 2 and cmd[0] in self.settings and cmd[1:].isalnum():
            self.settings[cmd[0]] = cmd[1:]
            return cmd.encode("ascii") + b"\r\n"
        return b""
