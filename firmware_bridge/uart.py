"""What a UART receives when the two ends of a serial line disagree on the baud rate.

Used by the emulator's ``wrong_baud`` fault and whenever a driver opens an emulated port at a rate
the emulated instrument is not running at: the bytes are serialised as 8N1 frames (start bit 0,
eight data bits LSB first, stop bit 1, idle line 1) at the sender's rate and sampled at bit
centres at the receiver's rate, re-arming on each 1 -> 0 edge as a real UART does. The result is
the familiar garbage of a mis-set terminal, not random noise.
"""

from __future__ import annotations

import termios

import numpy as np

#: termios speed constants -> bits per second (for reading a pty's configured rate).
TERMIOS_BAUD = {getattr(termios, f"B{rate}"): rate for rate in (
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800) if hasattr(termios, f"B{rate}")}


def line_bits(data: bytes) -> np.ndarray:
    """The line level per bit time for ``data`` sent back to back as 8N1 frames."""
    raw = np.frombuffer(data, dtype=np.uint8)
    bits = np.ones((len(raw), 10), dtype=np.uint8)
    bits[:, 0] = 0
    bits[:, 1:9] = (raw[:, None] >> np.arange(8)) & 1
    return bits.ravel()


def resample(data: bytes, tx_baud: int, rx_baud: int) -> bytes:
    """Bytes a receiver at ``rx_baud`` decodes from ``data`` sent at ``tx_baud`` (8N1 both ends)."""
    if tx_baud == rx_baud or not data:
        return data
    bits = line_bits(data)
    r = tx_baud / rx_baud  # sender bit times per receiver bit time
    falling = np.flatnonzero((bits == 0) & (np.concatenate(([1], bits[:-1])) == 1))
    out = bytearray()
    armed_from = 0
    for edge in falling.tolist():  # one iteration per received byte: emulator side only
        if edge < armed_from:
            continue
        tau0 = edge / r  # start of the start bit, in receiver bit times
        idx = ((tau0 + np.arange(1.5, 9.5)) * r).astype(np.int64)
        levels = np.where(idx < len(bits), bits[np.minimum(idx, len(bits) - 1)], 1)
        out.append(int((levels << np.arange(8)).sum()))
        armed_from = int(np.ceil((tau0 + 9.5) * r))
    return bytes(out)


def pty_baud(fd: int) -> int | None:
    """The rate the other end of a pty was configured at (a pty's termios is shared), or None."""
    try:
        return TERMIOS_BAUD.get(termios.tcgetattr(fd)[5])
    except termios.error:
        return None
