"""The collector's own metrics: counted by the ingest threads, logged and written to InfluxDB
(measurement ``collector``, tag ``collector`` = client id) every interval.

Fields of one interval: ``messages`` and ``points`` acknowledged / written and their rates
[1/s], ``batches``, ``batch_latency_mean_s`` / ``batch_latency_max_s`` (write time of a batch,
retries included), ``lag_max_s`` (longest time a message waited between its arrival and its
acknowledgement), ``inbox`` (messages received but not yet batched), ``dead_letters``,
``retries`` (failed write requests retried) and ``splits`` (requests spent isolating refused
messages); ``dead_letters_total`` counts since the start.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from collector.lineprotocol import escape_tag


@dataclass(frozen=True)
class MetricsSnapshot:
    interval_s: float
    messages: int
    points: int
    batches: int
    batch_latency_mean_s: float
    batch_latency_max_s: float
    lag_max_s: float
    inbox: int
    dead_letters: int
    dead_letters_total: int
    retries: int
    splits: int

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.interval_s if self.interval_s > 0 else 0.0

    @property
    def points_per_s(self) -> float:
        return self.points / self.interval_s if self.interval_s > 0 else 0.0

    def fields(self) -> dict[str, float]:
        return {"messages": self.messages, "points": self.points, "messages_per_s": round(self.messages_per_s, 3),
                "points_per_s": round(self.points_per_s, 3), "batches": self.batches,
                "batch_latency_mean_s": round(self.batch_latency_mean_s, 4),
                "batch_latency_max_s": round(self.batch_latency_max_s, 4), "lag_max_s": round(self.lag_max_s, 4),
                "inbox": self.inbox, "dead_letters": self.dead_letters, "dead_letters_total": self.dead_letters_total,
                "retries": self.retries, "splits": self.splits}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self._dead_total = 0
        self._reset()

    def _reset(self) -> None:
        self._messages = self._points = self._batches = self._dead = self._retries = self._splits = 0
        self._latency_sum = self._latency_max = self._lag_max = 0.0

    def batch_done(self, messages: int, points: int, latency_s: float, lag_s: float, retries: int,
                   splits: int) -> None:
        with self._lock:
            self._messages += messages
            self._points += points
            self._batches += 1
            self._latency_sum += latency_s
            self._latency_max = max(self._latency_max, latency_s)
            self._lag_max = max(self._lag_max, lag_s)
            self._retries += retries
            self._splits += splits

    def dead_letter(self) -> None:
        with self._lock:
            self._dead += 1
            self._dead_total += 1

    def take(self, inbox: int) -> MetricsSnapshot:
        """The interval's figures, starting a new interval."""
        with self._lock:
            now = time.monotonic()
            snap = MetricsSnapshot(now - self._since, self._messages, self._points, self._batches,
                                   self._latency_sum / self._batches if self._batches else 0.0,
                                   self._latency_max, self._lag_max, inbox, self._dead, self._dead_total,
                                   self._retries, self._splits)
            self._since = now
            self._reset()
            return snap


def metrics_line(collector: str, snap: MetricsSnapshot, time_s: float) -> str:
    tag = escape_tag(collector)
    fields = ",".join(f"{k}={float(v)!r}" for k, v in snap.fields().items())
    return f"collector,collector={tag} {fields} {round(time_s * 1000)}"
