"""What a scientist waits for: a site-year out of InfluxDB as a period frame, its AmeriFlux export,
the carbon budget and the plots, with the process's peak resident memory.

    .venv/bin/python bench/science.py

A synthetic site-year (tests/siteyear.py: 17,520 half-hours of fluxes, QC, u*) and one met record
a minute (525,600 records of TA, RH, VPD, SW_IN, P) are written into a temporary influxd; then
``collector.science.frame.load`` reads the year back (flux in 60-day, met in 5-day InfluxQL
chunks, met averaged per half-hour), ``export.write`` writes the AmeriFlux file,
``budget.carbon_budget`` runs hesseflux, and the four plots the data allow are drawn.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from siteyear import site_year  # noqa: E402

from collector.config import InfluxConfig  # noqa: E402
from collector.query import create_database  # noqa: E402
from collector.science import budget, export, frame, plots  # noqa: E402
from fluxedge.demo.servers import start_influxd  # noqa: E402

STATION = "bench-01"


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(config: InfluxConfig, lines: list[str]) -> None:
    for i in range(0, len(lines), 20000):
        req = urllib.request.Request(f"{config.url}/write?db={config.database}&precision=s",
                                     data="\n".join(lines[i:i + 20000]).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=60):
            pass


def analyse(url: str, directory: str) -> None:
    config = InfluxConfig(url=url, database="bench")
    before = vm_hwm_mb()
    site = frame.SiteTime.of("Etc/GMT+6")
    t0 = time.perf_counter()
    year = frame.load(config, STATION, datetime(2025, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 6, tzinfo=UTC),
                      site=site, site_id="US-Syn")
    t_load = time.perf_counter() - t0
    loaded = vm_hwm_mb()
    t0 = time.perf_counter()
    export.write(year, directory)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    budget.carbon_budget(year)
    t_budget = time.perf_counter() - t0
    t0 = time.perf_counter()
    for kind in ("timeseries", "diurnal", "fingerprint"):
        plots.save(plots.PLOTS[kind](year), Path(directory) / f"{kind}.png")
    t_plots = time.perf_counter() - t0
    print(f"site-year ({len(year):,} half-hours, {len(year.columns)} columns): load {t_load:.1f} s, "
          f"AmeriFlux export {t_export:.2f} s, budget {t_budget:.1f} s, three plots {t_plots:.1f} s")
    print(f"peak resident memory (VmHWM): {before:.0f} MB with the modules imported, {loaded:.0f} MB after "
          f"the load, {vm_hwm_mb():.0f} MB after all")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--analyse":
        analyse(sys.argv[2], sys.argv[3])
        return
    synthetic, _ = site_year(1)
    ends = synthetic.index.as_unit("s").asi8
    flux_lines = []
    for t, row in zip(ends, synthetic[["FC", "FC_SSITC_TEST", "FC_RANDUNC", "USTAR"]].to_numpy().tolist(),
                      strict=True):
        fields = ",".join(f"{n}={v!r}" for n, v in zip(("FC", "FC_SSITC_TEST", "FC_RANDUNC", "USTAR"), row,
                                                        strict=True) if math.isfinite(v))
        if fields:
            flux_lines.append(f"flux,station={STATION} {fields},period_s=1800i {t}")
    minutes = np.arange(ends[0] - 1800 + 60, ends[-1] + 1, 60)
    met = synthetic[["TA", "RH", "VPD", "SW_IN"]].reindex(
        synthetic.index.repeat(30)).to_numpy()  # each half-hour's value for its 30 minutes
    met_lines = [f"met,station={STATION} TA={r[0]!r},RH={r[1]!r},VPD={r[2]!r},SW_IN={r[3]!r},P=0.0 {t}"
                 for t, r in zip(minutes, met.tolist(), strict=True) if all(map(math.isfinite, r))]
    with tempfile.TemporaryDirectory() as d:
        server = start_influxd(Path(d) / "influxd")
        try:
            config = InfluxConfig(url=f"http://127.0.0.1:{server.port}", database="bench")
            create_database(config, "bench")
            t0 = time.perf_counter()
            write(config, flux_lines + met_lines)
            print(f"wrote {len(flux_lines):,} flux and {len(met_lines):,} met points "
                  f"in {time.perf_counter() - t0:.1f} s")
            # the analysis in a fresh process: its peak memory is the scientist's, not the data maker's
            subprocess.run([sys.executable, __file__, "--analyse", config.url, d], check=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
