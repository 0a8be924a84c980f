"""Scientist plots of a period frame and a diag frame (shapes: :mod:`collector.science`).

Every plot is a function returning a :class:`matplotlib.figure.Figure`, built without pyplot (no
display, no global state); :func:`save` writes it as PNG or SVG; :data:`PLOTS` names them. Times are
drawn in the frame's local standard time, the UTC offset named in the axis label; titles name the
station, the site and the time span. Bad input raises :class:`ValueError` with a one-line reason
naming what is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

PNG_DPI = 110
#: QC flag (Mauder & Foken 2004: 0 best, 1 budgets, 2 discard) -> (legend label, colour)
QC_CLASSES = {0: ("flag 0", "#2ca02c"), 1: ("flag 1", "#ff7f0e"), 2: ("flag 2", "#d62728")}
NO_FLAG = ("no flag", "#9e9e9e")
FLUXES = ("FC", "LE", "H")
FETCH = ("FETCH_MAX", "FETCH_70", "FETCH_90")
FETCH_COLOURS = {"FETCH_MAX": "C2", "FETCH_70": "C0", "FETCH_90": "C3"}
WIDTH_IN = 11.0
#: an artist with more points than this is drawn without markers (lines) and as a bitmap inside an SVG
#: (a year of one-minute diag records would otherwise make a 450 MB SVG)
DENSE = 5000


# --- checks and labels ---

def _checked(frame: object, what: str = "period frame") -> pd.DataFrame:
    """``frame`` sorted by time, or ValueError: not a DataFrame, no rows, no tz-aware fixed-offset index."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"the {what} must be a pandas DataFrame, not {type(frame).__name__}")
    if len(frame) == 0:
        raise ValueError(f"the {what} is empty (no rows)")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError(f"the {what} needs a tz-aware DatetimeIndex in local standard time")
    offsets = (index.tz_localize(None) - index.tz_convert("UTC").tz_localize(None)).unique()
    if len(offsets) > 1:
        raise ValueError(f"the {what}'s index changes its UTC offset ({index.tz}): local standard time has no "
                         f"daylight saving")
    return frame if index.is_monotonic_increasing else frame.sort_index(kind="stable")


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str = "period frame") -> None:
    """ValueError naming the columns that are absent or hold no value at all."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"the {what} lacks column{'s' * (len(absent) > 1)} {', '.join(absent)}")
    empty = [c for c in columns if not frame[c].notna().any()]
    if empty:
        raise ValueError(f"the {what} has no values in {', '.join(empty)}")


def _variables(frame: pd.DataFrame, variables: str | Sequence[str] | None) -> list[str]:
    """The chosen variables, or FC, LE, H (those with values) plus FCH4 when it has values."""
    if variables is None:
        chosen = [v for v in (*FLUXES, "FCH4") if _has_values(frame, v)]
        if not chosen:
            raise ValueError("the period frame has no values in any of FC, LE, H, FCH4")
        return chosen
    chosen = [variables] if isinstance(variables, str) else list(variables)
    if not chosen:
        raise ValueError("no variables chosen")
    _require(frame, chosen)
    return chosen


def _period_s(frame: pd.DataFrame) -> float:
    """The averaging period [s]: ``attrs["period_s"]``, else the median step of the index."""
    period = frame.attrs.get("period_s")
    if period:
        return float(period)
    if len(frame) > 1:
        return float(frame.index.to_series().diff().median().total_seconds())
    raise ValueError("the period frame has one row and no attrs['period_s']: its averaging period is unknown")


def _wall(index: pd.DatetimeIndex, tz=None) -> pd.DatetimeIndex:
    """Local standard (wall-clock) times as naive datetimes, what matplotlib draws without shifting."""
    return (index.tz_convert(tz) if tz is not None else index).tz_localize(None)


def _offset(index: pd.DatetimeIndex) -> str:
    """``UTC-06:00`` for the index's fixed offset."""
    total = int(index[0].utcoffset().total_seconds())
    sign, total = ("-" if total < 0 else "+"), abs(total)
    return f"UTC{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def _time_label(index: pd.DatetimeIndex) -> str:
    return f"local standard time ({_offset(index)})"


def _unit(frame: pd.DataFrame, column: str) -> str:
    return (frame.attrs.get("units") or {}).get(column, "")


def _label(frame: pd.DataFrame, column: str, text: str | None = None) -> str:
    unit = _unit(frame, column)
    return f"{text or column} [{unit}]" if unit else (text or column)


def _title(what: str, attrs: dict, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """'<station> / <site>: <what>' over '<start> to <end> local standard time (UTC-06:00)'."""
    names = [str(attrs[k]) for k in ("station", "site_id") if attrs.get(k)]
    where = " / ".join(dict.fromkeys(names)) or "unknown station"
    offset = _offset(pd.DatetimeIndex([start]))
    return f"{where}: {what}\n{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} local standard time ({offset})"


def _frame_title(what: str, frame: pd.DataFrame) -> str:
    """Title over the frame's span: from the first period's start to the last period's end."""
    start = frame.index[0] - pd.Timedelta(seconds=_period_s(frame))
    return _title(what, frame.attrs, start, frame.index[-1])


def _date_axis(axis) -> None:
    locator = mdates.AutoDateLocator()
    axis.set_major_locator(locator)
    axis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _colours(n: int) -> list:
    """n distinct colours: tab10 up to ten, viridis in order beyond."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")


def _break_gaps(x: np.ndarray, y: np.ndarray, factor: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A NaN after every step longer than ``factor`` times the median step, so lines do not bridge outages."""
    if len(x) < 3:
        return x, y
    step = np.diff(x)
    positive = step[step > step.dtype.type(0)]  # records sharing a time do not make every step a gap
    if len(positive) == 0:
        return x, y
    at = np.flatnonzero(step > factor * np.median(positive)) + 1
    return np.insert(x, at, x[at - 1]), np.insert(y.astype(float), at, np.nan)


# --- plots ---

def timeseries(frame: pd.DataFrame, variables: str | Sequence[str] | None = None) -> Figure:
    """Time series, one axes per variable (default FC, LE, H, and FCH4 when measured), points
    coloured by ``<VAR>_SSITC_TEST``: 0 green, 1 orange, 2 red, no flag grey."""
    frame = _checked(frame)
    chosen = _variables(frame, variables)
    x = _wall(frame.index).to_numpy()
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 2.2 * len(chosen)), layout="constrained")
    axes = fig.subplots(len(chosen), 1, sharex=True, squeeze=False)[:, 0]
    for ax, var in zip(axes, chosen, strict=True):
        y = frame[var].to_numpy(dtype=float)
        flag_column = f"{var}_SSITC_TEST"
        flag = frame[flag_column].to_numpy(dtype=float) if flag_column in frame else np.full(len(y), np.nan)
        valued = np.isfinite(y)
        classes = [(*QC_CLASSES[k], flag == k) for k in QC_CLASSES]
        classes.append((*NO_FLAG, ~np.isin(flag, list(QC_CLASSES))))
        for label, colour, mask in classes:
            sel = mask & valued
            if sel.any():
                ax.scatter(x[sel], y[sel], s=5, color=colour, linewidths=0, label=label, rasterized=sel.sum() > DENSE)
        if not valued.any():
            _no_data(ax)
        ax.set_ylabel(_label(frame, var))
        ax.grid(alpha=0.3)
    _date_axis(axes[-1].xaxis)
    axes[-1].set_xlabel(_time_label(frame.index))
    handles = [Line2D([], [], ls="", marker="o", color=c, label=lab) for lab, c in (*QC_CLASSES.values(), NO_FLAG)]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, title="QC flag (<VAR>_SSITC_TEST)")
    fig.suptitle(_frame_title("time series", frame))
    return fig


def diurnal(frame: pd.DataFrame, variables: str | Sequence[str] | None = None, *, band: bool = False,
            min_count: int = 3) -> Figure:
    """Mean diurnal cycle per month, one axes per variable (default as :func:`timeseries`).

    Periods are binned by their mid-time (end − period/2) in local standard time; a bin with fewer
    than ``min_count`` values is left out. ``band``: shade mean ± one standard deviation.
    """
    frame = _checked(frame)
    chosen = _variables(frame, variables)
    period = _period_s(frame)
    mid = _wall(frame.index) - pd.Timedelta(seconds=period / 2)
    slot = np.floor((mid - mid.normalize()) / pd.Timedelta(seconds=period))
    hour = np.asarray((slot + 0.5) * period / 3600, dtype=float)  # bin centre [h]
    month = np.asarray(mid.year * 100 + mid.month)
    stats = frame[chosen].groupby([month, hour]).agg(["mean", "std", "count"])
    months = list(dict.fromkeys(stats.index.get_level_values(0)))
    colours = dict(zip(months, _colours(len(months)), strict=True))
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 2.6 * len(chosen)), layout="constrained")
    axes = fig.subplots(len(chosen), 1, sharex=True, squeeze=False)[:, 0]
    for ax, var in zip(axes, chosen, strict=True):
        drawn = 0
        for m in months:
            s = stats.loc[m, var]
            s = s[s["count"] >= min_count]
            if s.empty or not s["mean"].notna().any():
                continue
            h, mean, std = s.index.to_numpy(float), s["mean"].to_numpy(float), s["std"].to_numpy(float)
            ax.plot(h, mean, color=colours[m], marker=".", ms=3, label=f"{m // 100}-{m % 100:02d}")
            if band:
                ax.fill_between(h, mean - std, mean + std, color=colours[m], alpha=0.15, linewidth=0)
            drawn += 1
        if drawn:
            ax.legend(title="month", fontsize="small", ncols=min(drawn, 6), loc="best")
        else:
            _no_data(ax)
        ax.set_ylabel(_label(frame, var))
        ax.grid(alpha=0.3)
    axes[-1].set_xlim(0, 24)
    axes[-1].set_xticks(range(0, 25, 3))
    axes[-1].set_xlabel(f"hour of day (period mid-time), {_time_label(frame.index)}")
    what = "mean diurnal cycle per month" + (" (± 1 standard deviation)" if band else "")
    fig.suptitle(_frame_title(what, frame))
    return fig


def fingerprint(frame: pd.DataFrame, variable: str = "FC", *, robust: bool = True) -> Figure:
    """Day (y) × time of day (x) image of ``variable``; gaps blank. ``robust``: the colour range is
    the 1st..99th percentile (one spike does not wash out the image); diverging around 0 when the
    values take both signs."""
    frame = _checked(frame)
    _require(frame, [variable])
    period = _period_s(frame)
    per_day = 86400 / period
    if per_day != int(per_day):
        raise ValueError(f"the averaging period ({period:g} s) does not divide a day")
    mid = _wall(frame.index) - pd.Timedelta(seconds=period / 2)
    day = mid.normalize()
    row = np.asarray((day - day[0]) // pd.Timedelta(days=1), dtype=int)
    col = np.asarray((mid - day) // pd.Timedelta(seconds=period), dtype=int)
    values = frame[variable].to_numpy(dtype=float)
    grid = np.full((row[-1] + 1, int(per_day)), np.nan)
    grid[row, col] = values
    lo, hi = np.nanpercentile(values, [1, 99]) if robust else (np.nanmin(values), np.nanmax(values))
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if lo < 0 < hi:
        cmap, norm = colormaps["RdBu_r"], TwoSlopeNorm(0.0, lo, hi)
    else:
        cmap, norm = colormaps["viridis"], Normalize(lo, hi)
    first = mdates.date2num(day[0].to_pydatetime())
    fig = Figure(figsize=(WIDTH_IN, 7.0), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap.with_extremes(bad="white"), norm=norm, aspect="auto",
                      origin="lower", interpolation="nearest", extent=(0, 24, first, first + grid.shape[0]))
    ax.yaxis_date()
    _date_axis(ax.yaxis)
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel(f"time of day (period mid-time), {_time_label(frame.index)}")
    ax.set_ylabel(f"day, {_time_label(frame.index)}")
    fig.colorbar(image, ax=ax, label=_label(frame, variable), extend="both" if robust else "neither")
    fig.suptitle(_frame_title(f"fingerprint of {variable}", frame))
    return fig


def _met_column(frame: pd.DataFrame, base: str) -> tuple[pd.Series | None, str]:
    """``base`` itself, else the mean of its qualified columns (``G_1``, ``G_2``, ...) with values."""
    if _has_values(frame, base):
        return frame[base], base
    qualified = [c for c in frame.columns if re.fullmatch(rf"{base}(_\d{{1,3}}){{1,3}}", str(c))
                 and frame[c].notna().any()]
    if not qualified:
        return None, base
    return frame[qualified].mean(axis=1), f"mean of {', '.join(qualified)}"


def energy_balance(frame: pd.DataFrame) -> Figure:
    """Energy-balance closure: H + LE against the available energy NETRAD − G (NETRAD alone when no
    G was measured), over the periods holding all of them.

    OLS fit H + LE = a·(Rn − G) + b with R², and the closure ratio
    EBR = Σ(H + LE) / Σ(Rn − G) (Wilson et al. 2002, Agric. For. Meteorol. 113, 223-243).
    """
    frame = _checked(frame)
    netrad, rn_name = _met_column(frame, "NETRAD")
    if netrad is None:
        raise ValueError("the period frame has no net radiation (NETRAD): the energy balance needs it")
    _require(frame, ["H", "LE"])
    g, g_name = _met_column(frame, "G")
    available = netrad - g if g is not None else netrad
    turbulent = frame["H"] + frame["LE"]
    ok = np.isfinite(available.to_numpy(float)) & np.isfinite(turbulent.to_numpy(float))
    x, y = available.to_numpy(float)[ok], turbulent.to_numpy(float)[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(f"only {len(x)} periods hold H, LE, NETRAD{' and G' if g is not None else ''} "
                         f"with varying available energy: the energy balance needs at least 3")
    slope, intercept = np.polyfit(x, y, 1)
    r2 = float(np.corrcoef(x, y)[0, 1] ** 2)
    ebr = float(y.sum() / x.sum()) if x.sum() else float("nan")
    unit = _unit(frame, "H") or _unit(frame, "NETRAD")
    fig = Figure(figsize=(7.5, 7.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=6, alpha=0.5, color="C0", linewidths=0, label=f"periods (n = {len(x)})",
               rasterized=len(x) > DENSE)
    lims = np.array([min(x.min(), y.min()), max(x.max(), y.max())])
    ax.plot(lims, lims, color="k", ls="--", lw=1, label="1:1")
    ax.plot(lims, slope * lims + intercept, color="C3", lw=1.5,
            label=f"OLS: y = {slope:.3f} x {intercept:+.1f} {unit}, R² = {r2:.3f}")
    ax.legend(loc="upper left", title=f"closure ratio Σ(H+LE)/Σ(Rn−G) = {ebr:.3f}")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    if g is not None:
        ax.set_xlabel(f"available energy {rn_name} − {g_name} [{unit}]")
        what = f"energy-balance closure, EBR = {ebr:.3f}"
    else:
        ax.set_xlabel(f"available energy {rn_name} (no G) [{unit}]")
        what = f"energy-balance closure, EBR = {ebr:.3f}; G missing: available energy is {rn_name} alone"
    ax.set_ylabel(f"turbulent flux H + LE [{unit}]")
    fig.suptitle(_frame_title(what, frame))
    return fig


def footprint(frame: pd.DataFrame, *, sector_deg: float = 10.0, min_count: int = 3) -> Figure:
    """Footprint climatology: per wind-direction sector (centred on 0°, ``sector_deg`` wide) the median
    of FETCH_MAX, FETCH_70 and FETCH_90 (those present) on a polar plot; a sector with fewer than
    ``min_count`` values of a column is left out for it."""
    frame = _checked(frame)
    _require(frame, ["WD"])
    fetch = [c for c in FETCH if _has_values(frame, c)]
    if not fetch:
        raise ValueError(f"the period frame has no values in any of {', '.join(FETCH)}")
    n_sectors = 360 / sector_deg
    if sector_deg <= 0 or n_sectors != int(n_sectors):
        raise ValueError(f"sector_deg ({sector_deg:g}) must divide 360")
    n_sectors = int(n_sectors)
    sector = np.floor(((frame["WD"].to_numpy(float) + sector_deg / 2) % 360) / sector_deg)
    grouped = frame[fetch].groupby(sector)  # NaN directions drop out
    medians = grouped.median().where(grouped.count() >= min_count).reindex(np.arange(n_sectors, dtype=float))
    if not medians.notna().any().any():
        raise ValueError(f"no {sector_deg:g}° sector holds {min_count} periods with WD and {' or '.join(fetch)}")
    theta = np.deg2rad(np.arange(n_sectors + 1) * sector_deg)  # closed: the first sector again at the end
    fig = Figure(figsize=(8.0, 8.0), layout="constrained")
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(-1)
    for col in fetch:
        r = medians[col].to_numpy(float)
        ax.plot(theta, np.append(r, r[0]), color=FETCH_COLOURS[col], marker="o", ms=3, label=f"median {col}")
    ax.set_rlabel_position(135)
    ax.legend(loc="upper right", bbox_to_anchor=(1.12, 1.08), fontsize="small")
    unit = _unit(frame, fetch[0]) or "m"
    ax.set_xlabel(f"median upwind distance [{unit}] per {sector_deg:g}° sector of wind direction WD "
                  f"[{_unit(frame, 'WD') or 'deg'}, from north]")
    fig.suptitle(_frame_title("footprint climatology (Kljun et al. 2004 distances)", frame))
    return fig


def _share(diag: pd.DataFrame, part: str, whole: str) -> pd.Series | None:
    """100 · part / whole where whole > 0; None when a column is absent."""
    if part not in diag.columns or whole not in diag.columns:
        return None
    return 100 * diag[part] / diag[whole].where(diag[whole] > 0)


def health(diag: pd.DataFrame | None = None, frame: pd.DataFrame | None = None, *,
           sources: Sequence[str] | None = None) -> Figure:
    """Instrument health over time: from the diag frame per ``source`` the mean signal strength
    (SIGNAL_MEAN), the flagged share 100·FLAGGED_SAMPLES/SAMPLES_RECEIVED, the missing share
    100·SAMPLES_MISSING/SAMPLES_EXPECTED and CHECKSUM_ERRORS; from the period frame the spikes
    (VM97_HARD_FLAGS). Only panels with data are drawn; lines break at outages."""
    if diag is None and frame is None:
        raise ValueError("give a diag frame and/or a period frame")
    tz, frames = None, []
    if frame is not None:
        frame = _checked(frame)
        tz = frame.index.tz
        frames.append(frame)
    panels: list[tuple[str, str, list[tuple[str, np.ndarray, np.ndarray]]]] = []  # label, meaning, lines
    if diag is not None and len(diag) > 0:  # load_diag() answers an empty frame when no record came
        diag = _checked(diag, "diag frame")
        _require(diag, ["source"], "diag frame")
        if sources is not None:
            diag = diag[diag["source"].isin(list(sources))]
        tz = diag.index.tz if tz is None else tz
        frames.append(diag)
        wanted = [("signal [%]", "mean signal strength SIGNAL_MEAN", diag.get("SIGNAL_MEAN")),
                  ("flagged [%]", "flagged samples 100·FLAGGED_SAMPLES/SAMPLES_RECEIVED",
                   _share(diag, "FLAGGED_SAMPLES", "SAMPLES_RECEIVED")),
                  ("missing [%]", "missing samples 100·SAMPLES_MISSING/SAMPLES_EXPECTED",
                   _share(diag, "SAMPLES_MISSING", "SAMPLES_EXPECTED")),
                  ("errors [count]", "CHECKSUM_ERRORS per record", diag.get("CHECKSUM_ERRORS"))]
        x_all = _wall(diag.index, tz).to_numpy()
        for label, meaning, series in wanted:
            if series is None:
                continue
            values = series.to_numpy(float)
            lines = []
            for source, rows in diag.groupby("source", sort=True).indices.items():
                ok = rows[np.isfinite(values[rows])]
                if len(ok):
                    lines.append((str(source), *_break_gaps(x_all[ok], values[ok])))
            if lines:
                panels.append((label, meaning, lines))
    if frame is not None and _has_values(frame, "VM97_HARD_FLAGS"):
        values = frame["VM97_HARD_FLAGS"].to_numpy(float)
        ok = np.isfinite(values)
        x = _wall(frame.index).to_numpy()[ok]
        panels.append(("flags [count]", "spikes: VM97_HARD_FLAGS per period (Vickers & Mahrt 1997)",
                       [("VM97_HARD_FLAGS", *_break_gaps(x, values[ok]))]))
    if not panels:
        raise ValueError("nothing to plot: no SIGNAL_MEAN, FLAGGED_SAMPLES/SAMPLES_RECEIVED, "
                         "SAMPLES_MISSING/SAMPLES_EXPECTED or CHECKSUM_ERRORS values in the diag frame, "
                         "no VM97_HARD_FLAGS in the period frame")
    names = sorted({name for *_, lines in panels for name, *_ in lines})
    colours = dict(zip(names, _colours(len(names)), strict=True))
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 2.0 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, meaning, lines) in zip(axes, panels, strict=True):
        for name, x, y in lines:
            dense = len(x) > DENSE
            ax.plot(x, y, color=colours[name], lw=0.8, marker="" if dense else ".", ms=2, label=name, rasterized=dense)
        ax.set_ylabel(label)
        ax.set_title(meaning, loc="left", fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    _date_axis(axes[-1].xaxis)
    starts = [diag.index[0].tz_convert(tz)] if diag is not None and len(diag) else []
    if frame is not None:
        starts.append(frame.index[0] - pd.Timedelta(seconds=_period_s(frame)))
    end = max(f.index[-1].tz_convert(tz) for f in frames)
    axes[-1].set_xlabel(_time_label(pd.DatetimeIndex([end])))
    attrs = {**(frames[-1].attrs if len(frames) > 1 else {}), **frames[0].attrs}  # the period frame's first
    fig.suptitle(_title("instrument health", attrs, min(starts), end))
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG (``PNG_DPI``) or SVG, chosen by the suffix of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        fig.savefig(path, format="png", dpi=PNG_DPI)
    elif suffix == ".svg":
        fig.savefig(path, format="svg", metadata={"Date": None})
    else:
        raise ValueError(f"cannot save {path.name}: the suffix must be .png or .svg")
    return path


#: plot name -> function; ``health`` takes the diag frame first, the others the period frame
PLOTS: dict[str, Callable[..., Figure]] = {
    "timeseries": timeseries,
    "diurnal": diurnal,
    "fingerprint": fingerprint,
    "energy_balance": energy_balance,
    "footprint": footprint,
    "health": health,
}
