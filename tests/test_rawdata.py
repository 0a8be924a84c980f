"""Raw-file readers (station.rawdata) against the real data sets in /work/shared/data/ec.

EddyPro's ``eddypro_stats/*_st1.csv`` holds the statistics of the RAW data of each processed period
(before despiking or rotation). Reproducing its means, variances and covariances from our readers
proves the column mapping and the unit conversions:

- EddyPro uses population moments (divided by N, not N - 1): the tolerance (1e-5 relative, the
  printed precision) tells the two apart.
- ts [K]: TOA5 gives Celsius (+273.15); the .ghg gives only the speed of sound and EddyPro's ts is
  sos**2 / 403.
- co2/h2o of the open-path TOA5 set are molar densities [mmol m-3] converted from mg m-3 and g m-3.
  EddyPro divides by 44.01 and 18.02 g mol-1, we by 44.0095 and 18.01528, so our values are scaled
  by M_ours / M_EddyPro before comparing (for H2O the factor, 2.6e-4, is larger than the tolerance:
  a test checks it is really needed).
- co2/h2o of the .ghg set are dry mixing ratios [umol mol-1, mmol mol-1] (the project's col_co2=25,
  col_h2o=27); tc [K], pc [Pa] come without any factor.
"""

from __future__ import annotations

import csv
import io
import pickle
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from conftest import EC_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from station.rawdata import RawDataError, _textparse, read_delimited, read_metadata, read_raw, read_toa5
from station.rawdata.units import EDDYPRO_MOLAR_MASS_G_MOL, MOLAR_MASS_G_MOL, UnitError, conversion_for

EC = EC_DATA
FLUXPART = EC / "fluxpart-csat3-openpath-20hz"
DEGEB = EC / "degeb-hs50-li7200-20hz"
FLUXPART_MD = FLUXPART / "eddypro" / "fluxpart.metadata"
TOA5_FILES = sorted((FLUXPART / "raw").glob("TOA5_*.dat"))
GHG_FILES = sorted((DEGEB / "raw").glob("*.ghg"))
BERLIN = ZoneInfo("Europe/Berlin")


def _read(path: Path):
    return read_raw(path, FLUXPART_MD if path.suffix == ".dat" else None)


def _st1_rows(dataset: Path) -> list[dict[str, str]]:
    (path,) = (dataset / "eddypro" / "eddypro_stats").glob("*_st1.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("first_statistics")
    return list(csv.DictReader(lines[1:]))


ST1 = [(FLUXPART, row) for row in _st1_rows(FLUXPART)] + [(DEGEB, row) for row in _st1_rows(DEGEB)]


def test_data_sets_are_complete():
    assert len(TOA5_FILES) == 2
    assert len(GHG_FILES) == 4
    assert {row["filename"] for _, row in ST1} == {
        "TOA5_6843.ts_Above_2012_06_07_1245.dat", "2016-12-11T200000_AIU-1359.ghg", "2016-12-11T203000_AIU-1359.ghg"}


# ---------------------------------------------------------------------------------------------- every file loads


@pytest.mark.parametrize("path", TOA5_FILES, ids=lambda p: p.name)
def test_toa5_files_load(path):
    period = _read(path)
    assert period.n_samples == 18000 and period.rate_hz == 20.0
    named = datetime.strptime(path.stem[-15:], "%Y_%m_%d_%H%M").replace(tzinfo=UTC)
    assert period.start == named and period.end == named + timedelta(minutes=15)
    # Campbell stamps each record at the end of its scan: first 0.05 s after the start, last at the end
    assert period.time[0] == pytest.approx(period.start_unix + 0.05, abs=1e-6)
    assert period.time[-1] == pytest.approx(period.end_unix, abs=1e-6)
    assert np.allclose(np.diff(period.time), 0.05, atol=1e-6)
    assert period.gas_types == {"co2": "molar_density", "h2o": "molar_density"}
    assert period.units["co2"] == "mmol m-3" and period.units["ts"] == "K" and period.units["pa"] == "Pa"
    for name in ("u", "v", "w", "ts", "co2", "h2o", "pa", "diag_sonic"):
        assert np.isfinite(period[name]).all(), name
    assert 290 < period["ts"].mean() < 310  # Celsius became Kelvin
    assert 14 < period["co2"].mean() < 16  # ~660 mg m-3 of CO2 is ~15 mmol m-3
    assert 99_000 < period["pa"].mean() < 102_000  # kPa became Pa
    assert not period["diag_sonic"].any()  # diag_csat, ignored by the metadata, read by name
    assert period.header["logger"] == "CR3000" and period.header["table"] == "ts_Above"
    assert period.notes == ()


@pytest.mark.parametrize("path", GHG_FILES, ids=lambda p: p.name)
def test_ghg_files_load(path):
    period = _read(path)
    assert period.n_samples == 36000 and period.rate_hz == 20.0
    # the name is the START in the logger's local time, Europe/Berlin per the header (UTC+1 in December)
    assert period.header["Timezone"] == "Europe/Berlin"
    local = datetime.strptime(path.stem[:17], "%Y-%m-%dT%H%M%S").replace(tzinfo=BERLIN)
    assert period.start == local and period.start.utcoffset() == timedelta(0)
    assert period.start.hour == local.hour - 1
    assert period.end - period.start == timedelta(minutes=30)
    # Seconds/Nanoseconds are UTC; LI-COR stamps the start of each sample
    assert period.time[0] == period.start_unix
    assert period.time[-1] == pytest.approx(period.end_unix - 0.05, abs=1e-6)
    assert np.allclose(np.diff(period.time), 0.05, atol=1e-6)
    assert period.gas_types == {"co2": "mixing_ratio", "h2o": "mixing_ratio"}
    assert period["co2"] is period["co2_mixing_ratio"]
    assert {"co2_molar_density", "co2_mole_fraction", "h2o_molar_density", "h2o_mole_fraction"} <= set(period.columns)
    assert period.units["co2"] == "umol mol-1" and period.units["h2o"] == "mmol mol-1"
    assert period.units["co2_molar_density"] == "mmol m-3" and period.units["pc"] == "Pa"
    for name in ("u", "v", "w", "sos", "ts", "co2", "h2o", "tc", "pc", "pa", "diag_irga", "flow_rate"):
        assert np.isfinite(period[name]).all(), name
    assert (period["diag_irga"] == 8191).all()  # LI-7200: all 13 OK bits set
    assert 380 < period["co2"].mean() < 400  # ppm
    assert 5 < period["h2o"].mean() < 8  # mmol mol-1 (ppt)
    # l min-1: the measured flow (noisy, 0-7 l min-1) averages about 2, well below the nominal 3.687
    assert 1.5 < period["flow_rate"].mean() < 2.5 and period["flow_rate"].min() == 0.0
    assert period.notes == ("ts derived from the speed of sound: sos**2 / 403",)


@pytest.mark.parametrize("path", GHG_FILES[:1], ids=lambda p: p.name)
def test_ghg_gas_columns_are_consistent_physically(path):
    """The three CO2 measures and T, p in canonical units obey their definitions: dry mixing ratio =
    mole fraction / (1 - x_h2o), molar density = x p / (R T). Wrong H2O, T or p units would break this."""
    p = _read(path)
    x_wet, x_dry, x_h2o = p["co2_mole_fraction"], p["co2_mixing_ratio"], p["h2o_mole_fraction"] * 1e-3
    assert np.allclose(x_dry, x_wet / (1.0 - x_h2o), rtol=2e-5)
    density = x_wet * 1e-6 * p["pc"] / (8.314462618 * p["tc"]) * 1e3  # mmol m-3
    assert np.mean(density) == pytest.approx(np.mean(p["co2_molar_density"]), rel=1e-3)
    assert np.allclose(p["ts"], p["sos"] ** 2 / 403.0)


def test_gas_preference_and_variables():
    path = GHG_FILES[0]
    dens = read_raw(path, gas_preference=("molar_density",), variables=("u", "w", "ts", "co2"))
    # a gas named bare reads only its preferred measure type; one named with its type is read too
    assert set(dens.columns) == {"u", "w", "sos", "ts", "co2", "co2_molar_density"}
    both = read_raw(path, gas_preference=("molar_density",), variables=("co2", "co2_mixing_ratio"))
    assert set(both.columns) == {"co2", "co2_molar_density", "co2_mixing_ratio"}
    assert both.gas_types == {"co2": "molar_density"}
    assert dens.gas_types == {"co2": "molar_density"} and dens.units["co2"] == "mmol m-3"
    assert 15 < dens["co2"].mean() < 17
    full = _read(path)
    assert np.array_equal(dens["u"], full["u"]) and np.array_equal(dens["ts"], full["ts"])
    with pytest.raises(ValueError, match="unknown gas measure type"):
        read_raw(path, gas_preference=("wet",))


def test_vectorised_parser_reads_the_real_files_without_fallback(monkeypatch):
    """Every value of the real files is a plain decimal: none may need the slow per-field path."""
    calls = []
    real = _textparse.fallback
    monkeypatch.setattr(_textparse, "fallback", lambda *a: calls.append(a) or real(*a))
    _read(GHG_FILES[0])
    _read(TOA5_FILES[0])
    assert calls == []


# ---------------------------------------------------------------------------------------------- EddyPro st1


def _moments(period, eddypro_mm: bool) -> dict[str, np.ndarray]:
    cols = {name: period[name] for name in ("u", "v", "w", "ts", "co2", "h2o")}
    if eddypro_mm:
        for gas in ("co2", "h2o"):
            cols[gas] = cols[gas] * (MOLAR_MASS_G_MOL[gas] / EDDYPRO_MOLAR_MASS_G_MOL[gas])
    if "tc" in period:
        cols["tc"], cols["pc"] = period["tc"], period["pc"]
    if "pa" in period:
        cols["pe"] = period["pa"]  # EddyPro calls the ambient pressure of open-path sets pe
    return cols


@pytest.mark.parametrize(("dataset", "row"), ST1, ids=[row["filename"] for _, row in ST1])
def test_raw_statistics_match_eddypro_st1(dataset, row):
    path = dataset / "raw" / row["filename"]
    period = _read(path)
    assert int(row["used_records"]) == period.n_samples
    # st1's date/time is the END of the period in the time of the file names (local for the .ghg)
    zone = BERLIN if path.suffix == ".ghg" else UTC
    assert period.end.astimezone(zone).strftime("%Y-%m-%d %H:%M") == f"{row['date']} {row['time']}"
    cols = _moments(period, eddypro_mm=path.suffix == ".dat")
    checked = 0
    for name, values in cols.items():
        mean = float(row[f"mean({name})"])
        if mean == -9999:
            continue
        assert values.mean() == pytest.approx(mean, rel=1e-5), f"mean({name})"
        checked += 1
        if name == "pe":
            continue  # EddyPro's var(pe) of the TOA5 set is 3e-4 off (232.800 vs 232.722); only its mean is used
        assert values.var() == pytest.approx(float(row[f"var({name})"]), rel=1e-5), f"var({name})"
    for a, b in (("u", "v"), ("u", "w"), ("u", "ts"), ("w", "ts"), ("w", "co2"), ("w", "h2o"), ("v", "co2")):
        cov = np.mean((cols[a] - cols[a].mean()) * (cols[b] - cols[b].mean()))
        assert cov == pytest.approx(float(row[f"cov({a}/{b})"]), rel=1e-5), f"cov({a}/{b})"
    assert checked >= 7


def _user_st1_rows() -> tuple[list[str], list[list[str]]]:
    (path,) = (DEGEB / "eddypro" / "eddypro_user_stats").glob("*_st1.csv")
    rows = list(csv.reader(path.read_text().splitlines()[1:]))
    return rows[0], rows[1:]


#: eddypro_user_stats st1 lists the other variables in metadata-column order (co2/h2o twice: molar
#: density, then mole fraction); EddyPro gives flow in m3 s-1 and the dew point in Celsius.
USER_VARIABLES = [
    ("co2", "co2_molar_density", 1.0, 0.0), ("h2o", "h2o_molar_density", 1.0, 0.0), ("air_p", "pa", 1.0, 0.0),
    ("vin_sf", "vin_sf", 1.0, 0.0), ("co2", "co2_mole_fraction", 1.0, 0.0), ("h2o", "h2o_mole_fraction", 1.0, 0.0),
    ("dew_point", "dew_point", 1.0, -273.15),
    ("avg_signal_strength_7200", "avg_signal_strength_7200", 1.0, 0.0),
    ("co2_signal_strength_7200", "co2_signal_strength_7200", 1.0, 0.0),
    ("h2o_signal_strength_7200", "h2o_signal_strength_7200", 1.0, 0.0),
    ("delta_signal_strength_7200", "delta_signal_strength_7200", 1.0, 0.0),
    ("flowrate", "flow_rate", 1.0 / 60000.0, 0.0), ("hit_power", "hit_power", 1.0, 0.0),
    ("hit_vin", "hit_vin", 1.0, 0.0),
]


def test_other_ghg_columns_match_eddypro_user_stats():
    header, rows = _user_st1_rows()
    assert [h[5:-1] for h in header if h.startswith("mean(")] == [v for v, *_ in USER_VARIABLES]
    assert len(rows) == 2
    for row in rows:
        period = _read(DEGEB / "raw" / row[0])
        means = [float(x) for h, x in zip(header, row, strict=True) if h.startswith("mean(")]
        sds = [float(x) for h, x in zip(header, row, strict=True) if h.startswith("st_dev(")]
        for (variable, name, scale, offset), mean, sd in zip(USER_VARIABLES, means, sds, strict=True):
            values = period[name] * scale + offset
            assert values.mean() == pytest.approx(mean, rel=1e-5, abs=1e-9), f"{row[0]} mean({variable})"
            if variable == "air_p":
                continue  # EddyPro's spread of the ambient pressure is 1.5e-4 off (so is var(pe) of the TOA5 set)
            # single-precision noise in EddyPro's spreads reaches 1e-5 here (signal strengths ~102 +- 0.05)
            assert values.std() == pytest.approx(sd, rel=1e-4, abs=1e-9), f"{row[0]} st_dev({variable})"


def test_eddypro_molar_masses_are_really_different():
    """Without the molar-mass rescaling the open-path H2O mean misses st1 by 2.6e-4: the factor in
    _moments is needed, not a fudge hiding a wrong unit (and CO2 with ours is 1e-5 off)."""
    (row,) = [r for d, r in ST1 if d == FLUXPART]
    period = _read(FLUXPART / "raw" / row["filename"])
    assert period["h2o"].mean() == pytest.approx(float(row["mean(h2o)"]) * 18.02 / 18.01528, rel=1e-6)
    assert period["h2o"].mean() != pytest.approx(float(row["mean(h2o)"]), rel=1e-4)


def test_population_variance_is_what_eddypro_reports():
    (row,) = [r for d, r in ST1 if r["filename"] == GHG_FILES[1].name]
    u = _read(GHG_FILES[1])["u"]
    assert u.var(ddof=0) == pytest.approx(float(row["var(u)"]), rel=1e-5)
    assert u.var(ddof=1) != pytest.approx(float(row["var(u)"]), rel=1e-5)


# ---------------------------------------------------------------------------------------------- metadata


def test_degeb_metadata_from_inside_the_ghg():
    md = read_metadata(GHG_FILES[0])
    assert md.source.endswith(".ghg!2016-12-11T200000_AIU-1359.metadata")
    assert md.site.altitude_m == 156.7 and md.site.latitude_deg == 51.0997467 and md.site.longitude_deg == 10.9146452
    assert (md.site.canopy_height_m, md.site.displacement_height_m, md.site.roughness_length_m) == (0.1, 0.4, 0.1)
    assert md.acquisition_frequency_hz == 20.0 and md.file_duration_min == 240  # SmartFlux setting, files are 30 min
    assert md.station.logger_id == "AIU-1359"
    sonic, irga = md.instruments
    assert md.sonic is sonic and md.instrument("li7200_1") is irga
    assert (sonic.kind, sonic.manufacturer, sonic.model, sonic.model_base) == ("sonic", "gill", "hs_50_1", "hs_50")
    assert sonic.height_m == 3.8 and sonic.north_offset_deg == -76.0
    assert (sonic.wformat, sonic.wref, sonic.serial) == ("uvw", "spar", "160608")
    assert (sonic.northward_separation_m, sonic.eastward_separation_m, sonic.vertical_separation_m) == (0, 0, 0)
    assert sonic.tube_length_m is None and sonic.tau_s is None
    assert irga.kind == "irga" and irga.closed_path
    assert irga.tube_length_m == 0.711  # 71.1 cm
    assert irga.tube_diameter_m == 0.00533  # 5.33 mm
    assert irga.flow_rate_l_min == 3.687
    assert irga.eastward_separation_m == 0.10  # 10 cm
    assert (md.separator, md.header_rows, md.data_label) == ("\t", 8, "DATA")
    assert len(md.columns) == 47 and len(md.read_columns) == 25
    co2 = md.columns[24]
    assert (co2.index, co2.variable, co2.measure_type, co2.unit_in, co2.instrument) == (
        25, "co2", "mixing_ratio", "ppm", "li7200_1")
    assert (co2.nom_timelag_s, co2.min_timelag_s, co2.max_timelag_s) == (0.258003, 0.0, 0.516006)
    assert md.columns[17].variable == "u" and md.columns[17].unit_in == "m_sec"
    assert md.columns[0].skipped and md.columns[5].variable == "not_numeric"
    assert _read(GHG_FILES[0]).metadata == md
    assert md.sections["instruments"]["instr_2_tube_flowrate"] == "3.687"  # every key, as written
    assert pickle.loads(pickle.dumps(md)) == md


def test_fluxpart_metadata():
    md = read_metadata(FLUXPART_MD)
    assert md.site.canopy_height_m == 4.42 and md.site.latitude_deg == 36.0 and md.site.longitude_deg == -120.0
    assert md.site.displacement_height_m == 0.0 and md.site.altitude_m == 0.0
    sonic, irga = md.instruments
    assert (sonic.kind, sonic.model_base, sonic.height_m, sonic.north_offset_deg) == ("sonic", "csat3", 7.11, 0.0)
    assert sonic.hpath_length_m == 0.01 and sonic.tau_s == 0.1  # EddyPro's placeholders, 1 cm
    assert (irga.kind, irga.model_base, irga.closed_path, irga.tube_length_m) == ("irga", "li7500", False, 0.0)
    assert (irga.kw, irga.ko) == (0.15, 0.0085)
    for ins in md.instruments:
        assert ins.northward_separation_m == ins.eastward_separation_m == ins.vertical_separation_m == 0
    assert (md.separator, md.header_rows, md.data_label, md.timestamp_at_end) == (",", 4, None, False)
    assert [c.variable for c in md.columns] == ["not_numeric", "ignore", "u", "v", "w", "co2", "h2o", "ts", "air_p",
                                                "ignore"]
    assert (md.columns[5].unit_in, md.columns[5].measure_type) == ("mg_m3", "molar_density")
    assert md.columns[5].to_canonical.scale == pytest.approx(1 / 44.0095, rel=1e-15)


# ---------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize(("variable", "unit", "measure", "raw", "canonical", "unit_out"), [
    ("co2", "mg_m3", "molar_density", 44.0095, 1.0, "mmol m-3"),
    ("h2o", "g_m3", "molar_density", 18.01528, 1000.0, "mmol m-3"),
    ("ch4", "ug_m3", "molar_density", 16.04246, 1e-3, "mmol m-3"),
    ("co2", "umol_m3", "molar_density", 16000.0, 16.0, "mmol m-3"),
    ("co2", "ppm", "mixing_ratio", 400.0, 400.0, "umol mol-1"),
    ("ch4", "ppb", "mole_fraction", 1900.0, 1.9, "umol mol-1"),
    ("h2o", "ppt", "mole_fraction", 6.5, 6.5, "mmol mol-1"),
    ("h2o", "ppm", "mixing_ratio", 6500.0, 6.5, "mmol mol-1"),
    ("h2o", "ppb", "mixing_ratio", 6.5e6, 6.5, "mmol mol-1"),
    ("ts", "celsius", None, 20.0, 293.15, "K"),
    ("cell_t", "ccelsius", None, 2000.0, 293.15, "K"),
    ("air_t", "ckelvin", None, 29315.0, 293.15, "K"),
    ("air_p", "hpa", None, 1013.25, 101325.0, "Pa"),
    ("int_p", "kpa", None, 95.5, 95500.0, "Pa"),
    ("u", "cm_sec", None, 250.0, 2.5, "m s-1"),
    ("flowrate", "lit_m", None, 12.0, 12.0, "l min-1"),
    ("vin_sf", "mvolt", None, 1500.0, 1.5, "V"),
])
def test_unit_conversions(variable, unit, measure, raw, canonical, unit_out):
    conv = conversion_for(variable, unit, measure)
    assert conv.unit == unit_out
    assert conv.apply(np.array([raw]))[0] == pytest.approx(canonical, rel=1e-12)


@pytest.mark.parametrize(("variable", "unit", "measure", "message"), [
    ("co2", "furlongs", "molar_density", "unknown unit 'furlongs'"),
    ("co2", "ppm", "molar_density", "molar density but its unit 'ppm'"),
    ("h2o", "g_m3", "mixing_ratio", "mixing_ratio but its unit 'g_m3'"),
    ("co2", "ppm", None, "needs a measure type"),
    ("u", "kpa", None, "needs a speed unit"),
    ("ts", "m_sec", None, "needs a temperature unit"),
])
def test_unit_errors(variable, unit, measure, message):
    with pytest.raises(UnitError, match=message):
        conversion_for(variable, unit, measure)


# ---------------------------------------------------------------------------------------------- number parser


def _parse(tokens: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    buf = b",".join(tokens) + b"\n"
    data = np.frombuffer(buf, dtype=np.uint8)
    bounds = np.concatenate([[-1], np.flatnonzero((data == 44) | (data == 10))])
    return _textparse.parse_fields(data, bounds[:-1] + 1, bounds[1:])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9), min_size=1,
                max_size=50), st.integers(0, 9))
def test_vectorised_parser_is_exactly_float(values, decimals):
    tokens = [f"{v:.{decimals}f}".encode() for v in values] + [repr(v).encode() for v in values]
    parsed, bad = _parse(tokens)
    for token, value, fallback in zip(tokens, parsed, bad, strict=True):
        if not fallback:
            assert value == float(token), token
    # only exponents and more than 15 digits may need the fallback
    for token, fallback in zip(tokens, bad, strict=True):
        if fallback:
            assert b"e" in token or sum(ch.isdigit() for ch in token.decode()) > 15, token


def test_vectorised_parser_flags_what_is_not_a_plain_number():
    tokens = [b"1.5", b"-0.25", b"+7", b".5", b"5.", b"-9999", b"", b"NAN", b'"NAN"', b"1e5", b"1.2.3", b"1-2",
              b"-", b".", b" 1", b"1\x002", b"12345678901234567"]
    values, bad = _parse(tokens)
    assert list(values[:6]) == [1.5, -0.25, 7.0, 0.5, 5.0, -9999.0]
    assert not bad[:6].any() and bad[6:].all()


# ---------------------------------------------------------------------------------------------- errors


def _small_ghg(tmp_path: Path, *, rows: int = 40, edit=None, members=(".data", ".metadata"),
               name: str = "2016-12-11T200000_AIU-1359.ghg") -> Path:
    """A .ghg with the real header and metadata and the first ``rows`` records, optionally edited."""
    with zipfile.ZipFile(GHG_FILES[0]) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    out = tmp_path / name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, content in parts.items():
            if member.endswith(".data"):
                lines = content.split(b"\n")
                content = b"\n".join(lines[:8 + rows]) + b"\n"
                if edit:
                    content = edit(content)
            if any(member.endswith(m) for m in members):
                zf.writestr(member, content)
    return out


def test_small_ghg_reads_with_missing_markers(tmp_path):
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        fields = lines[8].split(b"\t")  # first record (after 7 header lines and DATAH)
        fields[18] = b"nan"  # u (col_18 -> field 18 after the DATA label)
        fields[20] = b"-9999"  # w
        fields[25] = b""  # co2 dry
        lines[8] = b"\t".join(fields)
        return b"\n".join(lines)

    period = read_raw(_small_ghg(tmp_path, rows=40, edit=edit))
    assert period.n_samples == 40
    assert np.isnan(period["u"][0]) and np.isnan(period["w"][0]) and np.isnan(period["co2"][0])
    assert np.isfinite(period["u"][1:]).all() and np.isfinite(period["v"]).all()
    assert period.end - period.start == timedelta(seconds=2)


def test_truncated_zip(tmp_path):
    cut = tmp_path / GHG_FILES[0].name
    cut.write_bytes(GHG_FILES[0].read_bytes()[:1_000_000])
    with pytest.raises(RawDataError, match="truncated or corrupt") as info:
        read_raw(cut)
    assert str(cut) in str(info.value)


def test_corrupt_member(tmp_path):
    raw = bytearray(GHG_FILES[0].read_bytes())
    raw[500_000:500_100] = bytes(100)  # inside the compressed .data
    bad = tmp_path / GHG_FILES[0].name
    bad.write_bytes(bytes(raw))
    with pytest.raises(RawDataError, match=r"\.data is truncated or corrupt") as info:
        read_raw(bad)
    assert str(bad) in str(info.value)


def test_ghg_without_data_member(tmp_path):
    path = _small_ghg(tmp_path, members=(".metadata",))
    with pytest.raises(RawDataError, match=r"no \.data files in the archive \(it holds: .*\.metadata\)") as info:
        read_raw(path)
    assert str(path) in str(info.value)


def test_ghg_without_metadata_needs_one(tmp_path):
    path = _small_ghg(tmp_path, members=(".data",))
    with pytest.raises(RawDataError, match=r"no \.metadata file in the archive: pass metadata="):
        read_raw(path)
    md = tmp_path / "degeb.metadata"
    with zipfile.ZipFile(GHG_FILES[0]) as zf:
        md.write_bytes(zf.read("2016-12-11T200000_AIU-1359.metadata"))
    assert read_raw(path, md).n_samples == 40
    assert read_raw(path, read_metadata(md)).metadata.source == str(md)


def _fluxpart_metadata(tmp_path: Path, replace: dict[str, str | None]) -> Path:
    text = FLUXPART_MD.read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0]
        if key in replace:
            if replace[key] is None:
                continue
            line = f"{key}={replace[key]}"
        lines.append(line)
    path = tmp_path / "edited.metadata"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("replace", "section", "key", "problem"), [
    ({"col_6_unit_in": "furlongs_m3"}, "FileDescription", "col_6_unit_in", "unknown unit 'furlongs_m3'"),
    ({"col_3_unit_in": "kpa"}, "FileDescription", "col_3_unit_in", "'u' needs a speed unit"),
    ({"col_6_measure_type": ""}, "FileDescription", "col_6_measure_type", "needs a measure type"),
    ({"col_6_unit_in": ""}, "FileDescription", "col_6_unit_in", "missing: 'co2' needs a unit"),
    ({"acquisition_frequency": None}, "Timing", "acquisition_frequency", "missing"),
    ({"acquisition_frequency": "fast"}, "Timing", "acquisition_frequency", "not a number: 'fast'"),
    ({"latitude": None}, "Site", "latitude", "missing"),
    ({"latitude": "91"}, "Site", "latitude", "within -90..90"),
    ({"instr_1_height": None}, "Instruments", "instr_1_height", "height of anemometer 'csat3_1' is required"),
    ({"col_4_variable": None}, "FileDescription", "col_4_variable", "without gaps"),
    ({"separator": "pipe-ish"}, "FileDescription", "separator", "unknown separator"),
    ({"col_3_instrument": "csat9_1"}, "FileDescription", "col_3_instrument", "'csat9_1'"),
    ({"col_3_conversion": "magic"}, "FileDescription", "col_3_conversion", "unknown conversion 'magic'"),
])
def test_metadata_errors_name_file_section_and_key(tmp_path, replace, section, key, problem):
    path = _fluxpart_metadata(tmp_path, replace)
    with pytest.raises(RawDataError) as info:
        read_metadata(path)
    err = info.value
    assert (err.path, err.section, err.key) == (str(path), section, key)
    assert str(err).startswith(f"{path}, [{section}] {key}: ")
    assert problem in str(err)


def test_metadata_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "broken.metadata"
    path.write_text(FLUXPART_MD.read_text().replace("[Timing]", "[Timing]\nthis line has no equals sign"))
    with pytest.raises(RawDataError, match=r"broken\.metadata, line 37: expected key=value"):
        read_metadata(path)
    no_site = tmp_path / "nosite.metadata"
    no_site.write_text(FLUXPART_MD.read_text().replace("[Site]", "[NotSite]"))
    with pytest.raises(RawDataError, match=r"nosite\.metadata, \[Site\]: missing section"):
        read_metadata(no_site)


def test_gain_offset_conversion_is_applied(tmp_path):
    md = _fluxpart_metadata(tmp_path, {"col_8_conversion": "gain_offset", "col_8_unit_out": "kelvin",
                                       "col_8_a_value": "1", "col_8_b_value": "273.15",
                                       "col_8_unit_in": "mvolt"})
    reference = _read(TOA5_FILES[0])
    converted = read_raw(TOA5_FILES[0], md)
    assert np.array_equal(converted["ts"], reference["ts"])  # x * 1 + 273.15, then kelvin: unchanged


def test_zero_fullscale_conversion_and_auxiliary_units(tmp_path):
    md = _fluxpart_metadata(tmp_path, {
        "col_8_conversion": "zero_fullscale", "col_8_unit_in": "mvolt", "col_8_unit_out": "kelvin",
        "col_8_min_value": "0", "col_8_max_value": "100", "col_8_a_value": "273.15", "col_8_b_value": "373.15",
        "col_10_variable": "sonic_flags", "col_10_unit_in": "bananas"})
    reference = _read(TOA5_FILES[0])
    converted = read_raw(TOA5_FILES[0], md)
    assert np.allclose(converted["ts"], reference["ts"], rtol=0, atol=1e-12)  # 0..100 mV -> 273.15..373.15 K
    assert converted.units["sonic_flags"] == "bananas" and not converted["sonic_flags"].any()
    assert "diag_sonic" not in converted  # the diag_csat field is described now, under its new name


def test_toa5_logger_time_zone():
    pdt = ZoneInfo("America/Los_Angeles")
    period = read_toa5(TOA5_FILES[0], FLUXPART_MD, tz=pdt)
    assert period.start == datetime(2012, 6, 7, 12, 45, tzinfo=pdt) == datetime(2012, 6, 7, 19, 45, tzinfo=UTC)
    assert period.time[0] == pytest.approx(period.start_unix + 0.05, abs=1e-6)
    assert period.notes == ()


def _toa5_copy(tmp_path: Path, edit) -> Path:
    lines = TOA5_FILES[0].read_bytes().split(b"\r\n")
    path = tmp_path / TOA5_FILES[0].name
    path.write_bytes(edit(lines))
    return path


def test_toa5_short_record_is_an_error_naming_the_line(tmp_path):
    def edit(lines):
        lines[104] = lines[104].rsplit(b",", 2)[0]  # record on file line 105 loses two fields
        return b"\r\n".join(lines)

    path = _toa5_copy(tmp_path, edit)
    with pytest.raises(RawDataError, match=r"line 105: record has 8 fields, expected 10") as info:
        read_raw(path, FLUXPART_MD)
    assert str(path) in str(info.value)


def test_toa5_cut_off_last_record_is_dropped(tmp_path):
    path = _toa5_copy(tmp_path, lambda lines: b"\r\n".join(lines[:-1])[:-25])
    period = read_raw(path, FLUXPART_MD)
    assert period.n_samples == 17999
    assert any("cut off" in note for note in period.notes)


def test_toa5_text_in_a_numeric_column(tmp_path):
    def edit(lines):
        fields = lines[10].split(b",")
        fields[2] = b'"oops"'
        lines[10] = b",".join(fields)
        fields = lines[11].split(b",")
        fields[2] = b'"NAN"'
        lines[11] = b",".join(fields)
        return b"\r\n".join(lines)

    period = read_raw(_toa5_copy(tmp_path, edit), FLUXPART_MD)
    assert np.isnan(period["u"][6]) and np.isnan(period["u"][7]) and np.isfinite(period["u"][8])
    assert any("column 3 (u): 1 values are not numbers (first on line 11: '\"oops\"')" in n for n in period.notes)


def test_metadata_describing_a_text_column_as_numbers(tmp_path):
    md = _fluxpart_metadata(tmp_path, {"col_1_variable": "u", "col_1_unit_in": "m_sec"})
    with pytest.raises(RawDataError, match=r"no value of column 1 \(u\) is a number, e\.g\. '\"2012-06-07"):
        read_raw(TOA5_FILES[0], md)


def test_toa5_needs_metadata_and_a_toa5_header(tmp_path):
    with pytest.raises(RawDataError, match=r"give the EddyPro \.metadata file"):
        read_raw(TOA5_FILES[0])
    short = tmp_path / "short.dat"
    short.write_bytes(b'"TOA5","x"\r\n')
    with pytest.raises(RawDataError, match="TOA5 header is 4 lines"):
        read_toa5(short, FLUXPART_MD)
    other = tmp_path / "other.dat"
    other.write_bytes(TOA5_FILES[0].read_bytes().replace(b'"TOA5"', b'"TOB1"', 1))
    with pytest.raises(RawDataError, match='not a TOA5 file: line 1 starts'):
        read_toa5(other, FLUXPART_MD)


def test_missing_file():
    with pytest.raises(RawDataError, match="cannot read"):
        read_raw(EC / "nope.dat", FLUXPART_MD)
    with pytest.raises(RawDataError, match="cannot read: No such file"):
        read_raw(EC / "nope.ghg")


# ---------------------------------------------------------------------------------------------- generic text


def test_delimited_reader_with_prototype_and_label(tmp_path):
    """A generic file: header line, label column, semicolons, CRLF; start from an EddyPro prototype."""
    md_text = FLUXPART_MD.read_text()
    md_text = md_text.replace("separator=comma", "separator=semicolon").replace("header_rows=4", "header_rows=1")
    md_text = md_text.replace("data_label=Not set", "data_label=REC")
    md_text = md_text.replace("tstamp_end=0", "tstamp_end=1")
    md = tmp_path / "generic.metadata"
    md.write_text(md_text)
    body = io.BytesIO()
    body.write(b"whatever header\r\n")
    for i in range(200):
        body.write(f"REC;x;{i};1.5;-0.5;0.25;660.0;9.0;25.0;100.0;0\r\n".encode())
        if i == 50:
            body.write(b"NOTE;this line is not a record\r\n\r\n")
    path = tmp_path / "site_161211_0930.txt"
    path.write_bytes(body.getvalue())
    period = read_delimited(path, md, prototype="site_yymmdd_HHMM.txt")
    assert period.n_samples == 200
    assert period.end == datetime(2016, 12, 11, 9, 30, tzinfo=UTC)  # tstamp_end=1: the name is the end
    assert period.start == period.end - timedelta(seconds=10)
    assert (period["u"] == 1.5).all() and (period["ts"] == 298.15).all() and (period["pa"] == 100_000.0).all()
    assert period["co2"][0] == pytest.approx(660.0 / 44.0095)
    assert period.time is None
    with pytest.raises(RawDataError, match="cannot tell when the period starts"):
        read_delimited(path.rename(tmp_path / "no_time_here.txt"), md)


def test_space_separated_file(tmp_path):
    md_text = FLUXPART_MD.read_text().replace("separator=comma", "separator=space").replace("header_rows=4",
                                                                                              "header_rows=2")
    md = tmp_path / "spaces.metadata"
    md.write_text(md_text)
    rows = ["# two", "# header lines"] + [f"  t{i}   {i}  1.5 -0.5\t0.25 660 9 25 100   0  " for i in range(40)]
    path = tmp_path / "2012-06-07T124500_spaces.txt"
    path.write_text("\n".join(rows) + "\n")
    period = read_delimited(path, md)
    assert period.n_samples == 40 and period.start == datetime(2012, 6, 7, 12, 45, tzinfo=UTC)
    assert (period["w"] == 0.25).all() and (period["pa"] == 100_000.0).all()
    path.write_text("\n".join([*rows[:20], "  t  1  2  3", *rows[20:]]) + "\n")
    with pytest.raises(RawDataError, match=r"line 21: record has 4 fields, expected 10"):
        read_delimited(path, md)


def test_fast_inflate_equals_zipfile_and_checks_the_crc(tmp_path, monkeypatch):
    """ISA-L reads the member byte for byte as zipfile does; a flipped byte in the stored deflate
    stream is caught (by the inflater or the CRC-32), and without isal zipfile itself reads it."""
    import zipfile

    from station.rawdata import inflate

    payload = ("DATA\t" + "\t".join(f"{i * 0.001:.3f}" for i in range(40)) + "\n").encode() * 3000
    path = tmp_path / "x.ghg"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.data", payload)
        zf.writestr("x.metadata", b"[Site]\n", compress_type=zipfile.ZIP_STORED)
    with zipfile.ZipFile(path) as zf:
        assert inflate.read_member(zf, "x.data") == payload
        assert inflate.read_member(zf, "x.metadata") == b"[Site]\n"
        offset = zf.getinfo("x.data").header_offset + 30 + len("x.data") + 200
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF
    bad = tmp_path / "bad.ghg"
    bad.write_bytes(bytes(blob))
    with zipfile.ZipFile(bad) as zf, pytest.raises(zipfile.BadZipFile, match=r"x\.data"):
        inflate.read_member(zf, "x.data")
    for flip in range(offset, offset + 2000, 97):  # wherever the damage, never anything but BadZipFile
        blob = bytearray(path.read_bytes())
        blob[flip] ^= 0x55
        bad.write_bytes(bytes(blob))
        with zipfile.ZipFile(bad) as zf:
            try:
                assert inflate.read_member(zf, "x.data") != payload
            except zipfile.BadZipFile:
                pass
    monkeypatch.setattr(inflate, "_fast", None)
    with zipfile.ZipFile(path) as zf:
        assert inflate.read_member(zf, "x.data") == payload
