"""Vickers & Mahrt (1997) tests: EddyPro 7.0.9's flag strings on real data, a literal port of its histogram
test, and synthetic cases for every test. Raw-data loader and EddyPro readers: tests/test_despike.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_despike import REFERENCE, eddypro, load_raw, turbulence

from station.flux.vm97 import (
    VARIABLE_TESTS,
    WIND_TESTS,
    VM97Options,
    amplitude_resolution_dropouts,
    attack_angle_outside_pct,
    haar_discontinuities,
    nonsteady_wind,
    skewness_kurtosis,
    vm97_flags,
)

RATE = 20.0


def vm97_columns(filename: str) -> tuple[dict[str, np.ndarray], VM97Options]:
    """A reference period in vm97 units (ts in degC) with the options of its EddyPro project."""
    cols, avg = load_raw(filename)
    cols = dict(cols)
    cols["ts"] = cols["ts"] - 273.15
    measure = {"co2": "mixing_ratio", "h2o": "mixing_ratio"} if filename.endswith(".ghg") else {}
    return cols, VM97Options(averaging_min=avg, gas_measure=measure)


# --- EddyPro on real data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", REFERENCE)
def test_flag_strings_match_eddypro(filename):
    """With eddypro_compat every flag string equals EddyPro's full output (800000099, discontinuities
    800000199: EddyPro flags H2O, see below; attack angle 81 and non-steady wind 81 for fluxpart)."""
    cols, opt = vm97_columns(filename)
    res = vm97_flags(cols, RATE, VM97Options(**{**opt.__dict__, "eddypro_compat": True}))
    full = eddypro("full")[filename]
    for test in VARIABLE_TESTS + WIND_TESTS:
        assert res.code(test) == full[test], test
    for name in ("u", "v", "w", "ts", "co2", "h2o"):
        assert res.spikes[name] == int(full[f"{name}_spikes"])


@pytest.mark.parametrize("filename", REFERENCE)
def test_default_mode_differs_only_by_the_documented_defects(filename):
    """Corrected tests: the same strings except the discontinuity flag of H2O. EddyPro raises it because it
    divides a difference of standard deviations by a variance (H2O variance 1e-3 (mmol mol-1)^2 at DE-Geb
    gives ratios near 100; fluxpart's half windows stay in mmol m-3 while the window is converted)."""
    cols, opt = vm97_columns(filename)
    res = vm97_flags(cols, RATE, opt)
    full = eddypro("full")[filename]
    for test in VARIABLE_TESTS + WIND_TESTS:
        expected = full[test].replace("800000199", "800000099") if test.startswith("discontinuities") else full[test]
        assert res.code(test) == expected, test
    compat = vm97_flags(cols, RATE, VM97Options(**{**opt.__dict__, "eddypro_compat": True}))
    assert compat.stats["h2o"]["haar_var"] > 3.0 > res.stats["h2o"]["haar_var"]
    for v in ("u", "v", "w", "ts", "co2", "h2o"):  # sane statistics for good data
        s = res.stats[v]
        assert s["empty_bins_pct"] < 20 and s["dropout_central_pct"] < 3 and s["dropout_extreme_pct"] < 3
        assert -1 < s["skewness"] < 1 and 2 < s["kurtosis"] < 5


def test_result_arrays_are_the_despiked_columns():
    cols, opt = vm97_columns("TOA5_6843.ts_Above_2012_06_07_1245.dat")
    res = vm97_flags(cols, RATE, opt)
    assert set(res.cleaned) == set(cols) and res.spikes["pe"] == 44  # auxiliary column: despiked, not flagged
    assert all(res.cleaned[n].shape == cols[n].shape for n in cols)
    assert not np.array_equal(res.cleaned["u"], cols["u"]) and "pe" not in res.flags["spikes_hf"]


# --- amplitude resolution and drop-outs ------------------------------------------------------------------------------

def ar_do_literal(x: np.ndarray, nn: int, bins: int = 100, lim: float = 7.0, extlim_dw: float = 10.0):
    """Line-by-line port of test_amp_res_drop_out.f90 for one variable without missing values (binmin
    reset per window; EddyPro leaves it from the previous window)."""
    n = len(x)
    wdw_num = (n - nn) // (nn // 2) + 1
    tot_mpt = tot_ctr = tot_ext = 0
    for wdw in range(wdw_num):
        xx = x[wdw * (nn // 2): wdw * (nn // 2) + nn]
        mean = xx.sum() / nn
        sd = np.sqrt(((xx - mean) ** 2).sum() / (nn - 1))
        rng = xx.max() - xx.min()
        if rng < lim * sd:
            lo, width = xx.min(), rng / bins
        else:
            lo, width = mean - lim / 2 * sd, lim * sd / bins
        amp, ndrops, drop = np.zeros(bins + 1, int), np.zeros(bins + 1, int), 0
        for val in xx:
            for b in range(1, bins + 1):
                if lo + (b - 1) * width <= val < lo + b * width:
                    if b == drop:
                        ndrops[b] += 1
                    drop = b
                    amp[b] += 1
                    break
        binmin, binmax, sumx = 0, bins - bins // 10, 0
        for b in range(1, bins + 1):
            sumx += amp[b]
            if sumx <= extlim_dw * (nn // 100):
                binmin = b
            if sumx >= (100 - extlim_dw) * (nn // 100):
                binmax = b - 1
                break
        if binmin > 0 and binmax >= binmin:
            tot_ext += ndrops[1:binmin + 1].sum() + ndrops[binmax:].sum()
            tot_ctr += ndrops[binmin:binmax + 1].sum()
        tot_mpt += int((amp[1:] == 0).sum())
    return 100.0 * tot_mpt / (bins * wdw_num), tot_ctr, tot_ext


@pytest.mark.parametrize("levels", [None, 40, 12])
def test_histogram_statistics_equal_literal_port(levels):
    """Empty bins and EddyPro's repeat counts (central / extreme) equal the Fortran loop, on continuous and
    on coarsely quantised data (many repeats, values on bin edges, range narrower than 7 sd)."""
    x = turbulence(2400, 2, 11)
    if levels:
        x = np.round(x * levels / 8) / (levels / 8)
    h = amplitude_resolution_dropouts(x, 10.0, 60.0)
    assert (h.window, h.n_windows) == (600, 7)
    for row in range(2):
        empty, ctr, ext = ar_do_literal(x[row], 600)
        assert h.empty_bins_pct[row] == pytest.approx(empty)
        assert (h.repeats_central[row], h.repeats_extreme[row]) == (ctr, ext)


def _period(n=36000, seed=3):
    """A synthetic 30-min period in vm97 units, clean of everything the tests look for."""
    x = turbulence(n, 6, seed, rho=0.9)
    return {"u": 3.0 + 0.8 * x[0], "v": 0.5 * x[1], "w": 0.3 * x[2], "ts": 15.0 + 0.3 * x[3],
            "co2": 16.0 + 0.1 * x[4], "h2o": 500.0 + 20.0 * x[5]}


def test_clean_period_raises_no_flag():
    res = vm97_flags(_period(), RATE)
    for test in VARIABLE_TESTS:
        assert res.code(test) == "800000099", test
    assert res.code("attack_angle_hf") == "80" and res.code("non_steady_wind_hf") == "80"


def test_amplitude_resolution_flag():
    cols = _period()
    cols["ts"] = np.round(cols["ts"] / 0.25) * 0.25  # 0.25 K resolution for sd 0.3 K: few levels
    res = vm97_flags(cols, RATE)
    assert res.flags["amplitude_resolution_hf"]["ts"] == 1 and res.stats["ts"]["empty_bins_pct"] > 70
    assert res.flags["amplitude_resolution_hf"]["u"] == 0


def test_dropout_flag():
    """A stuck signal for 15 % of a window is a drop-out; EddyPro's integer division never sees one."""
    cols = _period()
    cols["co2"][10000:10400] = cols["co2"][10000]  # 20 s stuck (window 2 min = 2400 samples)
    res = vm97_flags(cols, RATE)
    assert res.flags["drop_out_hf"]["co2"] == 1 and res.flags["drop_out_hf"]["u"] == 0
    assert max(res.stats["co2"]["dropout_central_pct"], res.stats["co2"]["dropout_extreme_pct"]) > 15
    compat = vm97_flags(cols, RATE, VM97Options(eddypro_compat=True))
    assert compat.flags["drop_out_hf"]["co2"] == 0


def test_absolute_limits_flags_and_filter():
    cols = _period()
    cols["u"][100] = 40.0  # horizontal speed > 30 m s-1: u and v flagged and removed
    cols["w"][200] = -6.0
    cols["ts"][300] = 55.0
    cols["co2"][400] = 45.0  # mmol m-3 x 22.45 = 1010 umol mol-1 > 900
    res = vm97_flags(cols, RATE)
    assert res.code("absolute_limits_hf") == "811111099"
    for name, i in (("u", 100), ("v", 100), ("w", 200), ("ts", 300)):
        assert np.isnan(res.cleaned[name][i])
    assert not np.isnan(res.cleaned["co2"]).any()  # gases are flagged, not filtered (EddyPro)
    ratio = {"co2": 950.0 + 0.0 * cols["co2"], "h2o": 8.0 + 0.0 * cols["h2o"]}
    res = vm97_flags({**_period(), **ratio}, RATE, VM97Options(gas_measure={"co2": "mole_fraction",
                                                                             "h2o": "mole_fraction"}))
    assert res.flags["absolute_limits_hf"]["co2"] == 1 and res.flags["absolute_limits_hf"]["h2o"] == 0


def test_spike_flag_at_one_percent():
    cols = _period()
    idx = np.arange(50, 36000, 90)  # 400 single spikes = 1.1 % of the samples
    cols["w"][idx] += 3.0  # 10 sd, below the 5 m s-1 absolute limit
    res = vm97_flags(cols, RATE)
    assert res.spikes["w"] >= 360 and res.flags["spikes_hf"]["w"] == 1
    assert res.flags["spikes_hf"]["u"] == 0 and np.abs(res.cleaned["w"][idx]).max() < 2.0


def test_skewness_kurtosis_values_and_flags():
    rng = np.random.default_rng(5)
    trend = np.linspace(0.0, 50.0, 200000)
    skw, kur = skewness_kurtosis(np.vstack([rng.standard_normal(200000) + trend,
                                            rng.exponential(1.0, 200000) + trend,
                                            rng.uniform(-1, 1, 200000) - trend]))
    np.testing.assert_allclose(skw, [0.0, 2.0, 0.0], atol=0.08)
    np.testing.assert_allclose(kur, [3.0, 9.0, 1.8], atol=0.4)
    cols = _period()
    cols["v"] = 0.5 * (rng.exponential(1.0, 36000) - 1.0)  # skewness 2: hard
    cols["h2o"] = 500.0 + 20.0 * rng.uniform(-1, 1, 36000)  # kurtosis 1.8: soft only
    res = vm97_flags(cols, RATE, VM97Options(despike=False))
    assert res.flags["skewness_kurtosis_hf"]["v"] == 1
    assert res.flags["skewness_kurtosis_hf"]["h2o"] == 0 and res.flags["skewness_kurtosis_sf"]["h2o"] == 1
    assert res.flags["skewness_kurtosis_sf"]["u"] == 0
    gap = cols["u"].copy()
    gap[1000:2000] = np.nan
    s_gap, k_gap = skewness_kurtosis(gap)
    s_all, k_all = skewness_kurtosis(cols["u"])
    assert s_gap == pytest.approx(s_all, abs=0.05) and k_gap == pytest.approx(k_all, abs=0.1)


@pytest.mark.parametrize(("jump", "hard", "soft", "compat_hard"), [(-5.0, 1, 1, 0), (5.0, 1, 1, 1), (3.0, 0, 1, 0)])
def test_discontinuity_in_the_mean(jump, hard, soft, compat_hard):
    """A step of u: hard above 4 m s-1, soft above 2.7. EddyPro only sees decreases (signed test)."""
    cols = _period()
    cols["u"][18000:] -= jump
    res = vm97_flags(cols, RATE)
    assert (res.flags["discontinuities_hf"]["u"], res.flags["discontinuities_sf"]["u"]) == (hard, soft)
    assert res.flags["discontinuities_hf"]["w"] == 0
    compat = vm97_flags(cols, RATE, VM97Options(eddypro_compat=True))
    assert compat.flags["discontinuities_hf"]["u"] == compat_hard


def haar_direct(x, nn, step, compat):
    """Window by window with np.nanmean / np.nanvar (n - 1), the definitions haar_discontinuities cumulates."""
    h = nn // 2
    out_m, out_v = [], []
    var_record = np.nanvar(x, ddof=1)
    for s0 in range(0, len(x) - nn + 1, step):
        a, b, whole = x[s0:s0 + h], x[s0 + h:s0 + 2 * h], x[s0:s0 + nn]
        m1, m2, v1, v2 = np.nanmean(a), np.nanmean(b), np.nanvar(a, ddof=1), np.nanvar(b, ddof=1)
        if compat:
            out_m.append(m1 - m2)
            out_v.append((np.sqrt(v1) - np.sqrt(v2)) / np.nanvar(whole, ddof=1))
        else:
            out_m.append(abs(m1 - m2))
            out_v.append(abs(v1 - v2) / var_record)
    return np.array(out_m), np.array(out_v)


@pytest.mark.parametrize(("n", "nn", "step"), [(3000, 600, 100), (2999, 601, 100), (2000, 450, 70)])
def test_haar_equals_window_by_window_definition(n, nn, step):
    """Block-cumulated sums give the same window moments as computing every window directly, also with
    gaps and when the window, its half and the step share no common block length."""
    x = turbulence(n, 1, 5)[0] + 10.0
    x[[7, 8, 9, 1200, n - 1]] = np.nan
    for compat in (False, True):
        hm, hv = haar_discontinuities(x, 10.0, nn / 10.0, step=step, eddypro_compat=compat)
        dm, dv = haar_direct(x, nn, step, compat)
        np.testing.assert_allclose(hm[0], dm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(hv[0], dv, rtol=1e-9, atol=1e-12)


def test_discontinuity_in_the_variance():
    """A 2.5-min burst of 4x the standard deviation: |var_1 - var_2| / var_record = 6.7 > 3."""
    cols = _period()
    cols["w"][18000:21000] = cols["w"][18000:21000] * 4.0
    res = vm97_flags(cols, RATE, VM97Options(despike=False))
    assert res.flags["discontinuities_hf"]["w"] == 1 and res.stats["w"]["haar_var"] > 3
    assert res.flags["discontinuities_hf"]["v"] == 0
    hm, hv = haar_discontinuities(np.vstack([cols["w"], cols["v"]]), RATE, 300.0)
    assert hm.shape == hv.shape == (2, (36000 - 6000) // 100 + 1)


def test_molar_density_scaled_for_discontinuities():
    """co2 as molar density: a drop of 2 mmol m-3 (45 umol mol-1 with StdVair) is a hard flag (> 40)."""
    cols = _period()
    cols["co2"][18000:] -= 2.0
    res = vm97_flags(cols, RATE)
    assert res.flags["discontinuities_hf"]["co2"] == 1
    assert res.stats["co2"]["haar_mean"] == pytest.approx(2.0 * 22.45, rel=0.05)


def test_wind_tests():
    cols = _period()
    cols["w"][:5000] += 0.8 * np.hypot(cols["u"][:5000], cols["v"][:5000])  # 14 % of samples near 39 deg
    assert attack_angle_outside_pct(cols["u"], cols["v"], cols["w"], (-30.0, 30.0)) > 10
    res = vm97_flags(cols, RATE, VM97Options(despike=False))
    assert res.wind_flags["attack_angle_hf"] == 1 and res.code("attack_angle_hf") == "81"
    cols = _period()
    cols["u"] += np.linspace(-1.0, 1.0, 36000)  # 2 m s-1 change of a 3 m s-1 mean wind
    rn_u, rn_v, rn_s = nonsteady_wind(cols["u"], cols["v"])
    assert rn_u == pytest.approx(2.0 / 3.0, rel=0.05) and rn_s >= rn_u > 0.5 > rn_v
    assert vm97_flags(cols, RATE).wind_flags["non_steady_wind_hf"] == 1


def test_absent_variables_are_nine_and_mauder_option():
    cols = {k: v for k, v in _period().items() if k != "co2"}
    cols["tc"] = 300.0 + turbulence(36000, 1, 9)[0]
    res = vm97_flags(cols, RATE, VM97Options(despike_method="mauder"))
    assert res.code("spikes_hf") == "800009099" and res.code("skewness_kurtosis_sf") == "800009099"
    assert "tc" in res.cleaned and "tc" not in res.flags["spikes_hf"]
    assert vm97_flags({"u": np.ones(10)}, RATE).wind_flags == {}
    with pytest.raises(ValueError):
        vm97_flags({"u": np.ones(10), "v": np.ones(11)}, RATE)
    with pytest.raises(ValueError):
        vm97_flags(_period(), RATE, VM97Options(despike_method="median"))
