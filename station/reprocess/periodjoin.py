"""Consecutive raw files joined into clock-aligned averaging periods (``flux process --period``).

EddyPro does this when its averaging length is longer than the files (e.g. 15-min files, 30-min
periods). What it does, and what is done here (eddypro-engine ``src/src_rp/eddypro-rp_main.f90`` and
``import_current_period.f90``):

- The periods are aligned to the clock: the first starts at the first file's time rounded down to a
  multiple of the averaging length (``tsRoundToMinute(..., 'earlier')``), so 30-min periods start at
  :00 and :30. Here the clock is the output's (local standard time, :mod:`fluxedge.common.sitetime`), which
  is the file-name clock for every zone whose offsets are whole half hours.
- Each period takes the records of every file that falls in it (``ImportCurrentPeriod``: a file's
  records are placed by the file-name time + record index / rate). Here a sample's time is the
  file's start + index / rate, or, where the file has per-record time stamps (``.ghg``
  ``Seconds``/``Nanoseconds``, TOA5 ``TIMESTAMP``) that agree with the file's start and rate (first
  stamp within one sample interval of it, strictly increasing, spaced 1 / rate), the file's start +
  the stamps' offsets from the first one: gaps inside a file are kept, and stamps at the start or at
  the end of each sample interval (Campbell loggers stamp the end) place the records alike. Each
  sample goes to the slot ``round((t - period start) x rate)`` of the period's regular grid; a slot
  no file fills is missing (NaN). EddyPro appends the records of contiguous files one after the
  other instead; both give the same series when nothing is missing.
- A period is processed only if no more than ``max_lack`` per cent of its records are missing:
  ``(expected - present) / expected x 100 > RPsetup%max_lack`` skips it, with
  ``expected = avrg_len x 60 x ac_freq`` (EddyPro's default ``max_lack`` is 10 %, as in every project
  file of shared/data/ec). Here such a period gets a row of -9999 with that reason.
- The metadata of the period is the first file's; consecutive files whose column layout (rate,
  columns, variables, instruments, measure types, units) disagrees are an error naming both files.

Files are grouped into independent *segments* for the worker processes: a segment ends where the
next file starts exactly on a period boundary, so no period spans two segments; samples of a
segment at or after the next segment's start (a file overlapping its successor) are left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from station.rawdata import RawPeriod, localize, time_from_name

#: EddyPro's default ``max_lack``: the share of a period's records that may be missing [%]
MAX_LACK_PCT = 10.0


class LayoutMismatchError(ValueError):
    """Two consecutive files of one period do not have the same column layout."""


@dataclass(frozen=True, eq=False)
class JoinedPeriod:
    """One averaging period built from one or more files: ``raw`` holds the samples on the period's
    regular grid (``raw.n_samples == expected``, NaN where no file gave a record) with the first
    file's metadata and header; ``present`` counts the grid slots a file filled."""

    raw: RawPeriod
    present: int
    expected: int
    files: tuple[str, ...]

    @property
    def start_unix(self) -> float:
        return self.raw.start_unix

    @property
    def end_unix(self) -> float:
        return self.raw.end_unix

    @property
    def missing_pct(self) -> float:
        """EddyPro's ``MissingRecords``: (expected - present) / expected x 100."""
        return 100.0 * (self.expected - self.present) / self.expected if self.expected else 100.0

    def too_incomplete(self, max_lack_pct: float = MAX_LACK_PCT) -> bool:
        """EddyPro's skip rule: more than ``max_lack_pct`` per cent of the records missing."""
        return self.missing_pct > max_lack_pct


# ------------------------------------------------------------------------------------------ planning


def name_start_unix(path: str | Path, tz) -> float | None:
    """The start of a file's period from its name, in the zone ``tz`` of the name's clock (UTC if
    None), as Unix time; None if the name holds no date and time."""
    named = time_from_name(Path(path).name)
    return None if named is None else localize(named, tz).timestamp()


def is_boundary(t_unix: float, period_s: float, offset_s: float) -> bool:
    """Whether ``t_unix`` is exactly (to 1 ms) the start of a clock-aligned period."""
    phase = math.fmod(t_unix + offset_s, period_s)
    return min(abs(phase), abs(period_s - abs(phase))) < 1e-3


def segments(starts: Sequence[float | None], period_s: float, offsets: Sequence[float]) -> list[list[int]]:
    """Indices of the files (sorted by ``starts``; files without a start last, in their given order)
    grouped so that no averaging period spans two groups: a new group begins at a file that starts
    on a period boundary."""
    order = sorted((i for i, s in enumerate(starts) if s is not None), key=lambda i: starts[i])  # type: ignore[arg-type,return-value]
    unknown = [i for i, s in enumerate(starts) if s is None]
    groups: list[list[int]] = []
    for i in order:
        if not groups or is_boundary(starts[i], period_s, offsets[i]):  # type: ignore[arg-type]
            groups.append([i])
        else:
            groups[-1].append(i)
    if unknown:
        groups.append(unknown)
    return groups


# ------------------------------------------------------------------------------------------ joining


def sample_times(raw: RawPeriod) -> np.ndarray:
    """Each record's time [Unix s]: the file's ``Seconds``/``Nanoseconds`` where they are consistent
    with the file's start and rate, else start + index / rate."""
    n, rate = raw.n_samples, raw.rate_hz
    t = raw.time
    if t is not None and len(t) == n and n > 0 and bool(np.isfinite(t).all()):
        step = np.diff(t)
        if abs(float(t[0]) - raw.start_unix) <= 1.0001 / rate and (n == 1 or (
                bool((step > 0).all()) and abs(float(np.median(step)) * rate - 1.0) < 0.01)):
            return raw.start_unix + (np.asarray(t, dtype=float) - float(t[0]))
    return raw.start_unix + np.arange(n, dtype=float) / rate


def layout(raw: RawPeriod) -> tuple:
    """What must agree between files joined into one period: the rate, the columns read and their
    measure types, and every metadata column's variable, instrument, measure type and unit."""
    md = raw.metadata
    return (float(raw.rate_hz), tuple(sorted(raw.columns)), tuple(sorted(raw.gas_types.items())),
            tuple((c.index, c.variable, c.instrument, c.measure_type or "", c.unit) for c in md.columns))


def _difference(a: tuple, b: tuple) -> str:
    if a[0] != b[0]:
        return f"sampling rate {a[0]:g} Hz vs {b[0]:g} Hz"
    if a[3] != b[3]:
        if len(a[3]) != len(b[3]):
            return f"{len(a[3])} vs {len(b[3])} columns"
        x, y = next((x, y) for x, y in zip(a[3], b[3], strict=True) if x != y)
        return f"column {x[0]}: {x[1]} ({x[2]}, {x[3] or '-'}, {x[4] or '-'}) vs {y[1]} ({y[2]}, {y[3] or '-'}, " \
               f"{y[4] or '-'})"
    if a[1] != b[1]:
        return f"columns read {', '.join(a[1])} vs {', '.join(b[1])}"
    return f"gas measure types {dict(a[2])} vs {dict(b[2])}"


@dataclass
class _Open:
    index: int
    start: float
    n: int
    first: RawPeriod
    columns: dict[str, np.ndarray]
    filled: np.ndarray
    files: list[str] = field(default_factory=list)


class Joiner:
    """Builds clock-aligned periods from files given in time order (:meth:`add` returns the periods
    no later file can add to; :meth:`finish` the rest). Periods are keyed by their integer index
    ``floor((t + offset) / period)``, samples placed by their index on the sample grid from the
    period's start, so that a sample on a period boundary lands in slot 0 of the later period."""

    def __init__(self, period_s: float, offset_s: float = 0.0, until: float | None = None) -> None:
        if period_s <= 0:
            raise ValueError(f"the averaging period must be positive, got {period_s} s")
        self.period_s = float(period_s)
        self.offset_s = float(offset_s)
        #: samples at or after this time [Unix s] belong to the next segment's files and are left out
        self.until = math.inf if until is None else float(until)
        self._open: dict[int, _Open] = {}
        self._closed_until = -math.inf
        self._last: tuple[str, tuple] | None = None

    def check_layout(self, raw: RawPeriod) -> None:
        """Raise :class:`LayoutMismatchError` naming both files if ``raw`` does not continue the previous file."""
        key = layout(raw)
        if self._last is not None and self._last[1] != key:
            raise LayoutMismatchError(f"{raw.source}: its column layout differs from the previous file "
                                      f"{self._last[0]} ({_difference(self._last[1], key)}): files joined into "
                                      "one period must share their metadata")
        self._last = (str(raw.source), key)

    def period_start(self, index: int) -> float:
        return index * self.period_s - self.offset_s

    def add(self, raw: RawPeriod) -> list[JoinedPeriod]:
        """Add one file's samples; returns the periods that ended before this file starts."""
        self.check_layout(raw)
        t = sample_times(raw)
        if not len(t):
            return []
        done = self._close(lambda p: p.start + self.period_s <= t[0] + 1e-9)
        rate = raw.rate_hz
        n = round(self.period_s * rate)
        first = math.floor((float(t[0]) + self.offset_s) / self.period_s)  # index of the first sample's period
        grid = np.rint((t - self.period_start(first)) * rate).astype(np.int64)  # sample index from its start
        keep = t < self.until - 0.5 / rate
        index, slot = first + grid[keep] // n, grid[keep] % n
        rows = np.flatnonzero(keep)
        for k in np.unique(index):
            k = int(k)
            start = self.period_start(k)
            if start < self._closed_until - 1e-9:
                raise ValueError(f"{raw.source}: files are not in time order (it has samples in a period already "
                                 "closed)")
            sel = index == k
            period = self._open.get(k)
            if period is None:
                period = self._open[k] = _Open(k, start, n, raw, {c: np.full(n, np.nan) for c in raw.columns},
                                               np.zeros(n, dtype=bool))
            slots, src = slot[sel], rows[sel]
            for name, values in raw.columns.items():
                if name in period.columns:
                    period.columns[name][slots] = values[src]
            period.filled[slots] = True
            period.files.append(str(raw.source))
        return done

    def finish(self) -> list[JoinedPeriod]:
        return self._close(lambda p: True)

    def _close(self, which) -> list[JoinedPeriod]:
        closing = sorted((p for p in self._open.values() if which(p)), key=lambda p: p.index)
        out = []
        for p in closing:
            del self._open[p.index]
            self._closed_until = max(self._closed_until, p.start + self.period_s)
            out.append(_joined(p))
        return out


def _joined(p: _Open) -> JoinedPeriod:
    first = p.first
    start = datetime.fromtimestamp(p.start, UTC)
    end = datetime.fromtimestamp(p.start + p.n / first.rate_hz, UTC)
    files = tuple(dict.fromkeys(p.files))
    notes = (*first.notes, f"joined from {len(files)} file(s): {', '.join(Path(f).name for f in files)}")
    raw = dataclasses.replace(first, start=start, end=end, n_samples=p.n, columns=p.columns, time=None, notes=notes)
    return JoinedPeriod(raw, int(p.filled.sum()), p.n, files)


def join(raws: Iterable[RawPeriod], period_s: float, offset_s: float = 0.0,
         until: float | None = None) -> list[JoinedPeriod]:
    """Every clock-aligned period of ``raws`` (files in time order), all in memory."""
    joiner = Joiner(period_s, offset_s, until)
    out: list[JoinedPeriod] = []
    for raw in raws:
        out += joiner.add(raw)
    return out + joiner.finish()
