"""The correction chain from covariances to fluxes against EddyPro's own intermediate numbers.

Each reference row of ``full_output`` gives the Level-0 covariances, the period means and the
spectral correction factors EddyPro used; from those alone our air properties and the van Dijk /
WPL chain must reproduce EddyPro's final H, LE, FC, TAU and u*.
"""

from __future__ import annotations

import pytest
from conftest import EC_DATA
from eddypro_output import full_output_rows

from station.flux.air import air_from_sonic
from station.flux.constants import MV_KG_MOL
from station.flux.fluxes import DENSITY, MIXING_RATIO, FluxInputs, Gas, corrected_fluxes

DATA = EC_DATA


def reference_rows(name: str) -> list[dict]:
    return full_output_rows(next((DATA / name / "eddypro").glob("*_full_output.csv")))


def _check(r, got):
    assert got["H"] == pytest.approx(r["H"], rel=2e-4)
    assert got["LE"] == pytest.approx(r["LE"], rel=5e-4, abs=1e-3)
    assert got["FC"] == pytest.approx(r["co2_flux"], rel=5e-4)
    assert got["TAU"] == pytest.approx(r["Tau"], rel=2e-4)
    assert got["USTAR"] == pytest.approx(r["u*"], rel=2e-4)


def test_open_path_chain_matches_eddypro_fluxpart():
    for r in reference_rows("fluxpart-csat3-openpath-20hz"):
        air = air_from_sonic(r["sonic_temperature"], r["air_pressure"],
                             rho_w_kg_m3=r["h2o_molar_density"] * 1e-3 * MV_KG_MOL)
        assert air.rho_a == pytest.approx(r["air_density"], rel=1e-4)
        assert air.cp == pytest.approx(r["air_heat_capacity"], rel=1e-4)
        assert air.ta_k == pytest.approx(r["air_temperature"], abs=0.01)
        # Level 0 from the covariances EddyPro reports (w/co2, w/h2o in mmol m-3 m s-1)
        inp = FluxInputs(
            w_ts=r["w/ts_cov"], u_w=r["un_Tau"] / r["air_density"], v_w=0.0,  # u'w' = -u*^2
            h2o=Gas(r["w/h2o_cov"], r["h2o_molar_density"], DENSITY, open_path=True),
            co2=Gas(r["w/co2_cov"], r["co2_molar_density"], DENSITY, open_path=True),
            scf={"TAU": r["Tau_scf"], "H": r["H_scf"], "LE": r["LE_scf"], "FC": r["co2_scf"]})
        got = corrected_fluxes(inp, air)
        assert got["H_0"] == pytest.approx(r["un_H"], rel=2e-4)
        assert got["FC_0"] == pytest.approx(r["un_co2_flux"], rel=1e-6)
        _check(r, got)


def test_closed_path_mixing_ratio_chain_matches_eddypro_degeb():
    for r in reference_rows("degeb-hs50-li7200-20hz"):
        air = air_from_sonic(r["sonic_temperature"], r["air_pressure"],
                             h2o_mole_fraction=r["h2o_mole_fraction"] * 1e-3)
        assert air.rho_a == pytest.approx(r["air_density"], rel=1e-4)
        assert air.cp == pytest.approx(r["air_heat_capacity"], rel=1e-4)
        # EddyPro's full_output w/co2 and w/h2o are in the measured units (umol/mol, mmol/mol)
        inp = FluxInputs(
            w_ts=r["w/ts_cov"], u_w=r["un_Tau"] / r["air_density"], v_w=0.0,
            h2o=Gas(r["w/h2o_cov"], r["h2o_mixing_ratio"], MIXING_RATIO, open_path=False),
            co2=Gas(r["w/co2_cov"], r["co2_mixing_ratio"], MIXING_RATIO, open_path=False),
            scf={"TAU": r["Tau_scf"], "H": r["H_scf"], "LE": r["LE_scf"], "FC": r["co2_scf"]})
        got = corrected_fluxes(inp, air)
        assert got["FC_0"] == pytest.approx(r["un_co2_flux"], rel=2e-4)
        _check(r, got)


@pytest.mark.parametrize("u_w", [-0.05, 0.03])
def test_tau_carries_the_sign_of_the_momentum_covariance(u_w):
    """EddyPro 7 (fluxes0): Tau = rho u*^2 with the sign of cov(u', w'); u* = (uw^2 + vw^2)^(1/4)."""
    air = air_from_sonic(295.0, 95000.0, rho_w_kg_m3=0.01)
    res = corrected_fluxes(FluxInputs(w_ts=0.1, u_w=u_w, v_w=0.01), air)
    magnitude = air.rho_a * (u_w**2 + 0.01**2) ** 0.5
    assert res["TAU"] == pytest.approx(magnitude if u_w > 0 else -magnitude)
    assert res["USTAR"] == pytest.approx((u_w**2 + 0.01**2) ** 0.25)
