"""What one averaging period costs in the flux worker: the .ghg archive write, the live flux
computation, the whole round trip through the worker process, and reprocessing the archived file.

    .venv/bin/python bench/archive.py [--minutes 30] [--rate 20] [--repeat 3]

Data: the emulator's turbulence model seen by a CSAT3 + LI-7500 (3 % dropped sonic samples).
Prints medians in seconds, the archive size, and whether reprocessing reproduced every result.
"""

from __future__ import annotations

import argparse
import math
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe  # noqa: E402
from station.acquisition.periodblock import ArchiveSettings, JobConfig, PeriodBlock, TowerInfo  # noqa: E402
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
        for k in range(args.repeat):
            b = block(args.minutes, args.rate, 1_795_000_200 + k * period_s, k)
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
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
