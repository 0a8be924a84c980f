"""Time-lag detection by covariance maximisation, with EddyPro's "covariance maximisation with default".

Sign convention (EddyPro ``CovMax``): a lag L [samples] pairs w_i with x_{i+L}; L > 0 means the scalar
arrives after the wind (it lags the sonic: tube transport, separation downwind). :func:`shift` undoes it.
"""

from __future__ import annotations

import numpy as np

#: EddyPro ``SetTimelags``: margin [s] added to automatically set windows, and the window multipliers of the
#: nominal lag for closed paths (passive gases 2, water vapour 10: it sticks to the tube walls).
SAFETY_S = 0.3
MULT_PASSIVE = 2.0
MULT_WATER = 10.0


def fortran_nint(x: float) -> int:
    """Round half away from zero (Fortran ``nint``, which EddyPro uses for seconds -> samples)."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def open_path_reach_s(separation_m: float) -> float:
    """EddyPro's half-width [s] of an open path's lag window: 2 s m-1 x separation + 0.3 s
    (``SetTimelags``; the separation includes the vertical one)."""
    return 2.0 * abs(separation_m) + SAFETY_S


def eddypro_lag_window(fs_hz: float, nominal_s: float, min_s: float, max_s: float, *, closed_path: bool,
                       separation_m: float = 0.0, water: bool = False) -> tuple[int, int, int]:
    """(default, min, max) lag [samples] as EddyPro derives them from the metadata (``SetTimelags``).

    Zero bounds in the metadata mean "not set": open path, min = -(2 s m-1 * separation + 0.3 s) and
    max = +(2 s m-1 * separation + 0.3 s); closed path, min = max(0, nominal - 2 s) and max = nominal
    (1 + mult) + 0.3 s, mult = 2 (passive gas) or 10 (H2O). Then seconds -> samples with nint(t * fs).
    (A closed path with nominal 0 gets its nominal from the tube in EddyPro; give it here.)
    """
    lo, hi = min_s, max_s
    if closed_path:
        mult = MULT_WATER if water else MULT_PASSIVE
        if lo == 0.0:
            lo = max(0.0, nominal_s - 2.0)
        if hi == 0.0:
            hi = nominal_s + mult * nominal_s + SAFETY_S
    else:
        reach = open_path_reach_s(separation_m)
        if lo == 0.0:
            lo = -reach
        if hi == 0.0:
            hi = reach
    return fortran_nint(nominal_s * fs_hz), fortran_nint(lo * fs_hz), fortran_nint(hi * fs_hz)


def lag_covariances(w: np.ndarray, x: np.ndarray, min_lag: int, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Lags min_lag..max_lag [samples] and cov(w_i, x_{i+L}) at each [units of w * x].

    Each covariance uses all the overlapping pairs where both are present, with their own means (EddyPro
    ``CovMax`` + ``CovarianceMatrixNoError``): cov = <w x> - <w><x> over the pairs. The four sums over pairs
    for every lag are correlations computed at once (``np.correlate``, exact, O(n * n_lags)).
    """
    w = np.asarray(w, dtype=float)
    x = np.asarray(x, dtype=float)
    if w.shape != x.shape or w.ndim != 1:
        raise ValueError("w and x must be 1-D arrays of the same length")
    if max_lag < min_lag:
        raise ValueError("max_lag < min_lag")
    n = len(w)
    lags = np.arange(min_lag, max_lag + 1)
    mw, mx = ~np.isnan(w), ~np.isnan(x)
    # centre first: sums of products of small numbers keep their precision
    wc = _centred(w, mw)
    xc = _centred(x, mx)
    p, q = max(0, -min_lag), max(0, max_lag)
    start = min_lag + p
    stop = start + n + max_lag - min_lag

    def seg(a):
        return np.concatenate([np.zeros(p), a, np.zeros(q)])[start:stop]

    xs = seg(xc)
    s_wx = np.correlate(xs, wc, "valid")  # sum_i w_i x_{i+L}
    if mw.all() and mx.all():  # no gaps: the other sums are partial sums over each lag's overlap
        lo = np.clip(-lags, 0, n)
        hi = np.clip(n - lags, 0, n)
        hi = np.maximum(hi, lo)
        cw, cx = _cumulative(wc), _cumulative(xc)
        s_w = cw[hi] - cw[lo]
        s_x = cx[np.clip(hi + lags, 0, n)] - cx[np.clip(lo + lags, 0, n)]
        cnt = (hi - lo).astype(float)
    else:
        ms = seg(mx.astype(float))
        wm = mw.astype(float)
        s_w = np.correlate(ms, wc, "valid")  # sum_i w_i [x_{i+L} present]
        s_x = np.correlate(xs, wm, "valid")  # sum_i x_{i+L} [w_i present]
        cnt = np.rint(np.correlate(ms, wm, "valid"))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = s_wx / cnt - (s_w / cnt) * (s_x / cnt)
    cov[cnt < 1] = np.nan
    return lags, cov


def _centred(a: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``a`` minus the mean of its present samples, 0 where missing (the plain mean when none is)."""
    if a.size and present.all():
        return a - a.mean()
    return np.where(present, a - (a[present].mean() if present.any() else 0.0), 0.0)


def _cumulative(a: np.ndarray) -> np.ndarray:
    """[0, a0, a0 + a1, ...]: sums of the first k samples, k = 0..n."""
    out = np.empty(a.size + 1)
    out[0] = 0.0
    np.cumsum(a, out=out[1:])
    return out


def find_lag(w: np.ndarray, x: np.ndarray, min_lag: int, max_lag: int, default_lag: int | None = None
             ) -> tuple[int, float, bool]:
    """(lag [samples], cov(w, x) at that lag, used_default) by covariance maximisation.

    The lag maximising |cov(w_i, x_{i+L})| over min_lag <= L <= max_lag (first one on ties, as EddyPro).
    "With default" (``default_lag`` given; EddyPro ``maxcov&default``): when the maximum sits on either bound of
    the window it is not a true maximum, so the nominal ``default_lag`` is used instead (also when no
    covariance can be computed). Without a default the edge lag is returned as found.
    """
    lags, cov = lag_covariances(w, x, min_lag, max_lag)
    a = np.abs(cov)
    if not np.isfinite(a).any():
        lag = default_lag if default_lag is not None else 0
        return int(lag), float("nan"), default_lag is not None
    i = int(np.nanargmax(a))
    lag = int(lags[i])
    if default_lag is not None and lag in (min_lag, max_lag):
        c = lag_covariances(w, x, default_lag, default_lag)[1][0] if not min_lag <= default_lag <= max_lag \
            else cov[default_lag - min_lag]
        return int(default_lag), float(c), True
    return lag, float(cov[i]), False


def shift(x: np.ndarray, lag: int) -> np.ndarray:
    """Align a lagged scalar with the wind: y_i = x_{i+lag}; the ``|lag|`` samples shifted in are NaN
    (EddyPro ``TimeLagHandle``: positive lag moves the scalar earlier)."""
    x = np.asarray(x, dtype=float)
    y = np.full(x.shape, np.nan)
    n = x.shape[-1]
    if abs(lag) >= n:
        return y
    if lag >= 0:
        y[..., : n - lag] = x[..., lag:]
    else:
        y[..., -lag:] = x[..., : n + lag]
    return y
