"""Byte links to an instrument: a serial port (pyserial) or a TCP socket (LI-7550, LI-7700).

An address is either a device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``) or
``tcp://HOST:PORT``. Links raise :class:`LinkError` (an ``OSError``) with a one-line reason when
the instrument goes away; the driver decides when to try again.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import serial

READ_TIMEOUT_S = 0.05


class LinkError(OSError):
    """The link failed or closed; the message names the address and the reason."""


@dataclass(frozen=True)
class Address:
    kind: str  # "serial" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else self.path


def parse_address(text: str) -> Address:
    """``tcp://HOST:PORT`` or a serial device path; ``ValueError`` says what is wrong."""
    if text.startswith("tcp://"):
        host, sep, port = text[6:].rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not tcp://HOST:PORT with a port between 1 and 65535")
        return Address("tcp", host=host.strip("[]"), port=int(port))
    if not text or "://" in text:
        raise ValueError(f"{text!r} is neither a serial device path nor tcp://HOST:PORT")
    return Address("serial", path=text)


class SerialLink:
    """A serial port. pyserial asserts RTS and DTR on open (ignoring ports without modem lines,
    such as ptys): the CSAT3 powers its RS-232 drivers only while RTS is asserted."""

    def __init__(self, path: str, baud: int, serial_format: str = "8N1") -> None:
        self.path = path
        self.baud = baud
        self.bytesize, self.parity, self.stopbits = int(serial_format[0]), serial_format[1], int(serial_format[2])
        self._port: serial.Serial | None = None

    def open(self) -> None:
        try:
            port = serial.Serial(self.path, self.baud, bytesize=self.bytesize, parity=self.parity,
                                 stopbits=self.stopbits, timeout=READ_TIMEOUT_S)
            port.reset_input_buffer()  # bytes queued while nobody listened are stale
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{self.path}: {_reason(exc)}") from None
        self._port = port

    def read(self) -> bytes:
        """What arrived (waits at most ~50 ms); ``LinkError`` when the device went away."""
        assert self._port is not None
        try:
            return self._port.read(max(1, self._port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.path}: {_reason(exc)}") from None

    def write(self, data: bytes) -> None:
        if data and self._port is not None:
            try:
                self._port.write(data)
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"{self.path}: {_reason(exc)}") from None

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
            self._port = None


class TcpLink:
    """A TCP connection to an instrument's data port."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 3.0) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None

    def open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise LinkError(f"tcp://{self.host}:{self.port}: {_reason(exc)}") from None
        sock.settimeout(READ_TIMEOUT_S)
        self._sock = sock

    def read(self) -> bytes:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise LinkError(f"tcp://{self.host}:{self.port}: {_reason(exc)}") from None
        if not data:
            raise LinkError(f"tcp://{self.host}:{self.port}: connection closed by the instrument")
        return data

    def write(self, data: bytes) -> None:
        if data and self._sock is not None:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise LinkError(f"tcp://{self.host}:{self.port}: {_reason(exc)}") from None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def open_link(address: str | Address, baud: int, serial_format: str = "8N1") -> SerialLink | TcpLink:
    """An unopened link for ``address``."""
    addr = parse_address(address) if isinstance(address, str) else address
    if addr.kind == "tcp":
        return TcpLink(addr.host, addr.port)
    return SerialLink(addr.path, baud, serial_format)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n")[0] or type(exc).__name__
