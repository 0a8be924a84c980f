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
