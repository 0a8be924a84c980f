"""Self-heating of the LI-7500 open path (Burba et al. 2008, Glob. Change Biol. 14, 1854-1876).

The instrument's surfaces run warmer than the air (colder at night in winter), heating the air in
the open path; the resulting sensible heat adds to H in the temperature term of the Webb et al.
(1980) density corrections of the gases that instrument measures. EddyPro's ``BurbaTerms`` with
the simple linear regressions of surface temperature on air temperature (Burba et al. 2008,
table 2; EddyPro's defaults); the multiple-regression variant (with Rg or LWin and U) is not
implemented here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: (slope, intercept [degC]) of surface temperature on air temperature [degC], Burba et al. (2008) table 2
DAY = {"bot": (0.944, 2.57), "top": (1.005, 0.24), "spar": (1.01, 0.36)}
NIGHT = {"bot": (0.883, 2.17), "top": (1.008, -0.41), "spar": (1.01, -0.17)}
R_TOP_M = 0.0225  # radius of the upper window housing
R_SPAR_M = 0.0025  # radius of a spar
L_BOT_M, L_TOP_M, L_SPAR_M = 0.065, 0.045, 0.005  # characteristic lengths
T0_K = 273.16  # EddyPro's offset in the regressions


@dataclass(frozen=True)
class SurfaceHeat:
    """Sensible heat from the bottom window, top window and spars [W m-2]."""

    bottom: float
    top: float
    spar: float

    @property
    def total(self) -> float:
        return self.bottom + self.top + self.spar


def air_conductivity_w_m_k(t_air_k: float) -> float:
    """Thermal conductivity of air, k = 6.7e-5 T[degC] + 0.024343 W m-1 K-1 (Burba et al. 2008 eq. 4)."""
    return 0.000067 * (t_air_k - 273.15) + 0.024343


def surface_heat(t_air_k: float, u_mean_ms: float, daytime: bool) -> SurfaceHeat:
    """Burba et al. (2008) eqs. 3-6 (Nobel 1983 boundary layers) with the linear regressions.

    Surface minus air temperature dT = a (Ta - T0) + b + T0 - Ta; boundary-layer depths [m]
    delta_bot = 0.004 sqrt(0.065/U) + 0.004, delta_top = 0.0028 sqrt(0.045/U) + 0.00025/U + 0.0045,
    delta_spar = 0.0058 sqrt(0.005/U); H_bot = k dT/delta, H_top = k dT (r + delta)/(delta r),
    H_spar = 0.15 k dT / (r ln((r + delta)/r)). Zero terms where U or Ta are unusable, as EddyPro.
    """
    if not (math.isfinite(t_air_k) and math.isfinite(u_mean_ms)) or u_mean_ms <= 0.0:
        return SurfaceHeat(0.0, 0.0, 0.0)
    k = air_conductivity_w_m_k(t_air_k)
    coef = DAY if daytime else NIGHT
    dt = {part: a * (t_air_k - T0_K) + b + T0_K - t_air_k for part, (a, b) in coef.items()}
    u = u_mean_ms
    d_bot = 0.004 * math.sqrt(L_BOT_M / u) + 0.004
    d_top = 0.0028 * math.sqrt(L_TOP_M / u) + 0.00025 / u + 0.0045
    d_spar = 0.0058 * math.sqrt(L_SPAR_M / u)
    h_bot = k * dt["bot"] / d_bot
    h_top = k * dt["top"] * (R_TOP_M + d_top) / (d_top * R_TOP_M)
    h_spar = 0.15 * k * dt["spar"] / (R_SPAR_M * math.log((R_SPAR_M + d_spar) / R_SPAR_M))
    return SurfaceHeat(h_bot, h_top, h_spar)


def solar_elevation_deg(latitude_deg: float, longitude_deg: float, unix_s: float) -> float:
    """Solar elevation [deg] (NOAA / Spencer 1971 approximations for declination and the equation of
    time; within about 0.5 deg, ample for telling day from night)."""
    day = unix_s / 86400.0
    gamma = 2.0 * math.pi * ((day % 365.2422) / 365.2422)  # fractional year, close enough for day/night
    decl = (0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma) - 0.006758 * math.cos(2 * gamma)
            + 0.000907 * math.sin(2 * gamma) - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma))
    eqtime_min = 229.18 * (0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
                           - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma))
    utc_min = (unix_s % 86400.0) / 60.0
    solar_min = utc_min + eqtime_min + 4.0 * longitude_deg
    hour_angle = math.radians(solar_min / 4.0 - 180.0)
    lat = math.radians(latitude_deg)
    sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_el))))
