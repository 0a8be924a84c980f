"""Fluctuations around a trend: block average, linear, running mean, exponentially weighted running mean.

The four EddyPro detrending methods (``detrend_meth`` 0-3: ``ba``, ``ld``, ``rm``, ``ew``; engine
``fluctuations.f90``). Arrays of samples along ``axis`` (default the last), any leading shape (so many
variables or periods at once); NaN marks a missing sample and stays NaN in the fluctuations. No loop over
samples: cumulative sums, and for the exponential filter a closed form evaluated in overflow-safe blocks.
"""

from __future__ import annotations

import numpy as np

#: EddyPro's default time constant for the running-mean and exponential methods [s] (``timeconst=250.0``
#: in the project files shipped with the reference data; EddyPro GUI default).
DEFAULT_TIME_CONSTANT_S = 250.0

METHODS = ("block", "linear", "running_mean", "exponential")


def block_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Trend of block averaging: the NaN-aware mean over the whole block (Reynolds decomposition;
    e.g. Aubinet et al. 2012, eq. 1.20), broadcast to the shape of ``x``."""
    x = np.asarray(x, dtype=float)
    return np.broadcast_to(_nan_mean(x, axis), x.shape).copy()


def _nan_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """The block mean of :func:`block_mean`, not broadcast (its axis kept, of length 1)."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, x, 0.0).sum(axis=axis, keepdims=True) / n


def linear_trend(x: np.ndarray, window: int | None = None, axis: int = -1) -> np.ndarray:
    """Least-squares straight line in time, per window (Gash & Culf 1996; Rannik & Vesala 1999).

    trend_i = mean + b (t_i - mean(t)), b = sum((t - mean t)(x - mean x)) / sum((t - mean t)^2), over the valid
    samples of each window. ``window`` [samples]: EddyPro's time constant; the block is cut into windows of
    this length and the last window takes the remainder (EddyPro ``LinDetrend``); None = one line over the
    whole block. Unlike EddyPro, time is the true sample index (EddyPro counts only the valid samples, which
    shifts the line across a gap).
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    n = x.shape[-1]
    n_win = 1 if not window or window >= n else n // int(window)
    starts = np.arange(n_win) * (n if n_win == 1 else int(window))
    valid = ~np.isnan(x)
    m = valid.astype(float)
    t = np.arange(n, dtype=float)
    xf = np.where(valid, x, 0.0)

    def per_window(a):
        return np.add.reduceat(a, starts, axis=-1)

    cnt = per_window(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt = per_window(m * t) / cnt
        mx = per_window(xf) / cnt
        win = np.minimum(np.arange(n) // (n if n_win == 1 else int(window)), n_win - 1)
        tc = t - mt[..., win]  # centred time, for accuracy
        stt = per_window(m * tc**2)
        stx = per_window(m * tc * (xf - mx[..., win]))
        slope = stx / stt
    trend = mx[..., win] + slope[..., win] * tc
    return np.moveaxis(trend, -1, axis)


def running_mean(x: np.ndarray, window: int, axis: int = -1) -> np.ndarray:
    """Causal running mean over the last ``window`` samples (EddyPro ``RunningMean``; e.g. McMillen 1988).

    trend_i = mean(x_{i-window+1} .. x_i) over the valid samples; the first ``window`` samples use the
    growing window from the start, as EddyPro. Vectorised with cumulative sums (of centred values).
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    window = max(int(window), 1)
    valid = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(valid, x, 0.0).sum(-1, keepdims=True) / valid.sum(-1, keepdims=True)
    centre = np.nan_to_num(centre)
    cs = np.cumsum(np.where(valid, x - centre, 0.0), axis=-1)
    cn = np.cumsum(valid, axis=-1)
    pad = [(0, 0)] * (x.ndim - 1) + [(window, 0)]
    cs0 = np.pad(cs, pad)[..., : x.shape[-1]]
    cn0 = np.pad(cn, pad)[..., : x.shape[-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = centre + (cs - cs0) / (cn - cn0)
    return np.moveaxis(trend, -1, axis)


def exponential_running_mean(x: np.ndarray, window: int, axis: int = -1) -> np.ndarray:
    """Exponentially weighted running mean with time constant ``window`` [samples] (EddyPro ``ExpWeightAvrg``;
    McMillen 1988, eq. 3).

    trend_i = b trend_{i-1} + (1 - b) x_i, b = exp(-1 / window) (= exp(-dt / tau)). As EddyPro, the first
    ``window`` samples take the growing mean from the start and a missing sample holds the trend.

    Vectorised: with m_i the number of valid samples after the start, trend_i = b^m_i (trend_0 + (1 - b)
    sum_k b^-m_k x_k); b^-m is kept below e^600 by restarting the closed form every block of 600 * window
    samples (a loop over blocks only, one iteration for 30 min at 20 Hz and tau = 250 s).
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    n = x.shape[-1]
    window = max(int(window), 1)
    r = min(window, n)
    trend = np.empty_like(x)
    trend[..., :r] = _growing_mean(x[..., :r])
    if r < n:
        lnb = -1.0 / window
        b = np.exp(lnb)
        valid = ~np.isnan(x[..., r:])
        xf = np.where(valid, x[..., r:], 0.0)
        state = trend[..., r - 1]
        state = np.where(np.isnan(state), 0.0, state)  # nothing valid yet: EddyPro starts from 0 too
        block = max(int(600.0 * window), 1)
        for s in range(0, n - r, block):
            v, xs = valid[..., s:s + block], xf[..., s:s + block]
            m = np.cumsum(v, axis=-1)  # valid samples since the block start
            scaled = np.cumsum(np.where(v, xs * np.exp(-lnb * m), 0.0), axis=-1)
            out = np.exp(lnb * m) * (state[..., None] + (1.0 - b) * scaled)
            trend[..., r + s:r + s + out.shape[-1]] = out
            state = out[..., -1]
    return np.moveaxis(trend, -1, axis)


def _growing_mean(x: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.nan_to_num(np.where(valid, x, 0.0).sum(-1, keepdims=True) / valid.sum(-1, keepdims=True))
        return centre + np.cumsum(np.where(valid, x - centre, 0.0), axis=-1) / np.cumsum(valid, axis=-1)


def trend(x: np.ndarray, method: str = "block", *, fs_hz: float | None = None, time_constant_s: float | None = None,
          axis: int = -1) -> np.ndarray:
    """Trend of ``x`` by ``method`` (one of :data:`METHODS`). ``time_constant_s`` [s] with ``fs_hz`` [Hz] sets the
    window: running mean and exponential default to :data:`DEFAULT_TIME_CONSTANT_S`; linear defaults to the
    whole block. The window in samples is int(time constant) * int(fs), as EddyPro."""
    if method == "block":
        return block_mean(x, axis)
    if method not in METHODS:
        raise ValueError(f"unknown detrending method {method!r}; expected one of {METHODS}")
    if time_constant_s is None and method == "linear":
        return linear_trend(x, None, axis)
    if fs_hz is None:
        raise ValueError(f"{method} detrending needs fs_hz")
    tc = DEFAULT_TIME_CONSTANT_S if time_constant_s is None else time_constant_s
    window = int(tc) * int(fs_hz)
    if method == "linear":
        return linear_trend(x, window, axis)
    if method == "running_mean":
        return running_mean(x, window, axis)
    return exponential_running_mean(x, window, axis)


def fluctuations(x: np.ndarray, method: str = "block", *, fs_hz: float | None = None,
                 time_constant_s: float | None = None, axis: int = -1,
                 block_mean: np.ndarray | None = None) -> np.ndarray:
    """x' = x - trend(x) (see :func:`trend`); NaN where ``x`` is NaN or no trend exists yet.
    ``block_mean``: for ``"block"``, the NaN-aware mean along ``axis`` (its axis kept or not) if the
    caller has it already (the same sums as :func:`block_mean`'s, e.g. from ``np.nanmean``)."""
    x = np.asarray(x, dtype=float)
    if method == "block":  # the mean broadcasts: no trend array
        if block_mean is not None:
            return x - np.expand_dims(block_mean, axis) if np.ndim(block_mean) < x.ndim else x - block_mean
        return x - _nan_mean(x, axis)
    return x - trend(x, method, fs_hz=fs_hz, time_constant_s=time_constant_s, axis=axis)
