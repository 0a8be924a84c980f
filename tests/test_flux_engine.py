"""The flux engine against synthetic turbulence with known truth."""

import numpy as np
import pytest
from engine_adapter import PeriodSite, process_period

from firmware_bridge.turbulence import MD_KG_MOL, R_J_MOL_K, TurbulenceModel, TurbulenceSpec, observe
from station.flux.constants import CP_DRY_J_KG_K, CP_VAPOUR_J_KG_K, MV_KG_MOL
from station.flux.pipeline import Options

#: Ideal instruments: no despiking of Gaussian tails, no spectral losses to correct.
IDEAL = Options(despiking="none", vm97_tests=False, spectral="none", random_uncertainty=False)
SITE = PeriodSite(measurement_height_m=20.0, displacement_m=5.0, options=IDEAL)
N = 200_000


def draw(spec=None, seed=1, n=N):
    spec = spec or TurbulenceSpec()
    state = TurbulenceModel(spec, seed=seed).draw(n)
    return spec, state, observe(state, spec.pressure_kpa)


def sample_truth(spec, state):
    """Fluxes of exactly these samples of the true state (what a perfect engine returns)."""
    n_dry = spec.pressure_kpa * 1e3 / (R_J_MOL_K * state["t_k"]) / (1 + state["chi_v"] * 1e-3)
    nd = n_dry.mean()
    chi_v = spec.chi_v_mean_mmol_mol * 1e-3
    q = chi_v * MV_KG_MOL / (MD_KG_MOL + chi_v * MV_KG_MOL)
    rho_air = nd * (MD_KG_MOL + chi_v * MV_KG_MOL)
    cp = CP_DRY_J_KG_K * (1 - q) + CP_VAPOUR_J_KG_K * q
    cov = lambda a, b: np.cov(state[a], state[b])[0, 1]  # noqa: E731
    return {"FC": nd * cov("w", "chi_c"), "FH2O": nd * cov("w", "chi_v"), "H": rho_air * cp * cov("w", "t_k")}


def test_wpl_corrected_fluxes_recover_the_true_dry_mixing_ratio_fluxes():
    spec, state, obs = draw()
    truth = sample_truth(spec, state)
    got = process_period(obs, SITE)
    assert got["FC"] == pytest.approx(truth["FC"], rel=0.005)
    assert got["FH2O"] == pytest.approx(truth["FH2O"], rel=0.005)
    assert got["H"] == pytest.approx(truth["H"], rel=0.01)
    # the density corrections matter: the raw density covariance is far from the true flux
    assert abs(got["W_CO2_COV"] * 1e3 - truth["FC"]) > 0.1 * abs(truth["FC"])


def test_results_match_the_imposed_population_within_sampling_error():
    spec, _state, obs = draw(seed=2)
    got = process_period(obs, SITE)
    c = spec.covariance()
    w, ts = 2, 3
    se = np.sqrt((c[w, w] * c[ts, ts] + c[w, ts] ** 2) / N)
    yaw = np.arctan2(spec.v_mean_m_s, spec.u_mean_m_s)  # rotated into the mean wind
    uw = np.cos(yaw) * spec.cov("u", "w") + np.sin(yaw) * spec.cov("v", "w")
    assert abs(got["U_W_COV"] - uw) < 4 * np.sqrt((c[0, 0] * c[w, w] + uw**2) / N)
    assert got["W_SIGMA"] == pytest.approx(spec.sigma["w"], rel=0.01)
    assert got["TA"] == pytest.approx(spec.t_mean_k - 273.15, abs=0.01)
    assert got["PA"] == pytest.approx(spec.pressure_kpa)
    assert got["CO2"] == pytest.approx(spec.chi_c_mean_umol_mol / (1 + spec.chi_v_mean_mmol_mol * 1e-3), rel=1e-3)
    assert abs(got["W_TS_COV"] - np.cov(obs["w"], obs["t_sonic"])[0, 1]) < 4 * se


def test_double_rotation_undoes_a_tilted_mounting():
    spec = TurbulenceSpec(v_mean_m_s=0.0)
    _, _, obs = draw(spec, seed=3, n=50_000)
    level = process_period(obs, SITE)
    pitch = np.radians(6.0)
    tilted = dict(obs)
    tilted["u"] = np.cos(pitch) * obs["u"] - np.sin(pitch) * obs["w"]
    tilted["w"] = np.sin(pitch) * obs["u"] + np.cos(pitch) * obs["w"]
    got = process_period(tilted, SITE)
    for name in ("USTAR", "H", "FC", "LE", "W_SIGMA"):
        assert got[name] == pytest.approx(level[name], rel=1e-5), name
    # without the rotation the tilt would have leaked u'u' into u'w'
    assert abs(np.cov(tilted["u"], tilted["w"])[0, 1] - level["U_W_COV"]) > 0.02


def test_missing_samples_are_excluded_and_reported():
    _spec, _state, obs = draw(seed=4, n=20_000)
    holed = {k: v.copy() for k, v in obs.items()}
    rng = np.random.default_rng(0)
    holed["w"][rng.choice(20_000, 2_000, replace=False)] = np.nan
    holed["co2"][rng.choice(20_000, 500, replace=False)] = np.nan
    got = process_period(holed, SITE, expected_samples=20_000)
    full = process_period(obs, SITE)
    assert got["N_SAMPLES"] == 18_000 and got["MISSING_PCT"] == pytest.approx(10.0)
    assert got["FC"] == pytest.approx(full["FC"], rel=0.1)
    assert np.isfinite(got["USTAR"])


def test_sonic_only_gives_momentum_and_heat_but_no_gas_fluxes():
    _, _, obs = draw(seed=5, n=20_000)
    got = process_period({k: obs[k] for k in ("u", "v", "w", "t_sonic")}, SITE)
    assert np.isnan(got["FC"]) and np.isnan(got["LE"])
    assert np.isfinite(got["H"]) and got["H"] > 0 and got["USTAR"] > 0 and got["TAU"] < 0
    assert got["PA"] == pytest.approx(101.325)  # standard atmosphere at sea level
