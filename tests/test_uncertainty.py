"""Finkelstein & Sims (2001) random error: exact lagged covariances, AR(1) theory, and EddyPro 7.0.9's
rand_err_* on the raw reference data."""

import time
import zipfile

import numpy as np
import pytest
from conftest import EC_DATA
from eddypro_output import full_output_rows

from station.flux.uncertainty import finkelstein_sims, integral_timescale, lagged_covariance, random_error

EC = EC_DATA


def brute_lagged(x, y, k):
    a, b = x[: len(x) - k], y[k:]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return np.mean(a * b) - a.mean() * b.mean()


def test_lagged_covariance_equals_direct_sums_with_and_without_gaps():
    rng = np.random.default_rng(1)
    x = rng.normal(size=777)
    y = np.roll(x, 4) + rng.normal(size=777)
    for gaps in (False, True):
        if gaps:
            x[[3, 100, 101, 500]] = np.nan
            y[[0, 250, 776]] = np.nan
        got = lagged_covariance(x, y, 30)
        want = [brute_lagged(x, y, k) for k in range(31)]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    stacked = lagged_covariance(np.stack([x, y]), np.stack([y, x]), 5)
    np.testing.assert_allclose(stacked[1], [brute_lagged(y, x, k) for k in range(6)], rtol=1e-10)


def test_both_lag_directions_come_from_one_correlation_with_and_without_gaps():
    """Negative lags (cov(y[i], x[i+k])) are read from the same inverse FFT as the positive ones."""
    from station.flux.uncertainty import _lagged_pair, _nfft, _Series

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 901))
    y = np.roll(x, -6, axis=1) + rng.normal(size=(2, 901))
    for gaps in (False, True):
        if gaps:
            x[0, [5, 6, 400]] = np.nan
            y[1, [0, 900]] = np.nan
        nfft = _nfft(901, 25)
        fwd, back = _lagged_pair(_Series(x, nfft), _Series(y, nfft), 901, nfft, 25)
        for r in range(2):
            np.testing.assert_allclose(fwd[r], [brute_lagged(x[r], y[r], k) for k in range(26)], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(back[r], [brute_lagged(y[r], x[r], k) for k in range(26)], rtol=1e-9,
                                       atol=1e-12)


def ar1(rng, phi, shape):
    """AR(1) with unit innovations, started from its stationary distribution."""
    e = rng.normal(size=shape)
    out = np.empty(shape)
    out[..., 0] = e[..., 0] / np.sqrt(1 - phi**2)
    for i in range(1, shape[-1]):
        out[..., i] = phi * out[..., i - 1] + e[..., i]
    return out


def test_ar1_processes_recover_the_analytic_variance_of_the_covariance():
    """w and e independent AR(1) (phi), x = beta w + e: gamma_ww(k) = V phi^|k|, gamma_xx = (beta^2 + 1) V
    phi^|k|, gamma_wx = gamma_xw = beta V phi^|k|, V = 1/(1 - phi^2), so (Bartlett; F&S eq. 8)
    var(cov) = V^2 (2 beta^2 + 1) S(m) / N with S(m) = 1 + 2 sum_{k=1..m} phi^2k."""
    rng = np.random.default_rng(42)
    phi, beta, n, reps = 0.8, 0.6, 4096, 400
    w = ar1(rng, phi, (reps, n))
    x = beta * w + ar1(rng, phi, (reps, n))
    v = 1 / (1 - phi**2)

    def theory(m):
        s = 1 + 2 * np.sum(phi ** (2 * np.arange(1, m + 1)))
        return np.sqrt(v**2 * (2 * beta**2 + 1) * s / n)

    est = finkelstein_sims(w, x, 40)
    assert est.shape == (reps,)
    assert np.mean(est) == pytest.approx(theory(40), rel=0.03)
    assert np.std(est) < 0.15 * theory(40)
    # the spread of the covariances themselves across realisations
    cov = np.mean((w - w.mean(1, keepdims=True)) * (x - x.mean(1, keepdims=True)), axis=1)
    assert np.std(cov) == pytest.approx(theory(10_000), rel=0.1)
    # a truncated window gives the truncated sum; per-period windows broadcast
    est_m = finkelstein_sims(w[:50], x[:50], np.arange(50) % 5)
    for m in range(5):
        assert np.mean(est_m[m::5]) == pytest.approx(theory(m), rel=0.06)
    # ITS: rho(k) = phi^k, cross_e stops at the first rho < 1/e (k = 5 for phi = 0.8)
    its = integral_timescale(w, x, 20.0, method="cross_e")
    assert np.median(its) == pytest.approx(np.sum(phi ** np.arange(5)) / 20.0, rel=0.05)
    full = integral_timescale(w[:20], x[:20], 20.0, max_lag_s=3.0, method="full_integral")
    assert np.all(full > np.sum(phi ** np.arange(5)) / 20.0)


def test_random_error_fallback_its_and_degenerate_input():
    rng = np.random.default_rng(3)
    w = rng.normal(size=2000)
    got = random_error(w, np.zeros(2000), 20.0, z_m=4.0, u_mean_ms=2.0)
    assert got["its_s"] == 2.0 and got["max_lag"] == 40 and np.isnan(got["sigma"])  # zero variance
    got = random_error(w, np.zeros(2000), 20.0)
    assert np.isnan(got["its_s"]) and np.isnan(got["sigma"])


# --- EddyPro reference runs on the raw data ----------------------------------------------------------


def double_rotation(u, v, w):
    """Wilczak et al. (2001) double rotation of sample series (private to this test)."""
    yaw = np.arctan2(v.mean(), u.mean())
    u1 = u * np.cos(yaw) + v * np.sin(yaw)
    v1 = -u * np.sin(yaw) + v * np.cos(yaw)
    pitch = np.arctan2(w.mean(), u1.mean())
    return u1 * np.cos(pitch) + w * np.sin(pitch), v1, -u1 * np.sin(pitch) + w * np.cos(pitch)


def lag(x, seconds, rate_hz):
    """EddyPro time-lag compensation: the gas sample at t + lag belongs to w at t; NaN where it runs out."""
    k = round(seconds * rate_hz)
    out = np.full_like(x, np.nan)
    if k >= 0:
        out[: len(x) - k] = x[k:]
    else:
        out[-k:] = x[:k]
    return out


def fluxpart_period():
    raw = EC / "fluxpart-csat3-openpath-20hz/raw/TOA5_6843.ts_Above_2012_06_07_1245.dat"
    d = np.loadtxt(raw, delimiter=",", skiprows=4, usecols=range(2, 9))  # Ux Uy Uz co2 h2o Ts press
    row = full_output_rows(EC / "fluxpart-csat3-openpath-20hz/eddypro/eddypro_fluxpart_full_output.csv")[0]
    return {"u": d[:, 0], "v": d[:, 1], "w": d[:, 2], "ts": d[:, 5], "co2": d[:, 3], "h2o": d[:, 4]}, row, 7.11 - 2.9614


def degeb_period(name: str, index: int):
    with zipfile.ZipFile(EC / f"degeb-hs50-li7200-20hz/raw/{name}.ghg") as z:
        lines = [ln for ln in z.read(f"{name}.data").decode().splitlines() if ln.startswith("DATA\t")]
    # metadata columns (1-based after the DATA label): 18-21 U V W SOS, 25 CO2 dry, 27 H2O dry
    d = np.loadtxt(lines, delimiter="\t", usecols=(18, 19, 20, 21, 25, 27))
    row = full_output_rows(EC / "degeb-hs50-li7200-20hz/eddypro/eddypro_degeb_full_output.csv")[index]
    return {"u": d[:, 0], "v": d[:, 1], "w": d[:, 2], "ts": d[:, 3] ** 2 / 403.0, "co2": d[:, 4], "h2o": d[:, 5]}, \
        row, 3.8 - 0.067


FLUXES = (("u", "rand_err_Tau", "un_Tau"), ("ts", "rand_err_H", "un_H"),
          ("co2", "rand_err_co2_flux", "un_co2_flux"), ("h2o", "rand_err_h2o_flux", "un_h2o_flux"))


@pytest.mark.parametrize("period", ["fluxpart", "degeb-20:30", "degeb-21:00"])
def test_random_errors_match_eddypro(period):
    """Relative random error sigma / |cov| against EddyPro's rand_err_X / |un_X| (both in flux units, so the
    conversion factors cancel). Series: rotated, time-lagged by EddyPro's own lags, not despiked.
    Observed: fluxpart <= 0.05 %; degeb <= 0.2 % (Tau, H, CO2) and 0.7 % (the near-zero H2O flux)."""
    if period == "fluxpart":
        s, row, z_m = fluxpart_period()
    else:
        name = "2016-12-11T200000_AIU-1359" if period.endswith("20:30") else "2016-12-11T203000_AIU-1359"
        s, row, z_m = degeb_period(name, 0 if period.endswith("20:30") else 1)
    assert row["rand_err_co2_flux"] > 0
    u, _, w = double_rotation(s["u"], s["v"], s["w"])
    series = {"u": u, "ts": s["ts"], "co2": lag(s["co2"], row["co2_time_lag"], 20.0),
              "h2o": lag(s["h2o"], row["h2o_time_lag"], 20.0)}
    for var, err_col, flux_col in FLUXES:
        x = series[var]
        ok = np.isfinite(x)
        got = random_error(w[ok], x[ok], 20.0, z_m=z_m, u_mean_ms=u.mean())
        cov = lagged_covariance(w[ok], x[ok], 0)[0]
        ours = got["sigma"] / abs(cov)
        theirs = row[err_col] / abs(row[flux_col])
        assert ours == pytest.approx(theirs, rel=0.02), (var, ours, theirs, got)
        assert 0.0 < got["its_s"] < 20.0


def test_one_period_of_four_fluxes_is_fast():
    s, _, z_m = degeb_period("2016-12-11T200000_AIU-1359", 0)
    u, _, w = double_rotation(s["u"], s["v"], s["w"])
    x = np.stack([u, s["ts"], s["co2"], s["h2o"]])
    start = time.perf_counter()
    got = random_error(w, x, 20.0, z_m=z_m, u_mean_ms=u.mean())
    elapsed = time.perf_counter() - start
    assert got["sigma"].shape == (4,) and np.all(np.isfinite(got["sigma"]))
    assert elapsed < 2.0
