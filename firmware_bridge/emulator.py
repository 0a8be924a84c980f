"""Instrument emulators on real pseudo-terminals.

A :class:`TowerEmulator` serves one pty per instrument and, at every tick of the sampling clock,
writes the same true state (from :class:`~firmware_bridge.turbulence.TurbulenceModel` or a replayed
file) through each family's encoder, so the streams are as consistent as on a real tower. Bytes
nobody reads are dropped, as on a serial line with nothing attached.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import tty

import numpy as np

from firmware_bridge.families import family
from firmware_bridge.turbulence import TurbulenceModel, observe


class PtyPort:
    """The device end of a pseudo-terminal; ``path`` is what a driver opens (``/dev/pts/N``)."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as on a serial line
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self.bytes_dropped = 0

    def write(self, data: bytes) -> None:
        try:
            sent = os.write(self.master, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise
            sent = 0
        self.bytes_dropped += len(data) - sent

    def read(self) -> bytes:
        """Bytes the driver sent (commands); empty when none."""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TowerEmulator:
    """Several instruments on one tower, fed from one true state at ``rate_hz``."""

    def __init__(self, instruments: list[str], rate_hz: float, model: TurbulenceModel | None = None,
                 replay: dict[str, np.ndarray] | None = None, pressure_kpa: float | None = None) -> None:
        self.families = {name: family(name) for name in instruments}
        self.rate_hz = rate_hz
        self.model = model or TurbulenceModel()
        self.replay = replay
        self.pressure_kpa = pressure_kpa if pressure_kpa is not None else self.model.spec.pressure_kpa
        self.ports = {name: PtyPort() for name in instruments}
        self.ticks = 0
        self._halt = threading.Event()

    def _observation(self, k: int, n: int) -> dict[str, np.ndarray]:
        if self.replay is not None:
            rows = (k + np.arange(n)) % len(self.replay["u"])
            return {name: values[rows] for name, values in self.replay.items()}
        return observe(self.model.draw(n), self.pressure_kpa)

    def step(self, n: int = 1) -> None:
        """Emit the next ``n`` samples on every port."""
        obs = self._observation(self.ticks, n)
        for name, fam in self.families.items():
            self.ports[name].write(fam.encode_observation(obs, self.ticks))
            self.ports[name].read()  # commands are accepted and ignored for now
        self.ticks += n

    def run(self) -> None:
        """Emit samples on the sampling clock until :meth:`stop`; never bursts to catch up."""
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while not self._halt.is_set():
            self.step()
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            elif delay < -1.0:
                next_t = time.monotonic()

    def stop(self) -> None:
        self._halt.set()

    def close(self) -> None:
        self.stop()
        for port in self.ports.values():
            port.close()
