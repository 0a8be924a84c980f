"""What monitoring costs the station: the per-batch tap on each driver, the 1-s alarm tick, the
60-s diagnostics tick (a diag batch committed to the spool) and the status file.

    .venv/bin/python bench/monitor.py [--seconds 60] [--rate 20]

Real parsers decode real emulator frames (CSAT3, LI-7500, LI-7700), one frame per read as on a
serial line at 20 Hz; prints microseconds per call and the share of one core they add up to.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# bench/station.py would shadow the station package (the script's folder comes first on sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_bridge.families import family
from firmware_bridge.turbulence import TurbulenceModel, observe
from station import config as station_config
from station.acquisition.readers import InstrumentReader
from station.health.monitor import Monitor
from station.outbox.spool import Spool

FAMILIES = {"sonic": "csat3", "irga": "li7500", "ch4": "li7700"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="interval of data to push through (default 60)")
    ap.add_argument("--rate", type=float, default=20.0, help="samples per second per instrument (default 20)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        toml = Path(d) / "station.toml"
        insts = "".join(f'[[instruments]]\nname = "{n}"\ndriver = "{f}"\nport = "/dev/null-{n}"\n'
                        for n, f in FAMILIES.items())
        toml.write_text(f'[site]\nid = "bench"\nlatitude_deg = 0\nlongitude_deg = 0\n[acquisition]\n'
                        f'sample_rate_hz = {args.rate}\n{insts}[mqtt]\n[spool]\npath = "{d}/spool.sqlite"\n')
        cfg, _ = station_config.load(toml)
        readers = {i.name: InstrumentReader(i, args.rate) for i in cfg.instruments}
        spool = Spool(cfg.spool.path)
        monitor = Monitor(cfg, readers, spool)
        n = int(args.seconds * args.rate)
        obs = observe(TurbulenceModel(seed=1).draw(n), 100.0)
        tap_s = 0.0
        calls = 0
        for name, fam_name in FAMILIES.items():
            fam = family(fam_name)
            frames = fam.Device(rate_hz=args.rate, seed=2).frames(obs, 0)
            driver = readers[name].driver
            batches = [driver.parser.feed(f) for f in frames]
            for b in batches:
                if not b.n:
                    continue
                t0 = time.perf_counter()
                driver.on_batch(b, 0.0)  # the reader's own callback + the tap, as the driver calls them
                tap_s += time.perf_counter() - t0
                calls += 1
        reader_only = 0.0
        for name in FAMILIES:
            reader = readers[name]
            t0 = time.perf_counter()
            for _ in range(1000):
                reader._on_batch(batches[-1], 0.0)
            reader_only += (time.perf_counter() - t0) / 1000 / len(FAMILIES)
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            monitor.fast_tick(time.time(), time.monotonic())
        fast = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        monitor.diagnostics_tick(time.time(), time.monotonic())
        diag = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(20):
            monitor.write_status(time.time(), time.monotonic())
        status = (time.perf_counter() - t0) / 20
        received = [m.payload for m in spool.oldest(5)]  # the one diag batch
        per_batch = tap_s / calls
        print(f"instruments: {', '.join(FAMILIES.values())} at {args.rate:g} Hz, interval {args.seconds:g} s")
        print(f"driver callback (reader + tap): {per_batch * 1e6:.1f} us per batch "
              f"(reader alone {reader_only * 1e6:.1f} us)")
        print(f"alarm tick (1 s): {fast * 1e6:.0f} us")
        print(f"diagnostics tick ({n * len(FAMILIES)} samples, diag batch committed): {diag * 1e3:.2f} ms; "
              f"payload {len(received[-1])} bytes")
        print(f"status file write: {status * 1e3:.2f} ms")
        per_s = per_batch * args.rate * len(FAMILIES) + fast + diag / 60.0 + status / 5.0
        print(f"monitoring total: {per_s * 1e3:.2f} ms of CPU per second = {100 * per_s:.3f} % of one core "
              f"(1-s ticks, 60-s diagnostics, 5-s status)")


if __name__ == "__main__":
    main()
