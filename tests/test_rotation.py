"""Tilt correction: double rotation against EddyPro on real data, triple rotation, sector-wise planar fit.

Also home of the tiny private raw-data loader and EddyPro-output reader shared by test_qc and test_timelag
(the real readers live in station/rawdata/, which these tests deliberately do not depend on).
"""

from __future__ import annotations

import configparser
import csv
import functools
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EC_DATA

from station.flux.planarfit import PlanarFit, fit_planar, planar_fit_matrix, wind_direction_deg
from station.flux.rotation import (
    double_rotation_angles,
    double_rotation_matrices,
    double_rotation_matrix,
    roll_angle,
    rotate_moments,
    rotate_wind,
    triple_rotation_matrix,
)

EC = EC_DATA
FLUXPART = EC / "fluxpart-csat3-openpath-20hz"
DEGEB = EC / "degeb-hs50-li7200-20hz"
MW_CO2, MW_H2O = 44.01, 18.02  # g mol-1, as EddyPro converts mg m-3 / g m-3 to mmol m-3


# --- private loader ------------------------------------------------------------------------------------------------

def _lag_settings(meta: configparser.ConfigParser, col: int) -> tuple[float, float, float]:
    fd = meta["FileDescription"]
    return tuple(float(fd[f"col_{col}_{k}_timelag"]) for k in ("nom", "min", "max"))


@functools.cache
def load_period(filename: str) -> dict:
    """Raw samples of one reference period (u, v, w [m s-1], ts [K], co2, h2o) and what EddyPro read from
    the metadata: fs [Hz], latitude [deg], time-lag settings (nominal, min, max [s]) per gas, path type."""
    if filename.endswith(".ghg"):
        with zipfile.ZipFile(DEGEB / "raw" / filename) as z:
            names = z.namelist()
            text = z.read(next(n for n in names if n.endswith(".data"))).decode()
            meta = configparser.ConfigParser()
            meta.read_string(z.read(next(n for n in names if n.endswith(".metadata"))).decode())
        lines = [ln for ln in text.splitlines() if ln.startswith("DATA\t")]
        # column k of the metadata is field k of a DATA line; the project uses dry mixing ratios (25, 27)
        u, v, w, sos, co2, h2o = np.loadtxt(lines, delimiter="\t", usecols=(18, 19, 20, 21, 25, 27)).T
        ts = sos**2 / 403.0  # speed of sound -> sonic temperature [K] (EddyPro)
        lags = {"co2": _lag_settings(meta, 25), "h2o": _lag_settings(meta, 27)}
        closed = True
    else:
        a = np.loadtxt(FLUXPART / "raw" / filename, delimiter=",", skiprows=4, usecols=(2, 3, 4, 5, 6, 7))
        u, v, w = a[:, 0], a[:, 1], a[:, 2]
        co2, h2o, ts = a[:, 3] / MW_CO2, a[:, 4] / MW_H2O * 1e3, a[:, 5] + 273.15
        meta = configparser.ConfigParser()
        meta.read(FLUXPART / "eddypro" / "fluxpart.metadata")
        lags = {"co2": _lag_settings(meta, 6), "h2o": _lag_settings(meta, 7)}
        closed = False
    return {"u": u, "v": v, "w": w, "ts": ts, "co2": co2, "h2o": h2o,
            "fs": float(meta["Timing"]["acquisition_frequency"]), "latitude": float(meta["Site"]["latitude"]),
            "lags": lags, "closed_path": closed}


def _read_table(path: Path, header_rows: int) -> list[dict[str, str]]:
    """EddyPro csv -> rows keyed by column name; with a group row, "group:name" keys are added (qc_details
    repeats dev(u), dev(w) under two groups)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))))
    names = rows[header_rows - 2] if header_rows == 3 else rows[1]
    groups, g = [], ""
    for x in rows[0] if header_rows == 3 else [""] * len(names):
        g = x or g
        groups.append(g)
    out = []
    for r in rows[header_rows:]:
        if not r or not r[0]:
            continue
        d = dict(zip(names, r, strict=False))
        d.update({f"{gr}:{n}": x for gr, n, x in zip(groups, names, r, strict=False)})
        out.append(d)
    return out


@functools.cache
def reference() -> dict[str, dict[str, dict[str, str]]]:
    """Per raw file name: EddyPro's full_output, qc_details, st2/st5/st6 rows (only periods with a reference)."""
    ref: dict[str, dict[str, dict[str, str]]] = {}
    for site, tag in ((FLUXPART, "fluxpart"), (DEGEB, "degeb")):
        tables = {"full": _read_table(site / "eddypro" / f"eddypro_{tag}_full_output.csv", 3),
                  "qc": _read_table(site / "eddypro" / f"eddypro_{tag}_qc_details.csv", 3)}
        for st in (2, 5, 6):
            tables[f"st{st}"] = _read_table(site / "eddypro" / "eddypro_stats" / f"eddypro_{tag}_st{st}.csv", 2)
        for name, rows in tables.items():
            for r in rows:
                ref.setdefault(r["filename"], {})[name] = r
    return ref


REFERENCE_PERIODS = sorted(reference())


def num(row: dict[str, str], key: str) -> float:
    return float(row[key])


# --- double rotation against EddyPro ----------------------------------------------------------------------------------

def test_every_reference_period_is_found():
    assert REFERENCE_PERIODS == ["2016-12-11T200000_AIU-1359.ghg", "2016-12-11T203000_AIU-1359.ghg",
                                 "TOA5_6843.ts_Above_2012_06_07_1245.dat"]
    assert all({"full", "qc", "st2", "st5", "st6"} <= set(reference()[p]) for p in REFERENCE_PERIODS)


@pytest.mark.parametrize("period", REFERENCE_PERIODS)
def test_yaw_and_pitch_match_eddypro(period):
    ref = reference()[period]
    st2 = ref["st2"]
    mean2 = np.array([num(st2, "mean(u)"), num(st2, "mean(v)"), num(st2, "mean(w)")])
    yaw, pitch = double_rotation_angles(mean2)  # from EddyPro's own (despiked) means: same numbers
    assert yaw == pytest.approx(num(ref["full"], "yaw"), abs=1e-3)
    assert pitch == pytest.approx(num(ref["full"], "pitch"), abs=1e-3)
    d = load_period(period)  # from the raw (not despiked) data: within a hundredth of a degree
    yaw_raw, pitch_raw = double_rotation_angles(np.array([d["u"].mean(), d["v"].mean(), d["w"].mean()]))
    assert yaw_raw == pytest.approx(num(ref["full"], "yaw"), abs=0.01)
    assert pitch_raw == pytest.approx(num(ref["full"], "pitch"), abs=0.01)
    # the angles are those of the matrix: it turns the mean wind into (|U|, 0, 0)
    rot = double_rotation_matrix(mean2)
    assert rot @ mean2 == pytest.approx([num(ref["full"], "u_rot"), 0.0, 0.0], abs=1e-5)


ST_COLS = ["u", "v", "w", "ts", "co2", "h2o"]


def _moments(st: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    mean = np.array([num(st, f"mean({k})") for k in ST_COLS])
    cov = np.full((6, 6), np.nan)
    for i, a in enumerate(ST_COLS):
        cov[i, i] = num(st, f"var({a})")
        for j, b in enumerate(ST_COLS):
            if i < j and i < 3 and f"cov({a}/{b})" in st:
                cov[i, j] = cov[j, i] = num(st, f"cov({a}/{b})")
    return mean, cov


CHECKED = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (2, 4), (2, 5), (0, 4), (1, 5)]


@pytest.mark.parametrize("period", REFERENCE_PERIODS)
def test_rotated_statistics_match_eddypro_st5(period):
    ref = reference()[period]
    mean2, cov2 = _moments(ref["st2"])
    mean5, cov5 = _moments(ref["st5"])
    rot = double_rotation_matrix(mean2[:3])
    mean, cov = rotate_moments(mean2, cov2, rot)  # EddyPro's st2 moments, rotated: st5 to print precision
    assert mean[0] == pytest.approx(mean5[0], rel=2e-5)
    assert abs(mean[1]) < 1e-12 and abs(mean[2]) < 1e-12
    for i, j in CHECKED:
        scale = np.sqrt(cov5[i, i] * cov5[j, j])
        assert abs(cov[i, j] - cov5[i, j]) < 2e-5 * scale, (ST_COLS[i], ST_COLS[j], cov[i, j], cov5[i, j])
    # every raw sample rotated (not despiked: EddyPro's despiking alone moves var(v) by 0.55 % in one period):
    # within 1 % of the scale of each covariance
    d = load_period(period)
    uvw = rotate_wind(np.column_stack([d["u"], d["v"], d["w"]]), double_rotation_matrix(
        np.array([d["u"].mean(), d["v"].mean(), d["w"].mean()])))
    x = np.column_stack([uvw, d["ts"], d["co2"], d["h2o"]])
    c = np.cov(x, rowvar=False, bias=True)
    assert uvw.mean(axis=0) == pytest.approx([mean5[0], 0.0, 0.0], rel=1e-3, abs=1e-12)
    for i, j in CHECKED:
        assert abs(c[i, j] - cov5[i, j]) < 1e-2 * np.sqrt(cov5[i, i] * cov5[j, j]), (ST_COLS[i], ST_COLS[j])


def test_batched_double_rotation_equals_the_single_one():
    rng = np.random.default_rng(3)
    means = rng.normal(0, 3, (5, 4, 3))
    batch = double_rotation_matrices(means)
    for idx in np.ndindex(5, 4):
        np.testing.assert_allclose(batch[idx], double_rotation_matrix(means[idx]), atol=1e-14)
    yaw, pitch = double_rotation_angles(means)
    assert yaw.shape == (5, 4) and ((yaw >= 0) & (yaw < 360)).all()
    assert np.all(np.abs(pitch) <= 90)


# --- triple rotation -------------------------------------------------------------------------------------------------

def _correlated_wind(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    a = np.array([[0.9, 0.0, 0.0], [0.3, 0.7, 0.0], [-0.2, 0.25, 0.4]])
    return rng.standard_normal((n, 3)) @ a.T + np.array([2.5, -1.2, 0.15])


@pytest.mark.parametrize("period", [None, *REFERENCE_PERIODS])
def test_triple_rotation_zeroes_the_cross_stream_stress(period):
    if period is None:
        uvw = _correlated_wind()
    else:
        d = load_period(period)
        uvw = np.column_stack([d["u"], d["v"], d["w"]])
    mean, cov = uvw.mean(axis=0), np.cov(uvw, rowvar=False, bias=True)
    r2 = double_rotation_matrix(mean)
    r3 = triple_rotation_matrix(mean, cov)
    x2, x3 = rotate_wind(uvw, r2), rotate_wind(uvw, r3)
    c2, c3 = np.cov(x2, rowvar=False, bias=True), np.cov(x3, rowvar=False, bias=True)
    assert abs(c3[1, 2]) < 1e-12 * np.sqrt(c3[1, 1] * c3[2, 2])  # <v'w'> = 0
    assert abs(c2[1, 2]) > 1e-4 * np.sqrt(c2[1, 1] * c2[2, 2])  # ... which the double rotation left
    assert x3.mean(axis=0) == pytest.approx([x2.mean(axis=0)[0], 0.0, 0.0], abs=1e-10)
    np.testing.assert_allclose(r3 @ r3.T, np.eye(3), atol=1e-14)  # a rotation
    assert np.linalg.det(r3) == pytest.approx(1.0)
    # the roll keeps u and the total variance: it turns about x only
    assert c3[0, 0] == pytest.approx(c2[0, 0]) and np.trace(c3) == pytest.approx(np.trace(c2))
    gamma = roll_angle(c2)
    assert 0 < abs(gamma) < 45
    # a roll limit (EddyPro: 10 deg) skips larger rolls
    np.testing.assert_allclose(triple_rotation_matrix(mean, cov, max_roll_deg=abs(gamma) / 2), r2, atol=1e-14)
    np.testing.assert_allclose(triple_rotation_matrix(mean, cov, max_roll_deg=abs(gamma) * 2), r3, atol=1e-14)


def test_triple_rotation_broadcasts_over_periods():
    winds = [_correlated_wind(2000, seed) for seed in range(4)]
    means = np.array([x.mean(axis=0) for x in winds])
    covs = np.array([np.cov(x, rowvar=False, bias=True) for x in winds])
    batch = triple_rotation_matrix(means, covs)
    for k in range(4):
        np.testing.assert_allclose(batch[k], triple_rotation_matrix(means[k], covs[k]), atol=1e-14)


# --- planar fit ------------------------------------------------------------------------------------------------------

def _tilt(alpha_deg, beta_deg):
    """Wilczak et al. (2001) eq. 36 built from the angles: what the fit must find."""
    a, b = np.radians(alpha_deg), np.radians(beta_deg)
    return np.array([[np.cos(a), np.sin(a) * np.sin(b), -np.sin(a) * np.cos(b)],
                     [0.0, np.cos(b), np.sin(b)],
                     [np.sin(a), -np.cos(a) * np.sin(b), np.cos(a) * np.cos(b)]])


def _tilted_means(alpha, beta, b0, n=60, seed=0, directions=(0.0, 360.0)):
    """Period-mean winds of a sonic tilted by (alpha, beta) with a w offset b0: flat-frame means (u, v, 0)
    seen through P^T, plus b0 on w."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(0.5, 8.0, n)
    theta = np.radians(rng.uniform(*directions, n))
    flat = np.column_stack([speed * np.cos(theta), speed * np.sin(theta), np.zeros(n)])
    return flat @ _tilt(alpha, beta) + np.array([0.0, 0.0, b0]), flat


def test_planar_fit_recovers_a_tilted_plane_exactly():
    alpha, beta, b0 = 4.0, -2.5, 0.03
    m, flat = _tilted_means(alpha, beta, b0)
    fit = fit_planar(m[:, 0], m[:, 1], m[:, 2], n_sectors=1, w_max=1.0)
    k = _tilt(alpha, beta)[2]
    assert fit.b[0] == pytest.approx([b0, -k[0] / k[2], -k[1] / k[2]], abs=1e-12)
    assert fit.pitch_deg[0] == pytest.approx(alpha, abs=1e-10)
    assert fit.roll_deg[0] == pytest.approx(beta, abs=1e-10)
    np.testing.assert_allclose(fit.tilt_matrices[0], _tilt(alpha, beta), atol=1e-12)
    # each period: into the plane, then yawed into its own mean wind; w keeps only the offset b0 k_z
    p = _tilt(alpha, beta)
    for mi, fi in zip(m[:5], flat[:5], strict=True):
        r = planar_fit_matrix(fit, mi)
        in_plane = fi + b0 * p[:, 2]  # P (P^T flat + b0 e_z)
        assert r @ mi == pytest.approx([np.hypot(in_plane[0], in_plane[1]), 0.0, b0 * k[2]], abs=1e-12)
        assert p @ (mi - [0.0, 0.0, b0]) == pytest.approx(fi, abs=1e-12)  # the offset removed: the flat wind
    batch = planar_fit_matrix(fit, m[:5])
    np.testing.assert_allclose(batch, [planar_fit_matrix(fit, x) for x in m[:5]], atol=1e-14)
    # a tilt is not a per-period double rotation: the double rotation would zero each period's w
    assert not np.allclose(planar_fit_matrix(fit, m[0]), double_rotation_matrix(m[0]))


def test_no_velocity_bias_variant():
    m, _ = _tilted_means(3.0, 1.5, 0.0, seed=1)
    full = fit_planar(m[:, 0], m[:, 1], m[:, 2])
    nob = fit_planar(m[:, 0], m[:, 1], m[:, 2], no_velocity_bias=True)
    assert nob.b[0, 0] == 0.0
    assert nob.b[0, 1:] == pytest.approx(full.b[0, 1:], abs=1e-12)
    assert full.b[0, 0] == pytest.approx(0.0, abs=1e-12)
    # with an offset, only the full fit finds the true slopes
    m, _ = _tilted_means(3.0, 1.5, 0.05, seed=1)
    full = fit_planar(m[:, 0], m[:, 1], m[:, 2])
    nob = fit_planar(m[:, 0], m[:, 1], m[:, 2], no_velocity_bias=True)
    assert full.pitch_deg[0] == pytest.approx(3.0, abs=1e-10)
    assert abs(nob.pitch_deg[0] - 3.0) > 1e-3


def test_sectors_minimum_periods_fallback_and_serialisation():
    # two different mountings seen from two halves of the compass (sector = direction the wind comes from:
    # flat-frame wind towards 10..170 deg comes from 170..10 deg, sectors 0 and 1 of four)
    m1, _ = _tilted_means(5.0, 0.0, 0.0, n=40, seed=2, directions=(10.0, 170.0))
    m2, _ = _tilted_means(-2.0, 3.0, 0.0, n=40, seed=3, directions=(190.0, 350.0))
    m = np.vstack([m1, m2])
    d = wind_direction_deg(m[:, 0], m[:, 1])
    assert np.all((d >= 0) & (d < 360))
    fit = fit_planar(m[:, 0], m[:, 1], m[:, 2], n_sectors=4, min_periods=5, w_max=1.0)
    sec = fit.sector_of(m[:, 0], m[:, 1])
    assert np.all(np.isin(sec[:40], [0, 1])) and np.all(np.isin(sec[40:], [2, 3]))
    assert fit.n_periods.sum() == len(m) and fit.fitted.all()
    assert fit.pitch_deg == pytest.approx([5.0, 5.0, -2.0, -2.0], abs=1e-10)
    assert fit.roll_deg == pytest.approx([0.0, 0.0, 3.0, 3.0], abs=1e-10)
    # every period is rotated by the plane of its own sector: w = 0 (no offset here), v = 0
    r = planar_fit_matrix(fit, m)
    assert np.einsum("nij,nj->ni", r, m)[:, 1:] == pytest.approx(np.zeros((80, 2)), abs=1e-12)
    # too few periods: no plane, and that period falls back to the double rotation
    sparse = fit_planar(m[:, 0], m[:, 1], m[:, 2], n_sectors=4, min_periods=1000, w_max=1.0)
    assert not sparse.fitted.any()
    np.testing.assert_allclose(planar_fit_matrix(sparse, m[0]), double_rotation_matrix(m[0]), atol=1e-14)
    # sectors left empty are filled from the nearest fitted one in the chosen direction
    half = fit_planar(m1[:, 0], m1[:, 1], m1[:, 2], n_sectors=4, min_periods=5, w_max=1.0)
    assert half.fitted.tolist() == [True, True, False, False]
    cw = fit_planar(m1[:, 0], m1[:, 1], m1[:, 2], n_sectors=4, min_periods=5, w_max=1.0, fix="clockwise")
    ccw = fit_planar(m1[:, 0], m1[:, 1], m1[:, 2], n_sectors=4, min_periods=5, w_max=1.0,
                     fix="counterclockwise")
    np.testing.assert_array_equal(cw.b[[2, 3]], half.b[[0, 0]])
    np.testing.assert_array_equal(ccw.b[[2, 3]], half.b[[1, 1]])
    # serialisable: through JSON and back, same matrices (NaN sectors survive as None)
    again = PlanarFit.from_dict(json.loads(json.dumps(half.to_dict())))
    np.testing.assert_array_equal(np.isnan(again.b), np.isnan(half.b))
    np.testing.assert_allclose(planar_fit_matrix(again, m[:7]), planar_fit_matrix(half, m[:7]), atol=1e-15)
    assert again.to_dict() == half.to_dict()


def test_planar_fit_excludes_outlying_periods():
    m, _ = _tilted_means(2.0, 1.0, 0.0, n=50, seed=5)
    bad = np.array([[30.0, 0.0, 0.5], [0.1, 0.1, 0.5], [np.nan, 1.0, 0.0]])  # too fast, |w| too large, missing
    x = np.vstack([m, bad])
    fit = fit_planar(x[:, 0], x[:, 1], x[:, 2], w_max=0.4)
    assert fit.n_periods.sum() == 50
    assert fit.pitch_deg[0] == pytest.approx(2.0, abs=1e-10)


def test_collinear_periods_give_no_plane():
    u = np.linspace(1.0, 5.0, 30)
    fit = fit_planar(u, 0.0 * u + 1e-9, 0.01 * u, w_max=1.0)  # all from one direction: b2 undetermined
    assert not fit.fitted.any()
    assert fit.to_dict()["b"] == [[None, None, None]]
