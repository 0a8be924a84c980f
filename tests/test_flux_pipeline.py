"""The whole processing chain against known truth: turbulence drawn sample by sample, observed as an
open-path analyser and a tilted sonic would, with the gas lagging the wind."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe
from station.flux.pipeline import GasSetup, Options, Setup, process

RATE_HZ = 20.0
N = 36_000  # a 30-min period at 20 Hz
PITCH_DEG = 6.0
LAG = 4  # samples the analyser lags the sonic


def tilted(u, v, w, pitch_deg):
    """The wind as a sonic pitched by ``pitch_deg`` about its y axis reports it."""
    a = np.radians(pitch_deg)
    return u * np.cos(a) + w * np.sin(a), v, -u * np.sin(a) + w * np.cos(a)


def synthetic_period(seed: int):
    spec = TurbulenceSpec(v_mean_m_s=0.0)
    state = TurbulenceModel(spec, seed=seed).draw(N)
    obs = observe(state, spec.pressure_kpa)
    u, v, w = tilted(obs["u"], obs["v"], obs["w"], PITCH_DEG)
    lagged = {k: np.concatenate([np.full(LAG, np.nan), obs[k][:-LAG]]) for k in ("co2", "h2o")}
    columns = {"u": u, "v": v, "w": w, "ts": obs["t_sonic"] + 273.15, "co2": lagged["co2"], "h2o": lagged["h2o"],
               "pa": np.full(N, spec.pressure_kpa * 1e3)}
    # truth from the drawn state itself (sample covariances): F = mean(n_d) cov(w, chi) (Webb et al. 1980)
    n_d = spec.pressure_kpa * 1e3 / (8.314462618 * state["t_k"]) / (1 + state["chi_v"] * 1e-3)
    truth = {"FC": n_d.mean() * np.cov(state["w"], state["chi_c"])[0, 1],
             "FH2O": n_d.mean() * np.cov(state["w"], state["chi_v"])[0, 1],
             "W_T": np.cov(state["w"], state["t_k"])[0, 1]}
    return columns, truth


SETUP = Setup(rate_hz=RATE_HZ, period_s=N / RATE_HZ, measurement_height_m=4.0, canopy_height_m=0.5, latitude_deg=5.0,
              gases=(GasSetup("co2", lag_s=(0.0, -0.5, 0.5)), GasSetup("h2o", lag_s=(0.0, -0.5, 0.5))))
IDEAL = Options(despiking="none", spectral="none", random_uncertainty=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_wpl_corrected_fluxes_recover_the_true_mixing_ratio_fluxes(seed):
    columns, truth = synthetic_period(seed)
    r = process(columns, SETUP, IDEAL)
    assert r["CO2_LAG"] == pytest.approx(LAG / RATE_HZ) and r["H2O_LAG"] == pytest.approx(LAG / RATE_HZ)
    # open-path densities carry large WPL terms; only the corrected fluxes match the truth
    assert r["FC"] == pytest.approx(truth["FC"], rel=0.01)
    assert r["FH2O"] == pytest.approx(truth["FH2O"], rel=0.01)
    assert abs(r["FC_0"] - truth["FC"]) > 0.1 * abs(truth["FC"])  # the uncorrected flux is far off
    assert r["H"] / (r["RHO_AIR"] * r["CP"]) == pytest.approx(truth["W_T"], rel=0.01)


def test_double_rotation_removes_the_tilt():
    columns, _truth = synthetic_period(3)
    r = process(columns, SETUP, IDEAL)
    untilted = process({**columns, **dict(zip("uvw", tilted(columns["u"], columns["v"], columns["w"], -PITCH_DEG),
                                              strict=True))}, SETUP, IDEAL)
    for key in ("FC", "H", "TAU", "USTAR", "W_SIGMA"):
        assert r[key] == pytest.approx(untilted[key], rel=1e-4), key


def test_the_default_chain_stays_close_to_the_truth():
    """EddyPro's defaults (despiking, spectral corrections for a real CSAT3/LI-7500 geometry) change
    ideal synthetic fluxes by a few percent at most."""
    columns, truth = synthetic_period(4)
    r = process(columns, SETUP, Options())
    assert r["FC"] == pytest.approx(truth["FC"], rel=0.05)
    assert 0 <= r["FC_SSITC_TEST"] <= 2 and np.isfinite(r["FC_RANDUNC"]) and r["FC_RANDUNC"] > 0
    assert r["FETCH_MAX"] > 0 and r["FETCH_90"] > r["FETCH_70"] > r["FETCH_MAX"]


def test_missing_samples_and_a_missing_analyser():
    columns, truth = synthetic_period(5)
    holes = columns.copy()
    rng = np.random.default_rng(0)
    for k in ("u", "w", "co2"):
        holes[k] = columns[k].copy()
        holes[k][rng.random(N) < 0.05] = np.nan
    r = process(holes, SETUP, IDEAL)
    assert r["FC"] == pytest.approx(truth["FC"], rel=0.03)
    assert 8 < r["MISSING_PCT"] < 11
    sonic_only = process({k: columns[k] for k in ("u", "v", "w", "ts")}, SETUP, IDEAL)
    assert "FC" not in sonic_only and np.isfinite(sonic_only["H"]) and np.isfinite(sonic_only["USTAR"])


def test_triple_rotation_planar_fit_and_kljun_2015_options():
    from station.flux.planarfit import fit_planar

    columns, truth = synthetic_period(6)
    triple = process(columns, SETUP, Options(despiking="none", spectral="none", random_uncertainty=False,
                                             rotation="triple"))
    assert triple["FC"] == pytest.approx(truth["FC"], rel=0.01)
    # a planar fit from periods in many directions, all seen through the same 6 degree pitch
    rng = np.random.default_rng(1)
    means = []
    for angle in rng.uniform(0, 2 * np.pi, 40):
        u, v, w = tilted(np.full(1, 3 * np.cos(angle)), np.full(1, 3 * np.sin(angle)), np.zeros(1), PITCH_DEG)
        means.append((u[0], v[0], w[0]))
    m = np.array(means)
    fit = fit_planar(m[:, 0], m[:, 1], m[:, 2])
    pf = process(columns, SETUP, Options(despiking="none", spectral="none", random_uncertainty=False,
                                         rotation="planar_fit", planar_fit=fit, footprint="kljun_2015"))
    assert pf["FC"] == pytest.approx(truth["FC"], rel=0.01)
    assert pf["FETCH_90"] > pf["FETCH_MAX"] > 0
    with pytest.raises(ValueError, match="planarfit"):
        process(columns, SETUP, Options(rotation="planar_fit"))


def test_methane_is_reported_in_nmol_like_its_uncertainty():
    """The same density series named ch4 and co2: FCH4 [nmol m-2 s-1] is 1000 x FC [umol m-2 s-1], and
    so is its random uncertainty (AmeriFlux units for both)."""
    columns, _truth = synthetic_period(6)
    columns["ch4"] = columns["co2"].copy()
    setup = Setup(rate_hz=RATE_HZ, period_s=N / RATE_HZ, measurement_height_m=4.0, canopy_height_m=0.5,
                  latitude_deg=5.0, gases=(*SETUP.gases, GasSetup("ch4", lag_s=(0.0, -0.5, 0.5))))
    r = process(columns, setup, Options(despiking="none", spectral="none"))
    assert r["FCH4"] == pytest.approx(1e3 * r["FC"], rel=1e-9)
    assert r["FCH4_RANDUNC"] == pytest.approx(1e3 * r["FC_RANDUNC"], rel=1e-9) and r["FC_RANDUNC"] > 0


def test_a_measured_air_temperature_is_the_ambient_ta():
    """EddyPro's priority: a measured ambient Ta (a met sensor's) replaces the one derived from the
    sonic temperature; the same value through either path gives the same fluxes; samples outside
    the absolute limits are not used."""
    columns, truth = synthetic_period(6)
    sonic = process(columns, SETUP, IDEAL)
    same_ta = process({**columns, "ta": np.full(N, sonic["TA"] + 273.15)}, SETUP, IDEAL)
    for key in ("H", "LE", "FC", "FH2O", "USTAR", "MO_LENGTH"):
        assert same_ta[key] == pytest.approx(sonic[key], rel=2e-4), key
    assert same_ta["FC"] == pytest.approx(truth["FC"], rel=0.01)
    warmer = np.full(N, sonic["TA"] + 278.15)
    warmer[::7] = -9999.0  # a logger's missing-value code: outside the limits, ignored
    hot = process({**columns, "ta": warmer}, SETUP, IDEAL)
    assert hot["TA"] == pytest.approx(sonic["TA"] + 5.0, abs=1e-9)
    assert hot["RHO_AIR"] == pytest.approx(sonic["RHO_AIR"] * (sonic["TA"] + 273.15) / (sonic["TA"] + 278.15),
                                           rel=2e-3)  # ideal gas at the same pressure
    assert hot["H"] < sonic["H"] * 0.99 if sonic["H"] > 0 else hot["H"] > sonic["H"] * 0.99
    junk = process({**columns, "ta": np.full(N, -9999.0)}, SETUP, IDEAL)
    assert junk["TA"] == sonic["TA"] and junk["H"] == sonic["H"]
