"""What one averaging period costs in the flux worker: the .ghg archive write, the live flux
computation, the whole round trip through the worker process, and reprocessing the archived file,
beside reprocessing a LI-COR file of the same length.

    .venv/bin/python bench/archive.py [--minutes 30] [--rate 20] [--repeat 3]

Data: the emulator's turbulence model seen by a CSAT3 + LI-7500 (3 % dropped sonic samples), at
the instruments' resolution as the station keeps it (``at_instrument_resolution``); for contrast
the same block archived at full float64 precision (every value 17 digits, as the station wrote
before issue 19). The LI-COR file is the first real DE-Geb half hour (20 Hz LI-7200, 30 min).
Prints medians in seconds, the archive size, and whether reprocessing reproduced every result.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ec"))
LICOR_GHG = sorted((DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe  # noqa: E402
from station.acquisition.periodblock import ArchiveSettings, JobConfig, PeriodBlock, TowerInfo  # noqa: E402
from station.acquisition.resolution import at_instrument_resolution  # noqa: E402
from station.archive.writer import Archive  # noqa: E402
from station.flux.pipeline import Options  # noqa: E402
from station.processing.fluxjob import compute  # noqa: E402
from station.processing.fluxworker import FluxWorker  # noqa: E402
from station.reprocess.command import process_file  # noqa: E402

TOWER = TowerInfo("bench", 1.35, 103.8, 5.0, 3.0, None, 20.0, "sonic", "csat3", 0.0, "irga", "li7500",
                  (0.15, 0.0, 0.0))


def block(minutes: float, rate: float, start: int, seed: int) -> PeriodBlock:
    n = int(minutes * 60 * rate)
    spec = TurbulenceSpec()
    obs = observe(TurbulenceModel(spec, seed=seed).draw(n), spec.pressure_kpa)
    cols = {k: np.asarray(obs[k], dtype=float).copy() for k in ("u", "v", "w", "t_sonic", "co2", "h2o", "pressure")}
    cols["t_air"] = np.asarray(obs["temperature"], dtype=float)
    cols["diag_sonic"] = np.zeros(n)
    cols["diag_gas"] = np.full(n, 255.0)
    dropped = np.random.default_rng(seed).random(n) < 0.03
    for k in ("u", "v", "w", "t_sonic"):
        cols[k][dropped] = np.nan
    present = int(n - dropped.sum())
    return PeriodBlock(start, start + int(minutes * 60), rate, start + np.arange(n) / rate, cols, n, present)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    period_s = int(args.minutes * 60)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ArchiveSettings(tmp, max_disk_used_pct=100.0)
        archive = Archive(settings)
        write_s, compute_s, reprocess_s, sizes, identical = [], [], [], [], True
        full_s, full_sizes, licor_s = [], [], []
        for k in range(args.repeat):
            unrounded = block(args.minutes, args.rate, 1_795_000_200 + k * period_s, k)
            b = at_instrument_resolution(unrounded, TOWER)  # as the worker's run_job does
            full = Archive(ArchiveSettings(tmp + "/full", max_disk_used_pct=100.0)).write(unrounded, TOWER)
            full_sizes.append(full.stat().st_size)
            t = time.perf_counter()
            process_file(str(full), options=Options())
            full_s.append(time.perf_counter() - t)
            if LICOR_GHG:
                t = time.perf_counter()
                process_file(str(LICOR_GHG[0]), options=Options())
                licor_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            path = archive.write(b, TOWER)
            write_s.append(time.perf_counter() - t)
            sizes.append(path.stat().st_size)
            t = time.perf_counter()
            live = compute(b, TOWER, Options())
            compute_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            (row,) = process_file(str(path), options=Options()).rows
            reprocess_s.append(time.perf_counter() - t)
            identical &= all(live[x] == row.results[x] or (math.isnan(live[x]) and math.isnan(row.results[x]))
                             for x in live)
        outcomes: queue.Queue = queue.Queue()
        worker = FluxWorker(JobConfig(TOWER, Options(), ArchiveSettings(tmp + "/w", max_disk_used_pct=100.0)),
                            outcomes.put)
        worker.start()
        trip_s = []
        try:
            for k in range(args.repeat):
                b = block(args.minutes, args.rate, 1_796_000_400 + k * period_s, 10 + k)
                t = time.perf_counter()
                worker.submit(b)
                outcome = outcomes.get(timeout=600)
                trip_s.append(time.perf_counter() - t)
                assert outcome.status == "ok", outcome.error
        finally:
            worker.stop()
    n = int(args.minutes * 60 * args.rate)
    print(f"period: {args.minutes:g} min at {args.rate:g} Hz = {n} samples, {args.repeat} repeats (medians)")
    print(f"archive write (.ghg, atomic):      {statistics.median(write_s):.3f} s, "
          f"{statistics.median(sizes) / 2**20:.2f} MiB per file")
    print(f"live flux computation:             {statistics.median(compute_s):.3f} s")
    print(f"worker round trip (archive+flux):  {statistics.median(trip_s):.3f} s (submit -> outcome in the parent)")
    print(f"flux process on the archived file: {statistics.median(reprocess_s):.3f} s")
    print(f"reprocessed results bit-identical to live: {identical}")
    print(f"flux process, same block at float64 precision: {statistics.median(full_s):.3f} s, "
          f"{statistics.median(full_sizes) / 2**20:.2f} MiB per file")
    if licor_s:
        print(f"flux process on a LI-COR file ({LICOR_GHG[0].name}): {statistics.median(licor_s):.3f} s")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
