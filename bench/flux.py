"""Flux engine speed and memory on the real 20 Hz LI-7200 half hours (shared/data/ec/degeb...).

    .venv/bin/python bench/flux.py [--repeat 7] [--month-files 1440] [--jobs 2]

Prints, each as the median of ``--repeat`` runs on one core:
  1. one 30-min period (36,000 samples: u v w ts co2 h2o + pressure) through the full default
     chain (despiking, rotation, lags, detrending, fluxes, spectral corrections, QC, footprint,
     random errors), excluding file reading;
  2. the same including reading its .ghg file;
  3. peak resident memory of a fresh process that reads and processes one period: its VmHWM
     (/proc/self/status, what the kernel had to give it), the resident memory it had after importing
     the engine (interpreter + NumPy + engine) and the difference, the period's own peak; and its
     PSS (/proc/self/smaps_rollup: shared pages counted once) after the period;
  4. a site-month: ``--month-files`` half hours (symlinks to the four real files) through
     ``fluxedge flux process --jobs N``, wall time.
Targets (issue 4): <= 20 ms, <= 60 ms, <= 50 MB above the loaded interpreter, <= 120 s with 2 jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from station.processing.runtime import configure_numeric_process

configure_numeric_process()  # as the fluxedge command does: one BLAS thread, malloc keeps freed memory

from station.flux.pipeline import process  # noqa: E402
from station.rawdata import read_raw  # noqa: E402
from station.reprocess.command import ENGINE_VARIABLES, setup_for  # noqa: E402

DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ec"))
GHG = sorted((DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))
WANTED = ("u", "v", "w", "ts", "pa", "co2", "h2o")


def one_period(path: Path, read: bool, raw=None):
    if read:
        raw = read_raw(path, variables=ENGINE_VARIABLES)  # as fluxedge flux process reads
    columns = {c: raw.columns[c] for c in WANTED if c in raw.columns}
    return process(columns, setup_for(raw, raw.n_samples / raw.rate_hz))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def status_kb(name: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) [kB]."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


def pss_kb() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


def memory_child(path: Path) -> None:
    """In a fresh process (the engine imported, nothing else done): read and process one period,
    print the resident figures as JSON."""
    loaded = status_kb("VmRSS")
    one_period(path, True)
    print(json.dumps({"loaded_kb": loaded, "hwm_kb": status_kb("VmHWM"), "pss_kb": pss_kb()}))


def peak_resident(path: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(path)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--month-files", type=int, default=1440)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--memory-child", metavar="GHG", help=argparse.SUPPRESS)  # the fresh process of figure 3
    args = ap.parse_args()
    if args.memory_child:
        memory_child(Path(args.memory_child))
        return
    raw = read_raw(GHG[0])
    one_period(GHG[0], False, raw)  # warm caches
    engine = median_ms(lambda: one_period(GHG[0], False, raw), args.repeat)
    print(f"{'engine only, one 36,000-sample period':45} {engine:8.1f} ms")
    total = median_ms(lambda: one_period(GHG[0], True), args.repeat)
    print(f"{'reading the .ghg + engine':45} {total:8.1f} ms")
    mem = peak_resident(GHG[0])
    print(f"{'peak resident (VmHWM), fresh process, 1 period':45} {mem['hwm_kb'] / 1024:8.1f} MB")
    print(f"{'  resident after importing the engine':45} {mem['loaded_kb'] / 1024:8.1f} MB")
    print(f"{'  the period above that (read + process)':45} {(mem['hwm_kb'] - mem['loaded_kb']) / 1024:8.1f} MB")
    print(f"{'  PSS after the period':45} {mem['pss_kb'] / 1024:8.1f} MB")
    if args.month_files:
        with tempfile.TemporaryDirectory() as tmp:
            links = []
            for i in range(args.month_files):
                link = Path(tmp) / f"p{i:05d}_{GHG[i % len(GHG)].name}"
                link.symlink_to(GHG[i % len(GHG)])
                links.append(str(link))
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", *links, "--jobs",
                                   str(args.jobs), "-o", str(Path(tmp) / "month.csv")], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
        print(f"{f'site-month, {args.month_files} half hours, --jobs {args.jobs}':45} {wall:8.1f} s")


if __name__ == "__main__":
    main()
