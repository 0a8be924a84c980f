"""Decoded frames per second per instrument family (one core).

    .venv/bin/python bench/parsers.py [--frames N] [--repeat R] [--family NAME ...]

For every streaming family, the emulator's own Device encodes N samples of synthetic turbulence;
the bench prints the median over R runs of decoding them fed in 64 KiB chunks (the batch path:
a replayed capture, a reprocessing run) and fed frame by frame (what a 20 Hz serial read loop
does). Modbus is measured on a capture of RTU request/response pairs. Target: CSAT3 batch path
>= 200,000 frames/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

from firmware_bridge.families import FAMILIES, family
from firmware_bridge.turbulence import TurbulenceModel, observe


def stream(name: str, n: int) -> list[bytes]:
    """``n`` wire frames of family ``name``."""
    fam = family(name)
    if fam.TRANSPORT == "modbus":
        from firmware_bridge.modbus.rtu import sample_capture

        return sample_capture(n)
    obs = observe(TurbulenceModel(seed=1).draw(n), 100.0)
    device = fam.Device(rate_hz=20, seed=1)
    head = device.banner() if fam.TRANSPORT == "tcp" else b""
    frames = device.frames(obs, 0)
    return ([head] if head else []) + frames


def rate(name: str, frames: list[bytes], chunked: bool, repeat: int) -> tuple[float, int]:
    fam = family(name)
    data = b"".join(frames)
    pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)] if chunked else frames
    times, decoded = [], 0
    for _ in range(repeat):
        parser = fam.Parser()
        t0 = time.perf_counter()
        for piece in pieces:
            parser.feed(piece)
        times.append(time.perf_counter() - t0)
        decoded = parser.stats.frames_ok
    return decoded / statistics.median(times), decoded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families")
    args = ap.parse_args()
    print(f"{'family':10} {'frame B':>8} {'batch frames/s':>15} {'per-frame frames/s':>19}")
    for name in args.family or list(FAMILIES):
        frames = stream(name, args.frames)
        size = sum(map(len, frames)) / len(frames)
        batch, decoded = rate(name, frames, True, args.repeat)
        if decoded < 0.99 * args.frames:
            raise SystemExit(f"{name}: only {decoded} of {args.frames} frames decoded; bench invalid")
        small_n = min(args.frames, 20_000)
        small, _ = rate(name, stream(name, small_n), False, args.repeat)
        print(f"{name:10} {size:>8.1f} {batch:>15,.0f} {small:>19,.0f}", flush=True)


if __name__ == "__main__":
    main()
