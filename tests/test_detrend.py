"""Detrending: block average, linear, running mean, exponentially weighted running mean (EddyPro's four)."""

from __future__ import annotations

import numpy as np
import pytest

from station.flux.detrend import (
    DEFAULT_TIME_CONSTANT_S,
    block_mean,
    exponential_running_mean,
    fluctuations,
    linear_trend,
    running_mean,
    trend,
)

RNG = np.random.default_rng(42)


def with_gaps(x, k=50, seed=0):
    x = np.array(x, dtype=float)
    x[np.random.default_rng(seed).choice(x.shape[-1], k, replace=False)] = np.nan
    return x


def eddypro_ewa(x, window):
    """EddyPro ``ExpWeightAvrg`` sample by sample: growing mean over the first ``window`` samples, then
    trend_i = b trend_{i-1} + (1 - b) x_i, a missing sample holding the trend."""
    b = np.exp(-1.0 / window)
    out = np.empty_like(x)
    for i in range(len(x)):
        if i < window:
            seen = x[: i + 1][~np.isnan(x[: i + 1])]
            out[i] = seen.mean() if len(seen) else np.nan
        elif np.isnan(x[i]):
            out[i] = out[i - 1]
        else:
            out[i] = b * out[i - 1] + (1 - b) * x[i]
    return out


def test_block_is_mean_removal():
    x = with_gaps(RNG.normal(400, 3, (3, 1000)).ravel()).reshape(3, 1000)
    f = fluctuations(x, "block")
    for row, frow in zip(x, f, strict=True):
        ok = ~np.isnan(row)
        np.testing.assert_allclose(frow[ok], row[ok] - row[ok].mean(), atol=1e-10)
        assert np.isnan(frow[~ok]).all()
        assert np.nanmean(frow) == pytest.approx(0.0, abs=1e-10)
    # along another axis: same numbers
    np.testing.assert_allclose(fluctuations(x.T, "block", axis=0), f.T, atol=1e-12)
    assert block_mean(x).shape == x.shape


def test_linear_trend_is_removed_exactly():
    t = np.arange(3000.0)
    line = 2.0 - 0.003 * t
    np.testing.assert_allclose(fluctuations(line + 400.0, "linear"), 0.0, atol=1e-9)
    noise = RNG.standard_normal(3000)
    x = with_gaps(400.0 + line + noise)
    f = fluctuations(x, "linear")
    ok = ~np.isnan(x)
    slope, icept = np.polyfit(t[ok], x[ok], 1)
    np.testing.assert_allclose(f[ok], x[ok] - (icept + slope * t[ok]), atol=1e-9)
    # least squares: the fluctuations are orthogonal to 1 and to t
    assert abs(np.sum(f[ok])) < 1e-8 and abs(np.sum(f[ok] * t[ok])) < 1e-4
    assert np.isnan(f[~ok]).all()


def test_linear_trend_per_window_the_last_taking_the_remainder():
    x = RNG.standard_normal(1050).cumsum()
    tr = linear_trend(x, window=300)  # windows 0-299, 300-599, 600-1049 (as EddyPro)
    for lo, hi in ((0, 300), (300, 600), (600, 1050)):
        t = np.arange(lo, hi)
        coef = np.polyfit(t, x[lo:hi], 1)
        np.testing.assert_allclose(tr[lo:hi], np.polyval(coef, t), atol=1e-9)
    # a window as long as the block: one line
    np.testing.assert_allclose(linear_trend(x, 1050), linear_trend(x), atol=1e-9)
    # via the dispatcher with a time constant: 15 s at 20 Hz = 300 samples
    np.testing.assert_allclose(trend(x, "linear", fs_hz=20, time_constant_s=15), tr, atol=1e-12)


def brute_running_mean(x, window):
    out = np.empty_like(x)
    for i in range(len(x)):
        seg = x[max(0, i - window + 1): i + 1]
        seg = seg[~np.isnan(seg)]
        out[i] = seg.mean() if len(seg) else np.nan
    return out


def test_running_mean_with_a_known_window():
    x = with_gaps(RNG.normal(10.0, 1.0, 2000))
    np.testing.assert_allclose(running_mean(x, 100), brute_running_mean(x, 100), atol=1e-10)
    # a step: the trend reaches the new level exactly `window` samples after it, linearly
    step = np.r_[np.zeros(500), np.ones(500)]
    tr = running_mean(step, 200)
    np.testing.assert_allclose(tr[500:700], (np.arange(200) + 1) / 200)
    np.testing.assert_allclose(tr[699:], 1.0)
    # dispatcher: time constant in seconds x sampling rate
    np.testing.assert_allclose(trend(x, "running_mean", fs_hz=20, time_constant_s=5), running_mean(x, 100))
    # many series at once
    xs = np.vstack([x, 2 * x + 1])
    np.testing.assert_allclose(running_mean(xs, 100)[1], 2 * running_mean(x, 100) + 1, atol=1e-10)


@pytest.mark.parametrize(("window", "n"), [(1, 5000), (3, 4000), (50, 3000), (5000, 7000)])
def test_exponential_running_mean_equals_the_recurrence(window, n):
    # window 1 and 3: the closed form restarts every 600 and 1800 samples: blocks are exercised
    x = with_gaps(RNG.normal(400.0, 2.0, n), k=n // 20)
    np.testing.assert_allclose(exponential_running_mean(x, window), eddypro_ewa(x, window), rtol=1e-12, atol=1e-9)


def test_exponential_running_mean_time_constant():
    window = 400
    x = np.r_[np.zeros(window), np.ones(3000)]
    tr = exponential_running_mean(x, window)
    k = np.arange(1, 3001)
    np.testing.assert_allclose(tr[window:], 1 - np.exp(-k / window), atol=1e-12)  # 1 - b^k
    assert tr[2 * window - 1] == pytest.approx(1 - np.exp(-1.0))  # one time constant: 63 %
    # 250 s at 20 Hz by default
    assert DEFAULT_TIME_CONSTANT_S == 250.0
    y = RNG.normal(0, 1, 12000)
    np.testing.assert_allclose(trend(y, "exponential", fs_hz=20), exponential_running_mean(y, 5000))
    np.testing.assert_allclose(trend(y, "running_mean", fs_hz=20), running_mean(y, 5000))


def test_fluctuations_are_vectorised_and_checked():
    x = RNG.normal(0, 1, (4, 3000)).cumsum(axis=1)
    for method in ("block", "linear", "running_mean", "exponential"):
        f = fluctuations(x, method, fs_hz=10, time_constant_s=30)
        for i in range(4):
            np.testing.assert_allclose(f[i], fluctuations(x[i], method, fs_hz=10, time_constant_s=30), atol=1e-9)
    with pytest.raises(ValueError):
        fluctuations(x, "quadratic")
    with pytest.raises(ValueError):
        fluctuations(x, "running_mean")  # needs the sampling rate
    # all missing stays missing, without warnings
    with np.errstate(all="raise"):
        for method in ("block", "linear", "running_mean", "exponential"):
            assert np.isnan(fluctuations(np.full(500, np.nan), method, fs_hz=10, time_constant_s=5)).all()
