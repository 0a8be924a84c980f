"""One averaging period: moments, rotation, sonic-temperature and WPL corrections, fluxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.flux.constants import (
    CP_DRY_J_KG_K,
    CP_VAPOUR_J_KG_K,
    G_M_S2,
    MD_KG_MOL,
    MV_KG_MOL,
    R_J_MOL_K,
    VON_KARMAN,
)
from station.flux.moments import pairwise_moments
from station.flux.rotation import double_rotation_matrix, rotate_moments

#: Column order of the sample matrix.
VARIABLES = ("u", "v", "w", "t_sonic", "co2", "h2o")
U, V, W, TS, CO2, H2O = range(6)


@dataclass(frozen=True)
class PeriodSite:
    """What the engine needs to know of the site (heights in m, angles in degrees)."""

    measurement_height_m: float
    displacement_m: float
    altitude_m: float = 0.0
    north_offset_deg: float = 0.0


def standard_pressure_kpa(altitude_m: float) -> float:
    """Pressure of the ICAO standard atmosphere at ``altitude_m`` [kPa] (ICAO 1993), the fallback
    EddyPro uses when no pressure is measured."""
    return 101.325 * (1.0 - 2.25577e-5 * altitude_m) ** 5.25588


def latent_heat_j_kg(t_k: float) -> float:
    """Latent heat of vaporisation [J kg-1], Henderson-Sellers (1984) eq. 8 as used by EddyPro."""
    return 1e3 * (3147.5 - 2.37 * t_k)


def _wpl_open_path(w_rho_c: float, w_rho_v: float, w_ts: float, ts_k: float, rho_c: float, rho_v: float,
                   p_pa: float, iterations: int = 3) -> dict[str, float]:
    """Open-path fluxes from density covariances [mol m-2 s-1], iterating the coupled sonic
    temperature (Schotanus et al. 1983; van Dijk et al. 2004 eq. 3.53) and WPL corrections.

    E  = (1 + chi_v) [w'rho_v' + (rho_v / T) w'T']                    Webb et al. (1980) eq. 25
    Fc = w'rho_c' + (rho_c / rho_d) w'rho_v' + (1 + chi_v)(rho_c / T) w'T'   eq. 24
    w'T' = (w'Ts' - 0.51 T w'q') / (1 + 0.51 q), with w'q' = Mv E / rho_a,
    molar densities rho_* [mol m-3], chi_v = rho_v / rho_d the H2O mixing ratio.
    """
    rho_v0 = 0.0 if np.isnan(rho_v) else rho_v  # no analyser: dry air for T, density and cp
    t_k = ts_k
    for _ in range(iterations):  # air T from Ts needs q, and q needs the air density at T
        n_total = p_pa / (R_J_MOL_K * t_k)
        rho_d = n_total - rho_v0
        rho_air = rho_d * MD_KG_MOL + rho_v0 * MV_KG_MOL
        q = rho_v0 * MV_KG_MOL / rho_air
        t_k = ts_k / (1.0 + 0.51 * q)
    chi_v = rho_v0 / rho_d
    w_t = w_ts / (1.0 + 0.51 * q)
    for _ in range(iterations):  # E needs w'T', and w'T' needs w'q' = Mv E / rho_a
        e = (1.0 + chi_v) * (w_rho_v + rho_v / t_k * w_t)
        w_q = np.nan_to_num(MV_KG_MOL * e / rho_air)  # no humidity flux measured: no correction
        w_t = (w_ts - 0.51 * t_k * w_q) / (1.0 + 0.51 * q)
    fc = w_rho_c + rho_c / rho_d * w_rho_v + (1.0 + chi_v) * rho_c / t_k * w_t
    cp = CP_DRY_J_KG_K * (1.0 - q) + CP_VAPOUR_J_KG_K * q
    return {"E": e, "FC": fc, "W_T": w_t, "T_K": t_k, "RHO_AIR": rho_air, "CP": cp, "N_TOTAL": n_total}


def process_period(samples: dict[str, np.ndarray], site: PeriodSite, expected_samples: int | None = None
                   ) -> dict[str, float]:
    """AmeriFlux-named results of one period from aligned samples.

    ``samples``: ``u``, ``v``, ``w`` [m s-1], ``t_sonic`` [degC]; optionally ``co2``, ``h2o``
    [mmol m-3, open-path molar densities] and ``pressure`` [kPa]. NaN marks missing or screened
    samples. Units of the results: :data:`station.messages.FLUX_FIELDS`.
    """
    n = len(samples["u"])
    nan = np.full(n, np.nan)
    x = np.column_stack([samples.get(name, nan) for name in VARIABLES]).astype(float)
    x[:, CO2:] *= 1e-3  # mmol m-3 -> mol m-3
    x[:, TS] += 273.15
    mean_raw, cov_raw, n_pair = pairwise_moments(x)
    rot = double_rotation_matrix(mean_raw[:3])
    mean, cov = rotate_moments(mean_raw, cov_raw, rot)

    pressure = samples.get("pressure")
    p_kpa = float(np.nanmean(pressure)) if pressure is not None and np.isfinite(pressure).any() else np.nan
    if not np.isfinite(p_kpa):
        p_kpa = standard_pressure_kpa(site.altitude_m)
    p_pa = p_kpa * 1e3
    ts_k = mean[TS]
    corr = _wpl_open_path(cov[W, CO2], cov[W, H2O], cov[W, TS], ts_k, mean[CO2], mean[H2O], p_pa)
    t_k, rho_air = corr["T_K"], corr["RHO_AIR"]

    ustar = (cov[U, W] ** 2 + cov[V, W] ** 2) ** 0.25
    h = rho_air * corr["CP"] * corr["W_T"]
    # Obukhov (1946) length with the buoyancy flux w'Tv' ~ w'Ts' (Kaimal & Gaynor 1991)
    with np.errstate(divide="ignore", invalid="ignore"):
        mo_length = -(ustar**3) * ts_k / (VON_KARMAN * G_M_S2 * cov[W, TS])
        zl = (site.measurement_height_m - site.displacement_m) / mo_length
    wd = (site.north_offset_deg - np.degrees(np.arctan2(mean_raw[V], mean_raw[U])) + 180.0) % 360.0
    n_used = int(n_pair[W, W])
    expected = expected_samples or n
    results = {
        "FC": corr["FC"] * 1e6,
        "FH2O": corr["E"] * 1e3,
        "LE": corr["E"] * MV_KG_MOL * latent_heat_j_kg(t_k),
        "H": h,
        "TAU": -rho_air * ustar**2,
        "USTAR": ustar,
        "MO_LENGTH": mo_length,
        "ZL": zl,
        "WS": float(np.hypot(mean_raw[U], mean_raw[V])),
        "WD": wd,
        "U_SIGMA": np.sqrt(cov[U, U]),
        "V_SIGMA": np.sqrt(cov[V, V]),
        "W_SIGMA": np.sqrt(cov[W, W]),
        "T_SONIC": ts_k - 273.15,
        "TA": t_k - 273.15,
        "CO2": mean[CO2] / corr["N_TOTAL"] * 1e6,
        "H2O": mean[H2O] / corr["N_TOTAL"] * 1e3,
        "PA": p_kpa,
        "RHO_AIR": rho_air,
        "W_TS_COV": cov[W, TS],
        "W_CO2_COV": cov[W, CO2] * 1e3,
        "W_H2O_COV": cov[W, H2O] * 1e3,
        "U_W_COV": cov[U, W],
        "V_W_COV": cov[V, W],
        "N_SAMPLES": float(n_used),
        "MISSING_PCT": 100.0 * max(expected - n_used, 0) / expected if expected else 100.0,
    }
    return {name: float(value) for name, value in results.items()}
