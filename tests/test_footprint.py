"""Footprint distances: Kljun et al. (2004) against EddyPro 7.0.9, validity ranges, Kormann & Meixner
(2001) fallback and the crosswind-integrated Kljun et al. (2015) FFP."""

import configparser
import io
import math
import zipfile

import numpy as np
import pytest
from conftest import EC_DATA
from eddypro_output import full_output_rows

from station.flux.footprint import (
    eddypro_footprint,
    eddypro_site_heights,
    kljun_2004,
    kljun_2004_lprime,
    kljun_2015,
    kormann_meixner_2001,
)

EC = EC_DATA
COLUMNS = ("x_peak", "x_offset", "x_10%", "x_30%", "x_50%", "x_70%", "x_90%")


def metadata(dataset: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    if dataset == "fluxpart":
        parser.read_string((EC / "fluxpart-csat3-openpath-20hz/eddypro/fluxpart.metadata").read_text())
    else:
        ghg = sorted((EC / "degeb-hs50-li7200-20hz/raw").glob("*.ghg"))[0]
        with zipfile.ZipFile(ghg) as z:
            name = next(n for n in z.namelist() if n.endswith(".metadata"))
            parser.read_string(io.TextIOWrapper(z.open(name), encoding="utf-8").read())
    return parser


def reference(dataset: str):
    meta = metadata(dataset)
    site = meta["Site"]
    d, z0 = eddypro_site_heights(float(site["canopy_height"]), float(site["displacement_height"]),
                                 float(site["roughness_length"]))
    z_m = float(meta["Instruments"]["instr_1_height"]) - d
    name = "fluxpart-csat3-openpath-20hz/eddypro/eddypro_fluxpart" if dataset == "fluxpart" \
        else "degeb-hs50-li7200-20hz/eddypro/eddypro_degeb"
    return z_m, z0, full_output_rows(EC / f"{name}_full_output.csv")


@pytest.mark.parametrize(("dataset", "index"), [("fluxpart", 0), ("degeb", 0), ("degeb", 1)])
def test_kljun_2004_matches_eddypro_full_output(dataset, index):
    """All seven distances from EddyPro's own row inputs (sqrt(w_var), u*, (z-d)/L); observed agreement
    better than 1e-6 relative, i.e. to EddyPro's printed digits."""
    z_m, z0, rows = reference(dataset)
    row = rows[index]
    assert row["model"] == 0  # EddyPro used Kljun 2004, not its Kormann-Meixner fallback
    got = kljun_2004(math.sqrt(row["w_var"]), row["u*"], row["(z-d)/L"], z_m, z0)
    for col in COLUMNS:
        assert got[col] == pytest.approx(row[col], rel=1e-5), col
    # (z-d)/L and L of the same row confirm the displacement height EddyPro used
    assert row["(z-d)/L"] * row["L"] == pytest.approx(z_m, rel=1e-5)


def test_site_heights_follow_eddypro_rules():
    assert eddypro_site_heights(4.42, 0.0, 0.0) == pytest.approx((0.67 * 4.42, 0.15 * 4.42))
    assert eddypro_site_heights(0.1, 0.4, 0.1) == pytest.approx((0.067, 0.1))
    assert eddypro_site_heights(10.0, 6.0, 1.2) == pytest.approx((6.0, 1.2))
    assert eddypro_site_heights(10.0) == pytest.approx((6.7, 1.5))


def test_kljun_2004_validity_ranges_give_nan():
    base = {"sigma_w": 0.5, "ustar": 0.4, "zL": -0.1, "z_m": 5.0, "z0_m": 0.1}
    assert np.isfinite(kljun_2004(**base)["x_90%"])
    for key, bad in (("ustar", 0.19), ("zL", 1.01), ("zL", -201.0), ("z_m", 0.9), ("z0_m", 0.0), ("sigma_w", 0.0)):
        got = kljun_2004(**{**base, key: bad})
        assert all(np.isnan(v) for v in got.values()), (key, bad)
    edge = kljun_2004(**{**base, "ustar": 0.2, "zL": 1.0, "z_m": 1.0})
    assert np.isfinite(edge["x_peak"])


def test_kljun_2004_ordering_scaling_and_vectorisation():
    sw = np.array([0.3, 0.5, 0.8])
    got = kljun_2004(sw, 0.4, -0.1, 5.0, 0.1)
    stacked = np.stack([got[c] for c in ("x_offset", "x_10%", "x_30%", "x_peak", "x_50%", "x_70%", "x_90%")])
    assert np.all(np.diff(stacked, axis=0) > 0)  # peak lies between x_30% and x_50% for b = 3.7
    assert np.all(np.diff(got["x_90%"]) < 0)  # more vertical mixing: shorter footprint
    doubled = kljun_2004(sw, 0.4, -0.1, 10.0, 0.1)
    np.testing.assert_allclose(doubled["x_50%"], 2 * got["x_50%"])  # linear in z_m


def test_lprime_table_is_the_inverse_of_the_model_cumulative():
    r = np.arange(0.05, 0.951, 0.05)
    np.testing.assert_allclose(kljun_2004_lprime(r, "analytic"), kljun_2004_lprime(r), rtol=3e-3)
    assert np.isnan(kljun_2004_lprime(0.96)) and kljun_2004_lprime(0.5) == pytest.approx(1.183992)


def test_kormann_meixner_fallback_where_kljun_is_invalid():
    got = eddypro_footprint(0.5, np.array([0.4, 0.1]), -0.1, 3.0, 5.0, 0.1)
    assert list(got["model"]) == [0, 1]
    km = kormann_meixner_2001(0.1, -0.1, 3.0, 5.0)
    assert got["x_90%"][1] == km["x_90%"]
    assert km["x_10%"] < km["x_50%"] < km["x_90%"] and km["x_peak"] > 0
    stable = kormann_meixner_2001(0.3, 0.3, 3.0, 5.0)
    unstable = kormann_meixner_2001(0.3, -0.3, 3.0, 5.0)
    assert stable["x_90%"] > unstable["x_90%"]


def test_kljun_2015_closed_forms_match_integration_of_eq_14():
    a, b, c, d = 1.4524, -1.9914, 1.4622, 0.1359
    xs = d + np.logspace(-4, 6, 400001)
    fstar = a * (xs - d) ** b * np.exp(-c / (xs - d))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (fstar[1:] + fstar[:-1]) * np.diff(xs))])
    got = kljun_2015(0.4, -0.1, 5.0, 1000.0, z0_m=0.1)
    scale = got["x_peak"] / (d - c / b)
    assert xs[np.argmax(fstar)] * scale == pytest.approx(got["x_peak"], rel=1e-3)
    for name, r in (("x_10%", 0.1), ("x_50%", 0.5), ("x_90%", 0.9)):
        assert xs[np.searchsorted(cum, r)] * scale == pytest.approx(got[name], rel=0.01), name


def test_kljun_2015_branches_and_validity():
    neutral = kljun_2015(0.4, 0.0, 5.0, 1000.0, z0_m=0.1)
    # neutral: X* scale = z_m / (1 - z_m/h) ln(z_m / z0)
    assert neutral["x_peak"] == pytest.approx((0.1359 + 1.4622 / 1.9914) * 5.0 / (1 - 5e-3) * math.log(50))
    stable = kljun_2015(0.4, 0.5, 5.0, 1000.0, z0_m=0.1)
    unstable = kljun_2015(0.4, -1.0, 5.0, 1000.0, z0_m=0.1)
    assert unstable["x_90%"] < neutral["x_90%"] < stable["x_90%"]
    by_wind = kljun_2015(0.4, 0.0, 5.0, 1000.0, u_ms=0.4 / 0.4 * math.log(50))
    assert by_wind["x_50%"] == pytest.approx(neutral["x_50%"])
    for kw in ({"ustar": 0.05}, {"zL": -16.0}, {"h_m": 8.0}, {"z_m": 1200.0}):
        args = {"ustar": 0.4, "zL": -0.1, "z_m": 5.0, "h_m": 1000.0, **kw}
        assert np.isnan(kljun_2015(z0_m=0.1, **args)["x_peak"]), kw
    with pytest.raises(ValueError):
        kljun_2015(0.4, 0.0, 5.0, 1000.0)
