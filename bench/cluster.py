"""``flux process`` on a Dask distributed cluster: scaling from 1 to 2 worker processes, and a site-year.

    .venv/bin/python bench/cluster.py [--files 192]      # --jobs 1, then 1 and 2 Dask workers
    .venv/bin/python bench/cluster.py --site-year         # 17,520 half hours on 2 Dask workers

The DE-Geb .ghg files (shared/data/ec, 30-min 20 Hz LI-7200 periods) linked ``--files`` times into
a station tree (``raw/geb/YYYY/MM/``), then processed with ``--jobs 1`` (no cluster) and on a real
scheduler with one, then two single-threaded worker processes (``dask scheduler`` / ``dask worker``,
as on a real cluster). ``--site-year``: a whole year of half hours (2017: 365 x 48 = 17,520 files,
named by their half hour, symbolic links to the four real files, so the page cache holds them: the
figure is computing, not a shared file system's reading) on 2 workers only.
Prints wall time, seconds per period, the speed-up of 2 workers over 1, and EddyPro's time for the
same periods at its measured 4.7 s per half hour on these 2-core machines (issue 19), for scale.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fluxedge.demo.servers import free_port  # noqa: E402

DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", ROOT.parent / "shared" / "data" / "ec"))
DEGEB = DATA / "degeb-hs50-li7200-20hz" / "raw"
DASK = str(Path(sys.executable).with_name("dask"))
CLI = [sys.executable, "-m", "fluxedge.cli", "flux", "process", "--tree"]
#: EddyPro 7.0.9 per half hour of 20 Hz data on these 2-core machines [s] (issue 19)
EDDYPRO_S_PER_PERIOD = 4.7
SITE_YEAR = 365 * 48


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


def station_tree(d: Path, n: int) -> Path:
    """``d/raw/geb/YYYY/MM/<half hour>_AIU-1359.ghg``: ``n`` half hours from 2017-01-01, each a
    symbolic link to one of the four real files in turn."""
    sources = sorted(DEGEB.glob("*.ghg"))
    start = datetime(2017, 1, 1)
    for k in range(n):
        when = start + timedelta(minutes=30 * k)
        month = d / "raw" / "geb" / f"{when:%Y}" / f"{when:%m}"
        month.mkdir(parents=True, exist_ok=True)
        (month / f"{when:%Y-%m-%dT%H%M%S}_AIU-1359.ghg").symlink_to(sources[k % len(sources)])
    return d / "raw"


def periods_in(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) - 1 for p in out.glob("*.csv"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=192, help="periods for the scaling run (default 192)")
    ap.add_argument("--site-year", action="store_true", help=f"{SITE_YEAR} periods on 2 workers instead")
    args = ap.parse_args()
    n = SITE_YEAR if args.site_year else args.files
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        root = station_tree(d, n)
        if args.site_year:
            two = with_workers(2, root, d / "two")
            assert periods_in(d / "two") == n, "periods missing from the output"
            print(f"site-year, {n} periods on 2 Dask workers: {two:.0f} s ({two / 60:.1f} min, {two / n:.4f} s/period, "
                  f"{n / two:.1f} periods/s); EddyPro at {EDDYPRO_S_PER_PERIOD} s/period: "
                  f"{n * EDDYPRO_S_PER_PERIOD / 3600:.1f} h on one core, {n * EDDYPRO_S_PER_PERIOD / two:.0f}x as long")
            return
        local = timed([*CLI, str(root), "-o", str(d / "local"), "--jobs", "1"])
        one = with_workers(1, root, d / "one")
        two = with_workers(2, root, d / "two")
        assert periods_in(d / "local") == periods_in(d / "one") == periods_in(d / "two") == n
    print(f"{n} periods: --jobs 1 {local:.1f} s ({local / n:.3f} s/period, whole process); "
          f"1 Dask worker {one:.1f} s ({one / n:.3f} s/period); 2 workers {two:.1f} s ({two / n:.3f} s/period); "
          f"speed-up 2 vs 1 worker {one / two:.2f}x; EddyPro {EDDYPRO_S_PER_PERIOD} s/period")


if __name__ == "__main__":
    main()
