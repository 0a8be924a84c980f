"""Every period of the real raw data in shared/data/ec, through ``fluxedge flux process``, against
EddyPro 7.0.9 run with the same settings: fluxes within 0.2 % (an absolute floor only near zero), the
same lags and flags, wind direction within 0.5 degree, spectral correction factors within 0.2 %."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EC_DATA

from station.reprocess.command import process_file

EC = EC_DATA
FLUXPART = EC / "fluxpart-csat3-openpath-20hz"
DEGEB = EC / "degeb-hs50-li7200-20hz"
#: ours -> (EddyPro full_output column, absolute floor)
CHECKS = {"FC": ("co2_flux", 1e-3), "FH2O": ("h2o_flux", 1e-3), "LE": ("LE", 0.05), "H": ("H", 0.05),
          "TAU": ("Tau", 1e-4), "USTAR": ("u*", 1e-4)}
SCF = {"FC_SCF": "co2_scf", "LE_SCF": "h2o_scf", "H_SCF": "H_scf", "TAU_SCF": "Tau_scf"}
FLAGS = {"FC_SSITC_TEST": "qc_co2_flux", "LE_SSITC_TEST": "qc_LE", "H_SSITC_TEST": "qc_H", "TAU_SSITC_TEST": "qc_Tau"}


def reference(site: Path) -> dict[str, dict[str, str]]:
    path = next((site / "eddypro").glob("*_full_output.csv"))
    rows = list(csv.reader(path.open()))
    return {r[0]: dict(zip(rows[1], r, strict=False)) for r in rows[3:] if r}


def raw_files(site: Path) -> list[Path]:
    return sorted(p for p in (site / "raw").iterdir() if p.suffix in (".ghg", ".dat"))


CASES = [(site, f) for site in (FLUXPART, DEGEB) for f in raw_files(site)]


@pytest.mark.parametrize(("site", "raw"), CASES, ids=[f.name for _, f in CASES])
def test_period_matches_eddypro(site, raw):
    metadata = str(site / "eddypro" / "fluxpart.metadata") if raw.suffix == ".dat" else None
    outcome = process_file(str(raw), metadata)
    assert outcome.error is None and len(outcome.rows) == 1
    ours = outcome.rows[0].results
    for key in ("FC", "LE", "H", "TAU", "USTAR", "ZL", "FETCH_MAX", "FETCH_90"):
        assert key in ours and ours[key] == ours[key], f"{raw.name}: {key} missing"  # every period is processed
    ref = reference(site).get(raw.name)
    if ref is None:
        return  # a period without a reference row: processed, nothing to compare
    for key, (col, floor) in CHECKS.items():
        theirs = float(ref[col])
        assert abs(ours[key] - theirs) <= max(0.002 * abs(theirs), floor), f"{raw.name} {key}: {ours[key]} vs {theirs}"
    for key, col in SCF.items():
        assert ours[key] == pytest.approx(float(ref[col]), rel=0.002), f"{raw.name} {key}"
    wd = (ours["WD"] - float(ref["wind_dir"]) + 180.0) % 360.0 - 180.0
    assert abs(wd) <= 0.5, f"{raw.name} WD: {ours['WD']} vs {ref['wind_dir']}"
    assert ours["CO2_LAG"] == pytest.approx(float(ref["co2_time_lag"]))
    assert ours["H2O_LAG"] == pytest.approx(float(ref["h2o_time_lag"]))
    for key, col in FLAGS.items():
        assert ours[key] == float(ref[col]), f"{raw.name} {key}"
    for test in ("spikes_hf", "amplitude_resolution_hf", "drop_out_hf", "absolute_limits_hf", "skewness_kurtosis_hf",
                 "skewness_kurtosis_sf", "attack_angle_hf", "non_steady_wind_hf"):
        assert ours[f"VM97_{test.upper()}"] == float(ref[test]), f"{raw.name} {test}"
    assert ours["ET"] == pytest.approx(float(ref["ET"]), rel=0.002, abs=1e-4)
    for key, (col, _) in {"U": ("u_spikes", 0), "W": ("w_spikes", 0), "TS": ("ts_spikes", 0),
                          "CO2": ("co2_spikes", 0)}.items():
        assert ours[f"{key}_SPIKES"] == float(ref[col]), f"{raw.name} {key} spikes"
    for key, col in (("H_RANDUNC", "rand_err_H"), ("FC_RANDUNC", "rand_err_co2_flux"), ("TAU_RANDUNC", "rand_err_Tau")):
        assert ours[key] == pytest.approx(float(ref[col]), rel=0.02), f"{raw.name} {key}"
    for key, col in (("FETCH_MAX", "x_peak"), ("FETCH_70", "x_70%"), ("FETCH_90", "x_90%"), ("ZL", "(z-d)/L")):
        assert ours[key] == pytest.approx(float(ref[col]), rel=0.02), f"{raw.name} {key}"


def test_cli_processes_everything_and_reports_a_bad_file(tmp_path):
    bad = tmp_path / "2016-12-11T233000_AIU-1359.ghg"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    good = [tmp_path / f.name for f in raw_files(DEGEB)]
    for f in raw_files(DEGEB):
        shutil.copy(f, tmp_path / f.name)
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", *map(str, good), str(bad),
                           "--jobs", "2", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1  # one file failed
    assert bad.name in proc.stderr and "Traceback" not in proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["TIMESTAMP_END"] for r in rows] == ["201612112030", "201612112100", "201612112130", "201612112200"]
    ref = reference(DEGEB)["2016-12-11T200000_AIU-1359.ghg"]
    assert float(rows[0]["FC"]) == pytest.approx(float(ref["co2_flux"]), rel=0.02)
    assert all(r["FETCH_90"] != "-9999" for r in rows)
