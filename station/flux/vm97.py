"""Vickers & Mahrt (1997) statistical screening of high-frequency raw data, as EddyPro runs it.

Vickers, D. and Mahrt, L. (1997), Quality control and flux sampling problems for tower and aircraft
data, J. Atmos. Oceanic Technol. 14, 512-526. Implementation details, order of the tests and
default thresholds follow the EddyPro engine (LI-COR-Environmental/eddypro-engine, GPL-3):
``statistical_screening.f90`` (order), ``test_absolute_limits.f90``,
``test_spike_detection_vickers_97.f90`` (see :mod:`station.flux.despike`),
``test_amp_res_drop_out.f90``, ``test_higher_moments.f90``, ``test_discontinuities.f90``,
``test_attack_angle.f90``, ``test_non_steady_wind.f90``; the thresholds are the project-file
defaults (``[RawProcess_ParameterSettings]`` of EddyPro 7, e.g. ``sr_lim_u=3.5`` ...) and are listed
on :class:`VM97Options`. Validated against EddyPro 7.0.9 output in ``tests/test_vm97.py``.

One call, :func:`vm97_flags`, screens one averaging period: arrays in (one 1-D array per
variable), cleaned arrays, flags and the test statistics out. Pure NumPy, no I/O.

Order (EddyPro's ``StatisticalScreening``): absolute limits (and, if ``filter_absolute_limits``,
out-of-range wind and sonic-temperature samples set missing), spikes (and despiking), amplitude
resolution and drop-outs, skewness and kurtosis, discontinuities, angle of attack, steadiness of
the horizontal wind; each test after the despiking sees the despiked series. (EddyPro's time-lag
test needs the lag search and is not here.)

Flags: 0 pass, 1 flagged, 9 not computed (variable absent). EddyPro packs them into strings, one
digit per variable in the order :data:`VARIABLES` after a leading ``8`` (``800000099``):
:meth:`VM97Result.code`.

EddyPro 7 carries defects in two of these tests; ``eddypro_compat=True`` reproduces them so that
flags match EddyPro's output, the default (``False``) repairs them (all other tests are the same in
both modes):

- discontinuities: EddyPro divides the difference of the two half-window *standard deviations* by
  the window *variance* (``StDevNoError`` returns a standard deviation, squared only for the whole
  window), so variables with a variance far below 1 (H2O as mmol mol-1, sonic T at night) are
  flagged in nearly every period; it compares the signed half-window differences (first minus
  second half) with the thresholds, so only decreases are detected; and it converts molar
  densities to mole fractions for the whole window but not for its halves. The default takes
  absolute differences of means (against EddyPro's thresholds in physical units) and of variances,
  the latter normalised by the variance of the whole record as in Vickers & Mahrt (1997).
- drop-outs: EddyPro counts every sample that falls in the same histogram bin as the previous one
  and divides the count by the samples with integer division, ``100 * int(n / (nn * W))``, which
  is 0 unless every sample repeats; the extreme-bin result then overwrites the central-bin one:
  the flag is in effect never raised. Repairing only the division does not help: at 20 Hz,
  5-25 % of the samples of ordinary turbulence repeat the previous bin (bins are 0.07 sigma wide),
  so every period would be flagged. The default therefore measures what a drop-out is, a sample
  stuck in one bin: the longest run of consecutive samples in one bin, as a percentage of the
  window, against the same 10 % (central bins) and 6 % (extreme bins) thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from station.flux.despike import (
    EDDYPRO_SIGMA_OTHER,
    eddypro_despike_window_s,
    mauder_mad_spikes,
    vickers_mahrt_spikes,
)

#: Variables that receive flags, in EddyPro's flag-string order (``n2o`` = EddyPro's 4th gas,
#: labelled ``none`` in its outputs when absent).
VARIABLES = ("u", "v", "w", "ts", "co2", "h2o", "ch4", "n2o")
GASES = ("co2", "h2o", "ch4", "n2o")
#: Per-variable tests, by EddyPro full-output column name.
VARIABLE_TESTS = ("spikes_hf", "amplitude_resolution_hf", "drop_out_hf", "absolute_limits_hf",
                  "skewness_kurtosis_hf", "skewness_kurtosis_sf", "discontinuities_hf", "discontinuities_sf")
#: Tests on the wind vector, one flag each.
WIND_TESTS = ("attack_angle_hf", "non_steady_wind_hf")
#: Molar volume EddyPro uses to turn molar densities into mole fractions for the absolute-limit and
#: discontinuity tests (``StdVair = 0.02245`` m3 mol-1, m_common_global_var.f90).
STD_VAIR_M3_MOL = 0.02245


def _eddypro_sigma() -> dict[str, float]:
    return {"u": 3.5, "v": 3.5, "w": 5.0, "ts": 3.5, "co2": 3.5, "h2o": 3.5, "ch4": 8.0, "n2o": 8.0}


def _abs_limits() -> dict[str, tuple[float, float]]:
    return {"co2": (200.0, 900.0), "h2o": (0.0, 40.0), "ch4": (0.17, 1000.0), "n2o": (0.032, 1000.0)}


def _ds_hard() -> dict[str, float]:
    return {"u": 4.0, "v": 4.0, "w": 2.0, "ts": 4.0, "co2": 40.0, "h2o": 3.26, "ch4": 40.0, "n2o": 40.0}


def _ds_soft() -> dict[str, float]:
    return {"u": 2.7, "v": 2.7, "w": 1.3, "ts": 2.7, "co2": 27.0, "h2o": 2.2, "ch4": 30.0, "n2o": 30.0}


@dataclass(frozen=True)
class VM97Options:
    """Settings; every default is EddyPro 7's (project-file key in brackets).

    Units: u, v, w m s-1; ts degC; gases as declared in ``gas_measure``: ``"molar_density"``
    mmol m-3 (default, the engine's open-path unit), or ``"mole_fraction"`` / ``"mixing_ratio"``
    in umol mol-1 (co2, ch4, n2o) and mmol mol-1 (h2o). Limits on gases are in mole-fraction units;
    molar densities are converted with :data:`STD_VAIR_M3_MOL` as EddyPro does.
    """

    averaging_min: int = 30  #: averaging period (``avrg_len``): sets the moving-window lengths
    gas_measure: Mapping[str, str] = field(default_factory=dict)
    eddypro_compat: bool = False  #: reproduce EddyPro 7's defects (module docstring)
    # spikes (test_sr / filter_sr / despike_vm)
    despike: bool = True  #: replace spikes (``filter_sr``); False: count only
    despike_method: str = "vm97"  #: or "mauder" (Mauder et al. 2013, ``despike_vm=1``)
    sigma: Mapping[str, float] = field(default_factory=_eddypro_sigma)  #: ``sr_lim_u/w/co2/h2o/ch4/n2o``
    sigma_other: float = EDDYPRO_SIGMA_OTHER  #: auxiliary columns (cell/air T and p): ``sr_lim_u``
    max_consecutive: int = 3  #: ``sr_num_spk``
    spike_hf_percent: float = 1.0  #: ``sr_lim_hf``: hard flag if spike events >= 1 % of the samples
    # amplitude resolution (ar_*) and drop-outs (do_*)
    ar_range_sigma: float = 7.0  #: ``ar_lim``: histogram range in standard deviations
    ar_bins: int = 100  #: ``ar_bins``
    ar_hf_percent: float = 70.0  #: ``ar_hf_lim``: hard flag if >= 70 % of the bins are empty
    do_extreme_percentile: float = 10.0  #: ``do_extlim_dw``: extreme bins hold the outer 10 % tails
    do_hf_central_percent: float = 10.0  #: ``do_hf1_lim``
    do_hf_extreme_percent: float = 6.0  #: ``do_hf2_lim``
    # absolute limits (al_*)
    filter_absolute_limits: bool = True  #: ``filter_al``: set out-of-range u, v, w, ts missing
    u_max: float = 30.0  #: ``al_u_max``: horizontal speed sqrt(u2 + v2) [m s-1]
    w_max: float = 5.0  #: ``al_w_max`` [m s-1]
    ts_min: float = -40.0  #: ``al_tson_min`` [degC]
    ts_max: float = 50.0  #: ``al_tson_max`` [degC]
    gas_limits: Mapping[str, tuple[float, float]] = field(default_factory=_abs_limits)  #: ``al_co2_min`` ...
    # skewness and kurtosis (sk_*): flagged at or beyond the limits
    sk_hard: tuple[float, float] = (-2.0, 2.0)  #: ``sk_hf_skmin/skmax``
    sk_soft: tuple[float, float] = (-1.0, 1.0)  #: ``sk_sf_skmin/skmax``
    ku_hard: tuple[float, float] = (1.0, 8.0)  #: ``sk_hf_kumin/kumax``
    ku_soft: tuple[float, float] = (2.0, 5.0)  #: ``sk_sf_kumin/kumax``
    # discontinuities (ds_*): Haar transforms over a moving window
    ds_hard: Mapping[str, float] = field(default_factory=_ds_hard)  #: ``ds_hf_uv/w/t/co2/h2o/ch4/n2o``
    ds_soft: Mapping[str, float] = field(default_factory=_ds_soft)  #: ``ds_sf_*``
    ds_hard_var: float = 3.0  #: ``ds_hf_var``: relative variance change
    ds_soft_var: float = 2.0  #: ``ds_sf_var``
    # angle of attack (aa_*) and non-steady horizontal wind (ns_*)
    aoa_range_deg: tuple[float, float] = (-30.0, 30.0)  #: ``aa_min``, ``aa_max``
    aoa_hf_percent: float = 10.0  #: ``aa_lim``
    ns_hf: float = 0.5  #: ``ns_hf_lim``: relative change of the mean wind over the period


@dataclass(frozen=True)
class VM97Result:
    """``cleaned``: every input column after the absolute-limit filter and despiking.
    ``flags[test][var]`` for the tests :data:`VARIABLE_TESTS` and variables :data:`VARIABLES`
    present; ``wind_flags[test]`` for :data:`WIND_TESTS`. ``spikes``: spike events per column
    (EddyPro ``*_spikes``), ``spike_samples`` (EddyPro FLUXNET ``*_SPIKE_NREX``). ``stats``: the test
    statistics per variable: ``empty_bins_pct``, ``dropout_central_pct``, ``dropout_extreme_pct``,
    ``skewness``, ``kurtosis`` (linearly detrended), ``haar_mean``, ``haar_var`` (the most extreme
    window value, signed as compared), and ``stats["wind"]``: ``aoa_outside_pct``, ``rn_u``,
    ``rn_v``, ``rn_s``.
    """

    cleaned: dict[str, np.ndarray]
    flags: dict[str, dict[str, int]]
    wind_flags: dict[str, int]
    spikes: dict[str, int]
    spike_samples: dict[str, int]
    stats: dict[str, dict[str, float]]

    def code(self, test: str) -> str:
        """EddyPro's flag string: ``8`` then one digit per variable of :data:`VARIABLES` (9 =
        absent), e.g. ``800000099``; for a wind test ``8`` and its flag (``81``)."""
        if test in WIND_TESTS:
            return f"8{self.wind_flags[test]}"
        return "8" + "".join(str(self.flags[test].get(v, 9)) for v in VARIABLES)


def _to_mole_fraction(name: str, x: np.ndarray, options: VM97Options) -> np.ndarray:
    """Gas column in EddyPro's limit units: molar density [mmol m-3] times ``StdVair`` (x1e3 for
    the trace gases) gives mmol mol-1 (h2o) or umol mol-1; mole fractions pass unchanged."""
    if name in GASES and options.gas_measure.get(name, "molar_density") == "molar_density":
        return x * STD_VAIR_M3_MOL * (1.0 if name == "h2o" else 1e3)
    return x


def _speed_squared(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u^2 + v^2 (compared with a squared limit: cheaper than hypot, same decision)."""
    s = u * u
    s += v * v
    return s


def absolute_limits(columns: Mapping[str, np.ndarray], options: VM97Options) -> dict[str, int]:
    """Hard flags for values outside physical limits (``TestAbsoluteLimits``): u and v together on
    the horizontal speed, |w|, ts, and each gas (after :func:`_to_mole_fraction`)."""
    o = options
    flags: dict[str, int] = {}
    with np.errstate(invalid="ignore"):
        if "u" in columns and "v" in columns:
            flags["u"] = flags["v"] = int(bool(np.any(_speed_squared(columns["u"], columns["v"]) > o.u_max**2)))
        if "w" in columns:
            flags["w"] = int(bool(np.any(np.abs(columns["w"]) > o.w_max)))
        if "ts" in columns:
            ts = columns["ts"]
            flags["ts"] = int(bool(np.any(ts < o.ts_min) or np.any(ts > o.ts_max)))
        for gas in GASES:
            if gas in columns:
                lo, hi = o.gas_limits[gas]
                x = _to_mole_fraction(gas, columns[gas], o)
                flags[gas] = int(bool(np.any(x < lo) or np.any(x > hi)))
    return flags


def _absolute_limit_filter(columns: dict[str, np.ndarray], options: VM97Options) -> None:
    """EddyPro's ``filter_al``: out-of-range u and v (on the horizontal speed), w and ts become
    missing; gases are only flagged."""
    o = options
    with np.errstate(invalid="ignore"):
        if "u" in columns and "v" in columns:
            bad = _speed_squared(columns["u"], columns["v"]) > o.u_max**2
            columns["u"][bad] = np.nan
            columns["v"][bad] = np.nan
        if "w" in columns:
            columns["w"][np.abs(columns["w"]) > o.w_max] = np.nan
        if "ts" in columns:
            columns["ts"][(columns["ts"] < o.ts_min) | (columns["ts"] > o.ts_max)] = np.nan


class HistogramStats(NamedTuple):
    """Per-row results of :func:`amplitude_resolution_dropouts`."""

    empty_bins_pct: np.ndarray  #: empty bins, % of all bins of all windows
    repeats_central: np.ndarray  #: EddyPro's drop-out count: repeats of the previous bin, central bins
    repeats_extreme: np.ndarray  #: same, extreme bins
    longest_central_pct: np.ndarray  #: longest run of samples in one central bin, % of the window
    longest_extreme_pct: np.ndarray  #: same, extreme bins
    window: int  #: samples per window
    n_windows: int


def amplitude_resolution_dropouts(x: np.ndarray, rate_hz: float, window_s: float, *, range_sigma: float = 7.0,
                                  bins: int = 100, extreme_percentile: float = 10.0,
                                  dropouts: str = "both") -> HistogramStats:
    """Empty-bin and drop-out statistics of rows of ``x`` (``TestAmpResDropOut``).

    Windows of ``nn = int(window_s * rate_hz)`` samples (EddyPro: avrg_len/15 minutes, at least 1)
    advance by ``nn // 2``; ``W = (N - nn) // (nn // 2) + 1``. In each window a histogram of
    ``bins`` bins spans ``mean +- range_sigma/2`` standard deviations, or ``[min, max)`` if the data
    range is narrower (bins are ``[lo + b w, lo + (b+1) w)``; values outside are not binned).
    Amplitude resolution: the percentage of empty bins over all windows. Drop-outs: a binned sample
    falling in the same bin as the previous binned sample; the bins holding the lowest and highest
    ``extreme_percentile`` % of the window's samples (cumulative count <= p (nn//100), resp. from
    the bin where it reaches (100 - p)(nn//100), both boundary bins in both sets, as EddyPro) are
    "extreme", the rest "central" (the tail boundary is recomputed for every window; EddyPro keeps
    a stale one when no bin qualifies). EddyPro counts the repeats in each set, summed over windows.
    Also returned: the longest run of consecutive samples in one bin (an unbinned sample ends a
    run), as a percentage of the window, classified by its bin, the maximum over windows. NaN
    samples are ignored (EddyPro would bin its -9999 error code). ``dropouts``: ``"repeats"`` or
    ``"runs"`` computes only that drop-out statistic (the other comes back as zeros), ``"both"`` both.
    """
    if dropouts not in ("both", "repeats", "runs"):
        raise ValueError("dropouts must be 'both', 'repeats' or 'runs'")
    xs = np.atleast_2d(np.asarray(x, dtype=float))
    k, n = xs.shape
    nn = max(min(int(window_s * rate_hz), n), 2)
    half = nn // 2
    n_win = (n - nn) // half + 1
    win = np.lib.stride_tricks.sliding_window_view(xs, nn, axis=1)[:, ::half][:, :n_win]  # (k, W, nn) view
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = bool(np.isnan(xs).any())
        if gaps:
            lo_x, hi_x = np.nanmin(win, axis=2, keepdims=True), np.nanmax(win, axis=2, keepdims=True)
            mean = np.nanmean(win, axis=2, keepdims=True)
            sd = np.nanstd(win, axis=2, ddof=1, keepdims=True)
        elif nn == 2 * half:  # each window is two consecutive half blocks: reduce the blocks once
            nb = n_win + 1
            blk = xs[:, : nb * half].reshape(k, nb, half)
            lo_b, hi_b = blk.min(axis=2), blk.max(axis=2)
            lo_x = np.minimum(lo_b[:, :-1], lo_b[:, 1:])[..., None]
            hi_x = np.maximum(hi_b[:, :-1], hi_b[:, 1:])[..., None]
            centre = xs.mean(axis=1, keepdims=True)
            dev = xs[:, : nb * half] - centre
            s1 = dev.reshape(k, nb, half).sum(axis=2)
            s2 = np.einsum("ij,ij->i", dev.reshape(-1, half), dev.reshape(-1, half)).reshape(k, nb)
            s1w, s2w = s1[:, :-1] + s1[:, 1:], s2[:, :-1] + s2[:, 1:]
            mean = (centre + s1w / nn)[..., None]
            sd = np.sqrt(np.maximum(s2w - s1w * s1w / nn, 0.0) / (nn - 1))[..., None]
        else:
            lo_x, hi_x = win.min(axis=2, keepdims=True), win.max(axis=2, keepdims=True)
            mean = win.mean(axis=2, keepdims=True)
            sd = win.std(axis=2, ddof=1, keepdims=True)
        span = hi_x - lo_x
        narrow = span < range_sigma * sd
        lo = np.where(narrow, lo_x, mean - range_sigma / 2.0 * sd)
        width = np.where(narrow, span / bins, range_sigma * sd / bins)
        width[~(width > 0)] = np.nan  # constant or empty window: nothing is binned
        b = np.subtract(win, lo)
        b /= width
        bf = np.floor(b)
        # EddyPro's predicate is lo + b w <= x < lo + (b + 1) w: floor((x - lo) / w) can be off by one
        # only where (x - lo) / w lies within rounding of an integer; check those samples exactly
        # bound on the rounding error of (x - lo) / w in bins, per window
        tol = 16.0 * np.finfo(float).eps * ((np.maximum(np.abs(lo_x), np.abs(hi_x)) + np.abs(lo)) / width + bins)
        tol[~np.isfinite(tol)] = 0.0
        b -= bf
        near = np.flatnonzero((b < tol) | (b > 1.0 - tol))
        b = bf
        if gaps or np.isnan(width).any():  # else every sample has a (finite) bin number
            b[np.isnan(b)] = -1.0
        if near.size:
            r, c = np.divmod(near, n_win * nn)
            wi, j = np.divmod(c, nn)
            xv, bv = win[r, wi, j], b.reshape(-1)[near]
            lv, wv = lo[r, wi, 0], width[r, wi, 0]
            bv = bv - (xv < bv * wv + lv)
            bv = bv + (xv >= (bv + 1.0) * wv + lv)
            b.reshape(-1)[near] = np.where(np.isnan(wv), -1.0, bv)
    bi = b.astype(np.int32)  # whole numbers already (NaN: -1)
    # bins below 0 wrap past every bin as unsigned: one minimum sends all unbinned samples to ``bins``
    np.minimum(bi.view(np.uint32), np.uint32(bins), out=bi.view(np.uint32))
    binned = bi != bins
    # each window's histogram has one extra cell past its last bin for its unbinned samples
    # (cheaper than selecting the binned ones); only drops and runs of binned samples use ``bi``
    total = k * n_win * (bins + 1)
    cell = bi + (np.arange(k * n_win, dtype=np.intp) * (bins + 1)).reshape(k, n_win, 1)  # bincount's type
    counts = np.bincount(cell.reshape(-1), minlength=total).reshape(k, n_win, bins + 1)[:, :, :bins]
    # bin of the previous binned sample of the window (EddyPro's ``drop``): unbinned samples are
    # skipped, so fill them with the last binned bin (sparse: they are few)
    filled = bi.copy()
    f = np.flatnonzero(~binned)
    if f.size:
        col = f % nn
        seg = np.ones(f.size, dtype=bool)
        seg[1:] = (f[1:] != f[:-1] + 1) | (col[1:] == 0)
        first = f[seg]
        value = np.where(first % nn > 0, filled.ravel()[np.maximum(first - 1, 0)], -1)
        filled.ravel()[f] = np.repeat(value, np.diff(np.append(np.flatnonzero(seg), f.size)))
    drop = np.zeros_like(binned)
    np.equal(bi[:, :, 1:], filled[:, :, :-1], out=drop[:, :, 1:])
    drop &= binned
    cum = np.cumsum(counts, axis=2)
    unit = nn // 100
    binmin = (cum <= extreme_percentile * unit).sum(axis=2)  # 1-based last bin of the low tail
    reach = cum >= (100.0 - extreme_percentile) * unit
    binmax = np.where(reach.any(axis=2), reach.argmax(axis=2), bins - bins // 10)  # 1-based first - 1
    empty_pct = 100.0 * (counts == 0).sum(axis=(1, 2)) / (bins * n_win)
    drops_ext = drops_ctr = np.zeros(k, dtype=np.int64)
    if dropouts != "runs":
        drops = np.bincount(np.where(drop, cell, bins).reshape(-1), minlength=total)  # (else: a spare cell)
        cd = np.concatenate([np.zeros((k, n_win, 1), dtype=np.int64),
                             np.cumsum(drops.reshape(k, n_win, bins + 1)[:, :, :bins], axis=2)], axis=2)

        def upto(b1):  # drops in bins 1..b1 (1-based)
            return np.take_along_axis(cd, np.clip(b1, 0, bins)[..., None], axis=2)[..., 0]

        ok = (binmin > 0) & (binmax >= binmin)
        ext = upto(binmin) + (cd[..., -1] - upto(binmax - 1))
        ctr = upto(binmax) - upto(binmin - 1)
        drops_ext = np.where(ok, ext, 0).sum(axis=1)
        drops_ctr = np.where(ok, ctr, 0).sum(axis=1)
    longest = np.zeros((2, k))
    if dropouts != "repeats":
        # longest run of consecutive binned samples in one bin = longest stretch of repeats + 1, in
        # samples from its first to its last sample; extreme or central by its bin
        padded = np.zeros((k, n_win, nn + 1), dtype=bool)
        padded[:, :, :nn] = drop
        flat = padded.reshape(-1)
        flips = np.empty(flat.size, dtype=bool)
        flips[0] = flat[0]
        np.not_equal(flat[1:], flat[:-1], out=flips[1:])
        change = np.flatnonzero(flips)  # starts and ends of runs of repeats alternate
        starts, ends = change[0::2], change[1::2]
        if starts.size:
            run_len = ends - starts + 1
            rw_flat, pos = np.divmod(starts, nn + 1)
            row = rw_flat // n_win
            run_bin = bi.ravel()[rw_flat * nn + pos] + 1  # 1-based, as binmin / binmax
            extreme = (run_bin <= binmin.ravel()[rw_flat]) | (run_bin >= binmax.ravel()[rw_flat])
            first_run = np.searchsorted(row, np.arange(k))  # runs are ordered by row
            has_runs = np.bincount(row, minlength=k) > 0
            at = np.minimum(first_run, row.size - 1)
            for cls, lengths in enumerate((np.where(extreme, 0, run_len), np.where(extreme, run_len, 0))):
                longest[cls] = np.where(has_runs, np.maximum.reduceat(lengths, at), 0)
        longest *= 100.0 / nn
    return HistogramStats(empty_pct, drops_ctr, drops_ext, longest[0], longest[1], nn, n_win)


def skewness_kurtosis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skewness and kurtosis (not excess) of the linearly detrended rows of ``x``, EddyPro's
    ``TestHigherMoments``: least-squares line over the period (``LinDetrend``; here against the
    sample index, skipping NaN), then ``sum(p^3) / s^3 / (N - 1)`` and ``sum(p^4) / s^4 / (N - 1)``
    with ``s`` the (N - 1) standard deviation of the residuals ``p``."""
    xs = np.atleast_2d(np.asarray(x, dtype=float))
    k, n = xs.shape
    gaps = bool(np.isnan(xs).any())
    valid = ~np.isnan(xs) if gaps else None
    t = np.arange(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if gaps:
            nv = valid.sum(axis=1)
            x0 = np.where(valid, xs, 0.0)
            tm = (valid @ t) / nv
            xm = x0.sum(axis=1) / nv
            dt = np.where(valid, t - tm[:, None], 0.0)
            slope = np.einsum("ij,ij->i", dt, x0) / np.einsum("ij,ij->i", dt, dt)
            p = np.where(valid, x0 - xm[:, None] - slope[:, None] * dt, 0.0)
        else:
            nv = np.full(k, n)
            dt = t - t.mean()
            slope = (xs @ dt) / (dt @ dt)
            p = xs - xs.mean(axis=1, keepdims=True)
            p -= slope[:, None] * dt
        n1 = nv - 1.0
        pm = p.sum(axis=1) / nv
        p2 = p * p
        s = np.sqrt((p2.sum(axis=1) - nv * pm * pm) / n1)
        skw = np.einsum("ij,ij->i", p2, p) / s**3 / n1
        kur = np.einsum("ij,ij->i", p2, p2) / s**4 / n1
    return skw, kur


def haar_discontinuities(x: np.ndarray, rate_hz: float, window_s: float, *, step: int = 100,
                         eddypro_compat: bool = False, scale: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Haar transforms of the mean and the variance in moving windows (``TestDiscontinuities``).

    Windows of ``nn = int(window_s * rate_hz)`` samples (EddyPro: avrg_len/6 minutes, as the
    despiking) start every ``step`` = 100 samples; each is split into halves of ``nn // 2``.
    Returns ``(haar_mean, haar_var)``, shape (rows, windows): ``|mean_1 - mean_2|`` (halves 1, 2)
    and ``|var_1 - var_2| / var_record``, normalised by the variance of the whole record as Vickers
    & Mahrt (1997) do (n - 1 denominators, missing samples skipped). ``scale``: per-row factor
    applied to the data first (molar density to mole fraction). ``eddypro_compat``: EddyPro 7's
    ``mean_1 - mean_2`` (signed) and ``(sd_1 - sd_2) / var_window``, with ``scale`` applied to the
    whole window only. (Normalised by the window variance, as EddyPro intends, the ratio of a
    correct variance difference could never exceed 2, so its hard threshold of 3 could never fire.)
    """
    xs = np.atleast_2d(np.asarray(x, dtype=float))
    k, n = xs.shape
    nn = max(min(int(window_s * rate_hz), n), 4)
    h = nn // 2
    n_win = (n - nn) // step + 1
    sc = np.ones((k, 1)) if scale is None else np.asarray(scale, dtype=float).reshape(k, 1)
    valid = ~np.isnan(xs)
    complete = bool(valid.all())  # (then the same sums without the masks)
    with np.errstate(invalid="ignore", divide="ignore"):
        if complete:
            centre = xs.sum(axis=1, keepdims=True) / max(n, 1)
        else:
            centre = (np.where(valid, xs, 0.0).sum(axis=1, keepdims=True)
                      / np.maximum(valid.sum(axis=1, keepdims=True), 1))
    xc = xs - centre if complete else np.where(valid, xs - centre, 0.0)
    sq = xc * xc
    s0 = np.arange(n_win) * step
    # window and half-window bounds fall on multiples of ``g``: cumulate block sums of g samples
    g = math.gcd(step, h, nn) if n_win > 1 else math.gcd(h, nn)
    nb = (s0[-1] + nn) // g  # blocks up to the last bound used

    def blocks(a):
        return a[:, : nb * g].reshape(k, nb, g).sum(axis=2)

    cum = np.zeros((3, k, nb + 1))
    if complete:  # g samples in every block
        cum[0, :, 1:] = g * np.arange(1, nb + 1, dtype=float)
    else:
        np.cumsum(blocks(valid.astype(float)), axis=1, out=cum[0, :, 1:])
    np.cumsum(blocks(xc), axis=1, out=cum[1, :, 1:])
    np.cumsum(blocks(sq), axis=1, out=cum[2, :, 1:])

    def moments(a, b):
        c, s1, s2 = cum[:, :, b // g] - cum[:, :, a // g]
        with np.errstate(invalid="ignore", divide="ignore"):
            m = s1 / c
            return m + centre, (s2 - s1 * m) / (c - 1)

    _, v_all = moments(s0, s0 + nn)
    m_1, v_1 = moments(s0, s0 + h)
    m_2, v_2 = moments(s0 + h, s0 + 2 * h)
    with np.errstate(invalid="ignore", divide="ignore"):
        if eddypro_compat:
            haar_mean = m_1 - m_2
            haar_var = (np.sqrt(v_1) - np.sqrt(v_2)) / (v_all * sc**2)
        else:
            n_ok = valid.sum(axis=1, keepdims=True)
            var_record = sq.sum(axis=1, keepdims=True) / (n_ok - 1)
            haar_mean = np.abs(m_1 - m_2) * np.abs(sc)
            haar_var = np.abs(v_1 - v_2) / var_record
    return haar_mean, haar_var


def attack_angle_outside_pct(u: np.ndarray, v: np.ndarray, w: np.ndarray, aoa_range: tuple[float, float]) -> float:
    """Percentage of valid samples whose angle of attack ``atan(w / sqrt(u2 + v2))`` lies outside
    ``aoa_range`` [deg] (EddyPro 7 ``TestAttackAngle``; zero horizontal speed with nonzero w counts
    as outside)."""
    ok = ~(np.isnan(u) | np.isnan(v) | np.isnan(w))
    if not ok.all():
        u, v, w = u[ok], v[ok], w[ok]
    hw = np.sqrt(_speed_squared(u, v))
    # atan(w / hw) outside [lo, hi] <=> w outside [tan(lo) hw, tan(hi) hw] for hw > 0 (|angles| < 90)
    t_lo, t_hi = np.tan(np.radians(aoa_range))
    outside = (w < t_lo * hw) | (w > t_hi * hw)
    n_ok = len(w)
    return 100.0 * np.count_nonzero(outside) / n_ok if n_ok else np.nan


def nonsteady_wind(u: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """Relative change of the horizontal wind over the period (``TestNonSteadyWind``): rotate into
    the mean wind, fit straight lines to the along- and cross-wind components against time, and
    return ``|dU / U|``, ``|dV / U|`` and ``|sqrt(dU2 + dV2) / U|`` with d the change of the fitted
    line from first to last sample and U the mean along-wind speed."""
    ok = ~(np.isnan(u) | np.isnan(v))
    if ok.all():  # the same values without the selection's copies
        t, uu, vv = np.arange(len(u), dtype=float), u, v
    else:
        t = np.nonzero(ok)[0].astype(float)
        uu, vv = u[ok], v[ok]
    um, vm = uu.mean(), vv.mean()
    speed = math.hypot(um, vm)
    cos, sin = um / speed, vm / speed
    along, cross = uu * cos + vv * sin, -uu * sin + vv * cos
    dt = t - t.mean()
    span = (len(u) - 1) if len(u) > 1 else 1
    d_along = (dt @ (along - along.mean())) / (dt @ dt) * span
    d_cross = (dt @ (cross - cross.mean())) / (dt @ dt) * span
    mean_along = along.mean()
    return abs(d_along / mean_along), abs(d_cross / mean_along), abs(math.hypot(d_along, d_cross) / mean_along)


def vm97_flags(columns: Mapping[str, np.ndarray], rate_hz: float, options: VM97Options | None = None) -> VM97Result:
    """Run the VM97 tests on one averaging period (see the module docstring for order and units).

    ``columns``: name -> 1-D array, all of one length, NaN = missing. Names of :data:`VARIABLES`
    are flagged; any other column (cell temperature ``tc``, cell pressure ``pc``, air ``te``/``pe``
    ...) is only despiked, with ``sigma_other``, and takes part in the shared pass loop as in
    EddyPro. Returns a :class:`VM97Result`.
    """
    o = options or VM97Options()
    names = list(columns)
    n = len(next(iter(columns.values()))) if names else 0
    if any(len(columns[name]) != n for name in names):
        raise ValueError("all columns must have the same length")
    # one copy of the inputs, as rows (the absolute-limit filter below writes into them)
    x = np.vstack([np.asarray(columns[name], dtype=float) for name in names]) if names else np.zeros((0, n))
    cols = {name: x[i] for i, name in enumerate(names)}
    present = [v for v in VARIABLES if v in cols]
    flags: dict[str, dict[str, int]] = {t: {} for t in VARIABLE_TESTS}
    stats: dict[str, dict[str, float]] = {v: {} for v in present}

    # 1. absolute limits, then EddyPro's filter of the sonic variables
    al = absolute_limits(cols, o)
    flags["absolute_limits_hf"] = {v: al.get(v, 0) for v in present}
    if o.filter_absolute_limits:
        _absolute_limit_filter(cols, o)

    # 2. spikes
    sigma = [o.sigma.get(name, o.sigma_other) for name in names]
    replace = "linear" if o.despike else "none"
    if o.despike_method == "vm97":
        window = eddypro_despike_window_s(o.averaging_min)
        res = vickers_mahrt_spikes(x, rate_hz, sigma, o.max_consecutive, window, replace, copy=False)  # x is ours
    elif o.despike_method == "mauder":
        res = mauder_mad_spikes(x, replace=replace)
    else:
        raise ValueError("despike_method must be 'vm97' or 'mauder'")
    x, events, samples = res.cleaned, res.events, res.samples
    cleaned = {name: x[i] for i, name in enumerate(names)}
    spikes = {name: int(events[i]) for i, name in enumerate(names)}
    spike_samples = {name: int(samples[i]) for i, name in enumerate(names)}
    for v in present:
        flags["spikes_hf"][v] = int(100.0 * spikes[v] / max(n, 1) >= o.spike_hf_percent)

    if not present:
        return VM97Result(cleaned, flags, {}, spikes, spike_samples, stats)
    xv = x if present == names else np.vstack([cleaned[v] for v in present])  # read only below

    # 3. amplitude resolution and drop-outs
    ar_window = 60.0 * max(o.averaging_min // 15, 1)
    hist = amplitude_resolution_dropouts(xv, rate_hz, ar_window, range_sigma=o.ar_range_sigma, bins=o.ar_bins,
                                         extreme_percentile=o.do_extreme_percentile,
                                         dropouts="repeats" if o.eddypro_compat else "runs")
    total = hist.window * hist.n_windows
    for i, v in enumerate(present):
        if o.eddypro_compat:  # repeats, integer division; the extreme-bin result overwrites the central one
            ctr_pct = 100.0 * (int(hist.repeats_central[i]) // total)
            ext_pct = 100.0 * (int(hist.repeats_extreme[i]) // total)
            do_flag = ext_pct >= o.do_hf_extreme_percent
        else:
            ctr_pct, ext_pct = float(hist.longest_central_pct[i]), float(hist.longest_extreme_pct[i])
            do_flag = ctr_pct >= o.do_hf_central_percent or ext_pct >= o.do_hf_extreme_percent
        flags["amplitude_resolution_hf"][v] = int(hist.empty_bins_pct[i] >= o.ar_hf_percent)
        flags["drop_out_hf"][v] = int(do_flag)
        stats[v].update(empty_bins_pct=float(hist.empty_bins_pct[i]), dropout_central_pct=ctr_pct,
                        dropout_extreme_pct=ext_pct)

    # 4. skewness and kurtosis
    skw, kur = skewness_kurtosis(xv)
    for i, v in enumerate(present):
        s, kk = skw[i], kur[i]
        hard = s <= o.sk_hard[0] or s >= o.sk_hard[1] or kk <= o.ku_hard[0] or kk >= o.ku_hard[1]
        soft = s <= o.sk_soft[0] or s >= o.sk_soft[1] or kk <= o.ku_soft[0] or kk >= o.ku_soft[1]
        flags["skewness_kurtosis_hf"][v] = int(bool(hard))
        flags["skewness_kurtosis_sf"][v] = int(bool(soft))
        stats[v].update(skewness=float(s), kurtosis=float(kk))

    # 5. discontinuities
    scale = np.array([float(_to_mole_fraction(v, np.ones(1), o)[0]) for v in present])
    hm, hv = haar_discontinuities(xv, rate_hz, eddypro_despike_window_s(o.averaging_min),
                                  eddypro_compat=o.eddypro_compat, scale=scale)
    with np.errstate(invalid="ignore"):
        for i, v in enumerate(present):
            m_max, v_max = np.nanmax(hm[i], initial=-np.inf), np.nanmax(hv[i], initial=-np.inf)
            flags["discontinuities_hf"][v] = int(bool(m_max > o.ds_hard[v] or v_max > o.ds_hard_var))
            flags["discontinuities_sf"][v] = int(bool(m_max > o.ds_soft[v] or v_max > o.ds_soft_var))
            stats[v].update(haar_mean=float(m_max), haar_var=float(v_max))

    # 6. wind: angle of attack and steadiness of the horizontal wind
    wind_flags: dict[str, int] = {}
    if all(c in cleaned for c in ("u", "v", "w")):
        aoa = attack_angle_outside_pct(cleaned["u"], cleaned["v"], cleaned["w"], o.aoa_range_deg)
        rn_u, rn_v, rn_s = nonsteady_wind(cleaned["u"], cleaned["v"])
        wind_flags["attack_angle_hf"] = int(aoa >= o.aoa_hf_percent)
        wind_flags["non_steady_wind_hf"] = int(max(rn_u, rn_v, rn_s) >= o.ns_hf)
        stats["wind"] = {"aoa_outside_pct": aoa, "rn_u": rn_u, "rn_v": rn_v, "rn_s": rn_s}
    return VM97Result(cleaned, flags, wind_flags, spikes, spike_samples, stats)
