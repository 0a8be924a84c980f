"""The driver loop of a streaming instrument: link -> parser -> callbacks, kept alive.

One :class:`Driver` per instrument. It opens its link (serial or TCP), sends the family's start
command, feeds every byte to the family's parser and hands each decoded batch to ``on_batch``
with the host time the bytes arrived. It re-opens the link with capped exponential backoff when
the port fails or vanishes, declares the instrument silent when no frame has been decoded for
``silence_s`` (an event, once), re-opens after ``reopen_after_silence_s`` of silence (USB
adapters and TCP sessions that stall come back that way), and keeps counters a technician can
read in one line (:meth:`Driver.health`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from firmware_bridge.families import family
from firmware_bridge.frames import Batch
from firmware_bridge.link import LinkError, open_link, parse_address

BatchCallback = Callable[[Batch, float], None]
EventCallback = Callable[[str, int, dict[str, Any]], None]


def _no_event(name: str, level: int, fields: dict[str, Any]) -> None:
    pass


class Driver:
    """Reads one streaming instrument until :meth:`stop`; never raises on instrument behaviour."""

    def __init__(self, name: str, family_name: str, address: str, baud: int | None = None, *,
                 rate_hz: float = 20.0, parser_options: dict[str, Any] | None = None,
                 serial_format: str = "8N1", send_start: bool = True, silence_s: float = 2.0,
                 reopen_after_silence_s: float = 10.0, backoff_min_s: float = 0.5, backoff_max_s: float = 30.0,
                 on_batch: BatchCallback | None = None, on_event: EventCallback | None = None) -> None:
        self.name = name
        self.family = family(family_name)
        self.address = parse_address(address)
        self.baud = baud or getattr(self.family, "DEFAULT_BAUD", 9600)
        self.rate_hz = rate_hz
        self.parser = self.family.Parser(**(parser_options or {}))
        self.serial_format = serial_format
        #: sent at every (re-)open; ``ValueError`` here if the instrument cannot run at ``rate_hz``
        self.start_command = self.family.command_start(rate_hz) if send_start else b""
        self.silence_s = silence_s
        self.reopen_after_silence_s = reopen_after_silence_s
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.on_batch = on_batch or (lambda batch, t: None)
        self.on_event = on_event or _no_event
        self.connected = False
        self.silent = False
        self.opens = 0
        self.link_failures = 0
        self.bytes_read = 0
        self.last_frame_time: float | None = None
        #: why the link last failed to open or was lost (None while it never failed)
        self.last_error: str | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def health(self) -> dict[str, Any]:
        """Connection state and counters, for health lines, status messages and alarms."""
        age = None if self.last_frame_time is None else round(time.time() - self.last_frame_time, 3)
        return {"instrument": self.name, "address": str(self.address), "connected": self.connected,
                "silent": self.silent, "last_frame_age_s": age, "opens": self.opens,
                "link_failures": self.link_failures, "bytes_read": self.bytes_read, **self.parser.stats.as_dict()}

    def run(self) -> None:
        backoff = self.backoff_min_s
        while not self._halt.is_set():
            link = open_link(self.address, self.baud, self.serial_format)
            try:
                link.open()
            except LinkError as exc:
                self.last_error = str(exc)
                if self.connected or backoff == self.backoff_min_s:
                    self.on_event("instrument_unavailable", logging.WARNING,
                                  {"instrument": self.name, "error": str(exc), "retry_s": backoff})
                self.connected = False
                self._halt.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self.connected = True
            self.opens += 1
            baud = self.baud if self.address.kind == "serial" else None
            self.on_event("instrument_open", logging.INFO,
                          {"instrument": self.name, "address": str(self.address), "baud": baud})
            try:
                link.write(self.start_command)
                self._read(link)
                backoff = self.backoff_min_s
            except LinkError as exc:
                self.last_error = str(exc)
                self.link_failures += 1
                self.on_event("instrument_lost", logging.WARNING, {"instrument": self.name, "error": str(exc)})
                # a device that vanished usually needs a moment: start the backoff at its minimum
                self._halt.wait(self.backoff_min_s)
                backoff = min(self.backoff_min_s * 2, self.backoff_max_s)
            finally:
                link.close()
                self.connected = False

    def _read(self, link) -> None:
        opened = time.time()
        while not self._halt.is_set():
            data = link.read()
            now = time.time()
            if data:
                self.bytes_read += len(data)
                batch = self.parser.feed(data)
                if batch.n:
                    if self.silent:
                        quiet = round(now - (self.last_frame_time or opened), 1)
                        self.on_event("instrument_recovered", logging.INFO,
                                      {"instrument": self.name, "silent_s": quiet})
                        self.silent = False
                    self.last_frame_time = now
                    self.on_batch(batch, now)
                    continue
            quiet_s = now - max(self.last_frame_time or opened, opened)
            if quiet_s > self.silence_s and not self.silent:
                self.silent = True
                self.on_event("instrument_silent", logging.WARNING,
                              {"instrument": self.name, "quiet_s": round(quiet_s, 1), "bytes_read": self.bytes_read,
                               **{k: v for k, v in self.parser.stats.as_dict().items() if v}})
            if quiet_s > self.reopen_after_silence_s:
                self.on_event("instrument_reopen", logging.WARNING,
                              {"instrument": self.name, "quiet_s": round(quiet_s, 1)})
                return
