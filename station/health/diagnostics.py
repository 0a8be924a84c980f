"""Per-instrument diagnostics: what each driver delivered in an interval, as diag values.

An :class:`InstrumentTap` sits on a driver's ``on_batch`` callback (after the station's own reader
callback) and only appends a reference to the batch's columns under a lock, so acquisition never
waits on diagnostics. At each diagnostics tick :meth:`InstrumentTap.take_interval` turns what
arrived into the contract's diag values (``fluxedge.common.messages.DIAG_FIELDS``): samples expected
(rate x interval) and received, missing, the parser's checksum errors / resyncs / counter gaps of
the interval, samples the family's ``valid()`` rejects, per-flag counts (``FLAG_<NAME>`` from
``decode_flags``), signal strength mean and min where the family reports one, connection state
and reconnections.
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InstrumentInterval:
    """One instrument's diagnostics over one interval: ``values`` are published (diag names),
    ``metrics`` feed the alarm rules (percentages)."""

    source: str
    values: dict[str, float | None]
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: per metric, what was observed in words, for the alarm texts (``{observed}``)
    details: dict[str, str] = field(default_factory=dict)


def diag_source(name: str) -> str:
    """The contract's source name (``^[a-z0-9][a-z0-9_.-]{0,63}$``) of an instrument named ``name``."""
    source = name.lower()
    if source[:1] in ("_", "-"):
        source = "i" + source
    return source[:64]


def _flag_counts(fam: Any, columns: dict[str, np.ndarray]) -> dict[str, int]:
    diag = columns.get("diag")
    decode = getattr(fam, "decode_flags", None)
    if diag is None or decode is None or not len(diag):
        return {}
    kwargs = {}
    if "w_boost" in columns and "w_boost" in inspect.signature(decode).parameters:
        kwargs["w_boost"] = columns["w_boost"]
    flags = decode(np.asarray(diag).astype(np.int64), **kwargs)
    return {name: int(np.count_nonzero(mask)) for name, mask in flags.items()}


def flag_names(fam: Any, columns: dict[str, np.ndarray]) -> list[str]:
    """Names of the diagnostic flags set in the last sample of ``columns``."""
    last = {k: v[-1:] for k, v in columns.items() if len(v)}
    return sorted(name for name, n in _flag_counts(fam, last).items() if n)


class InstrumentTap:
    """Counts what one instrument delivers; :meth:`attach` it to the instrument's driver."""

    def __init__(self, name: str, family: Any, rate_hz: float, driver: Any = None,
                 clock=time.monotonic) -> None:
        self.name = diag_source(name)
        self.family = family
        self.rate_hz = rate_hz
        self.driver = driver
        self._clock = clock
        self._lock = threading.Lock()
        self._chunks: list[dict[str, np.ndarray]] = []
        #: frames delivered since start (for rates)
        self.frames = 0
        self.last_columns: dict[str, np.ndarray] | None = None
        self.last_frame_mono: float | None = None
        self.started_mono = clock()
        self._interval_start = self.started_mono
        self._stats_before: dict[str, int] = {}
        self._reconnects_before = 0

    def attach(self, driver: Any) -> None:
        """Chain onto ``driver.on_batch``: the existing callback runs first, then the count."""
        self.driver = driver
        inner = driver.on_batch

        def on_batch(batch, now: float) -> None:
            inner(batch, now)
            self.on_batch(batch, now)

        driver.on_batch = on_batch
        self._stats_before = dict(driver.parser.stats.as_dict())

    def on_batch(self, batch: Any, now: float) -> None:
        if not batch.n:
            return
        with self._lock:
            self._chunks.append(batch.columns)
            self.frames += batch.n
            self.last_columns = batch.columns
            self.last_frame_mono = self._clock()

    def silent_s(self, mono_s: float | None = None) -> float:
        """Seconds since the last frame (since the tap started if none came yet)."""
        now = self._clock() if mono_s is None else mono_s
        return now - (self.last_frame_mono if self.last_frame_mono is not None else self.started_mono)

    @property
    def connected(self) -> bool:
        return bool(self.driver is not None and self.driver.connected)

    def link_observed(self) -> str:
        """The link's state in words, for alarm texts: which port is not open and the last error."""
        address = getattr(self.driver, "address", "?")
        error = getattr(self.driver, "last_error", None)
        return f"port {address} not open" + (f" (last error: {error})" if error else "")

    def _reconnects(self) -> int:
        return max(0, int(getattr(self.driver, "opens", 0)) - 1)

    def take_interval(self, mono_s: float | None = None) -> InstrumentInterval:
        """Diagnostics since the previous call (or since the tap started) and restart counting."""
        now = self._clock() if mono_s is None else mono_s
        with self._lock:
            chunks, self._chunks = self._chunks, []
        elapsed = max(now - self._interval_start, 0.0)
        self._interval_start = now
        received = sum(len(next(iter(c.values()))) for c in chunks if c)
        expected = round(self.rate_hz * elapsed)
        values: dict[str, float | None] = {
            "SAMPLES_EXPECTED": expected, "SAMPLES_RECEIVED": received,
            "SAMPLES_MISSING": max(expected - received, 0),
        }
        stats = self.driver.parser.stats.as_dict() if self.driver is not None else {}
        delta = {k: v - self._stats_before.get(k, 0) for k, v in stats.items()}
        self._stats_before = dict(stats)
        values["CHECKSUM_ERRORS"] = delta.get("checksum_errors", 0)
        values["RESYNCS"] = delta.get("resyncs", 0)
        values["COUNTER_GAPS"] = delta.get("counter_gaps", 0)
        flagged = None
        if chunks:
            names = [k for k in chunks[0] if all(k in c for c in chunks)]
            columns = {k: np.concatenate([c[k] for c in chunks]) for k in names}
            valid = getattr(self.family, "valid", None)
            if valid is not None:
                flagged = int(received - np.count_nonzero(valid(columns)))
            for name, count in _flag_counts(self.family, columns).items():
                values["FLAG_" + name.upper()] = count
            ss = columns.get("signal_strength")
            if ss is not None:
                ss = np.asarray(ss, dtype=float)
                ss = ss[np.isfinite(ss)]
                if ss.size:
                    values["SIGNAL_MEAN"] = float(np.clip(ss.mean(), 0, 100))
                    values["SIGNAL_MIN"] = float(np.clip(ss.min(), 0, 100))
        values["FLAGGED_SAMPLES"] = flagged if flagged is not None else 0
        values["CONNECTED"] = 1 if self.connected else 0
        reconnects = self._reconnects()
        values["RECONNECTS"] = reconnects - self._reconnects_before
        self._reconnects_before = reconnects
        frames_seen = received + values["CHECKSUM_ERRORS"]
        metrics: dict[str, float | None] = {
            "MISSING_PCT": 100.0 * values["SAMPLES_MISSING"] / expected if expected else None,
            "CHECKSUM_ERROR_PCT": 100.0 * values["CHECKSUM_ERRORS"] / frames_seen if frames_seen else None,
            "FLAGGED_PCT": 100.0 * flagged / received if flagged is not None and received else None,
            "SIGNAL_MEAN": values.get("SIGNAL_MEAN"),
        }
        details = {} if values["CONNECTED"] else {"CONNECTED": self.link_observed(),
                                                  "MISSING_PCT": self.link_observed()}
        return InstrumentInterval(self.name, values, metrics, details)

    def snapshot(self) -> dict[str, Any]:
        """Last values, flags and counters for the status file (cheap; no interval reset)."""
        with self._lock:
            cols = self.last_columns
        last: dict[str, float | None] = {}
        flags: list[str] = []
        if cols:
            for k, v in cols.items():
                if len(v):
                    x = float(v[-1])
                    last[k] = round(x, 6) if np.isfinite(x) else None
            flags = flag_names(self.family, cols)
        stats = self.driver.parser.stats.as_dict() if self.driver is not None else {}
        return {"connected": self.connected, "frames": self.frames, "silent_s": round(self.silent_s(), 1),
                "last": last, "flags": flags, "reconnects": self._reconnects(),
                "checksum_errors": stats.get("checksum_errors", 0), "resyncs": stats.get("resyncs", 0),
                "counter_gaps": stats.get("counter_gaps", 0)}
