"""Despiking of high-frequency eddy-covariance series: Vickers & Mahrt (1997) as EddyPro does it,
and the Mauder et al. (2013) median-absolute-deviation alternative.

Pure NumPy, arrays in and arrays out. Missing samples are NaN. Series are 1-D (samples) or 2-D
(rows x samples): rows are the variables of one averaging period (``coupled=True``, EddyPro's
behaviour) or independent series such as consecutive periods of one variable (``coupled=False``).
Work is vectorised over rows and samples; the only Python loops are over passes (at most
``max_passes``, EddyPro: 10).

Source of every EddyPro detail below: the EddyPro engine, ``src/src_rp/test_spike_detection_
vickers_97.f90`` and ``test_spike_detection_mauder_13.f90`` (LI-COR-Environmental/eddypro-engine,
GPL-3; the same algorithm in the 2015 and 2019+ versions, i.e. EddyPro 6.x-7.0.x), with
``stats_operator_no_error.f90`` (window statistics) and ``read_ini_rp.f90`` (settings). Verified
against EddyPro 7.0.9 results in ``tests/test_despike.py``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

#: EddyPro's window advance for the VM97 despiking, in samples (``step = 100``), whatever the rate.
EDDYPRO_STEP_SAMPLES = 100
#: Threshold increase after each pass that found new spikes (``lim_step = 0.1``).
EDDYPRO_SIGMA_STEP = 0.1
#: Maximum number of passes (``max_pass = 10``).
EDDYPRO_MAX_PASSES = 10
#: Hard flag when spike events reach this percentage of the samples (``sr_lim_hf = 1.0``).
EDDYPRO_SPIKE_HF_PERCENT = 1.0
#: Thresholds in standard deviations of EddyPro (project keys ``sr_lim_u`` (used for u, v, ts and
#: every auxiliary column: cell T/p, air T/p), ``sr_lim_w``, ``sr_lim_co2``, ``sr_lim_h2o``,
#: ``sr_lim_ch4``, ``sr_lim_n2o``; defaults of the Express/advanced mode).
EDDYPRO_SIGMA = {"u": 3.5, "v": 3.5, "w": 5.0, "ts": 3.5, "co2": 3.5, "h2o": 3.5, "ch4": 8.0, "n2o": 8.0}
EDDYPRO_SIGMA_OTHER = 3.5
#: Mauder et al. (2013) outlier factor (EddyPro: ``zlim = 7``) and the MAD-to-sigma factor.
MAUDER_Z = 7.0
MAD_TO_SIGMA = 0.6745


def eddypro_despike_window_s(averaging_min: int) -> float:
    """EddyPro's VM97 moving-window length [s] for an averaging period of ``averaging_min`` minutes.

    ``win_len = avrg_len / 6`` in integer minutes, at least 1 (test_spike_detection_vickers_97.f90):
    30 min -> 300 s, 15 min -> 120 s (not 150 s: Fortran integer division), 60 min -> 600 s.
    """
    return 60.0 * max(int(averaging_min) // 6, 1)


@dataclass(frozen=True)
class SpikeResult:
    """Outcome of a despiking run; arrays have the leading shape of the input (1-D input: scalars).

    ``cleaned``: the series with spikes replaced. ``events``: spikes counted as EddyPro counts them
    (one per run of <= ``max_consecutive`` outlying samples; the ``*_spikes`` columns of EddyPro's
    full output). ``samples``: samples in those runs (EddyPro's ``m_despiking``, the FLUXNET
    ``*_SPIKE_NREX`` column). ``is_spike``: mask of the samples taken as spikes. ``passes``: passes
    run (per row).
    """

    cleaned: np.ndarray
    events: np.ndarray
    samples: np.ndarray
    is_spike: np.ndarray
    passes: np.ndarray


def _as_rows(x: np.ndarray, copy: bool = True) -> tuple[np.ndarray, bool]:
    a = np.array(x, dtype=float, copy=True) if copy else np.asarray(x, dtype=float)
    if a.ndim == 1:
        return a[None, :], True
    if a.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")
    return a, False


def _per_row(value, k: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if v.ndim > 1 or (v.ndim == 1 and v.shape != (k,)):
        raise ValueError(f"{name} must be a scalar or have one value per row ({k})")
    return np.broadcast_to(v, (k,)).copy()


def _window_stats(xs: np.ndarray, valid: np.ndarray, nn: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and standard deviation (n - 1 denominator, as EddyPro's ``StDevNoError``) of
    the windows ``[step*w, step*w + nn)``, w = 0 .. (N - nn) // step.

    Sums over blocks of ``gcd(step, nn)`` samples of the row-centred data (matrix products), then
    cumulative sums over blocks: no loop over samples, and no cancellation worse than
    (window mean - row mean)^2 / variance. Rows are centred one at a time in a row-sized scratch
    array that stays in cache.
    """
    k, n = xs.shape
    g = math.gcd(step, nn)
    n_windows = (n - nn) // step + 1
    nb = ((n_windows - 1) * step + nn) // g
    m = nb * g
    any_missing = not valid.all()
    ones = np.ones(g)
    sums = np.zeros((3, k, nb + 1))
    centre = np.zeros((k, 1))
    buf = np.empty(m)
    for j in range(k):
        row = xs[j, :m]
        if any_missing:
            ok = valid[j, :m]
            n_ok = int(valid[j].sum())
            centre[j] = np.nansum(xs[j]) / n_ok if n_ok else 0.0
            np.subtract(row, centre[j], out=buf)
            buf[~ok] = 0.0
            sums[0, j, 1:] = ok.reshape(nb, g).sum(axis=1)
        else:
            centre[j] = xs[j].mean()
            np.subtract(row, centre[j], out=buf)
            sums[0, j, 1:] = g
        blocks = buf.reshape(nb, g)
        sums[1, j, 1:] = blocks @ ones
        sums[2, j, 1:] = np.einsum("ij,ij->i", blocks, blocks)
    np.cumsum(sums, axis=2, out=sums)
    first = np.arange(n_windows) * (step // g)
    cnt, sum1, sum2 = sums[:, :, first + nn // g] - sums[:, :, first]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sum1 / cnt
        var = (sum2 - sum1 * mean) / (cnt - 1)
    sd = np.sqrt(np.maximum(var, 0.0))
    sd[cnt < 2] = np.nan
    return mean + centre, sd


def _served(n: int, nn: int, step: int, n_windows: int) -> np.ndarray:
    """Samples whose statistics come from each window: window w (0-based) serves the 1-based
    samples ``nn/2 - step/2 + step w`` .. ``+ step - 1``, the first window also all before and the
    last all after (EddyPro's ``imin``/``imax`` and its first/last-window special cases)."""
    h = nn // 2 - step // 2
    w = np.arange(n_windows)
    lo = np.where(w == 0, 1, h + step * w)
    hi = np.where(w == n_windows - 1, n, h + step * w + step - 1)
    return np.maximum(np.minimum(hi, n) - np.maximum(lo, 1) + 1, 0)


def _compare_expanded(op, xs: np.ndarray, values: np.ndarray, served: np.ndarray, out: np.ndarray) -> None:
    """``out[:, i] = op(xs[:, i], values[:, w(i)])`` where window ``w`` serves ``served[w]``
    consecutive samples, broadcasting window values over their samples (no expanded copy)."""
    k, w = values.shape
    step = int(served[1]) if w > 2 else 0
    if w > 2 and not (served[1:-1] == step).all():  # degenerate windows: expand explicitly
        op(xs, np.repeat(values, served, axis=1), out=out)
        return
    c0 = int(served[0])
    c1 = c0 + (w - 2) * step if w > 1 else xs.shape[1]
    op(xs[:, :c0], values[:, :1], out=out[:, :c0])
    if w > 2:
        def blocks(a):  # the middle windows' samples as (rows, windows, step): always a view
            return np.lib.stride_tricks.as_strided(a[:, c0:], (k, w - 2, step),
                                                   (a.strides[0], step * a.strides[1], a.strides[1]))
        op(blocks(xs), values[:, 1:-1, None], out=blocks(out))
    if w > 1:
        op(xs[:, c1:], values[:, -1:], out=out[:, c1:])


def _outlier_runs(outlier: np.ndarray, valid: np.ndarray, count_missing: bool):
    """Runs of outliers along axis 1, each ended by the next valid non-outlying ("good") sample.

    Column 0 is a boundary, never part of a run (EddyPro treats the first record apart). A run starts
    at an outlier whose previous valid sample is not an outlier and ends just before the next good
    sample ``g``; runs never ended by a good sample are dropped (EddyPro leaves them alone).
    ``count_missing``: NaN rows inside a run count towards its length (VM97 in EddyPro: ``if (cnt
    /= 0) cnt = cnt + 1`` on an error row); otherwise only its outlying samples count.

    Works on the sparse set of non-good samples (segments of consecutive outlying or missing
    samples). Returns ``rows, starts, ends (g), length, anchors``: ``anchors`` is the index of the
    sample before the segment holding the run (the last valid sample before it, or column 0).
    """
    n = outlier.shape[1]
    bad = outlier | ~valid
    bad[:, 0] = False
    f = np.flatnonzero(bad)
    empty = np.zeros(0, dtype=np.int64)
    if f.size == 0:
        return empty, empty, empty, empty, empty
    r, c = np.divmod(f, n)
    o = outlier.ravel()[f]
    brk = np.ones(f.size, dtype=bool)
    brk[1:] = (f[1:] != f[:-1] + 1) | (r[1:] != r[:-1])
    seg_first = np.flatnonzero(brk)
    seg_last = np.append(seg_first[1:] - 1, f.size - 1)
    big = f.size
    first_o = np.minimum.reduceat(np.where(o, np.arange(f.size), big), seg_first)
    keep = (first_o < big) & (c[seg_last] + 1 < n)
    first_o, seg_first, seg_last = first_o[keep], seg_first[keep], seg_last[keep]
    rows, starts, ends = r[first_o], c[first_o], c[seg_last] + 1
    if count_missing:
        length = ends - starts
    else:
        n_out = np.add.reduceat(o.astype(np.int64), np.flatnonzero(brk))
        length = n_out[keep]
    return rows, starts, ends, length, c[seg_first] - 1


def _run_samples(rows, starts, ends) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(run number, row, column) of every sample ``starts <= i < ends`` of the runs."""
    lengths = ends - starts
    run = np.repeat(np.arange(rows.size), lengths)
    offset = np.arange(run.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return run, rows[run], starts[run] + offset


def vickers_mahrt_spikes(x: np.ndarray, rate_hz: float, sigma, max_consecutive: int = 3,
                         window_s: float = 300.0, replace: str = "linear", *, coupled: bool = True,
                         step_samples: int = EDDYPRO_STEP_SAMPLES, sigma_step: float = EDDYPRO_SIGMA_STEP,
                         max_passes: int = EDDYPRO_MAX_PASSES, copy: bool = True) -> SpikeResult:
    """Vickers & Mahrt (1997) spike detection and removal exactly as EddyPro 6-7 implements it.

    Algorithm (``TestSpikeDetectionVickers97``):

    - Moving windows of ``nn = int(window_s * rate_hz)`` samples (EddyPro: avrg_len/6 minutes, see
      :func:`eddypro_despike_window_s`) start every ``step_samples`` = 100 samples; there are
      ``(N - nn) // 100 + 1`` of them. Each window's NaN-aware mean and standard deviation (n - 1)
      apply to its 100 central samples ``[nn/2 - 50, nn/2 + 49]`` (1-based, integer halves); samples
      before the first window's centre use the first window, those after the last centre the last.
    - Outlier: ``x > mean + k sd`` or ``x < mean - k sd`` (strict), ``k = sigma`` per row.
    - A spike is a run of at most ``max_consecutive`` rows of outliers ended by a good sample (NaN
      rows inside a run count towards its length); longer runs are taken as real and kept, and a
      run still open at the end of the series is ignored. Spikes are replaced by the straight line
      between the sample before the run and the sample after it (``replace="linear"``; ``"nan"``
      sets them missing; ``"none"`` only detects, which EddyPro does in one pass).
    - The first sample is handled apart: if outlying it is clipped to the threshold (not
      interpolated) and counted.
    - Passes: window statistics are recomputed on the cleaned series and the detection repeated
      while a pass finds new spikes, each time with ``k += 0.1`` (``lim_step``), at most 10 passes.
      In EddyPro one pass loop serves all the variables of a period (a spike in any of them
      triggers another pass for all): ``coupled=True``. ``coupled=False`` iterates each row alone.
    - A spike is counted once: a run whose last row was already a spike in an earlier pass is not
      counted again (EddyPro checks only that row).

    ``sigma``: scalar or one per row (EddyPro: :data:`EDDYPRO_SIGMA`). NaN = missing. ``copy=False``:
    a float ``x`` is cleaned in place (the caller's own scratch copy).
    """
    xs, squeeze = _as_rows(x, copy)
    k, n = xs.shape
    if replace not in ("linear", "nan", "none"):
        raise ValueError("replace must be 'linear', 'nan' or 'none'")
    lim = _per_row(sigma, k, "sigma")
    events = np.zeros(k, dtype=np.int64)
    samples = np.zeros(k, dtype=np.int64)
    passes = np.zeros(k, dtype=np.int64)
    is_spike = np.zeros((k, n), dtype=bool)
    if n < 3:
        return _result(xs, events, samples, is_spike, passes, squeeze)
    nn = max(min(int(window_s * rate_hz), n), 2)
    step = max(int(step_samples), 1)
    n_windows = (n - nn) // step + 1
    served = _served(n, nn, step, n_windows)
    active = np.ones(k, dtype=bool)
    valid, outlier, below = (np.empty((k, n), dtype=bool) for _ in range(3))
    mean_w = sd_w = None
    changed = np.ones(k, dtype=bool)  # rows whose samples changed since their window statistics
    for _ in range(1 if replace == "none" else max(int(max_passes), 1)):
        passes[active] += 1
        np.isnan(xs, out=valid)
        np.logical_not(valid, out=valid)
        if mean_w is None or changed.all():
            mean_w, sd_w = _window_stats(xs, valid, nn, step)
        elif changed.any():  # only the rows with replaced samples need new statistics
            mean_w[changed], sd_w[changed] = _window_stats(xs[changed], valid[changed], nn, step)
        changed[:] = False
        upper_w = mean_w + lim[:, None] * sd_w
        lower_w = mean_w - lim[:, None] * sd_w
        _compare_expanded(np.greater, xs, upper_w, served, outlier)
        _compare_expanded(np.less, xs, lower_w, served, below)
        np.logical_or(outlier, below, out=outlier)
        if not active.all():
            outlier &= active[:, None]
        # first record: clipped to the threshold and counted once (EddyPro's special case)
        first = outlier[:, 0].copy()
        if replace != "none":
            xs[first, 0] = np.where(xs[first, 0] > upper_w[first, 0], upper_w[first, 0], lower_w[first, 0])
            changed |= first
        new = (first & ~is_spike[:, 0]).astype(np.int64)
        samples += new
        is_spike[:, 0] |= first
        outlier[:, 0] = False
        rows, starts, ends, length, _ = _outlier_runs(outlier, valid, count_missing=True)
        spike = length <= max_consecutive
        rows, starts, ends, length = rows[spike], starts[spike], ends[spike], length[spike]
        fresh = ~is_spike[rows, ends - 1]
        new += np.bincount(rows[fresh], minlength=k)
        samples += np.bincount(rows[fresh], weights=length[fresh], minlength=k).astype(np.int64)
        run, r, i = _run_samples(rows, starts, ends)
        is_spike[r, i] = True
        changed[r] = True
        if replace == "nan":
            xs[r, i] = np.nan
        elif replace == "linear" and run.size:
            a = starts[run] - 1  # EddyPro draws the line from the row before the run, if not missing
            g = ends[run]
            xa, xg = xs[r, a], xs[r, g]
            fill = ~np.isnan(xa)
            slope = (xg[fill] - xa[fill]) / (g[fill] - a[fill]).astype(float)
            xs[r[fill], i[fill]] = slope * (i[fill] - a[fill]).astype(float) + xa[fill]
        events += new
        active &= bool(new[active].any()) if coupled else new > 0
        if not active.any():
            break
        lim = lim + sigma_step
    return _result(xs, events, samples, is_spike, passes, squeeze)


def _result(xs, events, samples, is_spike, passes, squeeze: bool) -> SpikeResult:
    if squeeze:
        return SpikeResult(xs[0], events[0], samples[0], is_spike[0], passes[0])
    return SpikeResult(xs, events, samples, is_spike, passes)


def vickers_mahrt_despike(x: np.ndarray, rate_hz: float, sigma, max_consecutive: int = 3,
                          window_s: float = 300.0, replace: str = "linear", *, coupled: bool = True
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``(cleaned, spike_count)`` of :func:`vickers_mahrt_spikes` (EddyPro's VM97 despiking).

    ``x``: 1-D (samples) or 2-D (rows x samples). ``spike_count`` counts spike events as EddyPro's
    ``*_spikes`` output does (a scalar for 1-D input, one per row otherwise). ``window_s`` 300 s is
    EddyPro's window for 30-min periods (:func:`eddypro_despike_window_s` for others).
    """
    res = vickers_mahrt_spikes(x, rate_hz, sigma, max_consecutive, window_s, replace, coupled=coupled)
    return res.cleaned, res.events


def mauder_mad_despike(x: np.ndarray, z: float = MAUDER_Z, *, replace: str = "linear",
                       max_passes: int = EDDYPRO_MAX_PASSES, coupled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Median-absolute-deviation despiking (Mauder et al. 2013, Agric. For. Meteorol. 169, 122-135,
    Sect. 2.3): a sample is an outlier if ``|x - median| > z MAD / 0.6745``, ``MAD = median|x -
    median|`` over the whole period, ``z = 7``. Returns ``(cleaned, spike_count)`` like
    :func:`vickers_mahrt_despike`.

    The statistic is computed on the values themselves, as in Mauder et al. (2013) and EddyPro's
    ``TestSpikeDetectionMauder13``. As there: any run of consecutive outliers is one spike (no
    maximum length), replaced by linear interpolation between its good neighbours; the first and
    last samples are never tested; the median and MAD are recomputed and the test repeated while a
    pass finds new spikes (at most 10 passes, ``z`` unchanged; ``coupled`` as in
    :func:`vickers_mahrt_spikes`). Unlike EddyPro, a missing sample inside a run stays missing and
    does not shift the interpolation line (EddyPro anchors the line ``cnt + 1`` rows back, which is
    not the sample before the run when missing rows sit inside it).
    """
    res = mauder_mad_spikes(x, z, replace=replace, max_passes=max_passes, coupled=coupled)
    return res.cleaned, res.events


def mauder_mad_spikes(x: np.ndarray, z: float = MAUDER_Z, *, replace: str = "linear",
                      max_passes: int = EDDYPRO_MAX_PASSES, coupled: bool = True) -> SpikeResult:
    """:func:`mauder_mad_despike` with the details of :class:`SpikeResult`."""
    if replace not in ("linear", "nan", "none"):
        raise ValueError("replace must be 'linear', 'nan' or 'none'")
    xs, squeeze = _as_rows(x)
    k, n = xs.shape
    events = np.zeros(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    is_spike = np.zeros((k, n), dtype=bool)
    passes = np.zeros(k, dtype=np.int64)
    for _ in range(1 if replace == "none" else max(int(max_passes), 1)):
        if n < 3:
            break
        passes[active] += 1
        valid = ~np.isnan(xs)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            med = np.nanmedian(xs, axis=1, keepdims=True)
            mad = np.nanmedian(np.abs(xs - med), axis=1, keepdims=True)
            outlier = (np.abs(xs - med) > z * mad / MAD_TO_SIGMA) & active[:, None]
        outlier[:, 0] = False
        outlier[:, -1] = False
        rows, starts, ends, _, anchors = _outlier_runs(outlier, valid, count_missing=False)
        fresh = ~is_spike[rows, ends - 1]
        new = np.bincount(rows[fresh], minlength=k)
        run, r, i = _run_samples(rows, starts, ends)
        keep = valid[r, i]
        run, r, i = run[keep], r[keep], i[keep]
        is_spike[r, i] = True
        if replace == "nan":
            xs[r, i] = np.nan
        elif replace == "linear" and run.size:
            a, g = anchors[run], ends[run]
            xa, xg = xs[r, a], xs[r, g]
            fill = ~np.isnan(xa)
            xs[r[fill], i[fill]] = (xg[fill] - xa[fill]) / (g[fill] - a[fill]) * (i[fill] - a[fill]) + xa[fill]
        events += new
        active &= bool(new[active].any()) if coupled else new > 0
        if not active.any():
            break
    return _result(xs, events, is_spike.sum(axis=1), is_spike, passes, squeeze)
