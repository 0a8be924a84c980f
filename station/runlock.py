"""The running daemon's lock: an exclusive ``flock`` on ``<spool path>.lock``, with its pid inside.

The daemon takes it before it opens any instrument port and holds it until it has stopped; the
kernel releases it when the process ends in any way (kill -9, power cut), so it never goes stale.
A second daemon on the same spool refuses to start, and ``fluxedge station check`` knows from it
(or from a fresh status file) that the ports belong to a running daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def lock_path(spool_path: str | Path) -> Path:
    return Path(str(Path(spool_path).expanduser()) + ".lock")


class RunLock:
    def __init__(self, spool_path: str | Path) -> None:
        self.spool_path = spool_path
        self.path = lock_path(spool_path)
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock; None on success, else the pid of the daemon holding it (0 if unknown)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return holder(self.spool_path) or 0
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def holder(spool_path: str | Path) -> int | None:
    """The pid of the daemon holding the lock of this spool (0 if it wrote none), None if nobody does."""
    path = lock_path(spool_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
