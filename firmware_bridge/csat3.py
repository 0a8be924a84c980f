"""Campbell Scientific CSAT3 3-D sonic anemometer, RS-232 binary output.

Frame (little-endian int16 words, ``rs 1`` sync appended): Ux, Uy, Uz, speed of sound, diagnostic
word, then ``55 AA``; 12 bytes. Diagnostic word: b15..b12 warning flags, b11-b10/b09-b08/b07-b06
Ux/Uy/Uz range codes, b05..b00 a 0..63 counter. Source: CSAT3 manual App. B; NCAR NIDAS
``CSAT3_Sonic.cc`` (see shared/reference/instruments.md section 1).

The parser decodes whole buffers with NumPy (no Python loop per frame) and resynchronises on the
``55 AA`` sync code after garbage, truncated frames or dropped bytes.
"""

from __future__ import annotations

import numpy as np

from firmware_bridge import device
from firmware_bridge.frames import Batch, CounterTracker, ParseStats

FRAME_BYTES = 12
SYNC = b"\x55\xaa"
CHANNELS = ("u", "v", "w", "t_sonic", "speed_of_sound", "diag", "counter")
RECORD_COUNTER = ("counter", 64)
UNITS = {"u": "m s-1", "v": "m s-1", "w": "m s-1", "t_sonic": "degC", "speed_of_sound": "m s-1",
         "diag": "raw diagnostic word", "counter": "0..63"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): u, v, w are counts of 2, 1, 0.5 or
#: 0.25 mm s-1 by range (5 decimals hold every one); c counts 1 mm s-1, so Ts (c**2 / 402.684 - 273.15)
#: moves in steps of about 1.7 mK: 4 decimals lose nothing of it.
RESOLUTION = {"u": ".5f", "v": ".5f", "w": ".5f", "t_sonic": ".4f", "speed_of_sound": ".3f"}

#: m s-1 per count, indexed by the 2-bit range code (NIDAS ``scale[]``).
RANGE_SCALE_M_S = np.array([0.002, 0.001, 0.0005, 0.00025])
#: Special diagnostic words of "NaN" records.
DIAG_NOT_AVAILABLE = 0xF03F
DIAG_LOST_TRIGGER = 0xF000
#: gamma * R_d [m2 s-2 K-1] used to turn speed of sound into sonic temperature (NIDAS constant).
GAMMA_RD = 402.684
FLAG_BITS = {"delta_c_high": 15, "poor_lock": 14, "amplitude_high": 13, "amplitude_low": 12}
#: ``A`` command rate codes (Hz -> second byte).
RATE_CODES = {1: b"2", 2: b"5", 3: b"6", 5: b"7", 6: b"8", 10: b"9", 12: b"a", 15: b"b", 20: b"c",
              30: b"d", 60: b"e"}

_NAN_RAW = -32768


def t_sonic_degc(speed_of_sound_m_s: np.ndarray) -> np.ndarray:
    """Sonic temperature [degC] from speed of sound c [m s-1]: Ts = c^2 / (gamma R_d) - 273.15.

    Kaimal & Gaynor (1991) eq. 3 with the NIDAS constant gamma R_d = 402.684.
    """
    return speed_of_sound_m_s**2 / GAMMA_RD - 273.15


def speed_of_sound_m_s(t_sonic: np.ndarray) -> np.ndarray:
    """Inverse of :func:`t_sonic_degc`: c = sqrt(gamma R_d (Ts + 273.15)) [m s-1]."""
    return np.sqrt(GAMMA_RD * (np.asarray(t_sonic, dtype=float) + 273.15))


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """The four warning flags of the diagnostic word as boolean arrays (True = problem)."""
    diag = np.asarray(diag, dtype=np.int64)
    return {name: (diag >> bit) & 1 == 1 for name, bit in FLAG_BITS.items()}


class Parser:
    """Streaming CSAT3 binary parser: ``feed(bytes) -> Batch``; never raises on input bytes."""

    family = "csat3"

    def __init__(self) -> None:
        self._buf = b""
        self.stats = ParseStats()
        self._counter = CounterTracker(self.stats, 64)

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        arr = np.frombuffer(buf, dtype=np.uint8)
        ends = self._frame_ends(arr)
        if len(ends):
            self._count_skipped(np.concatenate(([ends[0] - 10], np.diff(ends) - FRAME_BYTES)))
            rest_start = int(ends[-1]) + 2
        else:
            rest_start = 0
        keep_from = max(rest_start, len(buf) - (FRAME_BYTES - 1))
        if keep_from > rest_start:
            self._count_skipped(np.array([keep_from - rest_start]))
        self._buf = buf[keep_from:]
        if not len(ends):
            return Batch.empty(CHANNELS)
        return self._decode(arr, ends, carried)

    @staticmethod
    def _frame_ends(arr: np.ndarray) -> np.ndarray:
        """Positions of accepted sync codes (each ends a frame that starts 10 bytes earlier)."""
        if len(arr) < FRAME_BYTES:
            return np.zeros(0, np.int64)
        cand = np.flatnonzero((arr[:-1] == 0x55) & (arr[1:] == 0xAA))
        cand = cand[cand >= 10]
        if len(cand) == 0:
            return cand
        # Syncs 12 bytes from another sync form a chain of real frames; a 55 AA inside data
        # almost never does. Isolated candidates are kept only where they overlap no chain frame.
        chained = np.isin(cand - FRAME_BYTES, cand) | np.isin(cand + FRAME_BYTES, cand)
        accepted = cand[chained]
        isolated = cand[~chained]
        if len(isolated):
            accepted = Parser._add_isolated(accepted, isolated)
        if len(accepted) > 1 and np.any(np.diff(accepted) < FRAME_BYTES):
            accepted = Parser._drop_overlaps(accepted)
        return accepted

    @staticmethod
    def _add_isolated(accepted: np.ndarray, isolated: np.ndarray) -> np.ndarray:
        out = list(accepted)
        for p in isolated.tolist():  # rare: only candidates outside any chain
            i = np.searchsorted(accepted, p)
            left_ok = i == 0 or p - accepted[i - 1] >= FRAME_BYTES
            right_ok = i == len(accepted) or accepted[i] - p >= FRAME_BYTES
            if left_ok and right_ok:
                out.append(p)
        return np.array(sorted(out), dtype=np.int64)

    @staticmethod
    def _drop_overlaps(ends: np.ndarray) -> np.ndarray:
        kept = [int(ends[0])]
        for p in ends[1:].tolist():
            if p - kept[-1] >= FRAME_BYTES:
                kept.append(p)
        return np.array(kept, dtype=np.int64)

    def _count_skipped(self, gaps: np.ndarray) -> None:
        """Count each positive gap (bytes between frames that were skipped) as one resync."""
        gaps = gaps[gaps > 0]
        self.stats.resyncs += len(gaps)
        self.stats.bytes_skipped += int(gaps.sum())

    def _decode(self, arr: np.ndarray, ends: np.ndarray, carried: int) -> Batch:
        idx = (ends - 10)[:, None] + np.arange(10)
        words = np.ascontiguousarray(arr[idx]).view("<i2").reshape(len(ends), 5)
        diag = words[:, 4].view("<u2").astype(np.int64)
        special = (diag == DIAG_NOT_AVAILABLE) | (diag == DIAG_LOST_TRIGGER)
        ranges = np.stack([(diag >> 10) & 3, (diag >> 8) & 3, (diag >> 6) & 3], axis=1)
        wind = words[:, :3] * RANGE_SCALE_M_S[ranges]
        wind[(words[:, :3] == _NAN_RAW) | special[:, None]] = np.nan
        c = words[:, 3] * 0.001 + 340.0
        c[(words[:, 3] == _NAN_RAW) | special | np.isnan(wind).all(axis=1)] = np.nan
        counter = diag & 0x3F
        self._counter.update(counter[~special])
        nan_rows = np.isnan(wind).any(axis=1) | np.isnan(c)
        self.stats.nan_records += int(nan_rows.sum())
        self.stats.frames_ok += len(ends)
        columns = {"u": wind[:, 0], "v": wind[:, 1], "w": wind[:, 2], "t_sonic": t_sonic_degc(c),
                   "speed_of_sound": c, "diag": diag,
                   # special frames (no data / lost trigger) carry no counter: NaN
                   "counter": np.where(special, np.nan, counter.astype(float))}
        return Batch(columns, ends + 2 - carried)


def _range_code(x: np.ndarray) -> np.ndarray:
    """Finest range code whose full scale holds |x| (3: +-8.19 m/s ... 0: +-65.5 m/s)."""
    ax = np.abs(np.nan_to_num(x))
    return np.select([ax < 8.19, ax < 16.38, ax < 32.76], [3, 2, 1], 0)


def encode(u: np.ndarray, v: np.ndarray, w: np.ndarray, t_sonic: np.ndarray, counter: np.ndarray,
           flags: np.ndarray | int = 0, sync: bool = True) -> bytes:
    """Frames for the given samples, exactly as a CSAT3 sends them (used by the emulator).

    ``flags`` is the 4-bit warning field (b15..b12); NaN wind or temperature gives NaN words.
    """
    u, v, w, t_sonic = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (u, v, w, t_sonic))
    n = len(u)
    words = np.zeros((n, 5), dtype="<i2")
    codes = np.stack([_range_code(u), _range_code(v), _range_code(w)], axis=1)
    for axis, x in enumerate((u, v, w)):
        raw = np.round(np.nan_to_num(x) / RANGE_SCALE_M_S[codes[:, axis]])
        words[:, axis] = np.where(np.isnan(x), _NAN_RAW, np.clip(raw, -32767, 32767))
    c = speed_of_sound_m_s(t_sonic)
    words[:, 3] = np.where(np.isnan(c), _NAN_RAW, np.clip(np.round((np.nan_to_num(c) - 340.0) / 0.001),
                                                          -32767, 32767))
    diag = ((np.asarray(flags, dtype=np.int64) & 0xF) << 12) | (codes[:, 0] << 10) | (codes[:, 1] << 8) \
        | (codes[:, 2] << 6) | (np.asarray(counter, dtype=np.int64) & 0x3F)
    words[:, 4] = diag.astype(np.uint16).view(np.int16)
    body = words.tobytes()
    if not sync:
        return body
    frames = np.frombuffer(body, np.uint8).reshape(n, 10)
    return np.hstack([frames, np.tile(np.frombuffer(SYNC, np.uint8), (n, 1))]).tobytes()


def encode_special(diag_word: int, n: int = 1) -> bytes:
    """NaN records: all data words -32768 with a special diagnostic word (0xF03F or 0xF000)."""
    frame = np.array([_NAN_RAW] * 4 + [np.uint16(diag_word).view(np.int16)], dtype="<i2").tobytes() + SYNC
    return frame * n


def command_rate(rate_hz: int) -> bytes:
    """``A<x>``: acquire at ``rate_hz`` (one of :data:`RATE_CODES`)."""
    if rate_hz not in RATE_CODES:
        raise ValueError(f"CSAT3 has no rate {rate_hz} Hz; choose one of {sorted(RATE_CODES)}")
    return b"A" + RATE_CODES[rate_hz]


def command_start(rate_hz: int) -> bytes:
    """Open sequence: terminal mode, sync code and RTS-independent drivers on, then unprompted data."""
    return b"T" + b"rs 1\r" + b"ri 1\r" + b"D" + command_rate(rate_hz) + b"&"


NAME = "csat3"
ROLE = "sonic"
TRANSPORT = "serial"
DEFAULT_BAUD = 9600
#: Baud rates the instrument can be set to (``br 0`` / ``br 1``); ``bridge probe`` tries these.
BAUDS = (9600, 19200)
#: Flags raised by each emulated sensor condition (b12 amplitude low, b14 poor lock).
CONDITION_FLAGS = {"rain": 0b0101, "obstruction": 0b0100, "low_signal": 0b0001}


class Device(device.Device):
    """A CSAT3 in unprompted mode with ``rs 1``; answers ``T``/``??``/``rs``/``br``/``ri``/``D``,
    ``A<x>``, ``&`` and the 10-byte ``S``/``P`` status (manual App. B)."""

    family = NAME
    command_terminator = None
    SERIAL = b"1234"

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD) -> None:
        super().__init__(rate_hz, seed, baud)
        self.sync = True
        self.rts_independent = False
        self.rate_code = RATE_CODES.get(int(rate_hz), b"c")
        self.terminal = False
        self._line = b""
        self._await_rate = False

    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        n = len(obs["u"])
        counter = (first_index + np.arange(n)) % 64
        flags = CONDITION_FLAGS.get(self.condition or "", 0) | np.asarray(obs.get("sonic_flags", 0))
        body = encode(obs["u"], obs["v"], obs["w"], obs["t_sonic"], counter, flags, sync=self.sync)
        size = FRAME_BYTES if self.sync else 10
        return [body[i:i + size] for i in range(0, len(body), size)]

    def corrupt(self, frame: bytes) -> bytes:
        """No checksum on a CSAT3: damage the sync code, so the frame cannot be delimited."""
        return frame[:-1] + b"\xab" if frame.endswith(SYNC) else super().corrupt(frame)

    def receive(self, data: bytes) -> bytes:
        out = []
        for ch in (bytes([b]) for b in data):
            if self._await_rate:
                self._await_rate = False
                if ch in RATE_CODES.values():
                    self.rate_code = ch
            elif self.terminal:
                if ch == b"D" and not self._line:
                    self.terminal, self.streaming = False, True
                elif ch == b"\r":
                    out.append(self._terminal_command(self._line.strip()))
                    self._line = b""
                else:
                    self._line = (self._line + ch)[-64:]
            elif ch == b"T":
                self.terminal, self.streaming = True, False
                out.append(b"\r\n>")
            elif ch == b"A":
                self._await_rate = True
            elif ch == b"&":
                self.streaming = True
            elif ch in (b"S", b"P"):
                out.append(self.status())
        return b"".join(out)

    def _terminal_command(self, line: bytes) -> bytes:
        parts = line.split()
        if line == b"??":
            return self.settings() + b"\r\n>"
        if len(parts) == 2 and parts[0] in (b"rs", b"br", b"ri") and parts[1] in (b"0", b"1"):
            on = parts[1] == b"1"
            if parts[0] == b"rs":
                self.sync = on
            elif parts[0] == b"ri":
                self.rts_independent = on
            else:
                self.baud = 19200 if on else 9600
            return b"\r\n>"
        return b"\r\n>" if line in (b"", b"sr2718") else b"\r\nInvalid command\r\n>"

    def settings(self) -> bytes:
        """The ``??`` text: key=value pairs, serial number token and firmware revision."""
        return (f"ET= 60 ts=i AQ= 60 os=h AH=1 AT=0 RS={int(self.sync)} BR={int(self.baud == 19200)} "
                f"RI={int(self.rts_independent)} SN{self.SERIAL.decode()} rev 4.0").encode("ascii")

    def status(self) -> bytes:
        """The 10-byte status: trigger source, A code, analog range, data status, mode, serial, U."""
        data_status = b"\x00" if self.condition is None else b"\x01"
        return b"\x00" + self.rate_code + b"\x00" + data_status + b"D" + self.SERIAL + b"U"


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Samples whose four warning flags are clear (EddyPro discards any flagged CSAT3 record)."""
    return (np.asarray(columns["diag"], dtype=np.int64) >> 12) & 0xF == 0
