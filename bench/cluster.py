"""``flux process`` on a Dask distributed cluster: periods per second with 1 and 2 worker processes.

    .venv/bin/python bench/cluster.py [--files 48]

The DE-Geb .ghg files (shared/data/ec, 30-min LI-7200 periods) copied ``--files`` times into a
station tree, then processed with ``--jobs 1`` (no cluster) and on a real scheduler with one, then
two single-threaded worker processes (``dask scheduler`` / ``dask worker``, as on a real cluster).
Prints wall time, seconds per period and the speed-up of 2 workers over 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fluxedge.demo.servers import free_port  # noqa: E402

DEGEB = ROOT.parent / "shared" / "data" / "ec" / "degeb-hs50-li7200-20hz" / "raw"
DASK = str(Path(sys.executable).with_name("dask"))
CLI = [sys.executable, "-m", "fluxedge.cli", "flux", "process", "--tree"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def with_workers(n: int, root: Path, out: Path) -> float:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        time.sleep(1.0)
        procs += [subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                  for _ in range(n)]
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=60)
            client.run(lambda: __import__("station.reprocess.command"))  # imports warm, as on a running cluster
        return timed([*CLI, str(root), "-o", str(out), "--scheduler", address])
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=48, help="periods to process (default 48)")
    args = ap.parse_args()
    sources = sorted(DEGEB.glob("*.ghg"))
    with tempfile.TemporaryDirectory() as d:
        month = Path(d) / "raw" / "geb" / "2016" / "12"
        month.mkdir(parents=True)
        for k in range(args.files):
            shutil.copyfile(sources[k % len(sources)], month / f"{sources[k % len(sources)].stem}_{k}.ghg")
        root = Path(d) / "raw"
        local = timed([*CLI, str(root), "-o", str(Path(d) / "local"), "--jobs", "1"])
        one = with_workers(1, root, Path(d) / "one")
        two = with_workers(2, root, Path(d) / "two")
    n = args.files
    print(f"{n} periods: --jobs 1 {local:.1f} s ({local / n:.3f} s/period, whole process); "
          f"1 Dask worker {one:.1f} s ({one / n:.3f} s/period); 2 workers {two:.1f} s ({two / n:.3f} s/period); "
          f"speed-up 2 vs 1 worker {one / two:.2f}x")


if __name__ == "__main__":
    main()
