"""Analytic spectral correction factors: EddyPro 7.0.9 reference periods, limits and monotonic behaviour."""

import configparser
import dataclasses
import io
import zipfile

import numpy as np
import pytest
from conftest import EC_DATA
from eddypro_output import full_output_rows

from station.flux.footprint import eddypro_site_heights
from station.flux.spectral import (
    ANALYSERS,
    SONICS,
    GasAnalyser,
    Sonic,
    correction_factor,
    eddypro_frequency_grid,
    horst_1997_factor,
    spectral_correction_factors,
    tf_block_average,
    tf_first_order,
    tf_linear_detrending,
    tf_scalar_line_averaging,
    tf_sonic_line_averaging,
    tf_tube,
    tube_reynolds_number,
)

EC = EC_DATA
FLUXPART = EC / "fluxpart-csat3-openpath-20hz"
DEGEB = EC / "degeb-hs50-li7200-20hz"


# --- tiny private readers of the EddyPro files (the real readers live elsewhere) ---------------------


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(text)
    return parser


def site_setup(metadata: configparser.ConfigParser, project: configparser.ConfigParser) -> dict:
    """Geometry as EddyPro 7 uses it: built-in sonic / analyser paths and time constants, separations
    [cm], tube length [cm], diameter [mm], flow [l/min] from the metadata; d and z0 from the canopy rule."""
    site, instr = metadata["Site"], metadata["Instruments"]
    d, z0 = eddypro_site_heights(float(site["canopy_height"]), float(site["displacement_height"]),
                                 float(site["roughness_length"]))
    sonic = SONICS[instr["instr_1_model"].rsplit("_", 1)[0]]
    gas = ANALYSERS[instr["instr_2_model"].rsplit("_", 1)[0]]
    sep_h = np.hypot(float(instr.get("instr_2_northward_separation", 0)),
                     float(instr.get("instr_2_eastward_separation", 0))) / 100.0
    gas = dataclasses.replace(gas, horizontal_separation_m=sep_h,
                              vertical_separation_m=float(instr.get("instr_2_vertical_separation", 0)) / 100.0)
    if float(instr.get("instr_2_tube_length", 0)) > 0:  # closed / enclosed path
        gas = dataclasses.replace(gas, tube_length_m=float(instr["instr_2_tube_length"]) / 100.0,
                                  tube_diameter_m=float(instr["instr_2_tube_diameter"]) / 1000.0,
                                  tube_flow_m3_s=float(instr["instr_2_tube_flowrate"]) / 60000.0)
    return {"z_m": float(instr["instr_1_height"]) - d, "z0_m": z0, "sonic": sonic, "gas": gas,
            "period_s": 60.0 * float(project["RawProcess_Settings"]["avrg_len"]),
            "rate_hz": float(metadata["Timing"]["acquisition_frequency"])}


def fluxpart_case():
    meta = ini((FLUXPART / "eddypro/fluxpart.metadata").read_text())
    project = ini((FLUXPART / "eddypro/fluxpart.eddypro").read_text())
    rows = full_output_rows(FLUXPART / "eddypro/eddypro_fluxpart_full_output.csv", missing_as_nan=True)
    return site_setup(meta, project), rows


def degeb_case():
    ghg = sorted((DEGEB / "raw").glob("*.ghg"))[0]
    with zipfile.ZipFile(ghg) as z:
        name = next(n for n in z.namelist() if n.endswith(".metadata"))
        meta = ini(io.TextIOWrapper(z.open(name), encoding="utf-8").read())
    project = ini((DEGEB / "eddypro/degeb.eddypro").read_text())
    rows = full_output_rows(DEGEB / "eddypro/eddypro_degeb_full_output.csv", missing_as_nan=True)
    return site_setup(meta, project), rows


def factors_for(setup: dict, row: dict[str, float]) -> dict:
    return spectral_correction_factors(
        row["wind_speed"], row["(z-d)/L"], setup["z_m"], setup["period_s"], setup["rate_hz"],
        sonic=setup["sonic"], analysers={"co2": setup["gas"], "h2o": setup["gas"]},
        t_air_k=row["air_temperature"])


REFERENCE_PERIODS = [("fluxpart", 0), ("degeb", 0), ("degeb", 1)]


# --- against EddyPro ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "index"), REFERENCE_PERIODS)
def test_factors_match_eddypro_full_output(dataset, index):
    """Every *_scf of every reference period from EddyPro's own inputs of the same row (wind_speed,
    (z-d)/L, air_temperature). Observed: fluxpart exact to 1e-6; degeb Tau and H to 2e-5, gases to 1.8e-4
    (EddyPro evaluates the gas factors with a (z-d)/L ~0.3 % off the printed one)."""
    setup, rows = fluxpart_case() if dataset == "fluxpart" else degeb_case()
    row = rows[index]
    got = factors_for(setup, row)
    for ours, theirs in (("Tau", "Tau_scf"), ("H", "H_scf"), ("LE", "LE_scf"), ("co2", "co2_scf"),
                         ("h2o", "h2o_scf")):
        assert got[ours] == pytest.approx(row[theirs], rel=5e-4), (ours, got[ours], row[theirs])


def test_reference_geometry_is_what_eddypro_used():
    setup, _ = degeb_case()
    gas = setup["gas"]
    assert setup["z_m"] == pytest.approx(3.8 - 0.067)  # d = 0.4 m > canopy -> 0.67 h_c
    assert gas.horizontal_separation_m == pytest.approx(0.10)
    assert tube_reynolds_number(gas.tube_diameter_m, gas.tube_flow_m3_s, 285.7) == pytest.approx(989, rel=0.01)
    setup, _ = fluxpart_case()
    assert setup["z_m"] == pytest.approx(7.11 - 0.67 * 4.42)  # d = 0 in the metadata -> 0.67 h_c


def test_all_reference_periods_in_one_vectorised_call():
    setup, rows = degeb_case()
    got = spectral_correction_factors(
        np.array([r["wind_speed"] for r in rows]), np.array([r["(z-d)/L"] for r in rows]), setup["z_m"],
        setup["period_s"], sonic=setup["sonic"], analysers={"co2": setup["gas"]},
        t_air_k=np.array([r["air_temperature"] for r in rows]))
    np.testing.assert_allclose(got["co2"], [r["co2_scf"] for r in rows], rtol=5e-4)
    np.testing.assert_allclose(got["H"], [r["H_scf"] for r in rows], rtol=5e-4)


# --- limits ---------------------------------------------------------------------------------------


def test_ideal_instrument_needs_no_correction():
    got = spectral_correction_factors(3.0, -0.2, 5.0, 1800.0, 20.0, sonic=Sonic(),
                                      analysers={"co2": GasAnalyser(), "h2o": GasAnalyser(), "ch4": GasAnalyser()},
                                      high_pass=False)
    for value in got.values():
        assert value == pytest.approx(1.0, abs=1e-12)


def test_very_long_averaging_period_removes_the_high_pass_loss():
    for zl in (-1.0, 0.0, 0.5):
        got = spectral_correction_factors(3.0, zl, 5.0, 1e7, low_pass=False, analysers={"co2": GasAnalyser()})
        for value in got.values():
            assert value == pytest.approx(1.0, abs=2e-3)


def test_transfer_function_limits():
    f = np.array([1e-6, 1.0 / (2 * np.pi * 0.1), 1e5])
    np.testing.assert_allclose(tf_first_order(f, 0.1), [1.0, 2**-0.5, 0.0], atol=1e-3)
    for tf in (tf_sonic_line_averaging, tf_scalar_line_averaging):
        values = tf(np.array([0.0, 1e-7, 1.0, 100.0]), 2.0, 0.15)
        assert values[0] == 1.0 and values[1] == pytest.approx(1.0, abs=1e-6)
        assert np.all(np.diff(values) < 0) and values[-1] < 0.3
    hp = tf_block_average(np.array([1e-7, 1.0 / 1800.0, 1.0]), 1800.0)
    np.testing.assert_allclose(hp, [0.0, 1.0, 1.0], atol=1e-6)
    f_grid = eddypro_frequency_grid()
    assert np.all(tf_linear_detrending(f_grid, 1800.0) <= tf_block_average(f_grid, 1800.0) + 1e-12)
    assert f_grid[0] == pytest.approx(1 / 7200) and f_grid[-1] == pytest.approx(10.0) and np.all(np.diff(f_grid) > 0)


def test_tube_branches_by_reynolds_number():
    f = np.array([0.1, 1.0])
    lam = tf_tube(f, 1.0, 0.004, 1.0 / 60000, 293.0, 1.381e-5)  # 1 l/min in 4 mm: Re ~ 350
    turb = tf_tube(f, 1.0, 0.004, 15.0 / 60000, 293.0, 1.381e-5)  # 15 l/min: Re ~ 5300
    assert tube_reynolds_number(0.004, 1.0 / 60000, 293.0) < 2300 < tube_reynolds_number(0.004, 15.0 / 60000, 293.0)
    radius, velocity = 0.002, (15.0 / 60000) / (np.pi * 0.002**2)
    re = tube_reynolds_number(0.004, 15.0 / 60000, 293.0)
    np.testing.assert_allclose(turb, np.exp(-80 * radius * f**2 * re**-0.125 * 1.0 / velocity**2))
    velocity = (1.0 / 60000) / (np.pi * 0.002**2)
    np.testing.assert_allclose(lam, np.exp(-(1.0 / velocity) * (np.pi * radius * f) ** 2 / (6 * 1.381e-5)))


# --- stability branches and monotonic behaviour -------------------------------------------------------


OPEN = dataclasses.replace(ANALYSERS["li7500"], horizontal_separation_m=0.2)


def cf(**kw):
    args = {"u_ms": 3.0, "zL": -0.1, "z_m": 4.0, "period_s": 1800.0}
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    kw.setdefault("sonic", SONICS["csat3"])
    kw.setdefault("analysers", {"co2": OPEN})
    return spectral_correction_factors(args["u_ms"], args["zL"], args["z_m"], args["period_s"], 20.0, **kw)


def test_unstable_and_neutral_share_the_kaimal_branch_stable_depends_on_zl():
    unstable = [cf(zL=z)["co2"] for z in (-2.0, -0.1, -1e-9, 0.0)]
    assert np.ptp(unstable) == pytest.approx(0.0, abs=1e-12)  # Kaimal unstable model is zL independent
    stable = [cf(zL=z)["co2"] for z in (0.01, 0.1, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(stable) > 0)  # more stable: smaller eddies, more high-frequency loss
    assert stable[1] > unstable[0]
    tau_stable = [cf(zL=z)["Tau"] for z in (0.01, 0.5, 2.0)]
    assert np.all(np.diff(tau_stable) > 0)


@pytest.mark.parametrize("field", ["horizontal_separation_m", "vertical_separation_m", "path_length_m",
                                   "time_constant_s"])
def test_larger_separation_path_or_time_constant_gives_larger_factor(field):
    values = [cf(analysers={"co2": dataclasses.replace(OPEN, **{field: v})}, high_pass=False)["co2"]
              for v in (0.0, 0.05, 0.1, 0.3)]
    assert np.all(np.diff(values) > 0), values


def test_longer_tube_and_faster_wind_increase_lower_height_increases_factor():
    tube = dataclasses.replace(ANALYSERS["li7200"], tube_diameter_m=0.00533, tube_flow_m3_s=3.7 / 60000)
    by_length = [cf(analysers={"co2": dataclasses.replace(tube, tube_length_m=x)})["co2"] for x in (0.0, 0.5, 1, 4)]
    assert np.all(np.diff(by_length) > 0)
    by_wind = [cf(u_ms=u, high_pass=False)["co2"] for u in (0.5, 1, 2, 5, 10)]
    assert np.all(np.diff(by_wind) > 0)
    by_height = [cf(z_m=z, high_pass=False)["co2"] for z in (1.0, 2.0, 5.0, 20.0)]
    assert np.all(np.diff(by_height) < 0)
    by_period = [cf(period_s=t, low_pass=False)["co2"] for t in (600.0, 1800.0, 3600.0)]
    assert np.all(np.diff(by_period) < 0)


def test_h2o_in_the_same_tube_is_attenuated_less_than_co2_laminar_diffusion():
    tube = dataclasses.replace(ANALYSERS["li7200"], tube_length_m=0.711, tube_diameter_m=0.00533,
                               tube_flow_m3_s=3.687 / 60000)
    got = cf(analysers={"co2": tube, "h2o": tube, "ch4": tube})
    assert got["co2"] > got["ch4"] > got["h2o"] > 1.0 and got["LE"] == got["h2o"]


def test_high_pass_per_variable_is_eddypro_convention():
    both = cf(low_pass=False)["co2"]
    once = cf(low_pass=False, high_pass_per_variable=False)["co2"]
    assert 1.5 * (once - 1.0) < both - 1.0 < 2.0 * (once - 1.0)  # (1 - s)^2: nearly twice the loss


def test_vectorised_equals_loop_and_nan_inputs_give_nan():
    u = np.array([0.5, 2.0, 6.0, np.nan])
    zl = np.array([-1.0, 0.0, 0.3, 0.1])
    got = cf(u_ms=u, zL=zl)
    for i in range(3):
        single = cf(u_ms=float(u[i]), zL=float(zl[i]))
        for key in got:
            assert got[key][i] == pytest.approx(single[key], rel=1e-12)
    assert all(np.isnan(v[3]) for v in got.values())


def test_horst_1997_matches_integration_of_its_own_model():
    """Horst (1997): for f Co / cov = (2/pi) (n/n_m) / (1 + (n/n_m)^2), n = f z / U, and the co-spectral
    first-order response 1 / (1 + (2 pi f tau)^2), the attenuation is exactly 1 + 2 pi n_m tau U / z."""
    f = np.logspace(-7, 4, 200001)
    u, z, tau = 3.0, 4.0, 0.15
    for zl in (0.2, 1.0):
        n_m = 2.0 - 1.915 / (1.0 + 0.5 * zl)
        n = f * z / u
        co = (2 / np.pi) * (n / n_m) / (1 + (n / n_m) ** 2) / f
        numeric = correction_factor(f, co, 1.0 / (1.0 + (2 * np.pi * f * tau) ** 2), f_lo_hz=0.0, f_hi_hz=np.inf)
        assert horst_1997_factor(u, zl, z, tau) == pytest.approx(numeric, rel=2e-3)
    assert horst_1997_factor(u, -0.5, z, tau) > horst_1997_factor(u, -0.5, z, tau / 2) > 1.0


def test_transfer_functions_computed_once_give_the_same_factors():
    """The engine computes a period's transfer functions once for the three stability iterations
    (they do not depend on stability): the factors are the same bit for bit as computing them anew,
    for one period and for arrays of periods, closed path included."""
    from station.flux.spectral import transfer_functions

    closed = dataclasses.replace(ANALYSERS["li7200"], horizontal_separation_m=0.15, tube_length_m=0.71,
                                 tube_diameter_m=0.0053, tube_flow_m3_s=15.0 / 60000.0)
    analysers = {"co2": closed, "h2o": closed, "ch4": ANALYSERS["li7700"]}
    for u, t_air in ((3.0, 290.0), (np.array([0.5, 3.0, 0.0, np.nan]), np.array([280.0, 295.0, 290.0, 290.0]))):
        tf = transfer_functions(u, 1800.0, 20.0, sonic=Sonic(), analysers=analysers, t_air_k=t_air)
        for zl in (-2.0, -0.1, 0.3, 1.5):
            fresh = spectral_correction_factors(u, zl, 5.0, 1800.0, 20.0, sonic=Sonic(), analysers=analysers,
                                                t_air_k=t_air)
            reused = spectral_correction_factors(u, zl, 5.0, 1800.0, 20.0, sonic=Sonic(), analysers=analysers,
                                                 t_air_k=t_air, transfers=tf)
            assert fresh.keys() == reused.keys()
            for k in fresh:
                assert np.array_equal(fresh[k], reused[k], equal_nan=True), (k, zl)
            assert np.isfinite(np.asarray(fresh["co2"])).any() and np.all(np.asarray(fresh["co2"])[
                np.isfinite(fresh["co2"])] > 1.0)
