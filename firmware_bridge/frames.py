"""Types shared by every instrument family: decoded batches and parser counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ParseStats:
    """Running counters of one parser; errors are counted here, never raised.

    ``resyncs`` counts contiguous runs of bytes that had to be skipped to find the next frame,
    ``bytes_skipped`` their total length. ``counter_gaps`` counts jumps of the instrument's own
    record counter and ``samples_missed`` the records those jumps imply.
    """

    frames_ok: int = 0
    checksum_errors: int = 0
    malformed: int = 0
    resyncs: int = 0
    bytes_skipped: int = 0
    counter_gaps: int = 0
    samples_missed: int = 0
    nan_records: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Batch:
    """Frames decoded from one chunk of bytes, as columns of equal length.

    ``columns`` maps documented channel names (``u``, ``w``, ``t_sonic``, ``co2`` ...) to 1-D
    arrays; ``end_offsets`` gives, per frame, the byte offset just past its end within the chunk
    handed to ``feed`` (negative when the frame began in an earlier chunk), so a reader can
    time-stamp frames by arrival.
    """

    columns: dict[str, np.ndarray]
    end_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n(self) -> int:
        return len(self.end_offsets)

    @staticmethod
    def empty(names: tuple[str, ...]) -> Batch:
        return Batch({name: np.zeros(0) for name in names}, np.zeros(0, np.int64))

    def rows(self) -> list[dict[str, float | int | None]]:
        """Frames as dicts (for JSON output); NaN becomes None."""
        out: list[dict[str, float | int | None]] = []
        names = list(self.columns)
        cols = [self.columns[name] for name in names]
        for i in range(self.n):
            row: dict[str, float | int | None] = {}
            for name, col in zip(names, cols, strict=True):
                value = col[i].item()
                row[name] = None if isinstance(value, float) and value != value else value
            out.append(row)
        return out


class CounterTracker:
    """Counts jumps of an instrument's record counter into ``stats``: a jump of k counts one gap
    and k - 1 missed records. ``modulo`` for wrapping counters (CSAT3/CSAT3B: 64, NIDAS's
    ``(prev + 1) % 64 == cntr``), None for an increasing index (LI-COR ``Ndx``)."""

    def __init__(self, stats: ParseStats, modulo: int | None = None) -> None:
        self.stats = stats
        self.modulo = modulo
        self.last: int | None = None

    def update(self, counter: np.ndarray) -> None:
        if len(counter) == 0:
            return
        seq = counter if self.last is None else np.concatenate(([self.last], counter))
        step = np.diff(seq)
        if self.modulo:
            step %= self.modulo
        gaps = step != 1
        missed = (step[gaps] - 1) % self.modulo if self.modulo else np.clip(step[gaps] - 1, 0, None)
        self.stats.counter_gaps += int(gaps.sum())
        self.stats.samples_missed += int(missed.sum())
        self.last = int(counter[-1])


def complete_lines(buf: bytes, stats: ParseStats, max_line_bytes: int) -> tuple[list[bytes], bytes]:
    """Split a text stream at LF: the complete lines, and the unterminated rest to carry into the
    next feed (dropped and counted as one resync once it outgrows ``max_line_bytes``)."""
    lines = buf.split(b"\n")
    rest = lines.pop()
    if len(rest) > max_line_bytes:
        stats.resyncs += 1
        stats.bytes_skipped += len(rest)
        rest = b""
    return lines, rest
