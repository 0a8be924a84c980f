"""The station's time base: every sample is stamped from CLOCK_MONOTONIC, and its wall-clock time
is the monotonic time plus an anchor.

NTP slews CLOCK_MONOTONIC along with the wall clock, so the two advance together; but a step of the
wall clock (NTP's first sync after boot without an RTC, a manual ``date -s``, a GPS fix) would,
stamped with ``time.time()``, tear a period apart: samples would jump between periods, duplicated
or missing. Here stamps stay continuous; the anchor follows the wall clock only when
:meth:`HostClock.check` sees it differ by more than ``step_s``, which the daemon calls every second
and logs (``clock_step``). Samples keep both times (``SampleBlock.t_mono`` and ``t``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class HostClock:
    def __init__(self, step_s: float = 0.5, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.step_s = step_s
        self._wall, self._mono = wall, monotonic
        self._lock = threading.Lock()
        self._anchor = wall() - monotonic()
        self.steps = 0

    def monotonic(self) -> float:
        return self._mono()

    def wall(self, mono: float | None = None) -> float:
        """Wall-clock time [Unix s] of monotonic time ``mono`` (now if None)."""
        return (self._mono() if mono is None else mono) + self._anchor

    def check(self) -> float | None:
        """Follow a step of the wall clock: the step [s] if there was one (> ``step_s``), else None."""
        with self._lock:
            diff = self._wall() - (self._mono() + self._anchor)
            if abs(diff) <= self.step_s:
                return None
            self._anchor += diff
            self.steps += 1
            return diff
