"""A synthetic site-year with known truth, for the carbon budget's tests (:mod:`collector.science.budget`).

:func:`site_year` makes a half-hourly period frame (see :mod:`collector.science`) of one calendar year at a
temperate deciduous forest (default: the latitude and longitude of US-MOz, Missouri, in UTC-6) from
models whose sums are known exactly:

- SW_IN [W m-2]: clear-sky radiation from solar geometry (Spencer 1971 declination and equation of time),
  air-mass attenuation (Meinel & Meinel 1976) plus 10 % diffuse, reduced by a cloud cover ``c`` after
  Kasten & Czeplak (1980): SW = SW_clear (1 - 0.75 c^3.4);
- TA [degC]: seasonal cosine + synoptic AR(1) anomaly + a diurnal cycle damped by clouds; RH [%] and
  VPD [hPa] from a dew point near the daily minimum (Magnus formula, Alduchov & Eskridge 1996, eq. 21);
- USTAR [m s-1]: from an AR(1) wind, low at night (about a third of the nights below the true threshold);
- true GPP [umol m-2 s-1]: the rectangular hyperbola of Lasslop et al. (2010) with VPD limitation of beta
  above 10 hPa, beta0 following leaf-out / leaf-fall; true RECO: Lloyd & Taylor (1994, eq. 11) of
  TA with a seasonal Rref; NEE = RECO - GPP;
- measured FC: NEE + Laplace noise whose sd grows linearly with |NEE| (Richardson et al. 2006), sd given
  as FC_RANDUNC; at night with u* below :data:`USTAR_CRIT` the flux is underestimated by u*/USTAR_CRIT
  (what the u* filter must catch);
- FCH4 [nmol m-2 s-1]: Q10 = 2.5 emission of a lagged (soil-like) temperature, the same kind of noise;
- gaps: ~8 % random half-hours, rain (open-path analysers; longer for the LI-7700), three multi-day
  outages, a day without met, and QC flag 2 periods (FC_SSITC_TEST, FCH4_SSITC_TEST) whose values are
  corrupted (biased) so that keeping them would show in the sums.

The truth (``truth`` dict) holds the annual sums in g C m-2 (NEE, GPP, RECO, CH4), the monthly sums and
the true half-hourly fluxes.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import numpy as np
import pandas as pd

PERIOD_S = 1800
#: true u* threshold [m s-1]: below it, at night, measured fluxes are underestimated
USTAR_CRIT = 0.2
#: g C m-2 per half-hour of 1 umol CO2 m-2 s-1 and of 1 nmol CH4 m-2 s-1
G_C_UMOL = PERIOD_S * 12.011e-6
G_C_NMOL = PERIOD_S * 12.011e-9
UTC_OFFSET_H = -6

UNITS = {"FC": "umol m-2 s-1", "FC_SSITC_TEST": "1", "FC_RANDUNC": "umol m-2 s-1", "FCH4": "nmol m-2 s-1",
         "FCH4_SSITC_TEST": "1", "FCH4_RANDUNC": "nmol m-2 s-1", "USTAR": "m s-1", "TA": "degC", "RH": "%",
         "VPD": "hPa", "SW_IN": "W m-2", "P": "mm"}


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series with lag-1 correlation ``phi`` and standard deviation ``sd``."""
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def _daily_to_periods(daily: np.ndarray, day_of_period: np.ndarray, frac_day: np.ndarray) -> np.ndarray:
    """Smooth a per-day series onto the half-hours (linear between day centres)."""
    return np.interp(day_of_period + frac_day - 0.5, np.arange(daily.size), daily)


def esat_hpa(ta_degc: np.ndarray) -> np.ndarray:
    """Saturation vapour pressure over water [hPa]: Magnus form of Alduchov & Eskridge (1996), eq. 21."""
    return 6.1094 * np.exp(17.625 * ta_degc / (ta_degc + 243.04))


def solar(index_end: pd.DatetimeIndex, lat: float, lon: float) -> tuple[np.ndarray, np.ndarray]:
    """(cos of the solar zenith angle, extraterrestrial irradiance on a horizontal plane [W m-2]) at
    the middle of each half-hour. Declination and equation of time: Spencer (1971)."""
    mid = index_end - pd.Timedelta(seconds=PERIOD_S / 2)
    doy = mid.day_of_year.to_numpy()
    clock_h = (mid.hour + mid.minute / 60).to_numpy()
    b = 2 * np.pi * (doy - 1) / 365
    decl = (0.006918 - 0.399912 * np.cos(b) + 0.070257 * np.sin(b) - 0.006758 * np.cos(2 * b)
            + 0.000907 * np.sin(2 * b) - 0.002697 * np.cos(3 * b) + 0.00148 * np.sin(3 * b))
    eot_min = 229.18 * (0.000075 + 0.001868 * np.cos(b) - 0.032077 * np.sin(b) - 0.014615 * np.cos(2 * b)
                        - 0.040849 * np.sin(2 * b))
    solar_h = clock_h + (4 * (lon - 15 * UTC_OFFSET_H) + eot_min) / 60
    hour_angle = np.radians(15 * (solar_h - 12))
    phi = np.radians(lat)
    cosz = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    s0 = 1361.0 * (1 + 0.033 * np.cos(2 * np.pi * doy / 365))
    return cosz, s0 * np.clip(cosz, 0, None)


def _clear_sky(cosz: np.ndarray, s0_horizontal: np.ndarray) -> np.ndarray:
    """Global clear-sky irradiance [W m-2]: direct beam 0.7^(AM^0.678) (Meinel & Meinel 1976) + 10 %."""
    airmass = 1 / np.clip(cosz, 0.035, None)
    return np.where(cosz > 0, 1.1 * s0_horizontal * 0.7 ** (airmass**0.678), 0.0)


def _weather(rng, index, lat, lon) -> dict[str, np.ndarray]:
    """SW_IN, TA, RH, VPD, P and USTAR (plus the helpers the fluxes need)."""
    n = len(index)
    start = index - pd.Timedelta(seconds=PERIOD_S)
    day = ((start - start[0].normalize()) // pd.Timedelta(days=1)).to_numpy()
    ndays = int(day.max()) + 1
    frac = ((start.hour + start.minute / 60) / 24).to_numpy() + 1 / 96
    doy = _daily_to_periods(np.arange(ndays) + 1.0, day, frac)

    cosz, s0h = solar(index, lat, lon)
    cloud_day = 1 / (1 + np.exp(-(_ar1(rng, ndays, 0.6, 1.6) - 0.3)))  # 0..1, mostly fair, runs of cloud
    cloud = np.clip(_daily_to_periods(cloud_day, day, frac) + _ar1(rng, n, 0.9, 0.12), 0, 1)
    sw = _clear_sky(cosz, s0h) * (1 - 0.75 * cloud**3.4)

    cloud_d = _daily_to_periods(cloud_day, day, frac)
    anomaly = _daily_to_periods(_ar1(rng, ndays, 0.8, 2.5), day, frac)
    seasonal = 13.0 - 13.0 * np.cos(2 * np.pi * (doy - 20) / 365)
    amp = 9.0 * (1 - 0.6 * cloud_d)
    hour = (index.hour + index.minute / 60).to_numpy() - 0.25
    ta = seasonal + anomaly + amp / 2 * np.cos(2 * np.pi * (hour - 15) / 24) + rng.normal(0, 0.2, n)
    dew = seasonal + anomaly - amp / 2 - 1.0 - 3.0 * (1 - cloud_d) + _ar1(rng, n, 0.95, 0.8)
    ea = np.minimum(esat_hpa(dew), esat_hpa(ta))
    vpd = esat_hpa(ta) - ea
    rh = 100 * ea / esat_hpa(ta)

    rain_day = (cloud_day > 0.75) & (rng.random(ndays) < 0.6)
    p = np.zeros(n)
    for d in np.flatnonzero(rain_day):
        first = int(np.searchsorted(day, d)) + int(rng.integers(0, 40))
        p[first:first + int(rng.integers(3, 16))] = rng.exponential(1.0)

    wind = np.exp(_daily_to_periods(_ar1(rng, ndays, 0.7, 0.35), day, frac) + _ar1(rng, n, 0.9, 0.25))
    night = sw <= 10
    ustar = np.where(night, 0.075, 0.12) * 3.0 * wind * rng.lognormal(0, np.where(night, 0.45, 0.2), n)
    return {"SW_IN": sw, "TA": ta, "RH": rh, "VPD": vpd, "P": p, "USTAR": ustar, "doy": doy, "night": night}


def _phenology(doy: np.ndarray) -> np.ndarray:
    """0 in winter, 1 in summer: leaf-out around day 110, leaf-fall around day 290."""
    return 1 / (1 + np.exp(-(doy - 110) / 6)) * 1 / (1 + np.exp((doy - 290) / 8))


def true_gpp(sw_in, vpd_hpa, phen) -> np.ndarray:
    """Lasslop et al. (2010), light response with VPD limitation [umol m-2 s-1]:
    GPP = alpha beta Rg / (alpha Rg + beta), beta = beta0 exp(-k (VPD - 10 hPa)) above 10 hPa, else beta0;
    alpha = 0.06 umol J-1, beta0 = 32 phen, k = 0.03 hPa-1."""
    beta = 32.0 * phen * np.where(vpd_hpa > 10, np.exp(-0.03 * (vpd_hpa - 10)), 1.0)
    alpha_rg = 0.06 * sw_in
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(beta > 0, alpha_rg * beta / (alpha_rg + beta), 0.0)


def true_reco(ta_degc, phen) -> np.ndarray:
    """Lloyd & Taylor (1994), eq. 11: Rref exp(E0 (1/(Tref - T0) - 1/(T - T0))), Tref = 10 degC, T0 = -46.02 degC,
    E0 = 200 K, Rref = 1.1 + 1.5 phen [umol m-2 s-1]."""
    return (1.1 + 1.5 * phen) * np.exp(200.0 * (1 / 56.02 - 1 / (ta_degc + 46.02)))


def true_fch4(ta_degc: np.ndarray) -> np.ndarray:
    """CH4 emission [nmol m-2 s-1]: 25 * 2.5^((Ts - 10)/10), Ts = TA smoothed over two days (a soil-like lag)."""
    ts = pd.Series(ta_degc).rolling(96, min_periods=1).mean().to_numpy()
    return 25.0 * 2.5 ** ((ts - 10) / 10)


def _measured(rng, true, night, ustar, sd_a, sd_b, ustar_crit=USTAR_CRIT):
    """True flux underestimated at night below the u* threshold, plus Laplace noise with sd = a + b |flux|
    (Richardson et al. 2006); returns (measured, sd)."""
    damp = np.where(night, np.clip(ustar / ustar_crit, 0, 1), 1.0)
    sd = sd_a + sd_b * np.abs(true)
    return true * damp + rng.laplace(0, sd / np.sqrt(2)), sd


def _qc_flags(rng, night, ustar, n) -> np.ndarray:
    """SSITC-like flags: 2 (discard) more often in stable nights, 1 (budgets only) ~15 %."""
    p2 = 0.04 + 0.10 * (night & (ustar < 0.15))
    flags = np.where(rng.random(n) < p2, 2, np.where(rng.random(n) < 0.15, 1, 0))
    return flags.astype(float)


def _outages(rng, n, count, min_days, max_days) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for _ in range(count):
        length = int(rng.integers(min_days * 48, max_days * 48))
        first = int(rng.integers(0, n - length))
        out[first:first + length] = True
    return out


def _after_rain(p: np.ndarray, hours: float) -> np.ndarray:
    """Half-hours with rain or within ``hours`` after it (wet windows, wet mirror)."""
    wet = pd.Series(p > 0).rolling(int(hours * 2) + 1, min_periods=1).max().to_numpy()
    return wet.astype(bool)


def site_year(seed: int, year: int = 2025, lat: float = 38.74, lon: float = -92.20) -> tuple[pd.DataFrame, dict]:
    """(period frame, truth) for one calendar ``year`` of half-hours in UTC-6 (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    tz = timezone(timedelta(hours=UTC_OFFSET_H))
    index = pd.date_range(pd.Timestamp(year, 1, 1, 0, 30, tz=tz), pd.Timestamp(year + 1, 1, 1, tz=tz),
                          freq="30min", name="TIMESTAMP_END")
    n = len(index)
    w = _weather(rng, index, lat, lon)
    phen = _phenology(w["doy"])
    gpp = true_gpp(w["SW_IN"], w["VPD"], phen)
    reco = true_reco(w["TA"], phen)
    nee = reco - gpp
    fch4 = true_fch4(w["TA"])

    fc, fc_sd = _measured(rng, nee, w["night"], w["USTAR"], 0.6, 0.15)
    ch4, ch4_sd = _measured(rng, fch4, w["night"], w["USTAR"], 2.0, 0.1)
    fc_qc = _qc_flags(rng, w["night"], w["USTAR"], n)
    ch4_qc = _qc_flags(rng, w["night"], w["USTAR"], n)
    # what a failed stationarity test lets through, exaggerated: biased and noisier
    fc = np.where(fc_qc == 2, fc + 5.0 + rng.laplace(0, 2.0, n), fc)
    ch4 = np.where(ch4_qc == 2, ch4 + 100.0 + rng.laplace(0, 20.0, n), ch4)

    outage = _outages(rng, n, 3, 2, 10)
    fc_gap = outage | (rng.random(n) < 0.08) | _after_rain(w["P"], 1)
    ch4_gap = outage | (rng.random(n) < 0.15) | _after_rain(w["P"], 6)
    met_gap = np.zeros(n, dtype=bool)
    met_first = int(rng.integers(0, n - 48))
    met_gap[met_first:met_first + 48] = True

    frame = pd.DataFrame({
        "FC": np.where(fc_gap, np.nan, fc), "FC_SSITC_TEST": np.where(fc_gap, np.nan, fc_qc),
        "FC_RANDUNC": np.where(fc_gap, np.nan, fc_sd),
        "FCH4": np.where(ch4_gap, np.nan, ch4), "FCH4_SSITC_TEST": np.where(ch4_gap, np.nan, ch4_qc),
        "FCH4_RANDUNC": np.where(ch4_gap, np.nan, ch4_sd),
        "USTAR": np.where(outage, np.nan, w["USTAR"]),
        **{k: np.where(met_gap, np.nan, w[k]) for k in ("TA", "RH", "VPD", "SW_IN", "P")},
    }, index=index)
    frame.attrs.update(units=dict(UNITS), station="synthetic", site_id="US-Syn", time_zone="Etc/GMT+6",
                       utc_offset="UTC-06:00", period_s=PERIOD_S)
    return frame, _truth(index, nee, gpp, reco, fch4)


def _truth(index, nee, gpp, reco, fch4) -> dict:
    half_hourly = pd.DataFrame({"NEE": nee, "GPP": gpp, "RECO": reco, "FCH4": fch4}, index=index)
    grams = pd.DataFrame({"NEE": nee * G_C_UMOL, "GPP": gpp * G_C_UMOL, "RECO": reco * G_C_UMOL,
                          "CH4": fch4 * G_C_NMOL}, index=index)
    month = (index - pd.Timedelta(seconds=PERIOD_S)).tz_localize(None).to_period("M")
    monthly = grams.groupby(month).sum()
    annual = grams.sum()
    return {"NEE": float(annual["NEE"]), "GPP": float(annual["GPP"]), "RECO": float(annual["RECO"]),
            "CH4": float(annual["CH4"]), "ustar_threshold": USTAR_CRIT, "monthly": monthly,
            "half_hourly": half_hourly}
