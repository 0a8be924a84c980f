"""Ambient air properties of one averaging period, as EddyPro derives them from the sonic.

Inputs are period means; everything is vectorised, so arrays of periods work as well as scalars.
Sources: Stull (1988) ideal-gas relations; Schotanus et al. (1983) for air from sonic
temperature; Henderson-Sellers (1984) eq. 8 for the latent heat; the moist-air heat capacity
polynomials LI-COR uses in EddyPro (dry air 1005 + (T + 23.12)^2 / 3364, water vapour after
Lide (1992) as fitted by LI-COR), and the Magnus form of Sonntag (1990) for saturation pressure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.flux.constants import MD_KG_MOL, MV_KG_MOL, R_J_MOL_K

#: Specific gas constants [J kg-1 K-1]: dry air (Stull 1988) and water vapour (EddyPro's 461.5).
RD_J_KG_K = 287.04
RV_J_KG_K = 461.5
#: mu = Md / Mv, the ratio in the WPL terms (Webb et al. 1980).
MU = MD_KG_MOL / MV_KG_MOL
#: Schotanus et al. (1983) humidity coefficient in Ts = T (1 + 0.51 q).
ALPHA = 0.51


def ambient_pressure_pa(altitude_m: float) -> float:
    """Pressure of the ICAO standard atmosphere at ``altitude_m`` [Pa] (ICAO 1993); EddyPro's
    fallback when no pressure is measured."""
    return 101325.0 * (1.0 - 2.25577e-5 * altitude_m) ** 5.25588


def saturation_vapour_pressure_pa(t_k):
    """Saturation vapour pressure over water [Pa], Magnus form with Sonntag (1990) constants."""
    t_c = np.asarray(t_k) - 273.15
    return 611.2 * np.exp(17.62 * t_c / (243.12 + t_c))


def latent_heat_j_kg(t_k):
    """Latent heat of vaporisation [J kg-1], Henderson-Sellers (1984) eq. 8."""
    return 1e3 * (3147.5 - 2.37 * np.asarray(t_k))


def heat_capacity_j_kg_k(t_k, rh_pct, q):
    """Moist-air specific heat at constant pressure [J kg-1 K-1]: cp = cpv q + cpd (1 - q) with
    cpd = 1005 + (T + 23.12)^2 / 3364 and cpv = 1859 + 0.13 RH + (0.193 + 5.6e-3 RH) T +
    (1e-3 + 5e-5 RH) T^2 (T in degC, RH in %), the polynomials of the EddyPro engine."""
    t_c = np.asarray(t_k) - 273.15
    cpd = 1005.0 + (t_c + 23.12) ** 2 / 3364.0
    cpv = 1859.0 + 0.13 * rh_pct + (0.193 + 5.6e-3 * rh_pct) * t_c + (1e-3 + 5e-5 * rh_pct) * t_c**2
    return cpv * q + cpd * (1.0 - q)


@dataclass(frozen=True)
class Air:
    """Period-mean air state. Densities in kg m-3 unless the name says mol."""

    ts_k: float
    ta_k: float
    p_pa: float
    e_pa: float
    rho_w: float  # water vapour
    rho_d: float  # dry air
    rho_a: float  # moist air
    q: float  # specific humidity [kg kg-1]
    rh_pct: float
    cp: float  # [J kg-1 K-1]
    lambda_j_kg: float
    va_m3_mol: float  # molar volume of (moist) air, R Ts / p as EddyPro reports it (R Ta / p, Ta measured)

    @property
    def rho_cp(self) -> float:
        return self.rho_a * self.cp

    @property
    def sigma(self) -> float:
        """rho_w / rho_d, the ratio in the WPL terms (Webb et al. 1980)."""
        return self.rho_w / self.rho_d

    @property
    def rho_d_mol(self) -> float:
        return self.rho_d / MD_KG_MOL

    @property
    def dry_molar_density_sonic(self) -> float:
        """(p - e) / (R T) [mol m-3]: the dry-air molar density EddyPro multiplies dry mixing-ratio
        covariances by, with the temperature of its molar volume ``va_m3_mol`` = R T / p: the measured
        ambient air temperature where there is one, else the sonic temperature (EddyPro 7
        ``AirAndCellParameters``)."""
        return (self.p_pa - self.e_pa) / self.p_pa / self.va_m3_mol


def air_from_sonic(ts_k, p_pa, rho_w_kg_m3=None, h2o_mole_fraction=None, iterations: int = 4,
                   ta_k: float | None = None) -> Air:
    """Air properties from the mean sonic temperature, pressure and either the water-vapour
    density (open path) or its mole fraction [mol mol-1] (closed path, converted with the molar
    volume R Ts / p as EddyPro does). Air temperature from Ts = T (1 + 0.51 q) (Schotanus et
    al. 1983 eq. 2), iterated because q needs the air density at T. No humidity: dry air.

    ``ta_k``: a measured ambient air temperature [K] (a slow met sensor's). EddyPro then takes it
    as Ta, with the molar volume R Ta / p, and does not iterate (LI-COR, EddyPro manual,
    "Calculating ambient and cell parameters" and "Iterative calculations of micrometeorological
    variables")."""
    measured = ta_k is not None
    va = R_J_MOL_K * (ta_k if measured else ts_k) / p_pa
    if rho_w_kg_m3 is None:
        rho_w_kg_m3 = 0.0 if h2o_mole_fraction is None else h2o_mole_fraction / va * MV_KG_MOL
    rho_w = float(np.nan_to_num(rho_w_kg_m3))
    ta = ta_k if measured else ts_k
    for _ in range(0 if measured else iterations):
        e = rho_w * RV_J_KG_K * ta
        rho_d = (p_pa - e) / (RD_J_KG_K * ta)
        rho_a = rho_d + rho_w
        q = rho_w / rho_a
        ta = ts_k / (1.0 + ALPHA * q)
    e = rho_w * RV_J_KG_K * ta
    rho_d = (p_pa - e) / (RD_J_KG_K * ta)
    rho_a = rho_d + rho_w
    q = rho_w / rho_a
    rh = 100.0 * e / saturation_vapour_pressure_pa(ta)
    return Air(ts_k=float(ts_k), ta_k=float(ta), p_pa=float(p_pa), e_pa=float(e), rho_w=rho_w, rho_d=float(rho_d),
               rho_a=float(rho_a), q=float(q), rh_pct=float(rh), cp=float(heat_capacity_j_kg_k(ta, rh, q)),
               lambda_j_kg=float(latent_heat_j_kg(ta)), va_m3_mol=float(va))
