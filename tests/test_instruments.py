"""The instrument table (station.flux.instruments) and what the engine takes from it.

Every model EddyPro's metadata can name has its EddyPro 7 geometry (retrieve_sensor_params.f90), its
path type by model (never by tube settings) and its wind convention; an unknown model is an error
that names it, in the metadata reader and in ``fluxedge flux process``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import EC_DATA

from station.flux import instruments, screening, sonicframe
from station.rawdata import RawDataError, parse_metadata, read_raw
from station.rawdata.ghg import read_ghg_metadata
from station.reprocess.enginesetup import SetupError, nominal_lag_s, setup_for

DEGEB_GHG = sorted((EC_DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))[0]

#: EddyPro 7 retrieve_sensor_params.f90: model -> (hpath m, vpath m, tau s)
EDDYPRO_SONICS = {
    "hs_50": (0.110, 0.125, 1 / 50), "hs_100": (0.110, 0.125, 1 / 100), "r2": (0.110, 0.125, 1 / 50),
    "r3_50": (0.110, 0.125, 1 / 50), "r3_100": (0.110, 0.125, 1 / 100), "r3a_100": (0.110, 0.125, 1 / 100),
    "wm": (0.110, 0.125, 1 / 32), "wmpro": (0.110, 0.125, 1 / 40), "usa1_standard": (0.099, 0.131, 1 / 25),
    "usa1_fast": (0.099, 0.131, 1 / 50), "usoni3_classa_mp": (0.099, 0.131, 1 / 30),
    "usoni3_cage_mp": (0.099, 0.131, 1 / 30), "csat3": (0.058, 0.115, 1 / 60), "csat3b": (0.058, 0.115, 1 / 60),
    "81000": (None, 0.150, 1 / 40), "81000v": (None, 0.150, 1 / 40), "81000re": (None, 0.150, 1 / 40),
    "81000vre": (None, 0.150, 1 / 40),
}
#: model -> (closed path, hpath m, vpath m, tau s)
EDDYPRO_ANALYSERS = {
    "li7500": (False, 0.0095, 0.127, 0.1), "li7500a": (False, 0.0095, 0.127, 0.1),
    "li7500rs": (False, 0.0095, 0.127, 0.1), "li7500ds": (False, 0.0095, 0.127, 0.1),
    "li7200": (True, 0.0127, 0.127, 0.1), "li7200rs": (True, 0.0127, 0.127, 0.1),
    "li7700": (False, 0.0635, 0.50, 0.1), "li6262": (True, 0.013, 0.152, 0.1), "li7000": (True, 0.0095, 0.152, 0.1),
}
GENERIC = {"generic_open_path": False, "generic_closed_path": True, "open_path_krypton": False,
           "open_path_lyman": False, "closed_path_krypton": True, "closed_path_lyman": True}
#: EddyPro AdjustSonicCoordinates: wind-direction offsets by model
DIRECTION_OFFSETS = {"csat3": -180.0, "csat3b": -180.0, "81000": -90.0, "81000vre": -90.0, "usoni3_cage_mp": 90.0,
                     "wmpro": 0.0, "hs_50": 0.0, "usa1_fast": 0.0}


@pytest.mark.parametrize("model", sorted(EDDYPRO_SONICS))
def test_sonic_geometry_is_eddypros(model):
    spec = instruments.sonic_model(f"{model}_1")
    hpath, vpath, tau = EDDYPRO_SONICS[model]
    assert (spec.hpath_m, spec.vpath_m) == (hpath, vpath)
    assert spec.tau_s == pytest.approx(tau, rel=1e-12)
    assert instruments.kind_of(model) == "sonic"


@pytest.mark.parametrize("model", sorted(EDDYPRO_ANALYSERS))
def test_analyser_geometry_and_path_type_are_eddypros(model):
    spec = instruments.analyser_model(f"{model}_2")
    closed, hpath, vpath, tau = EDDYPRO_ANALYSERS[model]
    assert (spec.closed_path, spec.hpath_m, spec.vpath_m, spec.tau_s) == (closed, hpath, vpath, tau)
    assert instruments.kind_of(model) == "irga"


@pytest.mark.parametrize(("model", "closed", "vpath"), [("ec150", False, 0.1537), ("irgason", False, 0.1537),
                                                     ("ec155", True, 0.12)])
def test_campbell_analysers_not_in_eddypro_have_campbells_geometry(model, closed, vpath):
    spec = instruments.analyser_model(f"{model}_1")
    assert (spec.closed_path, spec.vpath_m) == (closed, vpath)
    assert instruments.sonic_model("irgason_1").direction_offset_deg == -180.0  # its CSAT3A head


def test_irgason_is_its_own_master_sonic():
    text = _metadata_text().replace("hs_50_1", "irgason_1").replace("li7200_1", "irgason_1")
    text = text.replace("instr_1_manufacturer=gill", "instr_1_manufacturer=csi")
    md = parse_metadata(text, "irgason.metadata")
    from station.reprocess.enginesetup import master_sonic

    sonic = master_sonic(md)
    assert sonic is not None and sonic.model == "irgason_1" and sonic.height_m == 3.8


@pytest.mark.parametrize(("model", "closed"), sorted(GENERIC.items()))
def test_generic_models_take_geometry_from_the_metadata(model, closed):
    spec = instruments.analyser_model(model)
    assert spec.from_metadata and spec.closed_path is closed


@pytest.mark.parametrize(("model", "offset"), sorted(DIRECTION_OFFSETS.items()))
def test_wind_direction_offsets(model, offset):
    assert instruments.sonic_model(model).direction_offset_deg == offset


def test_li7200_cell_volume_and_nominal_lag():
    """EddyPro SetTimelags: the cell is the hpath x vpath cylinder (16.1 cm3); an LI-7200RS with a 71 cm,
    5.334 mm tube at 15 l/min has a nominal lag of (tube + cell) / flow = 0.128 s."""
    spec = instruments.analyser_model("li7200rs_1")
    assert spec.cell_volume() == pytest.approx(math.pi * 0.00635**2 * 0.127)
    from station.flux.spectral import GasAnalyser

    gas = GasAnalyser(0.127, 0.1, tube_length_m=0.71, tube_diameter_m=0.005334, tube_flow_m3_s=15 / 60000)
    tube = math.pi * 0.002667**2 * 0.71
    assert nominal_lag_s(gas, spec, None) == pytest.approx((tube + spec.cell_volume()) / (15 / 60000))
    assert 0.12 < nominal_lag_s(gas, spec, None) < 0.135


def test_unknown_model_is_an_error_naming_it():
    with pytest.raises(instruments.UnknownModelError, match="'li9999_1'"):
        instruments.analyser_model("li9999_1")
    with pytest.raises(instruments.UnknownModelError, match=r"known: .*csat3"):
        instruments.sonic_model("whirly_1")


def _metadata_text(path=DEGEB_GHG) -> str:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".metadata"))
        return zf.read(name).decode()


def _rewrite_ghg(src, dst, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(".metadata"):
                data = edit(data.decode()).encode()
            zout.writestr(item, data)


def test_metadata_with_an_unknown_model_names_file_key_and_model():
    text = _metadata_text().replace("li7200_1", "li9999_1")
    with pytest.raises(RawDataError) as err:
        parse_metadata(text, "site.metadata")
    msg = str(err.value)
    assert "site.metadata" in msg and "instr_2_model" in msg and "li9999_1" in msg and "li7200" in msg


def test_flux_process_reports_an_unknown_model_without_a_traceback(tmp_path):
    bad = tmp_path / DEGEB_GHG.name
    _rewrite_ghg(DEGEB_GHG, bad, lambda t: t.replace("hs_50_1", "whirly_1"))
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "whirly_1" in proc.stderr and "instr_1_model" in proc.stderr and "Traceback" not in proc.stderr


def test_closed_path_is_decided_by_model_not_tube(tmp_path):
    """An LI-7500 with SmartFlux's tube keys stays open path; an LI-7200 without tube keys cannot be set up."""
    text = _metadata_text()
    md = parse_metadata(text.replace("li7200_1", "li7500a_1"), "x.metadata")
    irga = md.instruments[1]
    assert irga.tube_length_m and irga.tube_length_m > 0 and irga.open_path and not irga.closed_path
    copy = tmp_path / DEGEB_GHG.name
    _rewrite_ghg(DEGEB_GHG, copy, lambda t: t.replace("instr_2_tube_flowrate=3.687", "instr_2_tube_flowrate=0"))
    raw = read_raw(copy, variables=("u", "v", "w", "ts", "co2", "h2o"))
    with pytest.raises(SetupError, match="tube_flowrate"):
        setup_for(raw, 1800.0)


def test_degeb_setup_uses_the_table_and_eddypros_lag_window():
    raw = read_raw(DEGEB_GHG, variables=("u", "v", "w", "ts", "co2", "h2o"))
    setup = setup_for(raw, 1800.0)
    assert (setup.sonic.path_length_m, setup.sonic.time_constant_s) == (0.125, 1 / 50)
    co2 = next(g for g in setup.gases if g.name == "co2")
    assert co2.analyser.closed_path and co2.measure_type == "mixing_ratio"
    assert co2.lag_s == (0.258003, 0.0, 0.516006)  # the metadata's own window is kept
    assert read_ghg_metadata(DEGEB_GHG).instruments[1].closed_path


def test_gill_axis_frame_is_rotated_30_degrees():
    u, v, w = np.array([1.0]), np.array([0.0]), np.array([0.2])
    ru, rv, rw = sonicframe.to_common_frame(u, v, w, rotation_deg=30.0)
    assert (ru[0], rv[0], rw[0]) == pytest.approx((math.cos(math.radians(30)), math.sin(math.radians(30)), 0.2))
    fu, fv, _ = sonicframe.to_common_frame(u, v, w, rotation_deg=30.0, flip_u=True)  # R2: left-handed
    assert (fu[0], fv[0]) == pytest.approx((-math.cos(math.radians(30)), -math.sin(math.radians(30))))


def test_wind_direction_is_the_circular_mean_of_sample_directions():
    """Half the samples from 350 deg, half from 10 deg at different speeds: EddyPro's mean of unit vectors
    gives 0 deg; the direction of the mean wind vector would not."""
    d = np.radians(np.r_[np.full(50, 350.0), np.full(50, 10.0)])
    speed = np.r_[np.full(50, 1.0), np.full(50, 5.0)]
    # direction = 180 - atan2(v, u)  <=>  u = -speed cos(d), v = speed sin(d)
    u, v = -speed * np.cos(d), speed * np.sin(d)
    assert sonicframe.mean_wind_direction_deg(u, v) == pytest.approx(0.0, abs=1e-9) or \
        sonicframe.mean_wind_direction_deg(u, v) == pytest.approx(360.0, abs=1e-9)
    mean_vector = (180.0 - math.degrees(math.atan2(v.mean(), u.mean()))) % 360.0
    assert abs(mean_vector - 0.0) > 5.0
    assert sonicframe.mean_wind_direction_deg(u, v, 35.0 - 180.0) == pytest.approx(215.0)


# Golden diagnostic words (EddyPro FilterDatasetForDiagnostics): value -> bad?
GOLDEN = {
    "li7500": {254: False, 222: True, 250: False, 218: True, 255: False, 0xE0: False, 0xC0: True, 0x60: True},
    "li7200": {8191: False, 7935: True, 0x11E0: False, 0x01E0: True, 8191 - 16: False, 8191 - 32: True},
    "li7700": {15: False, 527: True, 0: False, 32: True, 64 + 128: False, 4096: False, 16: False, 0x8000: True,
               256: True, 1024: True, 2048: True, 8192: True, 16384: True},
    "zero": {0: False, 8192: True, 1: True},
    "gill_wm_hs": {0: False, 10: False, 11: False, 1: True, 60: True},
}


@pytest.mark.parametrize("rule", sorted(GOLDEN))
def test_diagnostic_words(rule):
    words = np.array([*GOLDEN[rule], np.nan], dtype=float)
    expected = np.array([*GOLDEN[rule].values(), False])
    assert np.array_equal(screening.bad_records(words, rule), expected)


def test_rules_by_model():
    assert screening.analyser_rule("li7500ds_1") == "li7500" and screening.analyser_rule("li7200rs_1") == "li7200"
    assert screening.analyser_rule("li7700_2") == "li7700" and screening.analyser_rule("generic_open_path_1") is None
    assert screening.sonic_rule("wmpro_1") == "gill_wm_hs" and screening.sonic_rule("csat3_1") == "zero"
    assert screening.sonic_rule("r3_100_1") == "zero"


def test_screen_blanks_only_its_targets_and_counts_records():
    cols = {"diag_ch4": np.array([15.0, 527.0, 527.0, np.nan]), "ch4": np.array([1.0, 2.0, np.nan, 4.0]),
            "co2": np.array([1.0, 2.0, 3.0, 4.0])}
    out, counts = screening.screen(cols, (screening.DiagnosticScreen("diag_ch4", "li7700", ("ch4",)),))
    assert np.array_equal(out["ch4"], [1.0, np.nan, np.nan, 4.0], equal_nan=True)
    assert out["co2"] is cols["co2"] and counts == {"ch4": 2}
    assert np.array_equal(cols["ch4"], [1.0, 2.0, np.nan, 4.0], equal_nan=True)  # input untouched

