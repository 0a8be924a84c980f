"""LI-7500 self-heating (Burba et al. 2008): the surface heat fluxes, day and night, and their place in
the density corrections of the open-path gases."""

from __future__ import annotations

import dataclasses
import math

import pytest
from test_flux_pipeline import IDEAL, SETUP, synthetic_period

from station.flux import selfheating
from station.flux.pipeline import process


def test_surfaces_warmer_than_air_by_day_heat_the_path():
    day = selfheating.surface_heat(293.15, 2.0, daytime=True)
    assert day.bottom > 0 and day.top > 0 and day.spar > 0
    # Burba et al. (2008) fig. 6: a few to some tens of W m-2 in total for a vertical LI-7500
    assert 5.0 < day.total < 60.0
    # more wind, thinner boundary layers: more heat conducted into the path
    assert selfheating.surface_heat(293.15, 6.0, daytime=True).total > day.total


def test_night_regressions_and_unusable_inputs():
    cold_night = selfheating.surface_heat(263.15, 2.0, daytime=False)
    # the top window runs colder than the air on cold nights (T_top = 1.008 Ta - 0.41)
    assert cold_night.top < 0 < cold_night.bottom
    dt_top = 1.008 * (263.15 - 273.16) - 0.41 + 273.16 - 263.15
    k = 0.000067 * (263.15 - 273.15) + 0.024343
    d_top = 0.0028 * math.sqrt(0.045 / 2.0) + 0.00025 / 2.0 + 0.0045
    assert cold_night.top == pytest.approx(k * dt_top * (0.0225 + d_top) / (d_top * 0.0225), rel=1e-12)
    for t, u in ((293.15, 0.0), (float("nan"), 2.0), (293.15, float("nan"))):
        assert selfheating.surface_heat(t, u, daytime=True).total == 0.0  # EddyPro zeroes the terms


@pytest.mark.parametrize(("lat", "lon", "utc_hour", "day"), [
    (1.35, 103.8, 4.5, True),    # Singapore around local noon
    (1.35, 103.8, 16.0, False),  # and around local midnight
    (51.0, 10.0, 11.0, True),    # central Europe, a winter noon
    (51.0, 10.0, 18.0, False),   # a winter evening
    (-33.9, 18.4, 20.0, False),  # Cape Town, summer night
])
def test_solar_elevation_tells_day_from_night(lat, lon, utc_hour, day):
    t = 1766361600 + utc_hour * 3600  # 2025-12-22 00:00 UTC, a solstice
    assert (selfheating.solar_elevation_deg(lat, lon, t) > 0) is day


def test_equinox_noon_sun_is_overhead_at_the_equator():
    t = 1742515200 + 12 * 3600  # 2025-03-21 12:00 UTC
    assert selfheating.solar_elevation_deg(0.0, 0.0, t) > 85.0
    assert selfheating.solar_elevation_deg(0.0, 0.0, t - 12 * 3600) < -85.0


def test_self_heating_enters_the_density_terms_of_the_li7500_gases_only():
    columns, _truth = synthetic_period(5)
    li7500 = dataclasses.replace(SETUP, gases=tuple(dataclasses.replace(g, self_heating=True) for g in SETUP.gases),
                                 daytime=True)
    plain = process(columns, li7500, IDEAL)
    heated = process(columns, li7500, dataclasses.replace(IDEAL, self_heating="burba_linear"))
    hs = heated["H_BOT"] + heated["H_TOP"] + heated["H_SPAR"]
    assert hs > 0
    assert heated["H"] == plain["H"] and heated["TAU"] == plain["TAU"]  # the sonic sees none of it
    # extra heat term of Webb et al. (1980) eq. 24: rho_c H_s / (rho cp T), plus its effect through E
    assert heated["FC"] > plain["FC"] and heated["FH2O"] > plain["FH2O"]
    not_li7500 = process(columns, dataclasses.replace(li7500, gases=SETUP.gases),
                         dataclasses.replace(IDEAL, self_heating="burba_linear"))
    assert not_li7500["FC"] == plain["FC"] and "H_BOT" not in not_li7500
    with pytest.raises(ValueError, match="self_heating"):
        process(columns, li7500, dataclasses.replace(IDEAL, self_heating="burba_multiple"))


def test_day_and_night_from_the_period_time():
    noon = dataclasses.replace(SETUP, latitude_deg=1.35, longitude_deg=103.8, period_mid_unix_s=1766361600 + 4.5 * 3600)
    assert noon.is_daytime()
    assert not dataclasses.replace(noon, period_mid_unix_s=noon.period_mid_unix_s + 12 * 3600).is_daytime()
    assert not dataclasses.replace(noon, daytime=False).is_daytime()
