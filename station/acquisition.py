"""One reader thread per instrument: serial bytes -> parser -> time-stamped sample buffer."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import serial

from firmware_bridge.families import family
from station.config import InstrumentConfig
from station.logs import event

log = logging.getLogger("station.acquisition")
BACKOFF_MAX_S = 30.0


@dataclass
class SampleBlock:
    """Samples of one instrument: host receive times [Unix s] and decoded channels."""

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

    def take_period(self, t_start: float, t_end: float) -> SampleBlock:
        """Remove every sample received before ``t_end``; return those from ``t_start`` on
        (older ones were left over from before the station started and are discarded)."""
        block = self.take_before(t_end)
        keep = block.t >= t_start
        return SampleBlock(block.t[keep], {k: v[keep] for k, v in block.columns.items()})

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
    """Reads one serial instrument, re-opening the port with capped exponential backoff."""

    def __init__(self, config: InstrumentConfig, rate_hz: float) -> None:
        super().__init__(name=f"reader-{config.name}", daemon=True)
        self.config = config
        self.family = family(config.driver)
        self.parser = self.family.Parser()
        self.rate_hz = rate_hz
        self.buffer = StreamBuffer()
        self.last_frame_time: float | None = None
        self.connected = False
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        backoff = 0.5
        while not self._halt.is_set():
            try:
                with serial.Serial(self.config.port, self.config.baud_rate, timeout=0.05) as port:
                    port.reset_input_buffer()  # bytes queued while nobody listened are stale
                    self.connected = True
                    event(log, "instrument_open", instrument=self.config.name, port=self.config.port)
                    backoff = 0.5
                    self._read(port)
            except (serial.SerialException, OSError) as exc:
                if self.connected or backoff == 0.5:
                    event(log, "instrument_unavailable", logging.WARNING, instrument=self.config.name,
                          port=self.config.port, error=str(exc).split("\n")[0], retry_s=backoff)
                self.connected = False
                self._halt.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.connected = False

    def _read(self, port: serial.Serial) -> None:
        dt = 1.0 / self.rate_hz
        while not self._halt.is_set():
            data = port.read(max(1, port.in_waiting))
            if not data:
                continue
            now = time.time()
            batch = self.parser.feed(data)
            if batch.n:
                # Frames completed in one read arrived back to back; space earlier ones by the
                # nominal interval so each keeps a distinct time tag.
                t = now - dt * (batch.n - 1 - np.arange(batch.n))
                self.buffer.append(SampleBlock(t, batch.columns))
                self.last_frame_time = now
