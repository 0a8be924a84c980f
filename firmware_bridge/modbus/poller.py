"""The Modbus driver: poll a device's register map over TCP or RTU, never raising on device behaviour.

``ModbusPoller(map, transport="rtu", port="/dev/ttyUSB0").poll()`` reads every point of the map
with as few requests as possible (contiguous points of one table merged, at most 125 registers or
2000 bits per request - Modbus application protocol spec 6.1-6.4, instruments.md 7.1) through the
pymodbus 3.12 sync clients (``ModbusTcpClient`` / ``ModbusSerialClient``, ``device_id=`` keyword;
stack-notes.md section d) and returns a :class:`PollResult`: a value per point (NaN when it could
not be read) and, per failed point, a reason in words:

- ``timeout: no response from device 240 at /dev/pts/5 after 2 retries``
- ``exception 0x02 illegal data address at holding 0x0006 (2 registers) from device 240``
- ``crc error: reply from device 240 at /dev/pts/5 failed the CRC-16 check (3 attempts; last bytes: f0 03 ..)``
- ``out of range: 5.85e+35 %RH outside 0..100 (wrong word order?)``

Behaviour on device trouble (Vaisala/Campbell practice for RS-485 loggers):

- after a timeout (or a reply garbled on every attempt) the rest of that poll is skipped (a silent
  device would otherwise cost every request its full timeout x attempts) and the connection is
  closed, to be reopened at the next poll; while polls get no reply at all they back off
  ``backoff_s``, doubling up to ``backoff_max_s`` (skipped polls return at once with a ``backoff``
  reason); any reply (even an exception) resets the backoff;
- an "illegal data address" reply to a request covering several points is retried point by
  point, so one unsupported register (HMP110 lacks some HMP4 registers) costs only that point;
  such points stay on single reads until they answer again;
- bytes that arrived but never formed a CRC-valid reply are counted as ``crc_errors`` rather
  than timeouts (pymodbus itself just reports "no response"); valid replies preceded or followed
  by noise count ``noise_bytes``;
- a point's ``min``/``max`` (from the map) turns implausible values into NaN + an ``out of range``
  error: the usual symptom of a wrong word order.

Several devices on one line (an RS-485 bus with many addresses, or one Modbus TCP gateway):
one :class:`ModbusBus` per line, shared by their pollers (``ModbusPoller(..., bus=bus)``). The port
is opened once (pymodbus opens serial ports with an exclusive lock, so a second open of the same
port fails), a poll holds the bus so that two devices' requests never interleave, and the line's
silence ``pause_s`` is kept between any two requests on it, whichever device they address.

Configuration mistakes (unknown transport, missing port, bad parity ...) raise ``ValueError`` at
construction with a message naming the setting.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

from firmware_bridge.modbus import rtu
from firmware_bridge.modbus.maps import (
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    PARITIES,
    Point,
    RegisterMap,
    load_map,
)
from firmware_bridge.modbus.registers import BIT_KINDS, decode

EXCEPTION_TEXT = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
                  5: "acknowledge", 6: "device busy", 7: "negative acknowledge", 8: "memory parity error",
                  10: "gateway path unavailable", 11: "gateway target failed to respond"}


@dataclass
class PollerStats:
    """Running counters of one poller (never reset by it)."""

    polls: int = 0
    polls_ok: int = 0          # every point read and plausible
    polls_skipped: int = 0     # returned at once while backing off
    requests: int = 0          # read requests sent (retries by pymodbus not included)
    replies_ok: int = 0
    retried: int = 0           # requests answered only after pymodbus retried
    timeouts: int = 0
    exceptions: int = 0        # exception replies
    crc_errors: int = 0        # bytes came back but no CRC-valid reply
    decode_errors: int = 0     # a reply that did not fit the request, or pymodbus could not decode
    range_errors: int = 0      # points outside their min..max
    noise_bytes: int = 0       # bytes around valid replies
    connects: int = 0          # successful port opens / TCP connects
    connect_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class PollResult:
    """One poll: ``values`` name -> float (NaN where failed), ``errors`` [(point, reason)]."""

    timestamp: float
    values: dict[str, float]
    errors: list[tuple[str, str]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def reasons(self) -> dict[str, str]:
        return dict(self.errors)


@dataclass(frozen=True)
class Request:
    """One read: ``count`` registers/bits of table ``kind`` from ``address``, covering ``points``."""

    kind: str
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def function(self) -> int:
        return {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[self.kind]

    def describe(self) -> str:
        unit = "bits" if self.kind in BIT_KINDS else "registers"
        return f"{self.kind} 0x{self.address:04X} ({self.count} {unit})"


def plan_requests(points: list[Point] | tuple[Point, ...], max_registers: int = MAX_REGISTERS_PER_READ,
                  max_gap: int = 0) -> list[Request]:
    """Group points into reads: same table, sorted by address, merged while the gap between them is
    at most ``max_gap`` registers (0: strictly contiguous - reading unmapped registers makes many
    sensors answer "illegal data address") and the span stays within the per-request limit."""
    out: list[Request] = []
    for kind in ("coil", "discrete", "holding", "input"):
        pts = sorted((p for p in points if p.kind == kind), key=lambda p: p.address)
        limit = MAX_BITS_PER_READ if kind in BIT_KINDS else max_registers
        group: list[Point] = []
        group_end = 0
        for p in pts:
            if group and p.address - group_end <= max_gap and p.end - group[0].address <= limit:
                group.append(p)
                group_end = max(group_end, p.end)
                continue
            if group:
                out.append(Request(kind, group[0].address, group_end - group[0].address, tuple(group)))
            group, group_end = [p], p.end
        if group:
            out.append(Request(kind, group[0].address, group_end - group[0].address, tuple(group)))
    return out


class _RequestError(Exception):
    """A request that produced no usable reply: ``counter`` to bump, ``reason`` for the points."""

    def __init__(self, counter: str, reason: str, fatal: bool = False, code: int = 0) -> None:
        super().__init__(reason)
        self.counter = counter
        self.reason = reason
        self.fatal = fatal  # the device (or link) is gone: skip the rest of the poll
        self.code = code


class ModbusBus:
    """One Modbus line shared by the devices on it: a serial port (``transport="rtu"``, ``port`` = the
    device path, with the line's serial settings) or a TCP gateway (``host``, ``port``). ``timeout_s``
    and ``retries`` apply to every request on the line (pymodbus keeps them per client)."""

    def __init__(self, transport: str = "rtu", *, host: str | None = None, port: str | int | None = None,
                 baudrate: int = 19200, parity: str = "N", stopbits: int = 1, bytesize: int = 8,
                 timeout_s: float = 1.0, retries: int = 2) -> None:
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"ModbusBus: transport={transport!r}: must be 'tcp' or 'rtu'")
        self.transport = transport
        self.host = host
        self.port = 502 if transport == "tcp" and port is None else port
        self.baudrate, self.parity, self.stopbits, self.bytesize = baudrate, parity, stopbits, bytesize
        self.timeout_s = timeout_s
        self.retries = retries
        self.where = f"{host}:{self.port}" if transport == "tcp" else str(port)
        #: held for a whole poll: one device at a time on the line
        self.lock = threading.RLock()
        self.client: ModbusTcpClient | ModbusSerialClient | None = None
        #: the poller using the line now (pymodbus' packet trace goes to it)
        self.active: ModbusPoller | None = None
        self.last_request_end = 0.0
        self.opens = 0

    def trace(self, sending: bool, data: bytes) -> bytes:
        active = self.active
        return active._trace(sending, data) if active is not None else data

    def close(self) -> None:
        """Release the port/socket (the next poll of any device reopens it)."""
        with self.lock:
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close()
            self.client = None


class ModbusPoller:
    """Poll ``register_map`` (a :class:`RegisterMap` or a name/path for :func:`load_map`).

    Settings left ``None`` come from the map's ``[device]`` table. ``transport="tcp"`` needs
    ``host`` (``port`` default 502); ``"rtu"`` needs ``port`` = the serial device path (and uses
    ``baudrate``/``parity``/``stopbits``/``bytesize``). ``timeout_s`` is per attempt, ``retries``
    the further attempts pymodbus makes, ``pause_s`` the silence kept between requests,
    ``close_after_poll`` releases the port after every poll (shared RS-485 adapters). With ``bus``
    (a :class:`ModbusBus`) the line's transport, address, serial settings, timeout and retries are
    the bus's and the port is shared with the other devices on it.
    """

    def __init__(self, register_map: RegisterMap | str, transport: str = "rtu", *, host: str | None = None,
                 port: str | int | None = None, baudrate: int | None = None, parity: str | None = None,
                 stopbits: int | None = None, bytesize: int | None = None, device_id: int | None = None,
                 timeout_s: float | None = None, retries: int | None = None, pause_s: float | None = None,
                 close_after_poll: bool | None = None, backoff_s: float = 1.0, backoff_max_s: float = 60.0,
                 max_gap: int = 0, max_registers: int = MAX_REGISTERS_PER_READ, bus: ModbusBus | None = None) -> None:
        self.map = load_map(register_map) if isinstance(register_map, str) else register_map
        self.bus = bus
        if bus is not None:
            transport, host, port = bus.transport, bus.host, bus.port
            baudrate, parity, stopbits, bytesize = bus.baudrate, bus.parity, bus.stopbits, bus.bytesize
            timeout_s, retries = bus.timeout_s, bus.retries
        d = self.map.device
        self.transport = transport
        self.host = host
        self.port = port
        self.baudrate = d.baudrate if baudrate is None else baudrate
        self.parity = d.parity if parity is None else parity
        self.stopbits = d.stopbits if stopbits is None else stopbits
        self.bytesize = d.bytesize if bytesize is None else bytesize
        self.device_id = d.address if device_id is None else device_id
        self.timeout_s = d.timeout_s if timeout_s is None else timeout_s
        self.retries = d.retries if retries is None else retries
        self.pause_s = d.pause_s if pause_s is None else pause_s
        self.close_after_poll = d.close_after_poll if close_after_poll is None else close_after_poll
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_gap = max_gap
        self.max_registers = max_registers
        self._validate()
        if transport == "tcp" and self.port is None:
            self.port = 502
        self.where = f"{self.host}:{self.port}" if transport == "tcp" else str(self.port)
        self.stats = PollerStats()
        #: Points answered with "illegal data address" when read in a group: read singly.
        self.single_points: set[str] = set()
        self._client: ModbusTcpClient | ModbusSerialClient | None = None
        self._plan = self._make_plan()
        self._failures = 0
        self._next_attempt = 0.0
        self._rx: list[bytes] = []
        self._own_request_end = 0.0

    @property
    def _last_request_end(self) -> float:
        """When the last request on this line ended (the bus's, when shared)."""
        return self.bus.last_request_end if self.bus is not None else self._own_request_end

    @_last_request_end.setter
    def _last_request_end(self, value: float) -> None:
        if self.bus is not None:
            self.bus.last_request_end = value
        else:
            self._own_request_end = value

    # -- configuration ------------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(name: str, value: Any, want: str) -> None:
            raise ValueError(f"ModbusPoller({self.map.name}): {name}={value!r}: {want}")

        if self.transport not in ("tcp", "rtu"):
            bad("transport", self.transport, "must be 'tcp' or 'rtu'")
        if self.transport == "tcp":
            if not self.host:
                bad("host", self.host, "transport 'tcp' needs a host name or IP address")
            if self.port is not None and (isinstance(self.port, bool) or not isinstance(self.port, int)
                                          or not 1 <= self.port <= 65535):
                bad("port", self.port, "a TCP port must be an integer 1..65535")
        else:
            if not isinstance(self.port, str) or not self.port:
                bad("port", self.port, "transport 'rtu' needs the serial device path (e.g. /dev/ttyUSB0)")
            if self.parity not in PARITIES:
                bad("parity", self.parity, f"must be one of {', '.join(PARITIES)}")
            if self.stopbits not in (1, 2):
                bad("stopbits", self.stopbits, "must be 1 or 2")
            if self.bytesize not in (7, 8):
                bad("bytesize", self.bytesize, "must be 7 or 8")
            if not isinstance(self.baudrate, int) or self.baudrate <= 0:
                bad("baudrate", self.baudrate, "must be a positive integer")
        if isinstance(self.device_id, bool) or not isinstance(self.device_id, int) or not 1 <= self.device_id <= 247:
            bad("device_id", self.device_id, "must be an integer 1..247 (0 is broadcast: no replies)")
        for name in ("timeout_s", "backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                bad(name, value, "must be a number > 0")
        if not isinstance(self.pause_s, int | float) or self.pause_s < 0:
            bad("pause_s", self.pause_s, "must be a number >= 0")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            bad("retries", self.retries, "must be an integer >= 0")
        if not 1 <= self.max_registers <= MAX_REGISTERS_PER_READ:
            bad("max_registers", self.max_registers, f"must be 1..{MAX_REGISTERS_PER_READ}")
        if self.max_gap < 0:
            bad("max_gap", self.max_gap, "must be >= 0")

    def _make_plan(self) -> list[Request]:
        grouped = [p for p in self.map.points if p.name not in self.single_points]
        singles = [Request(p.kind, p.address, p.count, (p,)) for p in self.map.points if p.name in self.single_points]
        return plan_requests(grouped, self.max_registers, self.max_gap) + singles

    @property
    def plan(self) -> list[Request]:
        """The reads one poll makes."""
        return list(self._plan)

    # -- connection ---------------------------------------------------------------------------------
    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus ``trace_packet``: remember what came back for each attempt (CRC-error diagnosis)."""
        if sending:
            self._rx.append(b"")
        elif self._rx:
            self._rx[-1] = bytes(data) if len(data) >= len(self._rx[-1]) else self._rx[-1]
        return data

    def _new_client(self) -> ModbusTcpClient | ModbusSerialClient:
        trace = self.bus.trace if self.bus is not None else self._trace
        if self.transport == "tcp":
            return ModbusTcpClient(str(self.host), port=int(self.port), timeout=self.timeout_s,  # type: ignore[arg-type]
                                   retries=self.retries, trace_packet=trace)
        return ModbusSerialClient(str(self.port), framer=FramerType.RTU, baudrate=self.baudrate,
                                  bytesize=self.bytesize, parity=self.parity, stopbits=self.stopbits,
                                  timeout=self.timeout_s, retries=self.retries, trace_packet=trace)

    def _connect(self) -> None:
        if self.bus is not None:  # the line's client, opened once for every device on it
            shared = self.bus.client
            self._client = shared if shared is not None and shared.connected else None
        if self._client is not None and self._client.connected:
            return
        client = self._new_client()
        if not client.connect():
            self.stats.connect_failures += 1
            what = "connect to" if self.transport == "tcp" else "open serial port"
            raise _RequestError("connect_failures", f"connection: cannot {what} {self.where}{self._why()}",
                                fatal=True)
        self.stats.connects += 1
        self._client = client
        if self.bus is not None:
            self.bus.client = client
            self.bus.opens += 1

    def _why(self) -> str:
        """pymodbus' connect() only logs why it failed: ask the OS once more for the message."""
        try:
            if self.transport == "tcp":
                socket.create_connection((str(self.host), int(self.port)), timeout=self.timeout_s).close()  # type: ignore[arg-type]
            else:
                serial.serial_for_url(str(self.port), baudrate=self.baudrate, bytesize=self.bytesize,
                                      parity=self.parity, stopbits=self.stopbits, timeout=0,
                                      exclusive=True).close()  # as pymodbus opens it
        except Exception as exc:
            if "exclusively lock" in str(exc):
                text = "in use: another program holds the port's exclusive lock"
            elif isinstance(exc, OSError) and exc.strerror:
                text = exc.strerror
            elif len(exc.args) == 2 and isinstance(exc.args[0], int):  # termios.error(errno, text)
                text = f"{exc.args[1]} setting up the port (errno {exc.args[0]})"
                if str(self.port).startswith("/dev/pts/") and self.parity != "N":
                    text += f"; ptys refuse parity {self.parity} on some kernels: use parity N"
            else:
                text = str(exc)
            return f" ({text})"
        return ""

    def close(self) -> None:
        """Release the port/socket (the next poll reopens it); on a shared bus, the bus's."""
        if self.bus is not None:
            self.bus.close()
        elif self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None

    def __enter__(self) -> ModbusPoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- polling ------------------------------------------------------------------------------------
    def poll(self) -> PollResult:
        """Read every point once; never raises on device or link behaviour. On a shared bus the
        poll holds the bus (another device's poll waits for it)."""
        if self.bus is None:
            return self._poll()
        with self.bus.lock:
            self.bus.active = self
            try:
                return self._poll()
            finally:
                self.bus.active = None

    def _poll(self) -> PollResult:
        t0 = time.time()
        m0 = time.monotonic()
        self.stats.polls += 1
        values = {p.name: math.nan for p in self.map.points}
        errors: list[tuple[str, str]] = []
        if m0 < self._next_attempt:
            self.stats.polls_skipped += 1
            reason = (f"backoff: device {self.device_id} at {self.where} failed {self._failures} poll(s) in a row; "
                      f"next attempt in {self._next_attempt - m0:.2f} s")
            return PollResult(t0, values, [(p.name, reason) for p in self.map.points], time.monotonic() - m0)
        raw: dict[tuple[str, int], int] = {}
        answered = False
        lost = False
        try:
            self._connect()
            plan = list(self._plan)  # _split / regrouping may replace self._plan while we iterate
            for k, req in enumerate(plan):
                self._pause()
                try:
                    raw.update(self._read(req))
                    answered = True
                    if len(req.points) == 1 and req.points[0].name in self.single_points:
                        self.single_points.discard(req.points[0].name)  # it answers again: regroup
                        self._plan = self._make_plan()
                except _RequestError as f:
                    answered = answered or f.counter in ("exceptions", "decode_errors")
                    if f.code == 2 and len(req.points) > 1:
                        answered = True
                        self._split(req, raw, errors)
                        continue
                    errors.extend((p.name, f.reason) for p in req.points)
                    if f.fatal:
                        lost = True
                        rest = [p for r in plan[k + 1:] for p in r.points]
                        skip = f"skipped: {f.reason.split(':')[0]} earlier in this poll"
                        errors.extend((p.name, skip) for p in rest)
                        break
        except _RequestError as f:  # connection failure
            lost = True
            errors = [(p.name, f.reason) for p in self.map.points]
        finally:
            self._last_request_end = time.monotonic()
        failed = {name for name, _ in errors}
        self._decode_points(raw, values, errors, failed)
        self._after_poll(answered, lost)
        if not errors:
            self.stats.polls_ok += 1
        return PollResult(t0, values, errors, time.monotonic() - m0)

    def _pause(self) -> None:
        wait = self.pause_s - (time.monotonic() - self._last_request_end)
        if wait > 0:
            time.sleep(wait)

    def _after_poll(self, answered: bool, lost: bool) -> None:
        """Close a link that failed; back off only while the device answers nothing at all."""
        if lost or self.close_after_poll:
            self.close()
        if answered:
            self._failures = 0
            self._next_attempt = 0.0
            return
        self._failures += 1
        self._next_attempt = time.monotonic() + min(self.backoff_s * 2 ** (self._failures - 1), self.backoff_max_s)

    def _split(self, req: Request, raw: dict[tuple[str, int], int], errors: list[tuple[str, str]]) -> None:
        """A group got "illegal data address": read its points one by one, remember the bad ones."""
        changed = False
        for p in req.points:
            self._pause()
            single = Request(p.kind, p.address, p.count, (p,))
            try:
                raw.update(self._read(single))
            except _RequestError as f:
                errors.append((p.name, f.reason))
                if f.code == 2 and p.name not in self.single_points:
                    self.single_points.add(p.name)
                    changed = True
                if f.fatal:
                    break
        if changed:
            self._plan = self._make_plan()

    def _read(self, req: Request) -> dict[tuple[str, int], int]:
        """One request -> {(kind, address): raw}; raises :class:`_RequestError` describing what went wrong."""
        assert self._client is not None
        client = self._client
        read = {"coil": client.read_coils, "discrete": client.read_discrete_inputs,
                "holding": client.read_holding_registers, "input": client.read_input_registers}[req.kind]
        client.transaction.count_until_disconnect = client.transaction.max_until_disconnect
        self._rx = []
        self.stats.requests += 1
        try:
            reply = read(req.address, count=req.count, device_id=self.device_id)
        except ConnectionException as exc:
            self.stats.connect_failures += 1
            self.close()
            raise _RequestError("connect_failures", f"connection: lost {self.where}: {exc}", fatal=True) from None
        except ModbusIOException as exc:
            raise self._no_reply(req, str(exc)) from None
        except Exception as exc:  # a port that vanished, a PDU pymodbus cannot decode: never raise on devices
            self.stats.decode_errors += 1
            self.close()
            raise _RequestError("decode_errors", f"decode error: {exc} ({req.describe()})", fatal=True) from None
        finally:
            self._last_request_end = time.monotonic()
        if isinstance(reply, ExceptionResponse) or reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            self.stats.exceptions += 1
            text = EXCEPTION_TEXT.get(code, "unknown exception")
            raise _RequestError("exceptions", f"exception 0x{code:02X} {text} at {req.describe()} from device "
                                              f"{self.device_id}", code=code)
        self._count_noise(req)
        if getattr(reply, "retries", 0):
            self.stats.retried += 1
        if req.kind in BIT_KINDS:
            bits = list(reply.bits)
            if len(bits) < req.count:
                self.stats.decode_errors += 1
                raise _RequestError("decode_errors", f"decode error: {len(bits)} bits for {req.describe()}")
            self.stats.replies_ok += 1
            return {(req.kind, req.address + k): int(b) for k, b in enumerate(bits[:req.count])}
        regs = list(reply.registers)
        if len(regs) != req.count:
            self.stats.decode_errors += 1
            raise _RequestError("decode_errors",
                                f"decode error: {len(regs)} registers in the reply to {req.describe()}")
        self.stats.replies_ok += 1
        return {(req.kind, req.address + k): r for k, r in enumerate(regs)}

    def _no_reply(self, req: Request, text: str) -> _RequestError:
        """Timeout or garbled reply: pymodbus says "no response"; the bytes that came back tell which."""
        received = [rx for rx in self._rx if rx]
        if "transaction id" in text or "device id" in text or "Unable to decode" in text:
            self.stats.decode_errors += 1
            return _RequestError("decode_errors", f"decode error: {text.split('] ', 1)[-1]} ({req.describe()})")
        attempts = self.retries + 1
        if received:
            self.stats.crc_errors += 1
            last = received[-1]
            shown = last[:16].hex(" ") + (" .." if len(last) > 16 else "")
            what = "failed the CRC-16 check" if self.transport == "rtu" else "could not be framed"
            if not self._has_header(last):
                what = "was noise (no Modbus frame for this request)"
            return _RequestError("crc_errors", f"crc error: reply from device {self.device_id} at {self.where} "
                                               f"{what} ({attempts} attempts; last {len(last)} bytes: {shown})",
                                 fatal=True)
        self.stats.timeouts += 1
        return _RequestError("timeouts", f"timeout: no response from device {self.device_id} at {self.where} "
                                         f"after {self.retries} retries ({req.describe()}, {self.timeout_s:g} s each)",
                             fatal=True)

    def _has_header(self, data: bytes) -> bool:
        if self.transport != "rtu":
            return True
        head = bytes([self.device_id])
        return any(data[i:i + 1] == head and data[i + 1] & 0x7F in rtu.FUNCTIONS
                   for i in range(len(data) - 1))

    def _count_noise(self, req: Request) -> None:
        if not self._rx or self.transport != "rtu":
            return
        rx = self._rx[-1]
        expected = 5 + ((req.count + 7) // 8 if req.kind in BIT_KINDS else 2 * req.count)
        if len(rx) > expected:
            self.stats.noise_bytes += len(rx) - expected

    def _decode_points(self, raw: dict[tuple[str, int], int], values: dict[str, float],
                       errors: list[tuple[str, str]], failed: set[str]) -> None:
        for p in self.map.points:
            if p.name in failed:
                continue
            regs = [raw.get((p.kind, p.address + k)) for k in range(p.count)]
            if any(r is None for r in regs):
                continue  # its request failed; the error is already listed
            if p.kind in BIT_KINDS:
                values[p.name] = float(regs[0])  # type: ignore[arg-type]
                continue
            value = decode(regs, p.type, p.order, p.scale, p.offset, p.missing)  # type: ignore[arg-type]
            if p.scale_register is not None:
                s_raw = raw.get((p.kind, p.scale_register))
                ref = self.map.at(p.kind, p.scale_register)
                s = None if s_raw is None or ref is None else decode([s_raw], ref.type, ref.order, missing=ref.missing)
                if s is None or not math.isfinite(s):
                    errors.append((p.name, f"scale register {p.kind} {p.scale_register} unavailable"))
                    continue
                value = value / 10.0 ** s
            too_low = p.min is not None and value < p.min
            too_high = p.max is not None and value > p.max
            if math.isfinite(value) and (too_low or too_high):
                self.stats.range_errors += 1
                hint = " (wrong word order?)" if p.count == 2 else ""
                errors.append((p.name, f"out of range: {value:.6g} {p.unit} outside {p.min:g}..{p.max:g}{hint}"
                               if p.min is not None and p.max is not None else
                               f"out of range: {value:.6g} {p.unit}{hint}"))
                continue
            values[p.name] = value
