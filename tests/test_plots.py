"""collector.science.plots on synthetic period and diag frames: panels, series, labels, QC colours,
local standard time, saved PNG/SVG, and the one-line errors on bad input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from matplotlib import dates as mdates
from matplotlib.image import imread

from collector.science import plots

TZ = timezone(timedelta(hours=-6))
DAYS = 40  # 2024-06-10 .. 2024-07-19: two months
UNITS = {"FC": "umol m-2 s-1", "FCH4": "nmol m-2 s-1", "LE": "W m-2", "H": "W m-2", "NETRAD": "W m-2",
         "G": "W m-2", "WD": "deg", "FETCH_MAX": "m", "FETCH_70": "m", "FETCH_90": "m", "VM97_HARD_FLAGS": "1",
         "FC_SSITC_TEST": "1", "LE_SSITC_TEST": "1", "H_SSITC_TEST": "1"}


def make_frame(days: int = DAYS, seed: int = 1) -> pd.DataFrame:
    """Half-hours ending 2024-06-10 00:30 .. in UTC-6: a sunny diurnal cycle, noise, flags, gaps."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-06-10 00:30", periods=days * 48, freq="30min", tz=TZ, name="TIMESTAMP_END")
    n = len(index)
    mid = index - pd.Timedelta(minutes=15)
    hour = np.asarray(mid.hour + mid.minute / 60)
    sun = np.clip(np.sin(np.pi * (hour - 6) / 12), 0, None)
    netrad = 650 * sun - 60 + rng.normal(0, 15, n)
    g = 0.1 * netrad + rng.normal(0, 5, n)
    h = 0.35 * (netrad - g) + rng.normal(0, 15, n)
    le = 0.45 * (netrad - g) + rng.normal(0, 15, n)
    fc = 4 - 22 * sun + rng.normal(0, 2, n)
    wd = (rng.normal(200, 50, n)) % 360
    fetch_max = rng.gamma(4, 25, n)

    def flags():
        f = rng.choice([0.0, 1.0, 2.0], n, p=[0.7, 0.2, 0.1])
        f[rng.random(n) < 0.03] = np.nan  # no flag
        return f

    frame = pd.DataFrame({"FC": fc, "LE": le, "H": h, "FC_SSITC_TEST": flags(), "LE_SSITC_TEST": flags(),
                          "H_SSITC_TEST": flags(), "NETRAD": netrad, "G": g, "WD": wd, "FETCH_MAX": fetch_max,
                          "FETCH_70": 3 * fetch_max, "FETCH_90": 6 * fetch_max,
                          "VM97_HARD_FLAGS": rng.poisson(0.3, n).astype(float)}, index=index)
    for col in ("FC", "LE", "H", "WD", "FETCH_MAX"):
        frame.loc[rng.random(n) < 0.05, col] = np.nan
    frame.iloc[500:600, frame.columns.get_loc("FC")] = np.nan  # two days without FC
    frame.iloc[1000:1010] = np.nan  # a power cut: every column
    frame.attrs.update(units=dict(UNITS), station="tower-a", site_id="US-Xyz", time_zone="UTC-06:00",
                       utc_offset="UTC-06:00", period_s=1800)
    return frame


def make_diag(days: int = DAYS, seed: int = 2) -> pd.DataFrame:
    """Records every 10 min from 'sonic' (no signal strength) and 'irga', a 'station' row each hour, a 6-h outage."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-06-10 00:10", periods=days * 144, freq="10min", tz=TZ, name="TIME")
    times = times[(times < "2024-06-20 00:00-06:00") | (times >= "2024-06-20 06:00-06:00")]
    n = len(times)
    parts = []
    for source, signal in (("sonic", np.full(n, np.nan)), ("irga", 95 - 10 * rng.random(n))):
        parts.append(pd.DataFrame({"source": source, "SIGNAL_MEAN": signal, "SAMPLES_EXPECTED": 12000.0,
                                   "SAMPLES_RECEIVED": 12000.0 - rng.integers(0, 30, n),
                                   "FLAGGED_SAMPLES": rng.integers(0, 120, n).astype(float),
                                   "CHECKSUM_ERRORS": rng.poisson(0.2, n).astype(float)}, index=times))
        parts[-1]["SAMPLES_MISSING"] = 12000.0 - parts[-1]["SAMPLES_RECEIVED"]
    hourly = times[times.minute == 10]
    parts.append(pd.DataFrame({"source": "station", "CPU_TEMP_DEGC": 45.0}, index=hourly))
    diag = pd.concat(parts).sort_index(kind="stable")
    diag.index.name = "TIME"
    diag.attrs.update(units={"SIGNAL_MEAN": "%", "CHECKSUM_ERRORS": "1"}, station="tower-a", time_zone="UTC-06:00")
    return diag


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def diag() -> pd.DataFrame:
    return make_diag()


def collections_with(ax, label: str):
    return [c for c in ax.collections if c.get_label() == label]


def figure_of(name: str, frame: pd.DataFrame, diag: pd.DataFrame):
    return plots.PLOTS[name](diag, frame) if name == "health" else plots.PLOTS[name](frame)


# --- timeseries ---

def test_timeseries_one_panel_per_flux_with_units_and_station(frame):
    fig = plots.timeseries(frame)
    assert len(fig.axes) == 3
    for ax, var in zip(fig.axes, ("FC", "LE", "H"), strict=True):
        assert UNITS[var] in ax.get_ylabel() and var in ax.get_ylabel()
        # one scatter per QC class present: 0, 1, 2 and 'no flag'
        assert sorted(c.get_label() for c in ax.collections) == ["flag 0", "flag 1", "flag 2", "no flag"]
        assert sum(len(c.get_offsets()) for c in ax.collections) == frame[var].notna().sum()
    title = fig.get_suptitle()
    assert "tower-a" in title and "US-Xyz" in title and "time series" in title
    assert "2024-06-10 00:00 to 2024-07-20 00:00" in title and "UTC-06:00" in title
    assert fig.axes[-1].get_xlabel() == "local standard time (UTC-06:00)"


def test_timeseries_adds_fch4_only_when_measured(frame):
    with_ch4 = frame.assign(FCH4=np.where(np.arange(len(frame)) % 3, 15.0, np.nan))
    fig = plots.timeseries(with_ch4)
    assert len(fig.axes) == 4
    assert "nmol m-2 s-1" in fig.axes[3].get_ylabel()
    assert collections_with(fig.axes[3], "no flag")  # FCH4 without a QC column: all grey
    assert len(fig.axes[3].collections) == 1
    assert len(plots.timeseries(frame.assign(FCH4=np.nan)).axes) == 3  # column there, never measured


def test_timeseries_red_points_are_the_flag_2_periods(frame):
    fig = plots.timeseries(frame)
    for ax, var in zip(fig.axes, ("FC", "LE", "H"), strict=True):
        flag = frame[f"{var}_SSITC_TEST"]
        valued = frame[var].notna()
        (red,) = collections_with(ax, "flag 2")
        assert len(red.get_offsets()) == ((flag == 2) & valued).sum() > 0
        assert np.allclose(red.get_facecolor()[0][:3], (0xD6 / 255, 0x27 / 255, 0x28 / 255))
        assert np.allclose(np.sort(red.get_offsets()[:, 1]), np.sort(frame.loc[(flag == 2) & valued, var]))
        (grey,) = collections_with(ax, "no flag")
        assert len(grey.get_offsets()) == (flag.isna() & valued).sum()


def test_timeseries_draws_local_standard_time_not_utc(frame):
    """The first point sits at 00:30 local standard time (06:30 UTC would be a 6-hour shift)."""
    fig = plots.timeseries(frame, ["FC"])
    xs = np.concatenate([c.get_offsets()[:, 0] for c in fig.axes[0].collections])
    first = frame["FC"].first_valid_index().tz_localize(None)
    assert xs.min() == pytest.approx(mdates.date2num(first.to_pydatetime()))


# --- diurnal ---

def test_diurnal_one_line_per_month_with_mid_time_bins(frame):
    fig = plots.diurnal(frame, ["FC", "H"], band=True)
    assert len(fig.axes) == 2
    for ax, var in zip(fig.axes, ("FC", "H"), strict=True):
        assert [line.get_label() for line in ax.get_lines()] == ["2024-06", "2024-07"]
        assert len(ax.collections) == 2  # one ± std band per month
        assert UNITS[var] in ax.get_ylabel()
    june = fig.axes[0].get_lines()[0]
    hours = june.get_xdata()
    assert hours[0] == 0.25 and hours[-1] == 23.75 and len(hours) == 48
    # the 12:00-12:30 period (mid-time 12:15) in June, computed here by hand
    sel = (frame.index.month == 6) & (frame.index.hour == 12) & (frame.index.minute == 30)
    assert june.get_ydata()[list(hours).index(12.25)] == pytest.approx(frame.loc[sel, "FC"].mean())
    assert "UTC-06:00" in fig.axes[-1].get_xlabel()
    assert "tower-a" in fig.get_suptitle()
    assert all(len(ax.collections) == 0 for ax in plots.diurnal(frame).axes)  # no band by default


def test_diurnal_drops_bins_below_min_count(frame):
    fig = plots.diurnal(frame, ["FC"], min_count=10_000)
    assert fig.axes[0].get_lines() == [] and fig.axes[0].texts[0].get_text() == "no data"


# --- fingerprint ---

def test_fingerprint_grid_colour_bar_and_gaps(frame):
    fig = plots.fingerprint(frame)
    assert len(fig.axes) == 2  # the image and its colour bar
    ax, bar = fig.axes
    (image,) = ax.get_images()
    grid = image.get_array()
    assert grid.shape == (DAYS, 48)
    assert grid[0, 0] == pytest.approx(frame["FC"].iloc[0])  # ending 00:30 on day 0
    assert grid[3, 25] == pytest.approx(frame["FC"].iloc[3 * 48 + 25])
    assert grid.mask.sum() == frame["FC"].isna().sum()  # gaps blank, nothing else
    assert "umol m-2 s-1" in bar.get_ylabel()
    assert "UTC-06:00" in ax.get_xlabel() and "UTC-06:00" in ax.get_ylabel()
    assert "tower-a" in fig.get_suptitle() and "FC" in fig.get_suptitle()


# --- energy balance ---

def test_energy_balance_fit_and_closure_ratio(frame):
    fig = plots.energy_balance(frame)
    (ax,) = fig.axes
    assert len(ax.collections) == 1 and len(ax.get_lines()) == 2  # the periods, 1:1, OLS
    ok = frame[["H", "LE", "NETRAD", "G"]].notna().all(axis=1)
    x = (frame.NETRAD - frame.G)[ok].to_numpy()
    y = (frame.H + frame.LE)[ok].to_numpy()
    assert len(ax.collections[0].get_offsets()) == ok.sum()
    slope, intercept = np.polyfit(x, y, 1)
    ebr = y.sum() / x.sum()
    assert 0.7 < ebr < 0.9 and 0.7 < slope < 0.9
    texts = [t.get_text() for t in ax.get_legend().get_texts()] + [ax.get_legend().get_title().get_text()]
    assert any(f"y = {slope:.3f} x {intercept:+.1f} W m-2" in t for t in texts)
    assert any(f"R² = {np.corrcoef(x, y)[0, 1] ** 2:.3f}" in t for t in texts)
    assert f"EBR = {ebr:.3f}" in fig.get_suptitle() and "G missing" not in fig.get_suptitle()
    assert "W m-2" in ax.get_xlabel() and "W m-2" in ax.get_ylabel() and "tower-a" in fig.get_suptitle()


def test_energy_balance_without_g_uses_netrad_and_says_so(frame):
    fig = plots.energy_balance(frame.drop(columns="G"))
    assert "G missing: available energy is NETRAD alone" in fig.get_suptitle()
    ok = frame[["H", "LE", "NETRAD"]].notna().all(axis=1)
    assert len(fig.axes[0].collections[0].get_offsets()) == ok.sum()


def test_energy_balance_averages_qualified_g_plates(frame):
    plates = frame.drop(columns="G").assign(G_1=frame.G - 5, G_2=frame.G + 5)
    fig = plots.energy_balance(plates)
    assert "mean of G_1, G_2" in fig.axes[0].get_xlabel() and "G missing" not in fig.get_suptitle()


def test_energy_balance_needs_netrad(frame):
    with pytest.raises(ValueError, match=r"^the period frame has no net radiation \(NETRAD\)"):
        plots.energy_balance(frame.drop(columns="NETRAD"))
    with pytest.raises(ValueError, match="NETRAD"):
        plots.energy_balance(frame.assign(NETRAD=np.nan))
    with pytest.raises(ValueError, match="lacks column LE"):
        plots.energy_balance(frame.drop(columns="LE"))


# --- footprint ---

def test_footprint_sector_medians_on_a_polar_plot(frame):
    fig = plots.footprint(frame)
    (ax,) = fig.axes
    assert ax.name == "polar"
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["median FETCH_MAX", "median FETCH_70", "median FETCH_90"]
    theta, r = lines[0].get_xdata(), lines[0].get_ydata()
    assert len(theta) == 37 and theta[0] == 0 and theta[-1] == pytest.approx(2 * np.pi)
    in_sector = (frame.WD >= 195) & (frame.WD < 205)  # the 200° sector
    assert r[20] == pytest.approx(frame.loc[in_sector, "FETCH_MAX"].median())
    assert np.isnan(r[2])  # 20°: fewer than 3 periods with wind from there
    assert "m" in ax.get_xlabel() and "WD" in ax.get_xlabel()
    assert "tower-a" in fig.get_suptitle()


def test_footprint_needs_wd_and_fetch(frame):
    with pytest.raises(ValueError, match="lacks column WD"):
        plots.footprint(frame.drop(columns="WD"))
    with pytest.raises(ValueError, match="FETCH_MAX, FETCH_70, FETCH_90"):
        plots.footprint(frame.drop(columns=list(plots.FETCH)))
    assert len(plots.footprint(frame.drop(columns=["FETCH_70", "FETCH_90"])).axes[0].get_lines()) == 1


# --- health ---

def test_health_panels_per_source(frame, diag):
    fig = plots.health(diag, frame)
    assert len(fig.axes) == 5
    assert [ax.get_ylabel() for ax in fig.axes] == ["signal [%]", "flagged [%]", "missing [%]", "errors [count]",
                                                   "flags [count]"]
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert "SIGNAL_MEAN" in titles[0] and "FLAGGED_SAMPLES" in titles[1] and "VM97_HARD_FLAGS" in titles[-1]
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 2, 2, 2, 1]  # sonic has no signal; 'station' nothing
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["irga", "sonic"]
    irga = diag[diag.source == "irga"]
    flagged = fig.axes[1].get_lines()[0].get_ydata()
    assert np.isnan(flagged).sum() == 1  # the 6-h outage breaks the line once
    expected = 100 * irga.FLAGGED_SAMPLES / irga.SAMPLES_RECEIVED
    assert np.allclose(flagged[~np.isnan(flagged)], expected)
    assert fig.axes[-1].get_xlabel() == "local standard time (UTC-06:00)"
    assert "tower-a" in fig.get_suptitle() and "US-Xyz" in fig.get_suptitle()
    # more than plots.DENSE records: a bitmap inside an SVG, no markers; the 1920 periods stay vector
    assert len(irga) > plots.DENSE and fig.axes[1].get_lines()[0].get_rasterized()
    assert fig.axes[1].get_lines()[0].get_marker() in ("", "None")
    assert not fig.axes[-1].get_lines()[0].get_rasterized()


def test_health_draws_only_what_exists(frame, diag):
    assert len(plots.health(diag).axes) == 4
    assert len(plots.health(diag.drop(columns="SIGNAL_MEAN")).axes) == 3
    assert len(plots.health(frame=frame).axes) == 1
    empty = pd.DataFrame(columns=["source"], index=pd.DatetimeIndex([], tz=TZ, name="TIME"))  # load_diag: no rows
    assert len(plots.health(empty, frame).axes) == 1
    with pytest.raises(ValueError, match=r"^nothing to plot"):
        plots.health(diag[["source"]], frame.drop(columns="VM97_HARD_FLAGS"))
    with pytest.raises(ValueError, match="diag frame and/or a period frame"):
        plots.health()
    with pytest.raises(ValueError, match="diag frame lacks column source"):
        plots.health(diag.drop(columns="source"))


# --- every plot ---

@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_saved_png_and_svg(name, frame, diag, tmp_path):
    fig = figure_of(name, frame, diag)
    width, height = fig.get_size_inches()
    png = plots.save(fig, tmp_path / f"{name}.png")
    pixels = imread(png)
    assert pixels.shape[:2] == (round(height * plots.PNG_DPI), round(width * plots.PNG_DPI))
    svg = plots.save(fig, tmp_path / f"{name}.svg")
    ids = [g.get("id") for g in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g")]
    assert len([i for i in ids if i and re.fullmatch(r"axes_\d+", i)]) == len(fig.axes)
    assert "tower-a" in fig.get_suptitle()


def test_save_refuses_other_formats(frame, tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.save(plots.fingerprint(frame), tmp_path / "x.jpg")


def test_the_dispatcher_names():
    assert set(plots.PLOTS) == {"timeseries", "diurnal", "fingerprint", "energy_balance", "footprint", "health"}


@pytest.mark.parametrize("name", ["timeseries", "diurnal", "fingerprint", "energy_balance", "footprint"])
def test_bad_period_frames(name, frame):
    plot = plots.PLOTS[name]
    with pytest.raises(ValueError, match=r"^the period frame is empty"):
        plot(frame.iloc[:0])
    with pytest.raises(ValueError, match="tz-aware DatetimeIndex"):
        plot(frame.tz_localize(None))
    # across 2024-03-10, when Chicago leaves its standard time
    dst = frame.set_axis(pd.date_range("2024-03-01", periods=len(frame), freq="30min", tz="America/Chicago"))
    with pytest.raises(ValueError, match="daylight saving"):
        plot(dst)
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        plot(None)


def test_missing_variables_are_named(frame):
    with pytest.raises(ValueError, match=r"^the period frame lacks columns TA, RH$"):
        plots.timeseries(frame, ["FC", "TA", "RH"])
    with pytest.raises(ValueError, match=r"^the period frame has no values in FC$"):
        plots.fingerprint(frame.assign(FC=np.nan))
    with pytest.raises(ValueError, match="any of FC, LE, H, FCH4"):
        plots.diurnal(frame.drop(columns=["FC", "LE", "H"]))
