"""The emulator side of an instrument: observations in, the instrument's exact bytes out.

Every family module provides a ``Device`` subclass. The emulator (:mod:`firmware_bridge.emulator`)
owns the clock, the port (pty or TCP) and byte-level faults (noise, truncation, silence,
disconnect, wrong baud); a ``Device`` owns what only the instrument knows: how one sample is
framed, how a frame looks with a bad checksum, what its diagnostics say in rain, behind an
obstruction or at low signal, and how it answers commands.
"""

from __future__ import annotations

import numpy as np

#: Sensor conditions a device can be put in; each family maps them onto its own diagnostic bits.
CONDITIONS = ("rain", "obstruction", "low_signal")


class Device:
    """Base class: subclasses implement :meth:`frames` and usually :meth:`reply`."""

    #: Registry name of the family this device emulates.
    family = ""
    #: Byte that ends a command (``b"\\r"``, ``b"\\n"``); ``None`` for single-byte commands.
    command_terminator: bytes | None = b"\r"

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = None) -> None:
        self.rate_hz = rate_hz
        self.baud = baud
        self.condition: str | None = None
        #: False while the instrument is in terminal/configuration mode and sends no data.
        self.streaming = True
        self.rng = np.random.default_rng(seed)
        self._pending = b""

    # -- data ---------------------------------------------------------------------------------
    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        """One wire frame per sample of ``obs`` (keys as :func:`turbulence.observe` returns);
        ``first_index`` is the running sample number of the first one (counters derive from it)."""
        raise NotImplementedError

    def corrupt(self, frame: bytes) -> bytes:
        """The frame with its checksum no longer matching (default: flip one bit of a middle
        byte). Families without a checksum override this to damage their framing instead."""
        if len(frame) < 3:
            return frame
        i = len(frame) // 2
        return frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1:]

    def banner(self) -> bytes:
        """What the instrument prints when it powers up or reappears on the line."""
        return b""

    # -- commands -----------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Bytes from the driver in, the device's replies out (commands may arrive split)."""
        self._pending += data
        replies = []
        if self.command_terminator is None:
            commands, self._pending = [bytes([b]) for b in self._pending], b""
        else:
            *commands, self._pending = self._pending.split(self.command_terminator)
            if len(self._pending) > 4096:
                self._pending = b""
        for command in commands:
            replies.append(self.reply(command))
        return b"".join(replies)

    def reply(self, command: bytes) -> bytes:
        """The answer to one command (without its terminator); unknown commands are ignored."""
        return b""
