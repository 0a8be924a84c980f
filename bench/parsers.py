"""Decoded frames per second per instrument family (one core).

    .venv/bin/python bench/parsers.py [--frames N] [--repeat R]

Prints the median over R runs of decoding N frames fed in 64 KiB chunks (the batch path) and
fed frame by frame (what a 20 Hz serial read loop does).
"""

from __future__ import annotations

import argparse
import statistics
import time

from firmware_bridge import csat3, li7500
from firmware_bridge.turbulence import TurbulenceModel, observe


def stream(family, n: int) -> tuple[bytes, int]:
    obs = observe(TurbulenceModel(seed=1).draw(n), 100.0)
    data = family.encode_observation(obs, 0)
    return data, len(data) // n


def rate(family, data: bytes, chunk: int, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        parser = family.Parser()
        t0 = time.perf_counter()
        for i in range(0, len(data), chunk):
            parser.feed(data[i:i + chunk])
        times.append(time.perf_counter() - t0)
        assert parser.stats.frames_ok == n, parser.stats
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"{'family':8} {'frame B':>8} {'batch frames/s':>15} {'per-frame frames/s':>19}")
    for family in (csat3, li7500):
        data, size = stream(family, args.frames)
        batch = rate(family, data, 65536, args.frames, args.repeat)
        small_n = min(args.frames, 20_000)
        small = rate(family, stream(family, small_n)[0], size, small_n, args.repeat)
        print(f"{family.Parser.family:8} {size:>8} {batch:>15,.0f} {small:>19,.0f}")


if __name__ == "__main__":
    main()
