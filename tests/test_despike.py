"""Despiking: Vickers & Mahrt (1997) as EddyPro 7 does it, against EddyPro on real data and against a
literal port of its Fortran loop; Mauder et al. (2013) MAD despiking; synthetic cases.

Also home of the tiny private raw-data loader and EddyPro-output reader used by test_vm97 (the real
readers live in station/rawdata/, which these tests deliberately do not depend on).
"""

from __future__ import annotations

import csv
import functools
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EC_DATA

from station.flux.despike import (
    EDDYPRO_SIGMA,
    eddypro_despike_window_s,
    mauder_mad_despike,
    mauder_mad_spikes,
    vickers_mahrt_despike,
    vickers_mahrt_spikes,
)

EC = EC_DATA
FLUXPART = EC / "fluxpart-csat3-openpath-20hz"
DEGEB = EC / "degeb-hs50-li7200-20hz"
MW_CO2, MW_H2O = 44.01, 18.02  # g mol-1: EddyPro's mg m-3 / g m-3 -> mmol m-3 (st1 means match with these)
FLAGGED = ("u", "v", "w", "ts", "co2", "h2o")
#: periods with EddyPro reference rows (the other raw files have none, on purpose)
REFERENCE = ("2016-12-11T200000_AIU-1359.ghg", "2016-12-11T203000_AIU-1359.ghg",
             "TOA5_6843.ts_Above_2012_06_07_1245.dat")


# --- private loader ------------------------------------------------------------------------------------------------

@functools.cache
def load_raw(filename: str) -> tuple[dict[str, np.ndarray], int]:
    """Raw columns of one file in EddyPro's internal units, and the averaging length [min] of its project.

    u, v, w [m s-1], ts [K], co2, h2o, and the auxiliary columns EddyPro also despikes: degeb (LI-7200,
    dry mixing ratios co2 [umol mol-1] and h2o [mmol mol-1] as in the project) cell temperature ``tc`` [K]
    and cell pressure ``pc`` [Pa]; fluxpart (open path, molar densities [mmol m-3]) air pressure ``pe`` [Pa].
    """
    if filename.endswith(".ghg"):
        with zipfile.ZipFile(DEGEB / "raw" / filename) as z:
            text = z.read(next(n for n in z.namelist() if n.endswith(".data"))).decode()
        lines = [ln for ln in text.splitlines() if ln.startswith("DATA\t")]
        # fields 18-21 sonic U V W SOS, 25/27 dry CO2/H2O, 29 cell temperature [degC], 15 total pressure [kPa]
        u, v, w, sos, co2, h2o, tc, pc = np.loadtxt(lines, delimiter="\t", usecols=(18, 19, 20, 21, 25, 27, 29, 15)).T
        cols = {"u": u, "v": v, "w": w, "ts": sos**2 / 403.0, "co2": co2, "h2o": h2o, "tc": tc + 273.15,
                "pc": pc * 1e3}
        return cols, 30
    a = np.loadtxt(FLUXPART / "raw" / filename, delimiter=",", skiprows=4, usecols=(2, 3, 4, 5, 6, 7, 8))
    cols = {"u": a[:, 0], "v": a[:, 1], "w": a[:, 2], "ts": a[:, 5] + 273.15, "co2": a[:, 3] / MW_CO2,
            "h2o": a[:, 4] / MW_H2O * 1e3, "pe": a[:, 6] * 1e3}
    return cols, 15


def _read_csv(path: Path, name_row: int, first_data_row: int, key: str) -> dict[str, dict[str, str]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))))
    names = rows[name_row]
    return {r[names.index(key)]: dict(zip(names, r, strict=False)) for r in rows[first_data_row:] if r}


@functools.cache
def eddypro(kind: str) -> dict[str, dict[str, str]]:
    """EddyPro outputs of both data sets keyed by raw file name: ``st1``/``st2`` statistics, ``full`` output
    (3 header rows), ``fluxnet`` output."""
    out: dict[str, dict[str, str]] = {}
    for d in (DEGEB, FLUXPART):
        if kind in ("st1", "st2"):
            path = next((d / "eddypro" / "eddypro_stats").glob(f"*_{kind}.csv"))
            out.update(_read_csv(path, 1, 2, "filename"))
        elif kind == "full":
            out.update(_read_csv(next((d / "eddypro").glob("*_full_output.csv")), 1, 3, "filename"))
        else:
            out.update(_read_csv(next((d / "eddypro").glob("*_fluxnet.csv")), 0, 1, "FILENAME_HF"))
    return out


def eddypro_despike(cols: dict[str, np.ndarray], averaging_min: int, **kw):
    """All columns of a period despiked together, EddyPro's way (one shared pass loop)."""
    names = list(cols)
    sigma = [EDDYPRO_SIGMA.get(n, 3.5) for n in names]
    res = vickers_mahrt_spikes(np.vstack([cols[n] for n in names]), 20.0, sigma, 3,
                               eddypro_despike_window_s(averaging_min), **kw)
    return names, res


# --- a literal port of EddyPro's TestSpikeDetectionVickers97 (slow; the reference for the vectorised code) ---------

def eddypro_literal(x: np.ndarray, lims, nn: int, num_spk: int = 3, max_pass: int = 10):
    """Line-by-line port of test_spike_detection_vickers_97.f90 (1-based indices kept, NaN = error)."""
    k, n = x.shape
    s = np.vstack([np.full((1, k), np.nan), x.T.copy()])  # S(1:N, j), row 0 unused
    step = 100
    wdw_num = (n - nn) // 100 + 1
    adv = np.array(lims, dtype=float)
    is_spike = np.zeros((n + 1, k), dtype=bool)
    tot, tot_sng, passes = np.zeros(k, int), np.zeros(k, int), 0
    while True:
        passes += 1
        loc_m, loc_s = np.zeros((n + 1, k)), np.zeros((n + 1, k))
        for wdw in range(1, wdw_num + 1):
            xx = s[1 + step * (wdw - 1): nn + step * (wdw - 1) + 1]
            m, sd = np.nanmean(xx, axis=0), np.nanstd(xx, axis=0, ddof=1)
            imin, imax = nn // 2 - step // 2 + step * (wdw - 1), nn // 2 + step // 2 - 1 + step * (wdw - 1)
            loc_m[imin:imax + 1], loc_s[imin:imax + 1] = m, sd
            if wdw == 1:
                loc_m[1:imin + 1], loc_s[1:imin + 1] = m, sd
            if wdw == wdw_num:
                loc_m[imax:n + 1], loc_s[imax:n + 1] = m, sd
        nsp, nsg = np.zeros(k, int), np.zeros(k, int)
        for j in range(k):
            cnt = 0
            for bound, sign in ((loc_m[1, j] + adv[j] * loc_s[1, j], 1), (loc_m[1, j] - adv[j] * loc_s[1, j], -1)):
                if not np.isnan(s[1, j]) and sign * s[1, j] > sign * bound:
                    s[1, j] = bound
                    if not is_spike[1, j]:
                        nsp[j] += 1
                        nsg[j] += 1
                        is_spike[1, j] = True
            for i in range(2, n + 1):
                val = s[i, j]
                if np.isnan(val):
                    if cnt != 0:
                        cnt += 1
                elif val > loc_m[i, j] + adv[j] * loc_s[i, j] or val < loc_m[i, j] - adv[j] * loc_s[i, j]:
                    cnt += 1
                else:
                    if cnt != 0 and cnt <= num_spk:
                        if not is_spike[i - 1, j]:
                            nsp[j] += 1
                            nsg[j] += cnt
                        is_spike[i - cnt:i, j] = True
                        if not np.isnan(s[i - cnt - 1, j]):
                            slope = (s[i, j] - s[i - cnt - 1, j]) / (cnt + 1)
                            q = s[i - cnt - 1, j]
                            for kk in range(i - cnt, i):
                                s[kk, j] = slope * (kk - (i - cnt - 1)) + q
                        cnt = 0
                    elif cnt > num_spk:
                        cnt = 0
        tot += nsp
        tot_sng += nsg
        if nsp.any() and passes < max_pass:
            adv = adv + 0.1
            continue
        return s[1:].T, tot, tot_sng, passes


def turbulence(n: int, k: int = 1, seed: int = 0, rho: float = 0.95) -> np.ndarray:
    """AR(1) series with unit variance, a stand-in for 20 Hz turbulence."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((k, n)) * np.sqrt(1 - rho**2)
    x = np.empty((k, n))
    x[:, 0] = rng.standard_normal(k)
    for i in range(1, n):
        x[:, i] = rho * x[:, i - 1] + e[:, i]
    return x


# --- EddyPro on real data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", REFERENCE)
def test_spike_counts_match_eddypro(filename):
    """Spike events = full output ``*_spikes``; outlying samples = FLUXNET ``*_SPIKE_NREX``. Exact."""
    cols, avg = load_raw(filename)
    names, res = eddypro_despike(cols, avg)
    full, fnet = eddypro("full")[filename], eddypro("fluxnet")[filename]
    fnet_name = {"u": "U", "v": "V", "w": "W", "ts": "T_SONIC", "co2": "CO2", "h2o": "H2O"}
    for i, name in enumerate(names):
        if name in FLAGGED:
            assert res.events[i] == int(full[f"{name}_spikes"]), name
            assert res.samples[i] == int(fnet[f"{fnet_name[name]}_SPIKE_NREX"]), name


@pytest.mark.parametrize("filename", REFERENCE)
def test_despiked_statistics_match_eddypro_st2(filename):
    """Means, variances (1/N), skewness and kurtosis of the despiked series = EddyPro's st2 (6 significant
    digits there), while st1 confirms the raw input and units.

    Exception: the pressures, auxiliary columns that matter here only as partners in the shared pass loop.
    EddyPro holds raw values in single precision, which moves var(pe) of fluxpart (~1e5 Pa, sd 15 Pa) by
    3.4e-4 relative already in st1 (the change made by the despiking agrees to 1e-3), and the kurtosis of
    the degeb cell pressure pc by 1.6e-5. Everything else agrees to the 6 digits EddyPro prints.
    """
    cols, avg = load_raw(filename)
    names, res = eddypro_despike(cols, avg)
    st1, st2 = eddypro("st1")[filename], eddypro("st2")[filename]
    n = res.cleaned.shape[1]
    for i, name in enumerate(names):
        raw, x = cols[name], res.cleaned[i]
        if name == "pe":
            d_ref = float(st1["var(pe)"]) - float(st2["var(pe)"])
            assert raw.var() - x.var() == pytest.approx(d_ref, rel=1e-3)
            assert x.mean() == pytest.approx(float(st2["mean(pe)"]), abs=0.5)  # printed to 1 Pa
            continue
        assert raw.mean() == pytest.approx(float(st1[f"mean({name})"]), rel=1e-5, abs=1e-6)
        assert raw.var() == pytest.approx(float(st1[f"var({name})"]), rel=1e-5)
        assert x.mean() == pytest.approx(float(st2[f"mean({name})"]), rel=1e-5, abs=1e-6), name
        assert x.var() == pytest.approx(float(st2[f"var({name})"]), rel=1e-5), name
        # EddyPro's BasicStats: sum(x'^3) / sd^3 / (N - 1) with sd from the 1/N covariance
        p = x - x.mean()
        sd = np.sqrt((p * p).mean())
        assert (p**3).sum() / sd**3 / (n - 1) == pytest.approx(float(st2[f"skw({name})"]), rel=1e-4, abs=1e-5)
        kur_rel = 5e-5 if name == "pc" else 1e-5
        assert (p**4).sum() / sd**4 / (n - 1) == pytest.approx(float(st2[f"kur({name})"]), rel=kur_rel), name
        if res.events[i]:  # and the despiking did change something that EddyPro changed too
            assert x.var() != pytest.approx(raw.var(), rel=1e-7)


def test_real_period_equals_literal_port():
    """The vectorised code is the Fortran loop: identical cleaned series, counts and passes on a real period."""
    cols, avg = load_raw("TOA5_6843.ts_Above_2012_06_07_1245.dat")
    names, res = eddypro_despike(cols, avg)
    x = np.vstack([cols[n] for n in names])
    cleaned, events, samples, passes = eddypro_literal(x, [EDDYPRO_SIGMA.get(n, 3.5) for n in names],
                                                       int(eddypro_despike_window_s(avg) * 20))
    assert np.array_equal(res.cleaned, cleaned)
    assert np.array_equal(res.events, events) and np.array_equal(res.samples, samples)
    assert (res.passes == passes).all()


def test_timing_36000_samples_6_variables():
    cols, _ = load_raw("2016-12-11T200000_AIU-1359.ghg")
    x = np.vstack([cols[n] for n in FLAGGED])
    sigma = [EDDYPRO_SIGMA[n] for n in FLAGGED]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        res = vickers_mahrt_spikes(x, 20.0, sigma)
        times.append(time.perf_counter() - t0)
    assert res.cleaned.shape == (6, 36000)
    assert np.median(times) < 0.5  # a few ms in practice; generous for loaded CI machines


# --- the vectorised code against the literal port, synthetic --------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_literal_port(seed):
    """Spikes of 1-5 samples, NaN gaps (inside runs too), a spike on the first and at the last sample, three
    coupled variables with different thresholds: the same spikes, counts and passes as the Fortran loop and
    the same values (bit for bit but for the clipped first sample, which carries the last-digit rounding of
    the window statistics)."""
    rng = np.random.default_rng(seed)
    n = 3000
    x = turbulence(n, 3, seed)
    for row in range(3):
        for _ in range(25):
            i, length = rng.integers(1, n - 6), rng.integers(1, 6)
            x[row, i:i + length] += rng.choice([-1, 1]) * rng.uniform(3, 9)
        x[row, rng.integers(0, n, 15)] = np.nan
    x[0, 0] += 12.0
    x[1, -2:] += 10.0  # run still open at the end: left alone
    x[2, 500:503] = [8.0, np.nan, 8.0]  # NaN inside a run counts towards its length
    lims = [3.5, 5.0, 3.0]
    res = vickers_mahrt_spikes(x, 10.0, lims, 3, 60.0)
    cleaned, events, samples, passes = eddypro_literal(x, lims, 600)
    np.testing.assert_allclose(res.cleaned, cleaned, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(res.cleaned[:, 1:], cleaned[:, 1:])
    assert np.array_equal(res.events, events)
    assert np.array_equal(res.samples, samples)
    assert (res.passes == passes).all()
    assert events.sum() > 20


@pytest.mark.parametrize(("n", "nn"), [(1300, 1200), (1250, 1200), (900, 900), (2000, 150)])
def test_few_windows_equal_literal_port(n, nn):
    """One or two windows (the first/last-window special cases overlap), a series shorter than the window
    (the window shrinks to the series) and odd windows: still the Fortran loop."""
    x = turbulence(n, 2, n)
    x[:, [50, n // 2, n - 10]] += 7.0
    res = vickers_mahrt_spikes(x, 20.0, [3.5, 3.0], 3, 60.0 if nn >= 900 else nn / 20.0)
    cleaned, events, samples, passes = eddypro_literal(x, [3.5, 3.0], min(nn, n))
    np.testing.assert_array_equal(res.cleaned, cleaned)
    assert res.events.tolist() == events.tolist() and res.samples.tolist() == samples.tolist()
    assert (res.passes == passes).all()
    assert (events >= 3).all()


# --- synthetic behaviour --------------------------------------------------------------------------------------------

def _base(n=6000, seed=1):
    """Smooth signal plus bounded noise: no sample beyond 2 sd of any window, so no natural outliers."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 20.0
    return 5.0 + 0.2 * np.sin(2 * np.pi * t / 250.0) + rng.uniform(-0.3, 0.3, n)


def test_single_spike_replaced_by_interpolation():
    x = _base()
    x[3000] += 5.0
    cleaned, count = vickers_mahrt_despike(x, 20.0, 3.5, window_s=60.0)
    assert count == 1
    assert cleaned[3000] == pytest.approx(0.5 * (x[2999] + x[3001]))
    np.testing.assert_array_equal(np.delete(cleaned, 3000), np.delete(x, 3000))


@pytest.mark.parametrize("length", [2, 3])
def test_runs_of_two_and_three_are_spikes(length):
    x = _base()
    x[2000:2000 + length] -= 6.0
    res = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0)
    assert res.events == 1 and res.samples == length
    line = x[1999] + (x[2000 + length] - x[1999]) * np.arange(1, length + 1) / (length + 1)
    np.testing.assert_allclose(res.cleaned[2000:2000 + length], line, rtol=1e-12)
    assert res.is_spike[2000:2000 + length].all() and res.is_spike.sum() == length


def test_run_of_four_is_kept():
    x = _base()
    x[2000:2004] += 6.0
    cleaned, count = vickers_mahrt_despike(x, 20.0, 3.5, window_s=60.0)
    assert count == 0
    np.testing.assert_array_equal(cleaned, x)
    cleaned, count = vickers_mahrt_despike(x, 20.0, 3.5, max_consecutive=4, window_s=60.0)
    assert count == 1 and cleaned[2001] < x[2001] - 5


def test_first_sample_clipped_not_interpolated():
    x = _base()
    x[0] += 8.0
    res = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0)
    assert res.events == 1 and res.is_spike[0]
    assert 5.0 < res.cleaned[0] < x[0] - 5.0  # clipped to mean + k sd of the first window


def test_constant_and_missing_series():
    const = np.full(4000, 2.5)
    cleaned, count = vickers_mahrt_despike(const, 20.0, 3.5, window_s=60.0)
    assert count == 0 and np.array_equal(cleaned, const)
    empty = np.full(4000, np.nan)
    cleaned, count = vickers_mahrt_despike(empty, 20.0, 3.5, window_s=60.0)
    assert count == 0 and np.isnan(cleaned).all()
    short, count = vickers_mahrt_despike(np.array([1.0, 50.0]), 20.0, 3.5)
    assert count == 0 and short.tolist() == [1.0, 50.0]


def test_nan_gaps_kept_and_spike_next_to_gap():
    x = _base()
    x[1000:1100] = np.nan
    x[1100] += 6.0  # right after the gap: no sample before the run to draw the line from
    x[3000] += 6.0
    res = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0)
    assert np.isnan(res.cleaned[1000:1100]).all()
    assert res.events == 2
    assert res.cleaned[1100] == x[1100]  # counted, not replaced (EddyPro: left anchor missing)
    assert res.cleaned[3000] == pytest.approx(0.5 * (x[2999] + x[3001]))


def test_threshold_grows_between_passes():
    """A big spike inflates the window's sd and hides a 3.55-sd sample in pass 1; pass 2 uses k = 3.6
    (EddyPro's +0.1 per pass) and keeps it, a fixed k = 3.5 would remove it."""
    x = _base(6000, 3)
    x[3000] += 20.0
    win = slice(2400, 3600)  # the 60-s window whose statistics serve sample 3010
    clean = x.copy()
    clean[3000] = 0.5 * (x[2999] + x[3001])
    for _ in range(3):  # the sample itself is part of its window
        clean[3010] = clean[win].mean() + 3.55 * clean[win].std(ddof=1)
    x[3010] = clean[3010]
    res = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0)
    assert res.events == 1 and res.passes == 2 and res.cleaned[3010] == x[3010]
    fixed = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0, sigma_step=0.0)
    assert fixed.events == 2 and fixed.cleaned[3010] < x[3010]


def test_rows_vectorised_and_coupling():
    """2-D input = the rows one by one when uncoupled; coupled rows share the pass loop (EddyPro)."""
    x = turbulence(6000, 4, 7)
    x[0, 100] += 9.0
    x[2, [2000, 4000]] += 9.0
    sep = [vickers_mahrt_spikes(row, 20.0, 3.5, 3, 60.0) for row in x]
    unc = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0, coupled=False)
    np.testing.assert_array_equal(unc.cleaned, np.vstack([r.cleaned for r in sep]))
    assert unc.events.tolist() == [r.events for r in sep]
    assert unc.passes.tolist() == [r.passes for r in sep]
    cpl = vickers_mahrt_spikes(x, 20.0, 3.5, 3, 60.0)
    assert len(set(cpl.passes.tolist())) == 1 and cpl.passes[0] == max(r.passes for r in sep)


def test_replace_options():
    x = _base()
    x[3000] += 6.0
    nan_c, n1 = vickers_mahrt_despike(x, 20.0, 3.5, window_s=60.0, replace="nan")
    det, n2 = vickers_mahrt_despike(x, 20.0, 3.5, window_s=60.0, replace="none")
    assert n1 == n2 == 1 and np.isnan(nan_c[3000]) and np.array_equal(det, x)
    with pytest.raises(ValueError):
        vickers_mahrt_despike(x, 20.0, 3.5, replace="spline")
    with pytest.raises(ValueError):
        vickers_mahrt_spikes(np.zeros((2, 100)), 20.0, [3.5, 3.5, 3.5])


def test_eddypro_window_lengths():
    assert eddypro_despike_window_s(30) == 300.0
    assert eddypro_despike_window_s(15) == 120.0  # integer minutes: 15 // 6 = 2
    assert eddypro_despike_window_s(60) == 600.0
    assert eddypro_despike_window_s(5) == 60.0


def test_mauder_mad():
    x = _base(8000, 5)
    x[1000] += 4.0  # 20 sd: a spike for z = 7
    x[3000:3010] -= 4.0  # any run length is a spike
    x[5000:5002] = [np.nan, 20.0]
    cleaned, count = mauder_mad_despike(x)
    assert count == 3
    assert cleaned[1000] == pytest.approx(0.5 * (x[999] + x[1001]))
    assert np.abs(cleaned[3000:3010] - 5.0).max() < 2.0
    assert np.isnan(cleaned[5000]) and cleaned[5001] == pytest.approx(x[4999] + (x[5002] - x[4999]) * 2 / 3)
    _, zero = mauder_mad_despike(_base(8000, 5))
    assert zero == 0
    rows, counts = mauder_mad_despike(np.vstack([x, _base(8000, 6)]))
    assert counts.tolist() == [3, 0] and np.array_equal(rows[0], cleaned, equal_nan=True)
    det, c = mauder_mad_despike(x, replace="none")
    assert c == 3 and np.array_equal(det, x, equal_nan=True)
    res = mauder_mad_spikes(x)
    assert res.events == 3 and res.samples == 12 and res.passes == 2  # NaN inside a run is not a spike sample
    assert res.is_spike[[1000, 3000, 3009, 5001]].all() and not res.is_spike[5000]
