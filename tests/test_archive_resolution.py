"""The station archives each channel at its instrument's resolution and computes the live fluxes
from the same values (issue 19): the file is short text that reads as fast as LI-COR's, and
reprocessing it repeats the live results bit for bit."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_archive import assert_identical, job_for

from firmware_bridge import csat3
from firmware_bridge.families import FAMILIES, family, streaming_families
from firmware_bridge.licor import licor_number
from firmware_bridge.resolution import at_resolution, parse_spec
from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe
from station.acquisition.periodblock import PeriodBlock, TowerInfo
from station.acquisition.resolution import at_instrument_resolution, block_resolution
from station.flux.pipeline import Options
from station.processing.fluxjob import compute, run_job

RATE_HZ = 20.0
START = 1_795_000_200
TOWER = TowerInfo("tower-r", 1.35, 103.8, 5.0, 3.0, None, 20.0, "sonic", "csat3", 0.0, "irga", "li7500",
                  (0.15, 0.05, 0.0), more_analysers=(("ch4irga", "li7700", (0.3, 0.0, 0.0)),))


# ------------------------------------------------------------------------------ the rounding itself

def test_counts_times_a_scale_become_the_decimal_the_instrument_meant():
    """Golden: a CSAT3 count of 3147 at 0.25 mm s-1 is 0.78675 m s-1; float64 says 0.7867500000000001."""
    raw = 3147 * float(csat3.RANGE_SCALE_M_S[3])
    assert repr(raw) == "0.7867500000000001"
    assert repr(float(at_resolution(np.array([raw]), csat3.RESOLUTION["u"])[0])) == "0.78675"
    counts = np.arange(-32767, 32768)
    for scale in csat3.RANGE_SCALE_M_S:
        rounded = at_resolution(counts * scale, ".5f")
        assert np.array_equal(rounded, np.array([float(f"{x:.5f}") for x in (counts * scale).tolist()]))


@pytest.mark.parametrize("spec", [".2f", ".5f", ".7g", ".8g"])
def test_rounded_values_are_short_exact_and_stable(spec):
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 3, 20_000), rng.lognormal(0, 4, 20_000) * rng.choice([-1, 1], 20_000),
                        [0.0, -0.0, np.nan, 1e-30, 1e30, 999.99999995, 1e-5]])
    r = at_resolution(x, spec)
    digits, kind = parse_spec(spec)
    assert np.isnan(r[np.isnan(x)]).all() and np.isfinite(r[np.isfinite(x)]).all()
    values = r[np.isfinite(r)].tolist()
    assert [float(repr(v)) for v in values] == values  # repr is exact: the archive holds the value
    if kind == "g":
        mantissas = [repr(v).split("e")[0].replace("-", "").replace(".", "").strip("0") for v in values]
        assert max(map(len, mantissas)) <= digits
    else:
        assert all(len(repr(v).partition(".")[2]) <= digits for v in values if abs(v) < 1e15)
    assert np.array_equal(at_resolution(r, spec), r, equal_nan=True)  # a second rounding changes nothing
    assert np.nanmax(np.abs(r - x)[np.abs(x) < 1e15]) <= (0.5 * 10.0 ** -digits if kind == "f" else np.inf)


def test_licor_text_is_left_as_the_instrument_sent_it():
    """LI-COR writes 8 significant digits (3.2183277e1); a value parsed from it is not changed."""
    rng = np.random.default_rng(6)
    x = rng.lognormal(0, 6, 50_000) * rng.choice([-1, 1], 50_000)
    parsed = np.array([float(licor_number(v)) for v in x.tolist()])
    assert np.array_equal(at_resolution(parsed, ".8g"), parsed)


@pytest.mark.parametrize("spec", ["5f", ".f", ".5e", ".0g", ".123f", "5"])
def test_a_bad_spec_is_named(spec):
    with pytest.raises(ValueError, match=f"resolution '{spec}'"):
        parse_spec(spec)


@pytest.mark.parametrize("name", streaming_families())
def test_every_streaming_family_declares_its_float_channels(name):
    fam = family(name)
    floats = {"sonic": {"u", "v", "w", "t_sonic"}, "gas": {"pressure", "temperature"}}[fam.ROLE]
    floats |= {c for c in ("co2", "h2o", "ch4") if c in fam.CHANNELS}
    assert floats <= set(fam.RESOLUTION), floats - set(fam.RESOLUTION)
    assert set(fam.RESOLUTION) <= set(fam.CHANNELS)
    for spec in fam.RESOLUTION.values():
        parse_spec(spec)


def test_the_block_channels_of_a_tower_get_their_instruments_steps():
    steps = block_resolution(TOWER)
    assert {steps[c] for c in ("u", "v", "w")} == {".5f"} and steps["t_sonic"] == ".4f"
    assert steps["co2"] == steps["h2o"] == steps["pressure"] == steps["t_air"] == ".8g"
    assert steps["signal_strength"] == ".2f"
    assert steps["ch4irga:ch4"] == ".8g" and steps["ta_met"] == ".7g"
    assert "diag_sonic" not in steps and "diag_gas" not in steps  # integers as they are
    assert set(FAMILIES) >= {"csat3", "li7500", "li7700"}


# ------------------------------------------------------------------------------ a station period

def station_block(seconds: int = 600, seed: int = 21) -> PeriodBlock:
    """A period as the station's readers give it: the CSAT3's real binary frames parsed (u, v, w as
    counts times the range's scale, Ts from the speed of sound), the analysers' values as LI-COR's
    text parses, the met sensor's Ta from a float32 register."""
    n = int(seconds * RATE_HZ)
    spec = TurbulenceSpec()
    obs = observe(TurbulenceModel(spec, seed=seed).draw(n), spec.pressure_kpa)
    parsed = csat3.Parser().feed(csat3.encode(obs["u"], obs["v"], obs["w"], obs["t_sonic"], np.arange(n) % 64))
    assert parsed.n == n
    cols = {k: parsed.columns[k].astype(float) for k in ("u", "v", "w", "t_sonic")}

    def licor_text(values):
        return np.array([float(licor_number(v)) for v in np.asarray(values, dtype=float).tolist()])

    cols.update({"co2": licor_text(obs["co2"]), "h2o": licor_text(obs["h2o"]),
                 "pressure": licor_text(obs["pressure"]), "t_air": licor_text(obs["temperature"])})
    cols["signal_strength"] = np.full(n, 15 * 6.67)  # the diagnostic value's code 15
    cols["diag_sonic"] = np.zeros(n)
    cols["diag_gas"] = np.full(n, 255.0)
    cols["ch4irga:ch4"] = licor_text(0.08 + 0.001 * obs["w"])
    cols["ch4irga:pressure"] = cols["pressure"].copy()
    cols["ch4irga:t_air"] = cols["t_air"].copy()
    cols["ch4irga:signal_strength"] = np.full(n, 80.0)
    cols["ch4irga:diag_gas"] = np.zeros(n)
    cols["ta_met"] = np.full(n, float(np.float32(24.37)))  # 24.3700008392334
    present = int(np.sum(np.isfinite(cols["w"]) & np.isfinite(cols["t_sonic"])))
    return PeriodBlock(START, START + seconds, RATE_HZ, START + 0.0137 + np.arange(n) / RATE_HZ, cols, n, present)


def data_fields(path: Path) -> dict[str, list[str]]:
    """The archive's ``.data`` columns by DATAH name, as text."""
    with zipfile.ZipFile(path) as zf:
        lines = zf.read(f"{path.stem}.data").decode("ascii").splitlines()
    (header,) = [ln.split("\t")[1:] for ln in lines if ln.startswith("DATAH\t")]
    rows = [ln.split("\t")[1:] for ln in lines if ln.startswith("DATA\t")]
    return {name: [r[i] for r in rows] for i, name in enumerate(header)}


def significant(text: str) -> int:
    return len(text.lower().split("e")[0].replace("-", "").replace(".", "").strip("0"))


def decimals(text: str) -> int:
    return len(text.partition(".")[2])


def test_station_archive_holds_each_channel_at_its_instruments_resolution(tmp_path):
    block = station_block()
    # what the readers give carries float64 noise: CSAT3 wind and Ts, the signal strength, the met Ta
    assert max(len(repr(v)) for v in block.columns["v"].tolist()) >= 18
    assert max(len(repr(v)) for v in block.columns["t_sonic"].tolist()) >= 18
    options = Options()
    outcome = run_job(block, job_for(tmp_path, TOWER, options))
    assert outcome.status == "ok"
    fields = data_fields(Path(outcome.archive_path))
    wind = [t for c in ("Aux 1 - U (m/s)", "Aux 2 - V (m/s)", "Aux 3 - W (m/s)") for t in fields[c] if t != "-9999"]
    assert wind and max(map(decimals, wind)) <= 5
    assert max(map(decimals, fields["Aux 4 - Ts (C)"])) <= 4
    for column in ("CO2 (mmol/m^3)", "H2O (mmol/m^3)", "Total Pressure (kPa)", "Temperature (C)", "CH4 (mmol/m^3)"):
        assert max(map(significant, fields[column])) <= 8, column
    assert set(fields["CO2 Signal Strength"]) == {"100.05"}
    assert set(fields["Met Air Temperature (C)"]) == {"24.37"}
    # nothing was lost the instruments had: the CSAT3's counts and LI-COR's text come back exactly
    ts = np.array([float(t) for t in fields["Aux 4 - Ts (C)"]])
    assert np.max(np.abs(ts - block.columns["t_sonic"])) <= 0.5e-4
    u = np.array([float(t) for t in fields["Aux 1 - U (m/s)"]])
    assert np.array_equal(np.round(u / 0.00025), np.round(block.columns["u"] / 0.00025))
    assert np.array_equal(np.array([float(t) for t in fields["CO2 (mmol/m^3)"]]), block.columns["co2"])
    # the live fluxes were computed from these very values: reprocessing the file repeats them bit for bit
    live = assert_identical(outcome.results, Path(outcome.archive_path), tmp_path, options)
    assert live
    assert compute(block, TOWER, options) == pytest.approx(outcome.results, nan_ok=True, rel=0, abs=0)


def test_rounding_the_block_twice_changes_nothing():
    once = at_instrument_resolution(station_block(seconds=60), TOWER)
    twice = at_instrument_resolution(once, TOWER)
    for k, v in once.columns.items():
        assert np.array_equal(v, twice.columns[k], equal_nan=True), k
    assert not math.isnan(once.columns["u"][0])
