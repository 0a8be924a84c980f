"""Instrument emulators on real pseudo-terminals and TCP sockets, with faults on demand.

A :class:`TowerEmulator` runs several instruments from one true state (the turbulence model or a
replayed raw file), so their streams are as consistent as on a real tower. Each instrument is an
:class:`EmulatedInstrument`: a family :class:`~firmware_bridge.device.Device` (frames, checksum,
diagnostics, commands) behind a port (:class:`PtyPort` or :class:`TcpPort`), with the scheduled
:class:`~firmware_bridge.faults.Fault` list applied to its bytes. Pty ports are reached through a
stable symlink so that a ``disconnect`` fault can make the device vanish and reappear, as a USB
serial adapter does. A driver opening a pty at a baud rate the device is not running at receives
what a real UART would (:mod:`firmware_bridge.uart`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import tempfile
import threading
import time
import tty
from collections import Counter
from pathlib import Path

import numpy as np

from firmware_bridge import uart
from firmware_bridge.device import Device
from firmware_bridge.families import family
from firmware_bridge.faults import PER_FRAME, TRANSDUCER_NOISE_M_S, Fault, active_condition
from firmware_bridge.turbulence import TurbulenceModel, observe

TCP_CLIENT_BUFFER_BYTES = 1 << 16


class PtyPort:
    """The device end of a pseudo-terminal, reached by drivers at ``path`` (a symlink when
    ``link`` is given, else ``/dev/pts/N``)."""

    kind = "pty"

    def __init__(self, link: str | Path | None = None) -> None:
        self.link = Path(link) if link else None
        self.bytes_dropped = 0
        self.up = False
        self._open()

    def _open(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as on a serial line
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.device = os.ttyname(self._slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.device)
            tmp.replace(self.link)  # atomic: a driver never sees a half-made link
        self.up = True

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.device

    def write(self, data: bytes) -> None:
        if not self.up or not data:
            return
        try:
            sent = os.write(self.master, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise
            sent = 0
        self.bytes_dropped += len(data) - sent

    def read(self) -> bytes:
        """Bytes the driver sent (commands); empty when none."""
        if not self.up:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def peer_baud(self) -> int | None:
        """The baud rate the driver set on its end (a pty pair shares one termios)."""
        return uart.pty_baud(self.master) if self.up else None

    def disconnect(self) -> None:
        """The device vanishes: the driver's reads fail and the path no longer exists."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        self._close_fds()
        self.up = False

    def reappear(self) -> None:
        self._open()

    def _close_fds(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        if self.up:
            self.disconnect()


class TcpPort:
    """A TCP server on 127.0.0.1 (the LI-7550/LI-7700 Ethernet interface); several clients may
    stream at once, as on the real instrument."""

    kind = "tcp"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.clients: dict[socket.socket, bytearray] = {}
        self.new_clients: list[socket.socket] = []
        self.bytes_dropped = 0
        self.up = False
        self._listen()

    def _listen(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((self.host, self.port))
        self._server.listen(8)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self.up = True

    @property
    def path(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except (BlockingIOError, OSError):
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.clients[conn] = bytearray()
            self.new_clients.append(conn)

    def send_to(self, conn: socket.socket, data: bytes) -> None:
        pending = self.clients.get(conn)
        if pending is None:
            return
        pending += data
        try:
            sent = conn.send(pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del pending[:sent]
        if len(pending) > TCP_CLIENT_BUFFER_BYTES:  # a client that does not read loses data
            self.bytes_dropped += len(pending)
            pending.clear()

    def write(self, data: bytes) -> None:
        if not self.up:
            return
        self._accept()
        for conn in list(self.clients):
            self.send_to(conn, data)

    def read(self) -> bytes:
        if not self.up:
            return b""
        self._accept()
        out = []
        for conn in list(self.clients):
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                out.append(data)
            else:
                self._drop(conn)
        return b"".join(out)

    def _drop(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.close()

    def peer_baud(self) -> int | None:
        return None

    def disconnect(self) -> None:
        for conn in list(self.clients):
            self._drop(conn)
        with contextlib.suppress(OSError):
            self._server.close()
        self.up = False

    def reappear(self) -> None:
        self._listen()

    def close(self) -> None:
        if self.up:
            self.disconnect()


class EmulatedInstrument:
    """One instrument: its device, its port and its faults; counts what it injected."""

    def __init__(self, name: str, device: Device, port: PtyPort | TcpPort, faults: list[Fault] | None = None,
                 bauds: tuple[int, ...] = (), seed: int | None = None) -> None:
        self.name = name
        self.device = device
        self.port = port
        self.faults = list(faults or [])
        self.bauds = bauds
        self.rng = np.random.default_rng(seed)
        #: Fault kind -> frames (or events) it affected so far; ``frames_sent`` counts intact ones.
        self.injected: Counter[str] = Counter()
        self.frames_sent = 0
        self._lock = threading.Lock()
        #: the ``transducer_noise`` fault applies to sonics (the family module's ROLE)
        self.is_sonic = getattr(sys.modules.get(type(device).__module__), "ROLE", None) == "sonic"

    def inject(self, kind: str, t_s: float, duration_s: float = float("inf"), probability: float = 1.0) -> None:
        """Start a fault now (``t_s`` in emulator time); used by tests and the interactive CLI."""
        with self._lock:
            self.faults.append(Fault(kind, t_s, duration_s, probability))

    def clear(self, t_s: float) -> None:
        """End every fault at ``t_s``."""
        with self._lock:
            self.faults = [Fault(f.kind, f.start_s, max(0.0, t_s - f.start_s), f.probability)
                           for f in self.faults if f.start_s < t_s]

    def _active(self, kind: str, t_s: float) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind and f.active(t_s)), None)

    def _tx_baud(self, t_s: float) -> int | None:
        baud = self.device.baud
        if baud and self._active("wrong_baud", t_s):
            others = [b for b in self.bauds if b != baud] or [baud * 2]
            return others[0] if baud != others[0] else others[-1]
        return baud

    def _send(self, data: bytes, t_s: float) -> None:
        tx, rx = self._tx_baud(t_s), self.port.peer_baud()
        self.port.write(uart.resample(data, tx, rx) if tx and rx else data)

    def emit(self, obs: dict[str, np.ndarray], first_index: int, t_s: float) -> None:
        """Handle commands, then send the frames of ``obs`` with the faults active at ``t_s``."""
        with self._lock:
            self._emit(obs, first_index, t_s)

    def _emit(self, obs: dict[str, np.ndarray], first_index: int, t_s: float) -> None:
        port = self.port
        gone = self._active("disconnect", t_s) is not None
        if gone and port.up:
            port.disconnect()
            self.injected["disconnect"] += 1
        elif not gone and not port.up:
            port.reappear()
            self._send(self.device.banner(), t_s)
        if not port.up:
            return
        if isinstance(port, TcpPort) and port.new_clients:
            for conn in port.new_clients:
                port.send_to(conn, self.device.banner())
            port.new_clients.clear()
        commands = port.read()
        if commands:
            rx = port.peer_baud()
            tx = self._tx_baud(t_s)
            replies = self.device.receive(uart.resample(commands, rx, tx) if rx and tx else commands)
            self._send(replies, t_s)
        self.device.condition = active_condition(self.faults, t_s)
        if self._active("silence", t_s) or not self.device.streaming:
            return
        per_frame = {kind: f for kind in PER_FRAME if (f := self._active(kind, t_s))}
        if self.is_sonic and self._active("transducer_noise", t_s):
            obs = {**obs, "w": obs["w"] + self.rng.normal(0.0, TRANSDUCER_NOISE_M_S, len(obs["w"]))}
            self.injected["transducer_noise"] += len(obs["w"])
        frames = self.device.frames(obs, first_index)
        if per_frame:
            frames = self._damage(frames, per_frame)
        else:
            self.frames_sent += len(frames)
        if self.device.condition:
            self.injected[self.device.condition] += len(frames)
        self._send(b"".join(frames), t_s)

    def _damage(self, frames: list[bytes], faults: dict[str, Fault]) -> list[bytes]:
        out = []
        for frame in frames:
            hit = {k for k, f in faults.items() if self.rng.random() < f.probability}
            if "counter_gap" in hit:
                self.injected["counter_gap"] += 1
                continue
            if "bad_checksum" in hit:
                frame = self.device.corrupt(frame)
            elif "truncate" in hit and len(frame) > 1:
                frame = frame[:int(self.rng.integers(1, len(frame)))]
            if "noise" in hit:
                frame = self.rng.bytes(int(self.rng.integers(1, 17))) + frame
            for kind in hit:
                self.injected[kind] += 1
            if not hit & {"bad_checksum", "truncate"}:
                self.frames_sent += 1
            out.append(frame)
        return out


def make_port(transport: str, tcp_port: int = 0, link: str | Path | None = None) -> PtyPort | TcpPort:
    """A port for one instrument: ``"pty"`` (optionally behind symlink ``link``) or ``"tcp"``."""
    return TcpPort(tcp_port) if transport == "tcp" else PtyPort(link)


class TowerEmulator:
    """Several instruments on one tower, fed from one true state at ``rate_hz``.

    ``instruments`` names families; ``transports`` maps a name to ``"pty"`` or ``("tcp", port)``
    (default: the family's own transport, TCP on a free port for Ethernet-only instruments).
    ``faults`` maps a name to its scheduled faults; ``devices`` passes options to a family's
    ``Device`` (e.g. ``{"windmaster": {"firmware": "2329.602.1"}}``).
    """

    def __init__(self, instruments: list[str], rate_hz: float, model: TurbulenceModel | None = None,
                 replay: dict[str, np.ndarray] | None = None, pressure_kpa: float | None = None,
                 transports: dict[str, str | tuple[str, int]] | None = None,
                 faults: dict[str, list[Fault]] | None = None, devices: dict[str, dict] | None = None,
                 seed: int | None = None) -> None:
        self.rate_hz = rate_hz
        self.model = model or TurbulenceModel(seed=seed)
        self.replay = replay
        self.pressure_kpa = pressure_kpa if pressure_kpa is not None else self.model.spec.pressure_kpa
        self._dir = tempfile.mkdtemp(prefix="fluxedge-emu-")
        self.instruments: dict[str, EmulatedInstrument] = {}
        transports = transports or {}
        for i, name in enumerate(instruments):
            fam = family(name)
            options = (devices or {}).get(name, {})
            device = fam.Device(rate_hz=rate_hz, seed=None if seed is None else seed + i, **options)
            spec = transports.get(name, "tcp" if fam.TRANSPORT == "tcp" else "pty")
            kind, tcp_port = (spec, 0) if isinstance(spec, str) else spec
            port = make_port(kind, tcp_port, Path(self._dir) / name)
            self.instruments[name] = EmulatedInstrument(name, device, port, (faults or {}).get(name),
                                                        tuple(getattr(fam, "BAUDS", ())),
                                                        None if seed is None else seed + 100 + i)
            port.write(device.banner())
        self.ticks = 0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ports(self) -> dict[str, PtyPort | TcpPort]:
        return {name: inst.port for name, inst in self.instruments.items()}

    @property
    def t_s(self) -> float:
        """Emulator time: samples emitted so far over the sampling rate [s]."""
        return self.ticks / self.rate_hz

    def _observation(self, k: int, n: int) -> dict[str, np.ndarray]:
        if self.replay is not None:
            rows = (k + np.arange(n)) % len(self.replay["u"])
            return {name: values[rows] for name, values in self.replay.items()}
        return observe(self.model.draw(n), self.pressure_kpa)

    def step(self, n: int = 1) -> None:
        """Emit the next ``n`` samples on every port."""
        obs = self._observation(self.ticks, n)
        for inst in self.instruments.values():
            inst.emit(obs, self.ticks, self.t_s)
        self.ticks += n

    def run(self, start_at: float | None = None) -> None:
        """Emit samples on the sampling clock until :meth:`stop`; never bursts to catch up.
        ``start_at``: the Unix time of the first sample (waits until then; e.g. a period boundary)."""
        period = 1.0 / self.rate_hz
        if start_at is not None and self._halt.wait(max(0.0, start_at - time.time())):
            return
        next_t = time.monotonic()
        while not self._halt.is_set():
            self.step()
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            elif delay < -1.0:
                next_t = time.monotonic()

    def start(self, start_at: float | None = None) -> threading.Thread:
        """Run in a daemon thread (for tests and in-process tools); see :meth:`run`."""
        self._thread = threading.Thread(target=self.run, args=(start_at,), name="tower-emulator", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._halt.set()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(5)
        for inst in self.instruments.values():
            inst.port.close()
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)
