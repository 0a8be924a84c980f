"""One reader thread per instrument: serial bytes -> parser -> time-stamped sample buffer."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.driver import Driver
from fluxedge.common.logs import event
from station.acquisition.hostclock import HostClock
from station.config import InstrumentConfig

log = logging.getLogger("station.acquisition")


@dataclass
class SampleBlock:
    """Samples of one instrument: host receive times, wall clock [Unix s] from the station's
    :class:`~station.acquisition.hostclock.HostClock`, and decoded channels."""

    t: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.t)


class StreamBuffer:
    """Thread-safe accumulation of decoded batches; the period closer takes them by time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: list[SampleBlock] = []

    def append(self, block: SampleBlock) -> None:
        if block.n:
            with self._lock:
                self._chunks.append(block)

    def take_period(self, t_start: float, t_end: float, keep_from: float | None = None) -> SampleBlock:
        """Remove every sample received before ``t_end``; return those from ``keep_from`` (default
        ``t_start``) on (older ones were left over from before the station started and are discarded)."""
        block = self.take_before(t_end)
        keep = block.t >= (t_start if keep_from is None else keep_from)
        return SampleBlock(block.t[keep], {k: v[keep] for k, v in block.columns.items()})

    def put_back(self, block: SampleBlock) -> None:
        """Return samples taken for one period that belong to the next (they go first)."""
        if block.n:
            with self._lock:
                self._chunks.insert(0, block)

    def take_before(self, t_end: float) -> SampleBlock:
        """Remove and return every sample received before ``t_end``."""
        with self._lock:
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return SampleBlock(np.zeros(0))
        t = np.concatenate([c.t for c in chunks])
        cols = {k: np.concatenate([c.columns[k] for c in chunks]) for k in chunks[0].columns}
        before = t < t_end
        if not before.all():
            keep = SampleBlock(t[~before], {k: v[~before] for k, v in cols.items()})
            with self._lock:
                self._chunks.insert(0, keep)
        return SampleBlock(t[before], {k: v[before] for k, v in cols.items()})


class InstrumentReader(threading.Thread):
    """Runs one instrument's :class:`~firmware_bridge.driver.Driver` and time-stamps its frames
    into a :class:`StreamBuffer`."""

    def __init__(self, config: InstrumentConfig, rate_hz: float, clock: HostClock | None = None) -> None:
        super().__init__(name=f"reader-{config.name}", daemon=True)
        self.config = config
        self.rate_hz = rate_hz
        self.clock = clock or HostClock()
        self.buffer = StreamBuffer()
        self.driver = Driver(config.name, config.driver, config.port, config.baud_rate, rate_hz=rate_hz,
                             on_batch=self._on_batch, on_event=self._on_event)
        self.family = self.driver.family

    @property
    def parser(self):
        return self.driver.parser

    @property
    def connected(self) -> bool:
        return self.driver.connected

    @property
    def last_frame_time(self) -> float | None:
        return self.driver.last_frame_time

    def stop(self, timeout_s: float | None = None) -> None:
        """Ask the driver to end; with ``timeout_s``, also wait that long for this thread (its port is
        closed once it has ended: a TCP connect in progress takes up to 3 s)."""
        self.driver.stop()
        if timeout_s is not None and self.ident is not None and threading.current_thread() is not self:
            self.join(timeout_s)

    def run(self) -> None:
        self.driver.run()

    def _on_event(self, name: str, level: int, fields: dict) -> None:
        event(log, name, level, **fields)

    def _on_batch(self, batch, now: float) -> None:
        # Stamped from the monotonic clock (``now``, the driver's wall time, could have stepped).
        # Frames completed in one read arrived back to back; space earlier ones by the nominal
        # interval so each keeps a distinct time tag.
        dt = 1.0 / self.rate_hz
        t = self.clock.wall() - dt * (batch.n - 1 - np.arange(batch.n))
        self.buffer.append(SampleBlock(t, batch.columns))
