"""The scientists' commands over a real InfluxDB holding a synthetic site-year (tests/siteyear.py):
``fluxedge budget`` gives what the budget module gives the same frame, ``fluxedge plot all`` draws
what the data allow and says why it skips the rest, ``fluxedge export --format fluxnet --gapfilled``
adds the gap-filled and partitioned variables."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import urllib.request

import pytest
from collector_helpers import influx
from siteyear import site_year

from collector.science import budget

CLI = [sys.executable, "-m", "fluxedge.cli"]
STATION = "syn-01"
FLUX = ("FC", "FC_SSITC_TEST", "FC_RANDUNC", "FCH4", "FCH4_SSITC_TEST", "FCH4_RANDUNC", "USTAR")
MET = ("TA", "RH", "VPD", "SW_IN", "P")


def _lines(frame, measurement: str, names: tuple[str, ...]) -> list[str]:
    ends = frame.index.as_unit("s").asi8
    values = frame[list(names)].to_numpy()
    out = []
    for t, row in zip(ends, values, strict=True):
        fields = ",".join(f"{n}={v!r}" for n, v in zip(names, row.tolist(), strict=True) if math.isfinite(v))
        if fields:
            period = ",period_s=1800i" if measurement == "flux" else ""
            out.append(f"{measurement},station={STATION} {fields}{period} {t}")
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory, influxd):
    tmp = tmp_path_factory.mktemp("sciencecli")
    db = influx(influxd.port, "syn")
    frame, truth = site_year(1)
    lines = _lines(frame, "flux", FLUX) + _lines(frame, "met", MET)
    for i in range(0, len(lines), 5000):
        body = "\n".join(lines[i:i + 5000]).encode()
        req = urllib.request.Request(f"{db.url}/write?db=syn&precision=s", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204
    config = tmp / "collector.toml"
    config.write_text(f'[mqtt]\nport = 1883\n[influxdb]\nurl = "{db.url}"\ndatabase = "syn"\n'
                      f'[alarms]\nenabled = false\n'
                      f'[[site]]\nstation = "{STATION}"\nid = "US-Syn"\ntime_zone = "Etc/GMT+6"\n')
    return tmp, config, frame, truth


def fluxedge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


SPAN = ["--station", STATION, "--from", "2025-01-01", "--to", "2026-01-01"]


def test_the_budget_command_gives_the_modules_result(stored):
    tmp, config, frame, truth = stored
    done = fluxedge("budget", *SPAN, "--by", "year", "--csv", str(tmp / "year.csv"), "--plot",
                    str(tmp / "cumulative.png"), "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "NEE" in done.stdout and "g C m-2" in done.stdout
    with (tmp / "year.csv").open() as f:
        (year,) = list(csv.DictReader(f))
    direct = budget.carbon_budget(frame).yearly.iloc[0]
    for name in ("NEE", "GPP_NT", "RECO_NT", "FCH4_C"):
        assert float(year[name]) == pytest.approx(direct[name], rel=1e-9, abs=1e-9), name
    assert abs(float(year["NEE"]) - truth["NEE"]) < 25  # tests/test_budget.py says why 25 g C m-2
    assert (tmp / "cumulative.png").stat().st_size > 10_000


def test_plot_all_draws_what_the_data_allow(stored):
    tmp, config, _, _ = stored
    out = tmp / "plots"
    done = fluxedge("plot", "all", *SPAN, "-o", str(out), "--image-format", "svg", "-c", str(config))
    assert done.returncode == 0, done.stderr
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == [f"{STATION}_{k}.svg" for k in ("diurnal", "fingerprint", "timeseries")], drawn
    # no radiometer, no wind direction, no diagnostics: said, one line each, no traceback
    for kind in ("energy_balance", "footprint", "health"):
        assert f"{kind}: skipped:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    one = fluxedge("plot", "energy_balance", *SPAN, "-o", str(out), "-c", str(config))
    assert one.returncode == 2 and one.stderr.startswith("fluxedge: error: energy_balance:") and "NETRAD" in one.stderr


def test_a_fluxnet_fullset_carries_the_gapfilled_variables(stored):
    tmp, config, _, _ = stored
    out = tmp / "fluxnet"
    out.mkdir()
    done = fluxedge("export", "--format", "fluxnet", "--gapfilled", *SPAN, "-o", str(out), "-c", str(config))
    assert done.returncode == 0, done.stderr
    (path,) = out.iterdir()
    assert path.name == "FLX_US-Syn_FLUXEDGE_FULLSET_HH_2025-2025_1-1.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 17520 and rows[0]["TIMESTAMP_START"] == "202501010000"
    for name in ("FC", "NEE_F", "NEE_F_QC", "NEE_F_UNC", "GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT", "FCH4_F"):
        assert name in rows[0], name
    assert all(r["NEE_F"] != "-9999" for r in rows)  # filled: no gap left
    assert sum(r["FC"] == "-9999" for r in rows) > 1000  # the measured series keeps its gaps
    refused = fluxedge("export", "--gapfilled", *SPAN, "-o", str(out), "-c", str(config))
    assert refused.returncode == 2 and "--format fluxnet" in refused.stderr
