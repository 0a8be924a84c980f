"""Other towers' raw files: the four SmartFlux / LI-7550 format variants in
shared/data/ec/synthetic-variants (their README says what each carries), every period through
``fluxedge flux process`` against EddyPro 7.0.9 run on exactly these files.

Tolerances are the issue's: fluxes within 0.2 % (an absolute floor only near zero), the same time
lags and 0/1/2 flags, wind direction within 0.5 degree, spectral correction factors within 0.2 %,
and the records each diagnostic word excluded exactly as EddyPro counted them (``*_DIAG_NREX``).
The same comparisons run on the two real data sets beside them (tests/test_eddypro_reference.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import EC_DATA
from eddypro_output import full_output_rows

from station.reprocess.command import process_file

VARIANTS = EC_DATA / "synthetic-variants"
#: ours -> (EddyPro full_output column, absolute floor, factor to our units)
FLUXES = {"FC": ("co2_flux", 1e-3, 1.0), "FH2O": ("h2o_flux", 1e-3, 1.0), "LE": ("LE", 0.05, 1.0),
          "H": ("H", 0.05, 1.0), "TAU": ("Tau", 1e-4, 1.0), "USTAR": ("u*", 1e-4, 1.0),
          "FCH4": ("ch4_flux", 0.01, 1e3),
          # and what they depend on: the ambient T and p EddyPro picks, stability, the LI-7700's
          # mole fraction (times its multiplier A)
          "ZL": ("(z-d)/L", 1e-4, 1.0), "CH4": ("ch4_mole_fraction", 0.1, 1e3)}
#: ours [degC, kPa] -> (EddyPro column [K, Pa], absolute tolerance in our unit)
AMBIENT = {"TA": ("air_temperature", 0.01), "PA": ("air_pressure", 0.005)}
SCF = {"FC_SCF": "co2_scf", "LE_SCF": "h2o_scf", "H_SCF": "H_scf", "TAU_SCF": "Tau_scf", "FCH4_SCF": "ch4_scf"}
LAGS = {"CO2_LAG": "co2_time_lag", "H2O_LAG": "h2o_time_lag", "CH4_LAG": "ch4_time_lag"}
FLAGS = {"FC_SSITC_TEST": "qc_co2_flux", "LE_SSITC_TEST": "qc_LE", "H_SSITC_TEST": "qc_H",
         "TAU_SSITC_TEST": "qc_Tau", "FCH4_SSITC_TEST": "qc_ch4_flux"}
NREX = ("SONIC_DIAG_NREX", "CO2_DIAG_NREX", "H2O_DIAG_NREX", "CH4_DIAG_NREX")
MISSING = -9999.0


def _fluxnet(folder: Path) -> dict[str, dict[str, str]]:
    path = next((folder / "eddypro").glob("*_fluxnet.csv"))
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {r["TIMESTAMP_END"]: r for r in rows}


def _cases() -> list[tuple[Path, Path]]:
    folders = sorted(p for p in VARIANTS.iterdir() if p.is_dir())
    return [(v, f) for v in folders for f in sorted((v / "raw").glob("*.ghg"))]


CASES = _cases()


@pytest.fixture(scope="module")
def outcomes() -> dict[str, object]:
    return {f.name: process_file(str(f)) for _, f in CASES}


def test_every_variant_is_there():
    assert len(CASES) == 8, "shared/data/ec/synthetic-variants must hold four variants of two files each"


@pytest.mark.parametrize(("folder", "raw"), CASES, ids=[f"{v.name[:2]}-{f.stem[11:17]}" for v, f in CASES])
def test_period_matches_eddypro(folder, raw, outcomes):
    outcome = outcomes[raw.name]
    assert outcome.error is None, outcome.error
    (row,) = outcome.rows
    ours = row.results
    ref = {r["filename"]: r for r in full_output_rows(next((folder / "eddypro").glob("*_full_output.csv")))}[raw.name]
    problems = []
    for key, (col, floor, factor) in FLUXES.items():
        theirs = float(ref[col])
        if theirs == MISSING:
            if ours.get(key, float("nan")) == ours.get(key, float("nan")):
                problems.append(f"{key}: {ours[key]} where EddyPro has none")
            continue
        theirs *= factor
        if not abs(ours[key] - theirs) <= max(0.002 * abs(theirs), floor):
            problems.append(f"{key}: {ours[key]:.6g} vs EddyPro {theirs:.6g} ({(ours[key] / theirs - 1) * 100:+.3f} %)")
    for key, (col, tol) in AMBIENT.items():
        theirs = float(ref[col]) - 273.15 if key == "TA" else float(ref[col]) / 1e3
        if not abs(ours[key] - theirs) <= tol:
            problems.append(f"{key}: {ours[key]:.4f} vs EddyPro {theirs:.4f}")
    for key, col in SCF.items():
        theirs = float(ref[col])
        if theirs != MISSING and not abs(ours[key] - theirs) <= 0.002 * theirs:
            problems.append(f"{key}: {ours[key]:.6g} vs EddyPro {theirs:.6g}")
    for key, col in LAGS.items():
        theirs = float(ref[col])
        if theirs != MISSING and ours[key] != pytest.approx(theirs, abs=1e-9):
            problems.append(f"{key}: {ours[key]} s vs EddyPro {theirs} s")
    for key, col in FLAGS.items():
        theirs = float(ref[col])
        if theirs != MISSING and ours[key] != theirs:
            problems.append(f"{key}: flag {ours[key]} vs EddyPro {theirs}")
    wd = (ours["WD"] - float(ref["wind_dir"]) + 180.0) % 360.0 - 180.0
    if abs(wd) > 0.5:
        problems.append(f"WD: {ours['WD']:.2f} vs EddyPro {ref['wind_dir']} deg")
    fluxnet = _fluxnet(folder)
    end = ref["date"].replace("-", "") + ref["time"].replace(":", "")
    for key in NREX:
        theirs = float(fluxnet[end][key])
        if theirs != MISSING and ours.get(key, 0.0) != theirs:
            problems.append(f"{key}: {ours.get(key)} vs EddyPro {theirs}")
    assert not problems, f"{raw.name}:\n  " + "\n  ".join(problems)


def test_open_path_tube_settings_are_ignored(outcomes):
    """SmartFlux writes tube_length=100, tube_flowrate=0 for the open-path LI-7500DS: EddyPro takes it
    as open path by its model (densities with WPL, a symmetric lag window), so do we."""
    v1 = next(f for v, f in CASES if v.name.startswith("v1"))
    ours = outcomes[v1.name].rows[0].results
    assert ours["FC"] == ours["FC"] and ours["FC"] < 0  # computed: uptake
    assert ours["FC"] != pytest.approx(ours["FC_0"] * ours["FC_SCF"], rel=1e-3)  # the WPL terms were added


def _setup(prefix: str):
    from station.rawdata import read_raw
    from station.reprocess.enginesetup import ENGINE_VARIABLES, setup_for

    raw_file = next(f for v, f in CASES if v.name.startswith(prefix))
    raw = read_raw(raw_file, variables=ENGINE_VARIABLES)
    return raw, {g.name: g for g in setup_for(raw, raw.n_samples / raw.rate_hz).gases}


def test_lag_windows_are_eddypros_defaults():
    """README of the variants: v1 +-(2 s/m x separation + 0.3 s) = +-0.73 s (LI-7500DS) and +-0.97 s
    (LI-7700); v3 with the vertical separation, +-(2 x sqrt(h^2 + v^2) + 0.3) = +-1.04 s; v2 closed path,
    nominal (tube + cell volume) / flow = 0.128 s, window [0, 3 x nominal + 0.3 s] for CO2 and
    [0, 11 x nominal + 0.3 s] for H2O."""
    from station.flux.timelag import eddypro_lag_window

    _, v1 = _setup("v1")
    assert v1["co2"].lag_s[2] == pytest.approx(2 * (0.2**2 + 0.08**2) ** 0.5 + 0.3)
    assert v1["ch4"].lag_s == pytest.approx((0.0, -0.97, 0.97))
    assert not v1["co2"].analyser.closed_path and v1["co2"].measure_type == "molar_density"
    _, v3 = _setup("v3")
    assert v3["co2"].lag_s[1:] == pytest.approx((-(2 * (0.16**2 + 0.2**2 + 0.27**2) ** 0.5 + 0.3),
                                                 2 * (0.16**2 + 0.2**2 + 0.27**2) ** 0.5 + 0.3))
    _, v2 = _setup("v2")
    co2, h2o = v2["co2"], v2["h2o"]
    assert co2.analyser.closed_path and co2.measure_type == "mixing_ratio" and h2o.measure_type == "mixing_ratio"
    assert co2.lag_s[0] == pytest.approx(0.1277, abs=5e-4)
    assert eddypro_lag_window(20, *co2.lag_s, closed_path=True) == (3, 0, 14)
    assert eddypro_lag_window(20, *h2o.lag_s, closed_path=True, water=True) == (3, 0, 34)
    assert v2["ch4"].li7700 and not v2["ch4"].analyser.closed_path


def test_ambient_temperature_and_pressure_come_from_the_li7700():
    raw, _ = _setup("v1")
    assert raw.columns["ta"].mean() == pytest.approx(294.4977, abs=1e-3)  # column 44, the LI-7700's
    assert raw.columns["pa"].mean() == pytest.approx(94829.98, abs=0.1)
    raw3, _ = _setup("v3")  # no LI-7700: the (last, here only) air_t of the LI-7500RS
    assert raw3.columns["ta"].mean() == pytest.approx(282.271, abs=1e-3)
