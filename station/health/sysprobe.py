"""What the station computer itself reports: CPU temperature, load, memory, disk, NTP state, clock steps.

Every probe is cheap (a few small /proc and /sys reads, one syscall) and returns None when the
board or kernel does not provide the value, so the diagnostics simply omit it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

THERMAL_DIR = Path("/sys/class/thermal")
#: thermal zone types that are the CPU / SoC (Raspberry Pi: cpu-thermal; x86: x86_pkg_temp)
_CPU_ZONES = ("cpu", "soc", "x86_pkg_temp", "coretemp", "package")


def cpu_temperature_degc(thermal_dir: Path = THERMAL_DIR) -> float | None:
    """The CPU's thermal zone [degC] (the first zone if none is named like a CPU); None without any."""
    zones = sorted(thermal_dir.glob("thermal_zone*"))
    readings: list[tuple[bool, float]] = []
    for zone in zones:
        try:
            milli = int((zone / "temp").read_text().strip())
            kind = (zone / "type").read_text().strip().lower() if (zone / "type").exists() else ""
        except (OSError, ValueError):
            continue
        readings.append((any(k in kind for k in _CPU_ZONES), milli / 1000.0))
    if not readings:
        return None
    cpu = [t for is_cpu, t in readings if is_cpu]
    return cpu[0] if cpu else readings[0][1]


def load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def memory_used_pct(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """100 x (MemTotal - MemAvailable) / MemTotal."""
    try:
        fields = {}
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
        return 100.0 * (fields["MemTotal"] - fields["MemAvailable"]) / fields["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
        return None


def disk_free(path: str | Path) -> tuple[float, float] | None:
    """(free MB (MiB) available to the daemon, free %) on the file system holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if not st.f_blocks:
        return None
    return st.f_bavail * st.f_frsize / 2**20, 100.0 * st.f_bavail / st.f_blocks


class _Timex(ctypes.Structure):
    """The head of Linux ``struct timex`` (adjtimex(2)); the rest is padding the kernel may fill."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]


_TIME_ERROR = 5  # clock not synchronised
_STA_UNSYNC = 0x0040
_libc = None


def ntp_synchronized() -> bool | None:
    """The kernel's view (adjtimex, read-only): True when an NTP daemon keeps the clock in sync;
    None where the call is unavailable."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = _libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not tx.status & _STA_UNSYNC


class ClockWatch:
    """Detects wall-clock steps: between two calls the wall clock should advance as the monotonic
    clock does; a difference beyond ``tolerance_s`` is a step (NTP correction, RTC-less boot)."""

    def __init__(self, wall_s: float, mono_s: float, tolerance_s: float = 0.5) -> None:
        self.tolerance_s = tolerance_s
        self._wall, self._mono = wall_s, mono_s
        #: steps summed since the last :meth:`take_interval` [s]
        self.interval_steps_s = 0.0
        self.steps = 0

    def update(self, wall_s: float, mono_s: float) -> float:
        """The step since the previous call [s] (0 when within tolerance)."""
        step = (wall_s - self._wall) - (mono_s - self._mono)
        self._wall, self._mono = wall_s, mono_s
        if abs(step) <= self.tolerance_s:
            return 0.0
        self.interval_steps_s += step
        self.steps += 1
        return step

    def take_interval(self) -> float:
        total, self.interval_steps_s = self.interval_steps_s, 0.0
        return total
