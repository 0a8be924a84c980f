"""AmeriFlux BASE and FLUXNET-style half-hourly files from a period frame.

AmeriFlux "Half-Hourly/Hourly Data Upload Format" (shared/reference/ec-methods.md f.8):

- file name ``<SITE_ID>_<HH|HR>_<first TIMESTAMP_START>_<last TIMESTAMP_END>.csv``;
- first row the variable names, ``TIMESTAMP_START`` and ``TIMESTAMP_END`` first, as
  ``YYYYMMDDHHMM`` in the site's local standard time (no daylight saving);
- one row per half hour (hour), equally spaced, none missing: a period nobody measured is a row of
  ``-9999``; every missing value is ``-9999``;
- AmeriFlux variable names (:data:`fluxedge.common.ameriflux.COLUMNS` for fluxes, the met names
  with their position qualifiers), QC flags as ``<VAR>_SSITC_TEST`` integers; fluxes not
  u*-filtered and not gap-filled (the network does that). Variables with no value at all in the
  file are left out.

FLUXNET-style files follow the FLUXNET2015 naming (Pastorello et al. 2020, Table 1)
``FLX_<SITE_ID>_FLUXEDGE_<PRODUCT>_HH_<FIRST_YEAR>-<LAST_YEAR>_1-1.csv`` with the same time stamps
and ``-9999``; product ``SUBSET`` is the measured variables, ``FULLSET`` adds the budget's gap-filled
and partitioned ones (``NEE_F``, ``NEE_F_QC``, ``GPP_NT``, ``RECO_NT``, ``GPP_DT``, ``RECO_DT``,
...), when given.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from fluxedge.common import ameriflux
from fluxedge.common.messages import met_base

RESOLUTIONS = {1800: "HH", 3600: "HR"}
FORMATS = ("ameriflux", "fluxnet")
#: period-frame columns that are no AmeriFlux variable (engine bookkeeping)
NOT_AMERIFLUX = frozenset({"W_TS_COV", "W_CO2_COV", "W_H2O_COV", "U_W_COV", "V_W_COV", "N_SAMPLES",
                           "MISSING_PCT", "VM97_HARD_FLAGS", "RHO_AIR"})


def variables(frame: pd.DataFrame) -> list[str]:
    """The frame's columns an AmeriFlux file carries, in AmeriFlux order (fluxes, then met),
    leaving out those without any value."""
    flux = [c for c in ameriflux.COLUMNS if c in frame.columns]
    met = [c for c in frame.columns if c not in ameriflux.COLUMNS and c not in NOT_AMERIFLUX
           and met_base(c) is not None]
    extra = [c for c in frame.columns if c not in flux and c not in met and c not in NOT_AMERIFLUX
             and (c.startswith(("NEE", "GPP", "RECO")) or c.endswith(("_F", "_F_QC", "_F_UNC")))]
    return [c for c in dict.fromkeys([*flux, *met, *extra]) if frame[c].notna().any()]


def _stamps(index: pd.DatetimeIndex, period_s: int) -> tuple[np.ndarray, np.ndarray]:
    """``YYYYMMDDHHMM`` of each period's start and end (the index: ends in local standard time)."""
    ends = index.tz_localize(None)
    starts = ends - pd.Timedelta(seconds=period_s)
    return starts.strftime("%Y%m%d%H%M").to_numpy(), ends.strftime("%Y%m%d%H%M").to_numpy()


def _check_frame(frame: pd.DataFrame) -> int:
    period_s = int(frame.attrs.get("period_s") or 0)
    if period_s not in RESOLUTIONS:
        raise ValueError(f"AmeriFlux and FLUXNET take half-hourly or hourly data; this station's averaging "
                         f"period is {period_s} s")
    if frame.empty:
        raise ValueError("no periods in the range")
    steps = np.diff(frame.index.as_unit("s").asi8)
    if len(steps) and not np.all(steps == period_s):
        raise ValueError("the frame is not equally spaced (a period frame from collector.science.frame.load is)")
    if not frame.attrs.get("site_id"):
        raise ValueError("no AmeriFlux site id: give --site-id or a [[site]] table for the station in collector.toml")
    return period_s


def render(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the file for a period frame."""
    period_s = _check_frame(frame)
    names = variables(frame)
    starts, ends = _stamps(frame.index, period_s)
    columns = [[ameriflux.cell(n, v, digits=None) for v in frame[n].to_numpy(dtype=float).tolist()] for n in names]
    rows = [[s, e, *cells] for s, e, *cells in zip(starts, ends, *columns, strict=True)]
    return ["TIMESTAMP_START", "TIMESTAMP_END", *names], rows


def file_name(frame: pd.DataFrame, fmt: str = "ameriflux", product: str = "SUBSET") -> str:
    period_s = _check_frame(frame)
    site = frame.attrs["site_id"]
    starts, ends = _stamps(frame.index, period_s)
    if fmt == "ameriflux":
        return f"{site}_{RESOLUTIONS[period_s]}_{starts[0]}_{ends[-1]}.csv"
    if fmt == "fluxnet":
        return f"FLX_{site}_FLUXEDGE_{product}_{RESOLUTIONS[period_s]}_{starts[0][:4]}-{starts[-1][:4]}_1-1.csv"
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def write(frame: pd.DataFrame, directory: str | Path, fmt: str = "ameriflux",
          gapfilled: pd.DataFrame | None = None) -> Path:
    """Write the file into ``directory``; its path. ``gapfilled`` (fluxnet only): the budget's
    half-hourly columns to add (a FULLSET)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    product = "SUBSET"
    if gapfilled is not None:
        if fmt != "fluxnet":
            raise ValueError("gap-filled variables go into FLUXNET files only (AmeriFlux wants them unfilled)")
        attrs = dict(frame.attrs)
        frame = frame.join(gapfilled[[c for c in gapfilled.columns if c not in frame.columns]])
        frame.attrs.update(attrs)  # pandas keeps attrs through a join only when both sides' are equal
        product = "FULLSET"
    header, rows = render(frame)
    path = Path(directory) / file_name(frame, fmt, product)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    tmp = path.with_suffix(".csv.part")
    tmp.write_text(buffer.getvalue())
    tmp.replace(path)
    return path
