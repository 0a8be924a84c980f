"""The carbon budget of a period frame: u* filtering, gap-filling, partitioning and sums with their uncertainty.

The methods are hesseflux's (a Python implementation of the methods of the MPI-BGC / REddyProc chain); this
module prepares their inputs (flags, units, time stamps), runs them and aggregates. hesseflux 5.0, its latest
release, predates NumPy 1.24 and pandas 3: :func:`_hesseflux` and :class:`_WritableFrame` bridge that, for
the calls only.

1. QC: FC whose ``FC_SSITC_TEST`` is 2 is discarded (Mauder & Foken 2004 flag system: 0 and 1 kept), FCH4
   likewise with ``FCH4_SSITC_TEST``.
2. u* filter after Papale et al. (2006) (``hesseflux.ustarfilter``): one threshold per year and 3-month season,
   applied to night-time periods (SW_IN <= 10 W m-2), REddyProc's default; a night with u* below the
   threshold, or without u*, is a gap. FCH4 gets the same flag (the criterion is about turbulence, not gas).
3. Gap-filling by marginal distribution sampling, MDS (Reichstein et al. 2005, appendix A;
   ``hesseflux.gapfill``) with its uncertainty: the standard deviation of the fluxes measured under similar
   meteorological conditions (Lasslop et al. 2008; ``gapfill(err=True)``).
4. Partitioning of NEE into GPP and RECO (``hesseflux.nee2gpp``): night-time method of Reichstein et al. (2005),
   day-time light-response method of Lasslop et al. (2010). GPP = RECO - NEE_F for both.
5. Sums per day, month and year in g C m-2 with their uncertainty (:func:`carbon_budget` says how).

**NEE is FC here**: the storage term (the change of the CO2 below the measurement height) is not added, as a
single-level EC system has no profile. Over a day and longer the storage change averages out; half-hourly NEE
at dawn and dusk, and the u* filter's view of calm nights, are the parts it biases.

Units: fluxes FC [umol CO2 m-2 s-1], FCH4 [nmol CH4 m-2 s-1]; TA [degC], VPD [hPa], RH [%], SW_IN [W m-2],
USTAR [m s-1] (the period frame's, see :mod:`collector.science`); sums in g C m-2.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: g C per umol CO2 and per nmol CH4 (molar mass of carbon 12.011 g mol-1, one C per molecule)
G_C_PER_UMOL = 12.011e-6
G_C_PER_NMOL = 12.011e-9
#: the budget works on half-hours [s]
PERIOD_S = 1800
#: day when SW_IN > 10 W m-2 (REddyProc's and hesseflux's threshold; Papale et al. 2006 used 20)
SW_DAY = 10.0
#: u* floor and fallback threshold [m s-1]: Papale et al. (2006) take 0.1 for forests, 0.01 for short canopies
USTAR_MIN = 0.1
#: the fewest days a budget is computed for (the night-time partitioning fits 15-day windows)
MIN_DAYS = 30
#: the smallest share of periods with a valid FC after QC
MIN_VALID_SHARE = 0.1
#: the fewest measured night (day) periods a partitioning is tried with
MIN_FIT_PERIODS = 100
#: hesseflux does not fill gaps longer than this [days] (Reichstein et al. 2005 fill within +-7..+-14 days)
LONG_GAP_DAYS = 60

_UNDEF = -9999.0
_STEP = pd.Timedelta(seconds=PERIOD_S)
_SEASONS = ("Jan-Mar", "Apr-Jun", "Jul-Sep", "Oct-Dec")  # hesseflux's seasons: nmon = 3 calendar months
_MET = ["SW_IN", "TA", "VPD"]


@dataclass
class CarbonBudget:
    """What :func:`carbon_budget` returns.

    ``half_hourly``: per period (index as the input's): NEE (FC after QC and the u* filter, NaN where not
    kept) [umol m-2 s-1], NEE_F (gap-filled), NEE_F_QC (0 measured, 1-3 MDS quality classes A-C of
    Reichstein et al. 2005), NEE_F_UNC (1 sigma: FC_RANDUNC of a measured period, else the MDS standard
    deviation), USTAR_THRESHOLD [m s-1], USTAR_FLAG (2 where the u* filter removed the period, else 0),
    RECO_NT, GPP_NT (night-time method), RECO_DT, GPP_DT (day-time method) [umol m-2 s-1]; with FCH4:
    FCH4, FCH4_F, FCH4_F_QC, FCH4_F_UNC [nmol m-2 s-1].

    ``daily``, ``monthly``, ``yearly``: sums in g C m-2 indexed by pandas Periods of the period START (a
    half-hour ending at 00:00 belongs to the day before): NEE, NEE_UNC, GPP_NT, RECO_NT, GPP_DT, RECO_DT,
    GPP_RECO_UNC (half the difference of the two methods), FCH4_C, FCH4_C_UNC, NEE_FILLED and FCH4_FILLED
    (share of gap-filled periods, 0-1), N_PERIODS.

    ``ustar_thresholds``: one row per year and season: year, season, USTAR_THRESHOLD [m s-1], source.
    ``notes``: what the budget had to decide or could not do, one line each.
    """

    half_hourly: pd.DataFrame
    daily: pd.DataFrame
    monthly: pd.DataFrame
    yearly: pd.DataFrame
    ustar_thresholds: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    site_id: str | None = None
    period_s: int = PERIOD_S


def carbon_budget(frame: pd.DataFrame, *, ustar_threshold: float | None = None,
                  ustar_min: float = USTAR_MIN) -> CarbonBudget:
    """The carbon budget of a half-hourly period frame (see the module's docstring for the steps).

    ``ustar_threshold`` [m s-1]: use this one threshold instead of estimating it (Papale et al. 2006).
    ``ustar_min`` [m s-1]: the floor of the estimated thresholds, and the threshold used when the data cannot
    give one (less than whole calendar years, or too few nights); the notes say when.

    Uncertainty of a sum (1 sigma): the errors of different half-hours are taken as independent, so it is
    the root of the summed squares of the periods' sigmas. Random flux errors are nearly uncorrelated from
    one half-hour to the next (Richardson et al. 2006), which makes this right for measured periods
    (FC_RANDUNC, else the MDS standard deviation, Lasslop et al. 2008). For filled periods the sigma is the MDS
    standard deviation (as FLUXNET2015 does where no direct estimate exists, Pastorello et al. 2020); their
    errors within one long gap are partly correlated (Richardson & Hollinger 2007), so with long gaps the
    sum's uncertainty is understated. Neither the uncertainty of the u* threshold nor storage is included.
    GPP_RECO_UNC is the method uncertainty of the partitioning: half the difference between the night-time
    and day-time sums (cf. Lasslop et al. 2010, who compare the two).

    Raises ValueError (one line) when the frame cannot give a budget.
    """
    notes: list[str] = []
    work, pad = _prepare(frame, notes)
    isday = np.nan_to_num(work["SW_IN"].to_numpy(), nan=0.0) > SW_DAY
    threshold, table = _ustar_thresholds(work, isday, ustar_threshold, ustar_min, notes)
    filtered = ~isday & ~(work["USTAR"].to_numpy() >= threshold)
    work["USTAR_THRESHOLD"] = threshold
    work["USTAR_FLAG"] = np.where(filtered, 2, 0)
    fluxes = ["NEE"] + (["FCH4"] if "FCH4" in work else [])
    for name in fluxes:
        work.loc[filtered, name] = np.nan
    notes.append(f"u* filter: {int((filtered & work['NEE_QC_OK']).sum())} night-time FC periods removed")
    _gapfill(work, fluxes, notes)
    _partition(work, isday, notes)
    half_hourly = work.iloc[pad:][_output_columns(work)].copy()
    half_hourly.index = half_hourly.index.tz_localize(frame.index.tz).rename(frame.index.name)
    return CarbonBudget(half_hourly=half_hourly, daily=_sums(half_hourly, "D"), monthly=_sums(half_hourly, "M"),
                        yearly=_sums(half_hourly, "Y"), ustar_thresholds=table, notes=notes,
                        site_id=frame.attrs.get("site_id"))


# ---------------------------------------------------------------------------------------------------- input


def vpd_from_rh(ta_degc, rh_percent) -> np.ndarray:
    """Vapour pressure deficit [hPa] from TA [degC] and RH [%]: VPD = e_s(TA) (1 - RH/100), e_s from the
    Magnus form of Alduchov & Eskridge (1996, eq. 21): e_s = 6.1094 exp(17.625 T / (T + 243.04)) hPa.
    Never negative (RH above 100 % gives 0)."""
    ta = np.asarray(ta_degc, dtype=float)
    es = 6.1094 * np.exp(17.625 * ta / (ta + 243.04))
    return np.clip(es * (1 - np.asarray(rh_percent, dtype=float) / 100), 0, None)


def _fail(problem: str) -> ValueError:
    return ValueError(f"carbon budget: {problem}")


def _check_index(frame) -> pd.DatetimeIndex:
    if not isinstance(frame, pd.DataFrame):
        raise _fail(f"expected a period frame (pandas DataFrame), got {type(frame).__name__}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise _fail("the index is not a DatetimeIndex of period end times")
    if index.tz is None:
        raise _fail("the index has no time zone (a period frame's index is tz-aware local standard time)")
    if index.has_duplicates:
        raise _fail(f"duplicate timestamps in the index (e.g. {index[index.duplicated()][0]})")
    period = frame.attrs.get("period_s")
    if period is not None and float(period) != PERIOD_S:
        raise _fail(f"the frame is not half-hourly (period_s = {period} s; the budget needs {PERIOD_S} s periods)")
    off_grid = (index.second != 0) | (index.microsecond != 0) | ~np.isin(index.minute, (0, 30))
    if off_grid.any():
        raise _fail(f"the frame is not half-hourly: {index[off_grid][0]} is not on the 30-min grid")
    index = index.sort_values()
    step = pd.Series(index).diff().median() if len(index) > 1 else _STEP
    if step != _STEP:
        raise _fail(f"the frame is not half-hourly: its time stamps are {step.total_seconds() / 60:g} min apart "
                    f"(median)")
    return index


def _require(frame: pd.DataFrame, name: str, what: str) -> None:
    if name not in frame:
        raise _fail(f"no {name} column ({what})")
    if not frame[name].notna().any():
        raise _fail(f"{name} has no values ({what})")


def _prepare(frame: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, int]:
    """The frame checked, on a complete tz-naive half-hour grid of period ends, with the columns the steps
    need (NEE = FC after QC); and how many empty rows lead it (see :func:`_grid`)."""
    index = _check_index(frame)
    _require(frame, "FC", "CO2 flux, umol m-2 s-1")
    _require(frame, "TA", "air temperature, degC")
    _require(frame, "SW_IN", "incoming shortwave radiation, W m-2: MDS and the day/night split need it")
    _require(frame, "USTAR", "friction velocity, m s-1: the u* filter needs it")
    if not any(c in frame and frame[c].notna().any() for c in ("VPD", "RH")):
        raise _fail("no VPD and no RH column (MDS gap-filling needs VPD [hPa], or RH [%] to compute it)")
    days = (index[-1] - index[0] + _STEP) / pd.Timedelta(days=1)
    if days < MIN_DAYS:
        raise _fail(f"too few rows: {len(index)} half-hours ({days:.1f} days); the budget needs at least "
                    f"{MIN_DAYS} days")
    if float(np.nanmedian(frame["TA"])) > 100:
        raise _fail(f"TA looks like kelvin (median {np.nanmedian(frame['TA']):.1f}); the period frame has degC")
    grid, pad = _grid(index)
    missing = len(grid) - pad - len(index)
    if missing:
        notes.append(f"{missing} half-hours missing from the frame were added as gaps")
    src = frame.sort_index()
    src.index = src.index.tz_localize(None)
    src = src.reindex(grid)
    work = pd.DataFrame(index=grid)
    work["NEE"] = _after_qc(src, "FC", "FC_SSITC_TEST", notes)
    work["NEE_QC_OK"] = work["NEE"].notna()
    valid = int(work["NEE"].notna().sum())
    if valid < MIN_VALID_SHARE * len(index):
        raise _fail(f"only {valid} of {len(index)} periods have a valid FC after QC (at least "
                    f"{MIN_VALID_SHARE:.0%} needed)")
    for name in ("FC_RANDUNC", "TA", "SW_IN", "USTAR"):
        if name in src:
            work[name] = src[name].astype(float)
    work["VPD"] = _vpd(src, notes)
    _add_ch4(work, src, len(index), notes)
    return work, pad


def _grid(index: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, int]:
    """Every half-hour end from the first to the last, in local standard time without tz (as hesseflux wants).

    hesseflux takes a series whose first stamp is on the full hour for period STARTS (ustarfilter shifts its
    time stamps by a quarter of an hour one way or the other to get the period's middle). So when the first
    period END is on the full hour, one empty row is put before it; it is dropped from the results."""
    first, last = index[0].tz_localize(None), index[-1].tz_localize(None)
    pad = int(first.minute == 0)
    return pd.date_range(first - pad * _STEP, last, freq="30min"), pad


def _after_qc(src: pd.DataFrame, name: str, flag: str, notes: list[str]) -> pd.Series:
    """``name`` with the periods whose SSITC flag is 2 (or above: not a 0-1-2 flag) set to NaN (0, 1 kept)."""
    values = src[name].astype(float)
    if flag not in src:
        notes.append(f"no {flag} column: {name} used without its QC flag")
        return values
    bad = src[flag].to_numpy() >= 2
    notes.append(f"{name}: {int((bad & values.notna().to_numpy()).sum())} periods with {flag} = 2 discarded")
    return values.mask(bad)


def _vpd(src: pd.DataFrame, notes: list[str]) -> pd.Series:
    """VPD [hPa]; where it is missing and RH is there, computed from TA and RH (:func:`vpd_from_rh`)."""
    vpd = src["VPD"].astype(float) if "VPD" in src else pd.Series(np.nan, index=src.index)
    if "RH" in src:
        computed = pd.Series(vpd_from_rh(src["TA"], src["RH"]), index=src.index)
        fill = vpd.isna() & computed.notna()
        if fill.any():
            notes.append(f"VPD computed from TA and RH (Alduchov & Eskridge 1996) for {int(fill.sum())} periods")
            vpd = vpd.where(~fill, computed)
    return vpd


def _add_ch4(work: pd.DataFrame, src: pd.DataFrame, rows: int, notes: list[str]) -> None:
    if "FCH4" not in src or not src["FCH4"].notna().any():
        return
    fch4 = _after_qc(src, "FCH4", "FCH4_SSITC_TEST", notes)
    if fch4.notna().sum() < MIN_VALID_SHARE * rows:
        notes.append(f"FCH4: only {int(fch4.notna().sum())} valid periods, no CH4 budget")
        return
    work["FCH4"] = fch4
    if "FCH4_RANDUNC" in src:
        work["FCH4_RANDUNC"] = src["FCH4_RANDUNC"].astype(float)


# ------------------------------------------------------------------------------------------------ hesseflux


class _WritableSeries(pd.Series):
    """A Series whose ``to_numpy()`` is a writable copy.

    hesseflux 5.0 (its latest release, 2023) writes into the arrays that ``Series.to_numpy()`` returns; with
    pandas >= 3 (copy-on-write) those are read-only views. Only the frames handed to hesseflux are of this
    kind."""

    @property
    def _constructor(self):
        return _WritableSeries

    @property
    def _constructor_expanddim(self):
        return _WritableFrame

    def to_numpy(self, *args, **kwargs) -> np.ndarray:
        return np.array(super().to_numpy(*args, **kwargs), copy=True)


class _WritableFrame(pd.DataFrame):
    @property
    def _constructor(self):
        return _WritableFrame

    @property
    def _constructor_sliced(self):
        return _WritableSeries


@contextlib.contextmanager
def _hesseflux(log: list[str]):
    """Run hesseflux quietly: what it prints goes to ``log``, its (NumPy's, SciPy's) warnings are dropped;
    exceptions pass. NumPy lends hesseflux 5.0 the aliases np.float and np.int (removed in NumPy 1.24) for
    the call only."""
    added = [name for name in ("float", "int", "bool") if not hasattr(np, name)]
    for name in added:
        setattr(np, name, getattr(builtins, name))
    out = io.StringIO()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stdout(out):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name in added:
            delattr(np, name)
        log.extend(line.strip() for line in out.getvalue().splitlines() if line.strip())


def _for_hesseflux(data: pd.DataFrame) -> tuple[_WritableFrame, _WritableFrame]:
    """(values with NaN as the undef value, flags: 2 where missing) as hesseflux takes them."""
    values = data.astype(float)
    flags = values.isna().astype(int) * 2
    return _WritableFrame(values.fillna(_UNDEF)), _WritableFrame(flags)


def _undef_to_nan(values) -> np.ndarray:
    out = np.asarray(values, dtype=float).copy()
    out[out == _UNDEF] = np.nan
    return out


# ---------------------------------------------------------------------------------------------------- u*


def _ustar_thresholds(work: pd.DataFrame, isday: np.ndarray, given: float | None, ustar_min: float,
                      notes: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """The u* threshold of each period [m s-1] and the table of thresholds per year and season."""
    middle = work.index - _STEP / 2
    years = sorted(set(middle.year))
    if given is not None:
        if not np.isfinite(given) or given < 0:
            raise _fail(f"ustar_threshold must be a u* [m s-1] >= 0, got {given}")
        notes.append(f"u* threshold {given:.3f} m s-1 given (no estimate after Papale et al. 2006)")
        return np.full(len(work), float(given)), _table(years, np.full((len(years), 4), float(given)), "given")
    estimate, why = _papale(work, isday, ustar_min, years)
    if estimate is None:
        notes.append(f"u* threshold: {why}; the minimum {ustar_min:.3f} m s-1 is used instead")
        return np.full(len(work), ustar_min), _table(years, np.full((len(years), 4), ustar_min), "minimum")
    sources = _threshold_sources(work, isday, estimate, ustar_min, years, notes)
    table = _table(years, estimate, sources)
    season = (middle.month.to_numpy() - 1) // 3
    year = np.searchsorted(years, middle.year.to_numpy())
    return estimate[year, season], table


def _papale_input(work: pd.DataFrame, isday: np.ndarray) -> pd.DataFrame:
    """FC, USTAR, TA for the threshold estimate. As hesseflux's own workflow does, night-time uptake (FC < 0)
    stays out, and so do periods without SW_IN (day or night unknown)."""
    data = work[["NEE", "USTAR", "TA"]].rename(columns={"NEE": "FC"})
    data.loc[(~isday & (data["FC"] < 0).to_numpy()) | work["SW_IN"].isna().to_numpy(), "FC"] = np.nan
    return data


def _papale(work, isday, ustar_min, years) -> tuple[np.ndarray | None, str]:
    """hesseflux.ustarfilter (Papale et al. 2006) per year and season, or (None, why not)."""
    import hesseflux

    middle = work.index - _STEP / 2
    ndays = (middle.max() - middle.min()).days + 1
    if ndays // len(years) <= 360:
        return None, (f"the data cover {ndays} days of {len(years)} calendar year(s); Papale et al. (2006) "
                      f"as hesseflux implements it needs whole calendar years")
    values, flags = _for_hesseflux(_papale_input(work, isday))
    log: list[str] = []
    try:
        with _hesseflux(log):
            thresholds, _ = hesseflux.ustarfilter(values, flag=flags, isday=isday.copy(), undef=_UNDEF,
                                                  ustarmin=ustar_min, nboot=1, seasonout=True, plateaucrit=0.95)
    except (AssertionError, ValueError, IndexError) as exc:
        return None, f"hesseflux.ustarfilter could not estimate it ({exc or type(exc).__name__})"
    return np.asarray(thresholds, dtype=float).reshape(3, len(years), 4)[1], ""


def _threshold_sources(work, isday, estimate, ustar_min, years, notes) -> np.ndarray:
    """Where each season's threshold came from: the plateau of Papale et al. (2006), the floor, or hesseflux's
    fallback when no plateau is found (the 90 % quantile of the season's night-time u*, of the periods used
    for the estimate or, when no season has a plateau, of all)."""
    middle = work.index - _STEP / 2
    season = (middle.month.to_numpy() - 1) // 3
    ustar = work["USTAR"].to_numpy()
    night = ~isday & np.isfinite(ustar)
    used = night & _papale_input(work, isday).notna().all(axis=1).to_numpy()
    sources = np.full(estimate.shape, "Papale et al. 2006", dtype=object)
    for y, year in enumerate(years):
        for s in range(4):
            here = (middle.year.to_numpy() == year) & (season == s)
            q90 = [np.quantile(ustar[sel], 0.9) for sel in (here & used, here & night) if sel.any()]
            if np.isclose(estimate[y, s], ustar_min):
                sources[y, s] = "minimum"
            elif np.isclose(estimate[y, s], q90).any():
                sources[y, s] = "90 % quantile (no plateau)"
                notes.append(f"u* threshold {year} {_SEASONS[s]}: no plateau found, hesseflux took the 90 % "
                             f"quantile of night-time u* ({estimate[y, s]:.3f} m s-1)")
    return sources


def _table(years, thresholds: np.ndarray, sources) -> pd.DataFrame:
    sources = np.broadcast_to(np.asarray(sources, dtype=object), thresholds.shape)
    rows = [{"year": year, "season": _SEASONS[s], "USTAR_THRESHOLD": float(thresholds[y, s]),
             "source": sources[y, s]} for y, year in enumerate(years) for s in range(4)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ gap-filling


def _gapfill(work: pd.DataFrame, fluxes: list[str], notes: list[str]) -> None:
    """MDS (Reichstein et al. 2005) of each flux: ``<flux>_F``, ``<flux>_F_QC`` and ``<flux>_F_UNC``."""
    import hesseflux

    values, flags = _for_hesseflux(work[fluxes + _MET])
    log: list[str] = []
    with _hesseflux(log):
        filled, quality = hesseflux.gapfill(values, flag=flags, undef=_UNDEF, longgap=LONG_GAP_DAYS)
        sd = hesseflux.gapfill(values, flag=flags, undef=_UNDEF, longgap=LONG_GAP_DAYS, err=True)
    notes.extend(f"hesseflux.gapfill: {line}" for line in log)
    month = work.index.month
    for name in fluxes:
        measured = work[name].notna().to_numpy()
        value = _undef_to_nan(filled[name])
        work[f"{name}_F"] = value
        work[f"{name}_F_QC"] = np.where(measured, 0, np.where(np.isnan(value), np.nan, quality[name].to_numpy()))
        work[f"{name}_F_UNC"] = _uncertainty(work, name, _undef_to_nan(sd[name]), month, notes)
        unfilled = int(np.isnan(value).sum())
        if unfilled:
            notes.append(f"{name}: {unfilled} periods not filled (gaps longer than {LONG_GAP_DAYS} days, or no "
                         f"similar conditions found); sums over them are NaN")


def _uncertainty(work, name, mds_sd, month, notes) -> np.ndarray:
    """1 sigma of each period: the random uncertainty of a measured one (``<name>_RANDUNC`` if there, else the
    MDS standard deviation, Lasslop et al. 2008), the MDS standard deviation of a filled one; where MDS found
    no similar conditions, the median MDS standard deviation of the same calendar month."""
    randunc_name = "FC_RANDUNC" if name == "NEE" else f"{name}_RANDUNC"
    measured = work[name].notna().to_numpy()
    unc = mds_sd.copy()
    if randunc_name in work:
        randunc = work[randunc_name].to_numpy()
        use = measured & np.isfinite(randunc)
        unc[use] = randunc[use]
    monthly = pd.Series(mds_sd).groupby(np.asarray(month)).transform("median").to_numpy()
    missing = np.isnan(unc) & np.isfinite(work[f"{name}_F"].to_numpy())
    if missing.any():
        unc[missing] = monthly[missing]
        notes.append(f"{name}: {int(missing.sum())} periods without an MDS uncertainty got their month's median")
    return unc


# ---------------------------------------------------------------------------------------------- partitioning


def _partition(work: pd.DataFrame, isday: np.ndarray, notes: list[str]) -> None:
    """RECO and GPP = RECO - NEE_F [umol m-2 s-1] by the night-time method (Reichstein et al. 2005: Lloyd &
    Taylor 1994 respiration, E0 from 15-day windows, Rref every 4 days) and the day-time method (Lasslop et al.
    2010: rectangular light response with VPD-limited beta, fitted to 4-day windows of day-time NEE).

    hesseflux.nee2gpp wants TA in K and VPD in Pa (its docstring); the fits see only measured, u*-filtered NEE
    (NaN without SW_IN: day or night unknown). RECO where TA is missing is filled by MDS."""
    import hesseflux

    data = pd.DataFrame({"FC": work["NEE"].where(work["SW_IN"].notna()), "TA": work["TA"] + 273.15,
                         "SW_IN": work["SW_IN"], "VPD": work["VPD"] * 100.0}, index=work.index)
    values, flags = _for_hesseflux(data)
    valid = data.notna().all(axis=1).to_numpy()
    for method, suffix, title in (("reichstein", "NT", "night-time (Reichstein et al. 2005)"),
                                  ("lasslop", "DT", "day-time (Lasslop et al. 2010)")):
        needs = {"night": ~isday} if method == "reichstein" else {"night": ~isday, "day": isday}
        short = [f"{int((valid & when).sum())} {name}-time" for name, when in needs.items()
                 if (valid & when).sum() < MIN_FIT_PERIODS]
        if short:
            notes.append(f"{title} partitioning skipped: only {' and '.join(short)} NEE periods with TA, SW_IN "
                         f"and VPD (needs {MIN_FIT_PERIODS}); RECO_{suffix} and GPP_{suffix} are empty")
            work[f"RECO_{suffix}"] = np.nan
            continue
        log: list[str] = []
        with _hesseflux(log):
            part = hesseflux.nee2gpp(values, flag=flags, isday=isday.copy(), undef=_UNDEF, method=method)
        notes.extend(f"hesseflux.nee2gpp {method}: {line}" for line in log)
        reco = _undef_to_nan(part["RECO"])
        if np.isnan(reco).all():
            notes.append(f"{title} partitioning found no fit: RECO_{suffix} and GPP_{suffix} are empty")
        work[f"RECO_{suffix}"] = reco
    _fill_reco(work, notes)
    for suffix in ("NT", "DT"):
        work[f"GPP_{suffix}"] = work[f"RECO_{suffix}"] - work["NEE_F"]


def _fill_reco(work: pd.DataFrame, notes: list[str]) -> None:
    """RECO where the model had no TA: MDS (hesseflux's workflow fills GPP and RECO likewise)."""
    import hesseflux

    names = [n for n in ("RECO_NT", "RECO_DT") if work[n].notna().any() and work[n].isna().any()]
    if not names:
        return
    values, flags = _for_hesseflux(work[names + _MET])
    log: list[str] = []
    with _hesseflux(log):
        filled, _ = hesseflux.gapfill(values, flag=flags, undef=_UNDEF, longgap=LONG_GAP_DAYS)
    for name in names:
        gaps = int(work[name].isna().sum())
        work[name] = _undef_to_nan(filled[name])
        notes.append(f"{name}: {gaps} periods without TA filled by MDS")


# ------------------------------------------------------------------------------------------------ sums


def _output_columns(work: pd.DataFrame) -> list[str]:
    names = ["NEE", "NEE_F", "NEE_F_QC", "NEE_F_UNC", "USTAR_THRESHOLD", "USTAR_FLAG",
             "RECO_NT", "GPP_NT", "RECO_DT", "GPP_DT"]
    return names + ([n for n in ("FCH4", "FCH4_F", "FCH4_F_QC", "FCH4_F_UNC")] if "FCH4" in work else [])


def _group_sum(values: pd.Series, key) -> pd.Series:
    """Sum per group; NaN when a value in the group is NaN (a sum over a hole is no sum)."""
    return values.groupby(key).sum().where(~values.isna().groupby(key).any())


def _sums(hh: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Sums [g C m-2] per pandas Period (``freq`` D, M or Y) of the periods' START in local standard time."""
    key = (hh.index - _STEP).tz_localize(None).to_period(freq)
    co2 = PERIOD_S * G_C_PER_UMOL
    out = pd.DataFrame({"N_PERIODS": hh["NEE_F"].groupby(key).size()})
    out["NEE"] = _group_sum(hh["NEE_F"] * co2, key)
    out["NEE_UNC"] = np.sqrt(_group_sum((hh["NEE_F_UNC"] * co2) ** 2, key))
    for name in ("GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT"):
        out[name] = _group_sum(hh[name] * co2, key)
    out["GPP_RECO_UNC"] = (out["GPP_NT"] - out["GPP_DT"]).abs() / 2
    out["NEE_FILLED"] = (hh["NEE_F_QC"] != 0).groupby(key).mean()
    if "FCH4_F" in hh:
        ch4 = PERIOD_S * G_C_PER_NMOL
        out["FCH4_C"] = _group_sum(hh["FCH4_F"] * ch4, key)
        out["FCH4_C_UNC"] = np.sqrt(_group_sum((hh["FCH4_F_UNC"] * ch4) ** 2, key))
        out["FCH4_FILLED"] = (hh["FCH4_F_QC"] != 0).groupby(key).mean()
    out.index.name = {"D": "day", "M": "month", "Y": "year"}[freq]
    return out


# ------------------------------------------------------------------------------------------------ output


def budget_table(result: CarbonBudget, by: str = "month") -> str:
    """The sums of ``result`` per ``by`` (day, month or year) as a text table, with the u* thresholds and notes."""
    tables = {"day": result.daily, "month": result.monthly, "year": result.yearly}
    if by not in tables:
        raise ValueError(f"budget table: by must be day, month or year, not {by!r}")
    table = tables[by]
    ch4 = "FCH4_C" in table
    head = (f"{by:<10} {'NEE':>8} {'+-':>6} {'GPP_NT':>8} {'RECO_NT':>8} {'GPP_DT':>8} {'RECO_DT':>8}"
            f" {'filled':>7}" + (f" {'CH4':>7} {'+-':>6} {'filled':>7}" if ch4 else ""))
    lines = [f"Carbon budget{' of ' + result.site_id if result.site_id else ''} per {by} [g C m-2] "
             f"(NEE = FC, no storage term; NT night-time, DT day-time partitioning)", head, "-" * len(head)]
    for period, row in table.iterrows():
        line = (f"{period!s:<10} {_num(row['NEE'], 8, 1)} {_num(row['NEE_UNC'], 6, 1)}"
                + "".join(f" {_num(row[n], 8, 1)}" for n in ("GPP_NT", "RECO_NT", "GPP_DT", "RECO_DT"))
                + f" {row['NEE_FILLED']:>7.0%}")
        if ch4:
            line += f" {_num(row['FCH4_C'], 7, 3)} {_num(row['FCH4_C_UNC'], 6, 3)} {row['FCH4_FILLED']:>7.0%}"
        lines.append(line)
    thresholds = ", ".join(f"{r.year} {r.season} {r.USTAR_THRESHOLD:.3f}"
                           for r in result.ustar_thresholds.itertuples())
    lines += ["", f"u* thresholds [m s-1]: {thresholds}"]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def _num(value: float, width: int, decimals: int) -> str:
    return f"{'n/a':>{width}}" if pd.isna(value) else f"{value:>{width}.{decimals}f}"


def plot_cumulative(result: CarbonBudget, path: str | Path) -> Path:
    """Cumulative NEE, GPP and RECO (both partitionings) [g C m-2] over the frame, NEE with its 1-sigma band
    (root of the cumulated squares, as the sums), and CH4 in a second panel if measured; PNG or SVG by the
    suffix of ``path``. Periods that could not be filled count as 0."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"plot: {path.name} has no .png or .svg suffix")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hh = result.half_hourly
    x = hh.index.tz_localize(None)
    co2 = result.period_s * G_C_PER_UMOL
    ch4 = "FCH4_F" in hh
    fig = Figure(figsize=(9, 7 if ch4 else 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if ch4 else 1, 1, sharex=True, squeeze=False)[:, 0]
    nee = np.nancumsum(hh["NEE_F"].to_numpy() * co2)
    band = np.sqrt(np.nancumsum((hh["NEE_F_UNC"].to_numpy() * co2) ** 2))
    ax = axes[0]
    ax.fill_between(x, nee - band, nee + band, color="k", alpha=0.25, linewidth=0, label="NEE ± 1σ")
    ax.plot(x, nee, color="k", label="NEE")
    for name, color, style in (("GPP_NT", "tab:green", "-"), ("GPP_DT", "tab:green", "--"),
                               ("RECO_NT", "tab:red", "-"), ("RECO_DT", "tab:red", "--")):
        ax.plot(x, np.nancumsum(hh[name].to_numpy() * co2), color=color, linestyle=style, label=name)
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_ylabel("cumulative CO2-C [g C m-2]")
    ax.legend(loc="upper left", ncols=3, fontsize="small")
    title = f"Carbon budget{' of ' + result.site_id if result.site_id else ''}"
    ax.set_title(f"{title} (NT night-time, DT day-time partitioning)")
    if ch4:
        c = np.nancumsum(hh["FCH4_F"].to_numpy() * result.period_s * G_C_PER_NMOL)
        cband = np.sqrt(np.nancumsum((hh["FCH4_F_UNC"].to_numpy() * result.period_s * G_C_PER_NMOL) ** 2))
        axes[1].fill_between(x, c - cband, c + cband, color="tab:purple", alpha=0.25, linewidth=0)
        axes[1].plot(x, c, color="tab:purple", label="CH4-C")
        axes[1].set_ylabel("cumulative CH4-C [g C m-2]")
        axes[1].legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("local standard time")
    fig.savefig(path, dpi=100)
    return path
