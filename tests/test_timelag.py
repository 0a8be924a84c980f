"""Time lags by covariance maximisation: EddyPro's lags on the real data, exact recovery, the default rule."""

from __future__ import annotations

import numpy as np
import pytest
from test_rotation import REFERENCE_PERIODS, load_period, num, reference

from station.flux.rotation import double_rotation_matrix, rotate_wind
from station.flux.timelag import eddypro_lag_window, find_lag, fortran_nint, lag_covariances, shift


def rotated_w(d: dict) -> np.ndarray:
    uvw = np.column_stack([d["u"], d["v"], d["w"]])
    return rotate_wind(uvw, double_rotation_matrix(uvw.mean(axis=0)))[:, 2]


def window(d: dict, gas: str) -> tuple[int, int, int]:
    nominal, lo, hi = d["lags"][gas]
    return eddypro_lag_window(d["fs"], nominal, lo, hi, closed_path=d["closed_path"], water=gas == "h2o")


def test_lag_windows_from_the_metadata_as_eddypro_sets_them():
    fp = load_period("TOA5_6843.ts_Above_2012_06_07_1245.dat")
    dg = load_period("2016-12-11T200000_AIU-1359.ghg")
    # open path, nothing set in the metadata: +-(2 s/m * 0 m + 0.3 s) = +-6 samples, nominal 0
    assert window(fp, "co2") == window(fp, "h2o") == (0, -6, 6)
    # closed path: nominal 0.258 s -> 5 samples; max 0.516 s -> 10 (CO2), 2.58 s -> 52 (H2O)
    assert window(dg, "co2") == (5, 0, 10)
    assert window(dg, "h2o") == (5, 0, 52)
    # unset closed-path bounds: min = max(0, nominal - 2 s), max = nominal (1 + 2 or 10) + 0.3 s
    assert eddypro_lag_window(10, 3.0, 0, 0, closed_path=True) == (30, 10, 93)
    assert eddypro_lag_window(10, 3.0, 0, 0, closed_path=True, water=True) == (30, 10, 333)
    assert eddypro_lag_window(20, 0.0, 0, 0, closed_path=False, separation_m=0.2) == (0, -14, 14)
    assert [fortran_nint(x) for x in (2.5, -2.5, 10.32, -6.000000001, 0.49)] == [3, -3, 10, -6, 0]


@pytest.mark.parametrize("period", REFERENCE_PERIODS)
def test_lags_on_the_raw_data_match_eddypro(period):
    d = load_period(period)
    full, st6 = reference()[period]["full"], reference()[period]["st6"]
    w = rotated_w(d)
    for gas in ("co2", "h2o"):
        default, lo, hi = window(d, gas)
        lag, cov, used_default = find_lag(w, d[gas], lo, hi, default)
        assert lag / d["fs"] == pytest.approx(num(full, f"{gas}_time_lag"), abs=1e-9), gas
        assert used_default == bool(int(num(full, f"{gas}_def_timelag"))), gas
        # the covariance at that lag is EddyPro's lag-compensated one (st6), despiking aside
        assert cov == pytest.approx(num(st6, f"cov(w/{gas})"), rel=0.02), gas
        shifted = shift(d[gas], lag)
        ok = ~np.isnan(shifted)
        assert np.cov(w[ok], shifted[ok], bias=True)[0, 1] == pytest.approx(cov, rel=1e-10)


def test_the_reference_lags_are_the_ones_the_readme_quotes():
    full = {p: reference()[p]["full"] for p in REFERENCE_PERIODS}
    assert num(full["TOA5_6843.ts_Above_2012_06_07_1245.dat"], "co2_time_lag") == -0.15
    assert num(full["2016-12-11T200000_AIU-1359.ghg"], "co2_time_lag") == 0.25


def _lagged(n=6000, lag=7, seed=0, noise=0.3, slow=0.3):
    """w, and a scalar that sees w ``lag`` samples later: x_{i+lag} = w_i + noise (x lags the sonic).
    w: white noise plus a slowly decorrelating part (exponential autocorrelation over ~20 samples), so the
    lag covariance falls off smoothly on both sides of its peak, as in turbulence."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n + 200)
    slow = np.convolve(rng.standard_normal(n + 200), 0.95 ** np.arange(100), "full")[: n + 200] * slow
    base = white + slow
    w = base[100:100 + n]
    x = base[100 - lag:100 - lag + n] + noise * rng.standard_normal(n) + 400.0
    return w, x


@pytest.mark.parametrize("true_lag", [-9, -1, 0, 3, 17, 40])
def test_synthetic_lags_are_recovered_exactly(true_lag):
    w, x = _lagged(lag=true_lag, seed=abs(true_lag))
    lag, cov, used_default = find_lag(w, x, -50, 50, default_lag=5)
    assert (lag, used_default) == (true_lag, False)
    assert cov > 0
    # and with gaps in both series
    rng = np.random.default_rng(1)
    w2, x2 = w.copy(), x.copy()
    w2[rng.choice(len(w), 300, replace=False)] = np.nan
    x2[rng.choice(len(x), 300, replace=False)] = np.nan
    assert find_lag(w2, x2, -50, 50, 5)[:1] == (true_lag,)
    # shift() undoes the lag: at zero lag the aligned series are w plus noise
    y = shift(x, true_lag)
    ok = ~np.isnan(y)
    assert ok.sum() == len(x) - abs(true_lag)
    assert np.corrcoef(w[ok], y[ok])[0, 1] > 0.8


@pytest.mark.parametrize("gaps", [True, False])
def test_lag_covariances_equal_the_brute_force_definition(gaps):
    """With gaps (masked correlations) and without (partial sums over each lag's overlap)."""
    w, x = _lagged(n=700, lag=4)
    rng = np.random.default_rng(2)
    if gaps:
        w[rng.choice(700, 40, replace=False)] = np.nan
        x[rng.choice(700, 40, replace=False)] = np.nan
    lags, cov = lag_covariances(w, x, -12, 15)
    assert lags.tolist() == list(range(-12, 16))
    for lag, c in zip(lags, cov, strict=True):
        a = w[max(0, -lag):len(w) - max(0, lag)]
        b = x[max(0, lag):len(x) - max(0, -lag)]
        ok = ~np.isnan(a) & ~np.isnan(b)
        expect = np.mean(a[ok] * b[ok]) - a[ok].mean() * b[ok].mean()
        assert c == pytest.approx(expect, rel=1e-10, abs=1e-14)
    # a window entirely on one side of zero works too
    lags, cov2 = lag_covariances(w, x, 3, 6)
    np.testing.assert_allclose(cov2, cov[15:19], rtol=1e-12)
    lags, cov3 = lag_covariances(w, x, -6, -3)
    np.testing.assert_allclose(cov3, cov[6:10], rtol=1e-12)
    # lags beyond the series overlap nothing
    lags, far = lag_covariances(w, x, 698, 705)
    assert np.isfinite(far[:1]).all() and np.isnan(far[2:]).all()


def test_default_is_used_when_the_maximum_sits_on_the_window_edge():
    w, x = _lagged(n=20000, lag=25, slow=1.0)
    # the true lag is outside [0, 10]: the largest |cov| is at the bound 10 -> the nominal lag 5 instead
    lag, cov, used_default = find_lag(w, x, 0, 10, default_lag=5)
    assert (lag, used_default) == (5, True)
    assert cov == pytest.approx(lag_covariances(w, x, 5, 5)[1][0])
    # the same on the lower bound
    w, x = _lagged(n=20000, lag=-25, slow=1.0)
    assert find_lag(w, x, -10, 10, default_lag=2)[::2] == (2, True)
    # without a default ("covariance maximisation" only), the edge is what it finds
    assert find_lag(w, x, -10, 10)[::2] == (-10, False)
    # a default outside the window is still honoured
    lag, cov, used_default = find_lag(w, x, 0, 10, default_lag=-25)
    assert (lag, used_default) == (-25, True) and cov == pytest.approx(np.max(lag_covariances(w, x, -30, 0)[1]))
    # the maximum strictly inside the window is kept
    assert find_lag(w, x, -30, 0, default_lag=-3)[::2] == (-25, False)


def test_no_data_falls_back_to_the_default():
    w = np.full(100, np.nan)
    lag, cov, used_default = find_lag(w, np.arange(100.0), -3, 3, default_lag=1)
    assert (lag, used_default) == (1, True) and np.isnan(cov)


def test_shift_conventions():
    x = np.arange(6.0)
    np.testing.assert_array_equal(shift(x, 2), [2, 3, 4, 5, np.nan, np.nan])
    np.testing.assert_array_equal(shift(x, -2), [np.nan, np.nan, 0, 1, 2, 3])
    np.testing.assert_array_equal(shift(x, 0), x)
    assert np.isnan(shift(x, 6)).all()
    with pytest.raises(ValueError):
        lag_covariances(x, x[:-1], 0, 1)
