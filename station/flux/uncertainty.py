"""Random (sampling) error of eddy covariances: Finkelstein & Sims (2001), as the EddyPro engine applies it.

Pure NumPy, arrays in, results out. Series are the last axis, so a stack of periods ``(P, n)`` gives
``P`` results at once; NaN marks a missing sample. All lagged covariances come from FFT correlations
(numpy.fft), so one 30-min 20 Hz period costs a few FFTs of 64 k points whatever the lag window.

EddyPro (``random_error_handle.f90``, ``integral_turbulence_scale.f90``; project keys ``ru_meth = 1``,
``ru_its_meth``, ``ru_tlag_max``):

1. integral turbulence time scale (ITS) of each flux from the w-x cross-covariance normalised by its
   lag-0 value, over lags 0 ... ``tlag_max_s`` (10 s by default): ``cross_e`` (project default,
   ``ru_its_meth = 0``) sums |rho| dt until rho first drops below 1/e, ``cross_0`` until it drops below 0,
   ``full_integral`` over all lags; an ITS that cannot be computed or exceeds 2 ``tlag_max_s`` becomes
   (z - d) / mean(u) (Wyngaard 1973, as cited by Billesbach 2011);
2. the variance of the covariance (Finkelstein & Sims 2001 eq. 8-10) summed over |lag| <= m,
   m = nint(ITS f_s) samples.

The result is in the covariance's own units; multiply by the flux conversion (rho cp for H, ...) as for
the uncorrected flux.
"""

from __future__ import annotations

import numpy as np

ITS_METHODS = ("cross_e", "cross_0", "full_integral")


def _nint(x) -> np.ndarray:
    """Fortran NINT (half away from zero)."""
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _correlate(a_hat: np.ndarray, b_hat: np.ndarray, nfft: int, max_lag: int) -> np.ndarray:
    """sum_i a[i] b[i + k] for k = 0..max_lag, from the rfft's of a and b."""
    return np.fft.irfft(np.conj(a_hat) * b_hat, nfft)[..., : max_lag + 1]


def _both_ways(r: np.ndarray, nfft: int, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a circular correlation r[k] = sum_i a[i] b[i + k] (no wrap-around: nfft >= n + max_lag + 1)
    into lags k = 0..max_lag of (a, b) and of (b, a): sum_i b[i] a[i + k] = r[-k]."""
    fwd = r[..., : max_lag + 1]
    back = np.concatenate([r[..., :1], r[..., nfft - max_lag:][..., ::-1]], axis=-1)
    return fwd, back


class _Series:
    """One series prepared for lagged covariances: centred, zero-filled where missing, its FFTs."""

    def __init__(self, x: np.ndarray, nfft: int):
        self.valid = np.isfinite(x)
        self.has_gaps = not bool(self.valid.all())
        if self.has_gaps:
            count = self.valid.sum(axis=-1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(self.valid, x, 0.0).sum(axis=-1, keepdims=True) / count
            self.x0 = np.where(self.valid, x - mean, 0.0)  # centring keeps the products well conditioned
        else:
            self.x0 = x - x.mean(axis=-1, keepdims=True)
        self.x_hat = np.fft.rfft(self.x0, nfft)
        self.m_hat = np.fft.rfft(self.valid.astype(float), nfft) if self.has_gaps else None

    def mask_hat(self, nfft: int) -> np.ndarray:
        if self.m_hat is None:
            self.m_hat = np.fft.rfft(self.valid.astype(float), nfft)
        return self.m_hat


def _cov(sxy, npair, sx, sy) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy / npair - (sx / npair) * (sy / npair)
    return np.where(npair > 0, cov, np.nan)


def _lagged_pair(a: _Series, b: _Series, n: int, nfft: int, max_lag: int, backward: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Lagged covariances cov(a[i], b[i+k]) and cov(b[i], a[i+k]), k = 0..max_lag, each over the pairs
    present at that lag with that subset's own means, normalised by the pair count (EddyPro
    ``LaggedCovarianceNoError``). Both directions come from the same inverse FFTs (``backward=False``:
    the first only, the second is None)."""
    k = np.arange(max_lag + 1)
    if not (a.has_gaps or b.has_gaps):
        r = np.fft.irfft(np.conj(a.x_hat) * b.x_hat, nfft)
        npair = (n - k).astype(float)

        def head(x):  # sum x[0:k], k = 0..max_lag
            return np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(x[..., :max_lag], axis=-1)], axis=-1)

        def tail(x):  # sum x[n-k:n]
            return head(x[..., ::-1])

        ta, tb = a.x0.sum(axis=-1, keepdims=True), b.x0.sum(axis=-1, keepdims=True)
        fwd = _cov(r[..., : max_lag + 1], npair, ta - tail(a.x0), tb - head(b.x0))
        if not backward:
            return fwd, None
        sxy_b = _both_ways(r, nfft, max_lag)[1]
        back = _cov(sxy_b, npair, tb - tail(b.x0), ta - head(a.x0))
        return fwd, back
    a_m, b_m = a.mask_hat(nfft), b.mask_hat(nfft)
    spectra = np.stack(np.broadcast_arrays(np.conj(a.x_hat) * b.x_hat, np.conj(a_m) * b_m,
                                           np.conj(a.x_hat) * b_m, np.conj(a_m) * b.x_hat))
    (xy_f, xy_b), (n_f, n_b), (amb_f, amb_b), (mab_f, mab_b) = (
        _both_ways(r, nfft, max_lag) for r in np.fft.irfft(spectra, nfft))
    # forward: sum a over pairs = corr(a, m_b)[k], sum b = corr(m_a, b)[k]; backward the mirrored lags
    fwd = _cov(xy_f, np.rint(n_f), amb_f, mab_f)
    back = _cov(xy_b, np.rint(n_b), mab_b, amb_b)
    return fwd, back


def _lagged(a: _Series, b: _Series, n: int, nfft: int, max_lag: int) -> np.ndarray:
    """cov(a[i], b[i+k]), k = 0..max_lag (see :func:`_lagged_pair`)."""
    return _lagged_pair(a, b, n, nfft, max_lag, backward=False)[0]


def _nfft(n: int, max_lag: int) -> int:
    """Smallest 3-smooth length (2^a 3^b) that holds the series plus the lags without circular
    overlap: pocketfft is fastest on such lengths (36,864 for a 20 Hz half hour, half of 65,536 and
    15 % faster than the smallest 5-smooth length, 36,450)."""
    need = max(n + max_lag + 1, 2)
    best = 1 << int(np.ceil(np.log2(need)))
    p3 = 1
    while p3 < best:
        best = min(best, p3 << max(0, int(np.ceil(np.log2(need / p3)))))
        p3 *= 3
    return best


def lagged_covariance(x, y, max_lag: int) -> np.ndarray:
    """cov(x[i], y[i+k]) for k = 0..max_lag (y lagging x), shape ``(..., max_lag + 1)``; each lag over the
    pairs present there, with their own means, divided by the pair count (EddyPro's definition). For
    negative lags swap the arguments."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = np.broadcast_arrays(x, y)
    n = x.shape[-1]
    max_lag = int(min(max_lag, n - 1))
    nfft = _nfft(n, max_lag)
    return _lagged(_Series(x, nfft), _Series(y, nfft), n, nfft, max_lag)


def _its_from_rho(rho: np.ndarray, dt: float, method: str) -> np.ndarray:
    """Integral time scale [s] from the normalised cross-covariance rho[..., k], k = 0..K."""
    if method == "full_integral":
        keep = np.ones(rho.shape, dtype=bool)
    else:
        threshold = 1.0 / np.e if method == "cross_e" else 0.0
        keep = np.cumprod(~(rho < threshold), axis=-1).astype(bool)  # lags before the first crossing
    return np.sum(np.where(keep, np.abs(rho), 0.0), axis=-1) * dt


def integral_timescale(w, x, rate_hz: float, max_lag_s: float = 10.0, method: str = "cross_e") -> np.ndarray:
    """Integral turbulence time scale [s] of the w-x covariance (EddyPro ``IntegralTurbulenceScale``):
    rho(k) = C_wx(k) / C_wx(0), k = 0 .. nint(``max_lag_s`` f_s), integrated as ``method`` says (module
    docstring). NaN where C_wx(0) is 0 or undefined."""
    if method not in ITS_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {ITS_METHODS}")
    k_max = int(_nint(max_lag_s * rate_hz))
    c = lagged_covariance(w, x, k_max)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = c / c[..., :1]
    its = _its_from_rho(np.nan_to_num(rho, nan=-np.inf), 1.0 / rate_hz, method)
    return np.where(np.isfinite(c[..., 0]) & (c[..., 0] != 0.0), its, np.nan)


def finkelstein_sims(w, x, max_lag) -> np.ndarray:
    """Standard deviation of the w-x covariance estimate (Finkelstein & Sims 2001 eqs. 8-10):

        var = (1/N) sum_{p=-m..m} [C_ww(p) C_xx(p) + C_wx(p) C_xw(p)]
            = (1/N) [C_ww(0) C_xx(0) + C_wx(0)^2 + 2 sum_{p=1..m} (C_ww(p) C_xx(p) + C_wx(p) C_wx(-p))]

    with EddyPro's lagged covariances (:func:`lagged_covariance`) and N the number of samples. ``max_lag``
    m [samples] is an int or an int array with the shape of the periods.
    """
    w = np.asarray(w, dtype=float)
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    m = np.asarray(max_lag)
    m_clip = np.clip(np.where(m >= 0, m, 0), 0, n - 1).astype(int)
    k_max = int(m_clip.max()) if m_clip.size else 0
    nfft = _nfft(n, k_max)
    sw, sx = _Series(w, nfft), _Series(x, nfft)
    return _fs_sigma(sw, sx, _lagged_pair(sw, sx, n, nfft, k_max), m, n, nfft)


def _fs_sigma(sw: _Series, sx: _Series, c_wx: tuple[np.ndarray, np.ndarray], m, n: int, nfft: int) -> np.ndarray:
    """Finkelstein & Sims (2001) eq. 8-10 from prepared series and the w-x lagged covariances
    (C_wx(p) and C_wx(-p) = C_xw(p), at least ``max(m)`` lags); ``w`` may be one series shared by
    every row of ``x``."""
    m = np.asarray(m)
    m_clip = np.clip(np.where(m >= 0, m, 0), 0, n - 1).astype(int)
    k_max = int(m_clip.max()) if m_clip.size else 0
    c_ww = _lagged(sw, sw, n, nfft, k_max)
    c_xx = _lagged(sx, sx, n, nfft, k_max)
    terms = c_ww * c_xx + c_wx[0][..., : k_max + 1] * c_wx[1][..., : k_max + 1]
    k = np.arange(k_max + 1)
    weight = np.where(k == 0, 1.0, 2.0) * (k <= m_clip[..., None])
    var = np.nansum(terms * weight, axis=-1) / n
    sigma = np.sqrt(np.abs(var))
    return np.where((m >= 0) & (var != 0.0) & np.isfinite(terms[..., 0]), sigma, np.nan)


def random_error(w, x, rate_hz: float, *, z_m=None, u_mean_ms=None, tlag_max_s: float = 10.0,
                 its_method: str = "cross_e") -> dict[str, np.ndarray]:
    """EddyPro's Finkelstein & Sims (2001) random error of cov(w, x).

    ``w`` [m s-1] and ``x`` (any unit): rotated, detrended, time-lag-compensated series, last axis time;
    ``rate_hz`` sampling rate; ``z_m`` = z - d [m] and ``u_mean_ms`` mean rotated wind speed [m s-1] give
    the fallback ITS (z - d)/u when the cross-correlation one fails or exceeds 2 ``tlag_max_s`` (NaN
    without them). Returns ``sigma`` (units of the covariance), ``its_s`` [s] and ``max_lag`` [samples].
    """
    if its_method not in ITS_METHODS:
        raise ValueError(f"unknown method {its_method!r}; expected one of {ITS_METHODS}")
    w = np.asarray(w, dtype=float)
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    # one set of FFTs for both steps: the ITS needs C_wx up to tlag_max, the error sum up to the
    # ITS, which is accepted up to 2 tlag_max
    k_its = int(min(_nint(tlag_max_s * rate_hz), n - 1))
    k_max = int(min(2 * k_its, n - 1))
    nfft = _nfft(n, k_max)
    sw, sx = _Series(w, nfft), _Series(x, nfft)
    c_wx = _lagged_pair(sw, sx, n, nfft, k_max)
    c = c_wx[0][..., : k_its + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = c / c[..., :1]
    its = _its_from_rho(np.nan_to_num(rho, nan=-np.inf), 1.0 / rate_hz, its_method)
    its = np.where(np.isfinite(c[..., 0]) & (c[..., 0] != 0.0), its, np.nan)
    if z_m is not None and u_mean_ms is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            fallback = np.asarray(z_m, dtype=float) / np.asarray(u_mean_ms, dtype=float)
    else:
        fallback = np.nan
    its = np.where(np.isfinite(its) & (its <= 2.0 * tlag_max_s), its, fallback)
    lag = np.where(np.isfinite(its), _nint(its * rate_hz), -1).astype(int)
    sigma = _fs_sigma(sw, sx, c_wx, np.minimum(lag, k_max), n, nfft)
    out = {"sigma": sigma, "its_s": its, "max_lag": lag}
    return {k: (v.item() if np.ndim(v) == 0 else v) for k, v in out.items()}
