"""Period and diag frames from InfluxDB (InfluxQL: 1.x natively, 2.x/3.x through their v1 API).

:func:`load` returns the **period frame** of :mod:`collector.science`: every averaging period whose
END lies in ``(start, end]``, including the periods nobody measured (all NaN), so that gaps are
rows and a half-hour grid stays regular. Flux values are the ``flux`` measurement's fields as the
station computed them; met records (``met``) are averaged over each period (``P`` summed), a
record stamped at time t belonging to the period whose end is the first boundary at or after t
(loggers stamp a record at the end of its interval). Where a met sensor measured ``TA``, ``RH``
or ``PA``, its mean replaces the flux record's value of the same name (the engine's ``TA`` is the
air temperature it used, from the analyser or the sonic).

Times: InfluxDB stores UTC; the frame is indexed in the site's local standard time (a fixed UTC
offset all year: AmeriFlux's convention, :mod:`fluxedge.common.sitetime`).

Queries go in chunks (:data:`FLUX_CHUNK`, :data:`MET_CHUNK`) so that no response nears InfluxDB's
``max-row-limit`` (10,000 rows in some 1.x configurations) or holds a year in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from collector.config import InfluxConfig
from collector.query import influxql, quote_string
from fluxedge.common.messages import DIAG_FIELDS, FLUX_FIELDS, MET_FIELDS, met_base
from fluxedge.common.sitetime import standard_offset_s, zone

FLUX_CHUNK = timedelta(days=60)  # 2,880 half-hours
MET_CHUNK = timedelta(days=5)  # 7,200 one-minute records
#: met variables summed over a period rather than averaged
SUMMED = frozenset({"P"})
#: flux values and the QC flag that judges them (Mauder & Foken 2004: 0 best, 1 budgets, 2 discard)
QC_OF = {"FC": "FC_SSITC_TEST", "FH2O": "LE_SSITC_TEST", "LE": "LE_SSITC_TEST", "ET": "LE_SSITC_TEST",
         "H": "H_SSITC_TEST", "TAU": "TAU_SSITC_TEST", "USTAR": "TAU_SSITC_TEST", "FCH4": "FCH4_SSITC_TEST"}
#: columns the frame never carries (InfluxDB bookkeeping)
_BOOKKEEPING = {"time", "station", "seq", "period_s", "source"}


@dataclass(frozen=True)
class SiteTime:
    """A site's local standard time: ``name`` (IANA, or ``UTC``) and its fixed offset."""

    name: str
    offset: timezone

    @classmethod
    def of(cls, name: str, at: datetime | None = None) -> SiteTime:
        tz = zone(name)
        if tz is None:
            raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'America/Belize' or 'Etc/GMT+6'")
        seconds = standard_offset_s(tz, at or datetime.now(UTC))
        return cls(name, timezone(timedelta(seconds=seconds)))

    @property
    def label(self) -> str:
        """``UTC-06:00``."""
        total = int(self.offset.utcoffset(None).total_seconds())
        sign, total = ("-" if total < 0 else "+"), abs(total)
        return f"UTC{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def parse_time(text: str, site: SiteTime) -> datetime:
    """An ISO date or date-time; without an offset it is read in the site's local standard time."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"time {text!r}: expected ISO 8601, e.g. 2026-03-01 or 2026-03-01T06:30 "
                         f"(local standard time of the site, {site.label}, unless an offset is given)") from None
    return t.replace(tzinfo=site.offset) if t.tzinfo is None else t


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(start: datetime, end: datetime, step: timedelta):
    t = start
    while t < end:
        yield t, min(t + step, end)
        t += step


def _rows(config: InfluxConfig, measurement: str, station: str, start: datetime, end: datetime,
          step: timedelta, end_inclusive: bool) -> list[dict]:
    rows: list[dict] = []
    upper = "<=" if end_inclusive else "<"
    for a, b in _chunks(start, end, step):
        lower = ">" if end_inclusive else ">="
        rows += influxql(config, f"SELECT * FROM {measurement} WHERE station = {quote_string(station)} "
                                 f"AND time {lower} '{_rfc3339(a)}' AND time {upper} '{_rfc3339(b)}'")
    return rows


def _index(epoch_s, site: SiteTime, name: str = "TIMESTAMP_END") -> pd.DatetimeIndex:
    """Unix seconds -> a DatetimeIndex in the site's local standard time."""
    utc = pd.to_datetime(np.asarray(epoch_s, dtype=np.int64), unit="s", utc=True)
    return pd.DatetimeIndex(utc, name=name).tz_convert(site.offset)


def _grid(start: datetime, end: datetime, period_s: int, site: SiteTime) -> pd.DatetimeIndex:
    """Every period end in (start, end] on the period's grid (aligned to UTC midnight, as stations)."""
    first = (int(start.timestamp()) // period_s + 1) * period_s
    last = int(end.timestamp()) // period_s * period_s
    return _index(np.arange(first, last + 1, period_s, dtype=np.int64), site)


def _period_s(flux_rows: list[dict], default: int) -> int:
    periods = {int(r["period_s"]) for r in flux_rows if r.get("period_s")}
    if len(periods) > 1:
        raise ValueError(f"the station changed its averaging period within the range ({sorted(periods)} s): "
                         f"query the parts separately")
    return periods.pop() if periods else default


def load(config: InfluxConfig, station: str, start: datetime, end: datetime, variables: list[str] | None = None,
         qc_max: int | None = None, site: SiteTime | None = None, site_id: str | None = None,
         period_s: int = 1800, met: bool = True) -> pd.DataFrame:
    """The period frame of ``station`` for periods ending in ``(start, end]`` (aware datetimes).

    ``variables``: the columns to keep (default all); their QC flags come along. ``qc_max``: a flux
    value whose QC flag (:data:`QC_OF`) is above it becomes NaN (its flag stays). ``site``: the
    local standard time of the index (default UTC). Raises ValueError on a bad range or names and
    :class:`collector.query.QueryError` when InfluxDB cannot answer.
    """
    site = site or SiteTime.of("UTC")
    if end <= start:
        raise ValueError(f"the range is empty: --to ({end.isoformat()}) is not after --from ({start.isoformat()})")
    unknown = [v for v in variables or [] if v not in FLUX_FIELDS and met_base(v) is None]
    if unknown:
        raise ValueError(f"unknown variable {unknown[0]!r}: flux names are {', '.join(FLUX_FIELDS)}; met names "
                         f"are {', '.join(MET_FIELDS)} (with position qualifiers such as TS_1)")
    flux_rows = _rows(config, "flux", station, start, end, FLUX_CHUNK, end_inclusive=True)
    period = _period_s(flux_rows, period_s)
    index = _grid(start, end, period, site)
    frame = pd.DataFrame(index=index)
    if flux_rows:
        flux = pd.DataFrame(flux_rows)
        flux.index = _index(flux.pop("time"), site)
        flux = flux.drop(columns=[c for c in flux.columns if c in _BOOKKEEPING]).astype(float)
        frame = frame.join(flux)
    if met:
        met_frame = _met(config, station, start, end, period, site)
        if not met_frame.empty:
            frame = met_frame.reindex(index).combine_first(frame)
    frame = frame[_order(frame.columns)]
    if qc_max is not None:
        for name, flag in QC_OF.items():
            if name in frame and flag in frame:
                frame.loc[frame[flag] > qc_max, name] = np.nan
    if variables:  # in the order asked, with their QC flags; a variable never measured is all NaN
        frame = frame.reindex(columns=list(dict.fromkeys([*variables, *(QC_OF[v] for v in variables if v in QC_OF)])))
    frame.index.name = "TIMESTAMP_END"
    frame.attrs.update(units=units(frame.columns), station=station, site_id=site_id, time_zone=site.name,
                       utc_offset=site.label, period_s=period)
    return frame


def _met(config: InfluxConfig, station: str, start: datetime, end: datetime, period_s: int,
         site: SiteTime) -> pd.DataFrame:
    """Met records averaged per period (``P`` summed), chunk by chunk: a year of one-minute records
    never sits in memory as rows (bench/science.py)."""
    sums, counts = [], []
    for a, b in _chunks(start, end, MET_CHUNK):
        rows = _rows(config, "met", station, a, b, MET_CHUNK, end_inclusive=True)
        if not rows:
            continue
        met = pd.DataFrame(rows)
        t = met.pop("time").to_numpy(dtype=np.int64)
        met = met.drop(columns=[c for c in met.columns if c in _BOOKKEEPING]).astype(float)
        grouped = met.groupby(-(-t // period_s) * period_s)  # the first period boundary at or after t
        sums.append(grouped.sum(min_count=1))
        counts.append(grouped.count())
    if not sums:
        return pd.DataFrame()
    total = pd.concat(sums).groupby(level=0).sum(min_count=1)
    n = pd.concat(counts).groupby(level=0).sum()
    means = total / n.where(n > 0)
    summed = [c for c in total.columns if met_base(c) in SUMMED]
    means[summed] = total[summed]
    means.index = _index(means.index, site)
    return means


def _order(columns) -> list[str]:
    """Flux columns in the contract's order, then met columns in theirs, then anything else."""
    flux = [c for c in FLUX_FIELDS if c in columns]
    met_names = list(MET_FIELDS)
    met = sorted((c for c in columns if c not in FLUX_FIELDS and met_base(c) is not None),
                 key=lambda c: (met_names.index(met_base(c)), c))
    rest = sorted(c for c in columns if c not in flux and c not in met)
    return [*flux, *met, *rest]


def units(columns) -> dict[str, str]:
    """Column -> unit (AmeriFlux's, as :mod:`fluxedge.common.messages` defines them)."""
    out = {}
    for c in columns:
        spec = FLUX_FIELDS.get(c) or MET_FIELDS.get(met_base(c) or "") or DIAG_FIELDS.get(c)
        out[c] = spec[0] if spec else ("1" if c.startswith("FLAG_") else "")
    return out


def load_diag(config: InfluxConfig, station: str, start: datetime, end: datetime,
              site: SiteTime | None = None) -> pd.DataFrame:
    """The diag frame: one row per diag record with time in ``[start, end)``, a ``source`` column."""
    site = site or SiteTime.of("UTC")
    rows = _rows(config, "diag", station, start, end, MET_CHUNK, end_inclusive=False)
    if not rows:
        return pd.DataFrame(columns=["source"], index=pd.DatetimeIndex([], tz=site.offset, name="TIME"))
    diag = pd.DataFrame(rows)
    diag.index = _index(diag.pop("time"), site, "TIME")
    source = diag.pop("source")
    diag = diag.drop(columns=[c for c in diag.columns if c in _BOOKKEEPING]).astype(float)
    diag.insert(0, "source", source)
    diag.attrs.update(units=units(diag.columns[1:]), station=station, time_zone=site.name, utc_offset=site.label)
    return diag.sort_index(kind="stable")
