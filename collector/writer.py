"""Writes a batch of messages' points to InfluxDB: retries what may pass by itself, and finds the
messages whose points the server refuses without losing the others.

A batch is a list of groups, one group (list of lines) per MQTT message. On a bad-data refusal
(HTTP 400 incl. InfluxDB 1.x "partial write", 413, 422) the batch is split in halves and each half
written again, down to single messages: only a message refused on its own is reported as bad.
Rewriting points that a partial write already stored is harmless, since points are keyed (same
measurement, tags and timestamp overwrite). Retryable errors (unreachable server, 5xx, 429,
401/403/404) are retried with a doubling, capped pause until they pass or ``halt`` is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.sinks import SinkError
from fluxedge.common.logs import event

log = logging.getLogger("collector.writer")


@dataclass
class WriteOutcome:
    #: False if ``halt`` was set before everything was written (nothing may be acknowledged)
    completed: bool
    #: index of each refused group -> the server's reason
    rejected: dict[int, str] = field(default_factory=dict)
    #: write requests that failed and were retried
    retries: int = 0
    #: extra requests spent isolating refused messages
    splits: int = 0


class BatchWriter:
    def __init__(self, write: Callable[[list[str]], None], halt: threading.Event,
                 retry_min_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self._write = write
        self._halt = halt
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s

    def write(self, groups: list[list[str]]) -> WriteOutcome:
        outcome = WriteOutcome(True)
        pending = [list(range(len(groups)))]
        while pending:
            indices = pending.pop()
            lines = [line for i in indices for line in groups[i]]
            if not lines:
                continue
            error = self._write_retrying(lines, outcome)
            if error is None:
                continue
            if error == "halted":
                outcome.completed = False
                return outcome
            if len(indices) == 1:
                outcome.rejected[indices[0]] = error
            else:
                half = len(indices) // 2
                pending += [indices[half:], indices[:half]]
                outcome.splits += 2
        return outcome

    def _write_retrying(self, lines: list[str], outcome: WriteOutcome) -> str | None:
        """None once written, the reason if the server refused the data, "halted" if stopped."""
        delay = self.retry_min_s
        while not self._halt.is_set():
            try:
                self._write(lines)
                return None
            except SinkError as exc:
                if exc.bad_data:
                    return str(exc)
                outcome.retries += 1
                if outcome.retries == 1 or delay >= self.retry_max_s:
                    event(log, "write_retry", logging.WARNING, error=str(exc), retry_s=delay, points=len(lines))
                self._halt.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
        return "halted"
