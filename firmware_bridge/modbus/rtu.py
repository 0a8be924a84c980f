"""Modbus RTU on the wire: CRC-16/MODBUS, frame builders, and a bus-capture parser (family ``modbus``).

Source: shared/reference/instruments.md section 7.1 (Modbus over Serial Line spec V1.02):
``addr(1) | func(1) | data(n) | CRC16`` with the CRC low byte first; CRC-16/MODBUS = init 0xFFFF,
reflected polynomial 0xA001, no final XOR. Exception replies carry ``func | 0x80`` and one code.

:class:`Parser` decodes what a sniffer on an RS-485 bus sees: requests and replies interleaved,
plus line noise. RTU has no start byte, so at every offset it tries the frame shapes the function
code allows (read request 8 bytes, read reply ``5 + byte count``, write-multiple request
``9 + byte count``, exception 5 bytes, ...), accepts the first one whose CRC checks, and otherwise
slides one byte on (a resync). It never raises on input bytes.

Batch columns (one row per frame, all integers):

- ``address`` device id; ``function`` function code without the exception bit;
- ``kind`` 0 request, 1 reply; ``exception`` the exception code of an exception reply, else 0
  (also given as ``diag``, so :func:`decode_flags` names it);
- ``start`` first register/bit of a request; for a reply, the start of the request it answers
  (the preceding request to the same address and function), else -1;
- ``count`` registers/bits asked for (requests, replies matched to a request) or carried
  (register replies: byte count / 2); ``byte_count`` the frame's byte-count field, else 0.

Register values are not columnar (their number varies per frame): :meth:`Parser.take_details`
returns, for the frames of the last :meth:`Parser.feed`, a dict with ``registers`` (list of
int), ``bits`` (coil/discrete replies), ``value`` (single writes) and ``hex`` (the frame); the
``fluxedge bridge decode`` CLI merges them into its JSON lines. :attr:`Parser.frames` keeps the
most recent frames (columns + details) as dicts.

There is no ``Device`` here: the Modbus emulator is :mod:`firmware_bridge.modbus.server`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from firmware_bridge.frames import Batch, ParseStats

NAME = "modbus"
ROLE = "met"
TRANSPORT = "modbus"
DEFAULT_BAUD = 19200
BAUDS = (4800, 9600, 19200, 38400, 57600, 115200)
CHANNELS = ("address", "function", "kind", "exception", "start", "count", "byte_count", "diag")
UNITS = {"address": "device id 0..247", "function": "function code", "kind": "0 request, 1 reply",
         "exception": "exception code (0 = none)", "start": "PDU address (-1 unknown)",
         "count": "registers or bits", "byte_count": "bytes", "diag": "exception code (0 = none)"}
#: The emulator is :mod:`firmware_bridge.modbus.server`, not a byte-stream ``device.Device``.
Device = None

#: Function codes the parser recognises (reads 01-04, single writes 05/06, multiple writes 15/16).
FUNCTIONS = (1, 2, 3, 4, 5, 6, 15, 16)
EXCEPTION_NAMES = {1: "illegal_function", 2: "illegal_data_address", 3: "illegal_data_value",
                   4: "device_failure", 5: "acknowledge", 6: "device_busy", 7: "negative_acknowledge",
                   8: "memory_parity_error", 10: "gateway_path_unavailable", 11: "gateway_no_response"}
#: Longest RTU frame (serial line spec: 256 bytes).
MAX_FRAME = 256
REQUEST, REPLY = 0, 1


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (init 0xFFFF, reflected poly 0xA001); sent low byte first.

    ``crc16(b"\\x01\\x03\\x00\\x00\\x00\\x03") == 0xCB05`` (wire ``05 CB``, instruments.md 7.1);
    over a whole frame including its CRC the result is 0.
    """
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def frame(address: int, function: int, payload: bytes) -> bytes:
    """An RTU frame: address, function, payload and the CRC (low byte first)."""
    body = bytes([address, function]) + bytes(payload)
    return body + crc16(body).to_bytes(2, "little")


def read_request(address: int, function: int, start: int, count: int) -> bytes:
    """FC 01-04 request, e.g. ``read_request(0xF0, 3, 0, 4)`` = ``F0 03 00 00 00 04 51 28``."""
    return frame(address, function, start.to_bytes(2, "big") + count.to_bytes(2, "big"))


def read_reply(address: int, function: int, registers: list[int]) -> bytes:
    """FC 03/04 reply carrying ``registers``."""
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    return frame(address, function, bytes([len(data)]) + data)


def exception_reply(address: int, function: int, code: int) -> bytes:
    return frame(address, function | 0x80, bytes([code]))


def sample_capture(n: int, seed: int = 0) -> list[bytes]:
    """``n`` frames of plausible bus traffic (for benchmarks and demos): a master polling a Vaisala
    HMP (240, FC 03, 4 registers), a soil probe (1, FC 03, 3 registers) and a Kipp & Zonen SMP
    (1 on another bus segment in reality, here 2, FC 04, 10 registers) in turn, request then
    reply, with an occasional "device busy" exception (instruments.md 7.2, 7.3, 7.5 layouts)."""
    rng = np.random.default_rng(seed)
    polls = ((240, 3, 0, 4), (1, 3, 0, 3), (2, 4, 0, 10))
    out: list[bytes] = []
    k = 0
    while len(out) < n:
        address, fc, start, count = polls[k % len(polls)]
        k += 1
        out.append(read_request(address, fc, start, count))
        if len(out) >= n:
            break
        if rng.random() < 0.02:
            out.append(exception_reply(address, fc, 6))
        else:
            out.append(read_reply(address, fc, [int(x) for x in rng.integers(0, 0x10000, count)]))
    return out


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """Exception replies by name (``diag`` = the ``exception`` column; True where that code came back)."""
    diag = np.asarray(diag, dtype=np.int64)
    return {name: diag == code for code, name in EXCEPTION_NAMES.items()}


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Frames that are not exception replies."""
    return np.asarray(columns["exception"]) == 0


def command_start(rate_hz: float) -> bytes:
    """Nothing: a Modbus device only answers requests (the poller sends them)."""
    return b""


class Parser:
    """Bus-capture parser: ``feed(bytes) -> Batch``; counts ``checksum_errors`` (runs of skipped bytes
    that begin with a complete, plausible frame whose CRC fails), ``resyncs``/``bytes_skipped``
    (runs of bytes that are no frame), ``malformed`` (CRC-valid frames with impossible fields:
    zero or too many registers, odd register byte count)."""

    family = NAME

    def __init__(self, keep_frames: int = 10000) -> None:
        self.stats = ParseStats()
        #: The most recent decoded frames as dicts (columns + details), oldest first.
        self.frames: deque[dict] = deque(maxlen=keep_frames)
        self._buf = b""
        self._pending: tuple[int, int, int, int, bytes] | None = None
        self._details: list[dict] = []
        self._run_open = False
        #: Bytes of CRC-valid frames counted as ``malformed`` (consumed, no row).
        self.bytes_malformed = 0

    # -- public ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        n = len(buf)
        rows: list[tuple[int, ...]] = []
        ends: list[int] = []
        self._details = []
        i = 0
        skip_from = 0  # first byte not consumed by a frame
        run_crc = False  # the byte at skip_from began a complete frame shape whose CRC failed
        hold: int | None = None  # first offset where a frame may still complete with more bytes
        while i < n:
            status, length, kind, crc_failed = self._try(buf, i)
            if i == skip_from:
                run_crc = crc_failed
            if status == "frame":
                self._skipped(i - skip_from, run_crc)
                hold = None
                row = self._emit(buf[i:i + length], kind)
                if row is not None:
                    rows.append(row)
                    ends.append(i + length - carried)
                i += length
                skip_from = i
                continue
            if status == "incomplete" and hold is None:
                hold = i
            i += 1
        keep_from = n if hold is None else hold
        if keep_from > skip_from:
            self._skipped(keep_from - skip_from, run_crc)
            self._run_open = True
        self._buf = buf[keep_from:]
        if not rows:
            return Batch.empty(CHANNELS)
        cols = np.array(rows, dtype=np.int64).reshape(len(rows), len(CHANNELS))
        return Batch({name: cols[:, k] for k, name in enumerate(CHANNELS)}, np.array(ends, dtype=np.int64))

    def flush(self) -> None:
        """End of capture: bytes held back because a frame might still have completed are skipped.
        (Every complete frame in them was already found by :meth:`feed`.)"""
        if self._buf:
            self._skipped(len(self._buf), False)
            self._buf = b""
        self._run_open = False

    def take_details(self) -> list[dict]:
        """Per frame of the last :meth:`feed`: ``registers``/``bits``/``value`` and ``hex`` (once)."""
        out, self._details = self._details, []
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _skipped(self, nbytes: int, crc_failed: bool) -> None:
        if nbytes <= 0:
            self._run_open = False
            return
        if not self._run_open:
            self.stats.resyncs += 1
            if crc_failed:
                self.stats.checksum_errors += 1
        self.stats.bytes_skipped += nbytes
        self._run_open = False

    def _shapes(self, buf: bytes, i: int) -> list[tuple[int | None, int]] | None:
        """Possible (length, kind) of a frame at ``i``; length None = not enough bytes to know it.
        None when the header cannot start a frame."""
        n = len(buf)
        if i + 1 >= n:
            return [(None, REQUEST)]
        address, fc = buf[i], buf[i + 1]
        if address > 247:
            return None
        if fc & 0x80:
            return [(5, REPLY)] if (fc & 0x7F) in FUNCTIONS and address else None
        if fc not in FUNCTIONS:
            return None
        if fc in (1, 2, 3, 4):
            if address == 0:  # broadcasts are writes only
                return None
            reply: tuple[int | None, int] = (5 + buf[i + 2], REPLY) if i + 2 < n else (None, REPLY)
            shapes = [(8, REQUEST), reply]
        elif fc in (5, 6):
            shapes = [(8, REQUEST)]
        else:
            request: tuple[int | None, int] = (9 + buf[i + 6], REQUEST) if i + 6 < n else (None, REQUEST)
            shapes = [request, (8, REPLY)] if address else [request]
        p = self._pending
        if p is not None and p[0] == address and p[1] == fc:
            shapes.sort(key=lambda s: -s[1])  # a reply is expected: try it first
        return shapes

    def _try(self, buf: bytes, i: int) -> tuple[str, int, int, bool]:
        shapes = self._shapes(buf, i)
        if shapes is None:
            return "none", 0, 0, False
        incomplete = False
        crc_failed = False
        fallback: tuple[str, int, int, bool] | None = None
        for length, kind in shapes:
            if length is None or i + length > len(buf):
                incomplete = True
                continue
            raw = buf[i:i + length]
            if crc16(raw) == 0:
                if self._plausible(raw, kind):
                    return "frame", length, kind, False
                fallback = fallback or ("frame", length, kind, False)
            else:
                crc_failed = True
        if fallback is not None:  # CRC-valid but impossible: counted as malformed by _emit
            return fallback
        return ("incomplete" if incomplete else "none"), 0, 0, crc_failed

    def _plausible(self, raw: bytes, kind: int) -> bool:
        """Field checks that decide between shapes sharing a CRC-valid span (a read request whose third
        byte happens to make an equally long reply, or a master repeating its request)."""
        fc = raw[1]
        if fc & 0x80:
            return True
        if kind == REPLY:
            if self._pending is not None and self._pending[4] == raw:
                return False  # the same bytes again: a retried request, not the reply
            if fc in (3, 4):
                return raw[2] >= 2 and raw[2] % 2 == 0
            return fc not in (1, 2) or raw[2] >= 1
        if fc in (1, 2, 3, 4):
            return 1 <= int.from_bytes(raw[4:6], "big") <= (125 if fc in (3, 4) else 2000)
        return True

    def _emit(self, raw: bytes, kind: int) -> tuple[int, ...] | None:
        address, fc = raw[0], raw[1]
        details: dict = {"hex": raw.hex(" ")}
        exception = start = count = byte_count = 0
        start = -1
        if fc & 0x80:
            fc &= 0x7F
            exception = raw[2]
            start, count = self._match(address, fc)
        elif fc in (5, 6) and self._pending is not None and self._pending[4] == raw:
            kind = REPLY
            start, count = int.from_bytes(raw[2:4], "big"), 1
            details["value"] = int.from_bytes(raw[4:6], "big")
            self._pending = None
        elif kind == REQUEST:
            start, count = int.from_bytes(raw[2:4], "big"), int.from_bytes(raw[4:6], "big")
            if fc in (5, 6):
                count = 1
                details["value"] = int.from_bytes(raw[4:6], "big")
            elif fc in (15, 16):
                byte_count = raw[6]
                need = (count + 7) // 8 if fc == 15 else 2 * count
                if byte_count != need or not 1 <= count <= (1968 if fc == 15 else 123):
                    return self._malformed(raw)
                data = raw[7:-2]
                if fc == 16:
                    details["registers"] = [int.from_bytes(data[k:k + 2], "big") for k in range(0, len(data), 2)]
                else:
                    details["bits"] = _bits(data, count)
            elif not 1 <= count <= (125 if fc in (3, 4) else 2000):
                return self._malformed(raw)
            self._pending = (address, fc, start, count, raw)
        else:  # reply
            if fc in (15, 16):
                start, count = int.from_bytes(raw[2:4], "big"), int.from_bytes(raw[4:6], "big")
                self._pending = None
            else:
                byte_count = raw[2]
                data = raw[3:-2]
                if fc in (3, 4):
                    if byte_count == 0 or byte_count % 2:
                        return self._malformed(raw)
                    details["registers"] = [int.from_bytes(data[k:k + 2], "big") for k in range(0, len(data), 2)]
                    start, count = self._match(address, fc)
                    if start < 0:
                        count = byte_count // 2
                else:
                    start, count = self._match(address, fc)
                    nbits = count if start >= 0 else 8 * byte_count
                    details["bits"] = _bits(data, nbits)
                    if start < 0:
                        count = nbits
        self.stats.frames_ok += 1
        row = (address, fc, kind, exception, start, count, byte_count, exception)
        self._details.append(details)
        self.frames.append({**dict(zip(CHANNELS, row, strict=True)), **details})
        return row

    def _match(self, address: int, fc: int) -> tuple[int, int]:
        """(start, count) of the pending request this reply answers, else (-1, 0); clears it."""
        p = self._pending
        if p is not None and p[0] == address and p[1] == fc:
            self._pending = None
            return p[2], p[3]
        return -1, 0

    def _malformed(self, raw: bytes) -> None:
        self.stats.malformed += 1
        self.bytes_malformed += len(raw)
        return None


def _bits(data: bytes, n: int) -> list[int]:
    """Coil/discrete bits, LSB of the first byte first (serial line spec 6.1)."""
    return [(data[k // 8] >> (k % 8)) & 1 for k in range(min(n, 8 * len(data)))]
