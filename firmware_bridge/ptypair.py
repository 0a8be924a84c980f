"""A virtual null-modem cable: two pseudo-terminals joined by a thread copying bytes both ways.

``NullModem().a_path`` and ``.b_path`` are two tty devices (``/dev/pts/N``): whatever one program
writes to ``a_path`` comes out of ``b_path`` and back, like two serial ports linked by a crossed
cable (what ``socat -d -d pty,raw,echo=0 pty,raw,echo=0`` builds). Both slave ends are put in raw
mode (``tty.setraw``, no echo) so every byte passes unchanged; a program opening a path with
pyserial re-applies its own raw settings anyway.

Byte-level fault hooks (``a_to_b`` / ``b_to_a``: callables ``bytes -> bytes``, settable at any
time) transform each chunk as it crosses: inject noise, corrupt a CRC, drop bytes. ``capture``
records every chunk with its direction and time, like a sniffer on an RS-485 bus
(:meth:`bus_bytes` joins them in order). Baud rates do not exist on a pty: bytes arrive as fast
as the thread copies them.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable

Hook = Callable[[bytes], bytes]

_CHUNK = 4096


class NullModem:
    """Two ptys bridged by a thread; ``close()`` (or ``with``) stops it and closes every descriptor."""

    def __init__(self, a_to_b: Hook | None = None, b_to_a: Hook | None = None, capture: bool = False) -> None:
        self.a_to_b = a_to_b
        self.b_to_a = b_to_a
        #: When True, ``captured`` gets ``(time, "a>b" | "b>a", bytes)`` per chunk (after the hook).
        self.capture = capture
        self.captured: list[tuple[float, str, bytes]] = []
        #: Bytes copied each way (after hooks).
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0
        self._lock = threading.Lock()
        self._master_a, self._slave_a = os.openpty()
        self._master_b, self._slave_b = os.openpty()
        for fd in (self._slave_a, self._slave_b):
            tty.setraw(fd)
        for fd in (self._master_a, self._master_b):
            os.set_blocking(fd, False)
        #: Bytes thrown away because the receiving end did not read them for 0.5 s (its buffer is full).
        self.bytes_dropped = 0
        #: The last exception a hook raised (the chunk then passed unchanged).
        self.hook_error: Exception | None = None
        self.a_path = os.ttyname(self._slave_a)
        self.b_path = os.ttyname(self._slave_b)
        self._stop_r, self._stop_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"nullmodem {self.a_path}<->{self.b_path}",
                                        daemon=True)
        self._thread.start()

    def __enter__(self) -> NullModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bus_bytes(self) -> bytes:
        """Everything captured, both directions, in the order it crossed (a bus sniffer's view)."""
        with self._lock:
            return b"".join(chunk for _, _, chunk in self.captured)

    def clear_capture(self) -> None:
        with self._lock:
            self.captured.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2.0)
        for fd in (self._master_a, self._slave_a, self._master_b, self._slave_b, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        masters = (self._master_a, self._master_b)
        while True:
            try:
                ready, _, _ = select.select([*masters, self._stop_r], [], [])
            except (OSError, ValueError):
                return
            if self._stop_r in ready:
                return
            for src in ready:
                try:
                    data = os.read(src, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: no process holds the slave open (we keep it open, so rare)
                    time.sleep(0.001)
                    continue
                forward = src == self._master_a
                hook = self.a_to_b if forward else self.b_to_a
                if hook is not None:
                    try:
                        data = bytes(hook(data))
                    except Exception as exc:  # a broken test hook must not kill the cable
                        self.hook_error = exc
                if not data:
                    continue
                self._write(self._master_b if forward else self._master_a, data)
                with self._lock:
                    if forward:
                        self.bytes_a_to_b += len(data)
                    else:
                        self.bytes_b_to_a += len(data)
                    if self.capture:
                        self.captured.append((time.monotonic(), "a>b" if forward else "b>a", data))

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                _, writable, _ = select.select([], [fd], [], 0.5)
                if not writable or self._closed:
                    self.bytes_dropped += len(view)
                    return
                continue
            except OSError:
                self.bytes_dropped += len(view)
                return
            view = view[n:]
