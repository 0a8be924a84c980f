"""``fluxedge flux process``: raw files in, one AmeriFlux row per averaging period out.

Each raw file (LI-COR ``.ghg``, Campbell TOA5, or delimited text described by an EddyPro
``.metadata``) is read by :mod:`station.rawdata`, cut into periods of ``--period`` minutes (default:
the whole file), and every period goes through :func:`station.flux.pipeline.process` with the
EddyPro defaults. Files are processed in ``--jobs`` worker processes; a file that cannot be read is
reported on one line and the others are still processed. Time stamps are local standard time of
the file's zone (AmeriFlux convention) when the file says which zone, else UTC.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from station import ameriflux
from station.flux import spectral, timelag
from station.flux.pipeline import GasSetup, Options, Setup, process
from station.rawdata import RawDataError, RawPeriod, read_raw
from station.rawdata.metadata import Instrument, Metadata

GASES = ("co2", "h2o", "ch4")
#: the raw columns the flux engine uses (sos is read too where it stands for ts): only these are parsed
ENGINE_VARIABLES = ("u", "v", "w", "ts", "pa", "ta", *GASES)
#: EddyPro model names -> built-in geometry keys of :mod:`station.flux.spectral`.
SONIC_KEYS = {"csat3": "csat3", "csat3b": "csat3b", "hs": "hs_50", "hs_50": "hs_50", "hs_100": "hs_100",
              "r3_50": "r3_50", "r3_100": "r3_100", "wm": "wm", "wmpro": "wmpro", "81000": "81000"}


@dataclass(frozen=True)
class PeriodRow:
    start_unix: float
    end_unix: float
    results: dict[str, float]


@dataclass(frozen=True)
class FileOutcome:
    path: str
    rows: list[PeriodRow]
    error: str | None = None
    utc_offset_s: float = 0.0


def _model_key(instrument: Instrument) -> str:
    base = instrument.model.lower()
    return base.rsplit("_", 1)[0] if base[-2:-1] == "_" else base


def _sonic(md: Metadata) -> spectral.Sonic:
    sonic = next((i for i in md.instruments if i.kind == "sonic"), None)
    if sonic is None:
        return spectral.Sonic()
    key = SONIC_KEYS.get(_model_key(sonic), "")
    if key in spectral.SONICS:
        return spectral.SONICS[key]
    return spectral.Sonic(sonic.vpath_length_m or 0.0, sonic.tau_s or 0.0)


def _analyser(instrument: Instrument | None) -> spectral.GasAnalyser:
    if instrument is None:
        return spectral.GasAnalyser()
    base = spectral.ANALYSERS.get(_model_key(instrument)) or spectral.GasAnalyser(
        instrument.vpath_length_m or 0.0, instrument.tau_s or 0.0)
    closed = (instrument.tube_length_m or 0.0) > 0.0
    return dataclasses.replace(
        base, horizontal_separation_m=math.hypot(instrument.northward_separation_m, instrument.eastward_separation_m),
        vertical_separation_m=instrument.vertical_separation_m,
        tube_length_m=instrument.tube_length_m or 0.0 if closed else 0.0,
        tube_diameter_m=(instrument.tube_diameter_m or 0.0) if closed else 0.0,
        tube_flow_m3_s=(instrument.flow_rate_l_min or 0.0) / 60000.0 if closed else 0.0)


def setup_for(raw: RawPeriod, period_s: float, period_mid_unix_s: float | None = None) -> Setup:
    """The engine's view of the site and instruments, from the file's metadata."""
    md = raw.metadata
    sonic = next((i for i in md.instruments if i.kind == "sonic"), None)
    gases = []
    for gas in GASES:
        if gas not in raw.columns:
            continue
        col = next((c for c in md.columns if c.variable.startswith(gas) and c.nom_timelag_s is not None
                    and (c.measure_type or "") == raw.gas_types.get(gas)), None)
        col = col or next((c for c in md.columns if c.variable.startswith(gas)), None)
        # the column names its analyser by EddyPro model (``li7700_1``), some files by id; else the first irga
        instrument = md.instrument(col.instrument) if col is not None else None
        instrument = instrument if instrument is not None and instrument.kind == "irga" else None
        instrument = instrument or next((i for i in md.instruments if col is not None and i.id and
                                         i.id == col.instrument), None)
        instrument = instrument or next((i for i in md.instruments if i.kind == "irga"), None)
        lags = (col.nom_timelag_s, col.min_timelag_s, col.max_timelag_s) if col is not None else (0.0, 0.0, 0.0)
        analyser = _analyser(instrument)
        if not analyser.closed_path and lags[1] == 0.0 and lags[2] == 0.0:
            # EddyPro's open-path window when the metadata sets none: +-(2 s m-1 x separation + 0.3 s)
            reach = 2.0 * analyser.horizontal_separation_m + timelag.SAFETY_S
            lags = (lags[0], -reach, reach) if analyser.horizontal_separation_m > 0.0 else lags
        li7500 = instrument is not None and instrument.model_base.startswith("li7500") and not analyser.closed_path
        gases.append(GasSetup(gas, raw.gas_types.get(gas, "molar_density"), analyser, lags, self_heating=li7500))
    site = md.site
    return Setup(rate_hz=raw.rate_hz, period_s=period_s,
                 measurement_height_m=(sonic.height_m if sonic and sonic.height_m else 2.0),
                 canopy_height_m=site.canopy_height_m or 0.0, displacement_m=site.displacement_height_m or None,
                 roughness_m=site.roughness_length_m or None, latitude_deg=site.latitude_deg,
                 longitude_deg=site.longitude_deg, period_mid_unix_s=period_mid_unix_s, altitude_m=site.altitude_m,
                 north_offset_deg=(sonic.north_offset_deg or 0.0) if sonic else 0.0,
                 sonic=_sonic(md), gases=tuple(gases))


def _utc_offset_s(raw: RawPeriod) -> float:
    """Standard-time offset of the file's zone (AmeriFlux: local standard time, no DST)."""
    zone = raw.header.get("Timezone") if raw.header else None
    if not zone:
        return 0.0
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return 0.0
    local = raw.start.astimezone(tz)
    return ((local.utcoffset() or timedelta(0)) - (local.dst() or timedelta(0))).total_seconds()


def process_file(path: str, metadata: str | None = None, period_min: float | None = None,
                 options: Options | None = None) -> FileOutcome:
    """Every period of one raw file; never raises on bad files (the error is in the outcome)."""
    try:
        raw = read_raw(path, metadata, variables=ENGINE_VARIABLES)
    except RawDataError as exc:
        hint = " (fluxedge flux process --metadata FILE)" if metadata is None and ".metadata" in str(exc) else ""
        return FileOutcome(path, [], f"{exc}{hint}")
    except OSError as exc:
        return FileOutcome(path, [], f"{path}: cannot read: {exc.strerror or exc}")
    n = raw.n_samples
    per = round(period_min * 60 * raw.rate_hz) if period_min else n
    if per <= 0 or per > n:
        per = n
    rows = []
    t0 = raw.start.timestamp()
    wanted = ENGINE_VARIABLES
    for k in range(n // per or 1):
        sl = slice(k * per, min((k + 1) * per, n))
        columns = {c: np.asarray(raw.columns[c][sl], dtype=float) for c in wanted if c in raw.columns}
        setup = setup_for(raw, (sl.stop - sl.start) / raw.rate_hz, t0 + (sl.start + sl.stop) / 2 / raw.rate_hz)
        try:
            results = process(columns, setup, options)
        except (ValueError, FloatingPointError) as exc:  # a period the engine cannot use
            return FileOutcome(path, rows, f"{path}: period {k + 1}: {exc}")
        rows.append(PeriodRow(t0 + sl.start / raw.rate_hz, t0 + sl.stop / raw.rate_hz, results))
    return FileOutcome(path, rows, None, _utc_offset_s(raw))


def options_from_args(args) -> Options:
    """Processing options from the CLI; ``ValueError`` names a bad planar-fit file."""
    import json

    from station.flux.planarfit import PlanarFit

    fit = None
    if args.planar_fit:
        try:
            fit = PlanarFit.from_dict(json.loads(Path(args.planar_fit).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--planar-fit {args.planar_fit}: cannot use it: {exc}") from None
    if args.rotation == "planar_fit" and fit is None:
        raise ValueError("--rotation planar_fit needs --planar-fit FIT.json (from 'fluxedge flux planarfit')")
    return Options(despiking=args.despiking, rotation=args.rotation, planar_fit=fit, detrending=args.detrending,
                   detrend_time_constant_s=args.time_constant, lag=args.lag, spectral=args.spectral,
                   qc_system=args.qc, footprint=args.footprint,
                   self_heating=getattr(args, "self_heating", "none"),
                   vm97_tests=getattr(args, "statistical_tests", True),
                   random_uncertainty=getattr(args, "random_uncertainty", True))


def _job(args: tuple[str, str | None, float | None, Options | None]) -> FileOutcome:
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN periods are reported as -9999, not warnings
    return process_file(*args)


def run(paths: list[str], out_path: str, metadata: str | None = None, period_min: float | None = None,
        jobs: int = 1, progress=sys.stderr, options: Options | None = None, digits: int | None = 6) -> int:
    """Process ``paths`` into one AmeriFlux CSV (``digits`` significant digits, None: exact ``repr``);
    returns 0, or 1 if any file failed."""
    started = time.monotonic()
    outcomes: list[FileOutcome] = []
    work = [(p, metadata, period_min, options) for p in paths]
    show = progress is not None and len(paths) > 1
    if jobs > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, outcome in enumerate(pool.map(_job, work, chunksize=max(1, len(work) // (jobs * 8))), 1):
                outcomes.append(outcome)
                if show:
                    _progress(progress, i, len(paths), started)
    else:
        for i, item in enumerate(work, 1):
            outcomes.append(_job(item))
            if show:
                _progress(progress, i, len(paths), started)
    if show:
        print(file=progress)
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"fluxedge: error: {o.error}", file=sys.stderr)
    rows = sorted(((r.start_unix + o.utc_offset_s, r.end_unix + o.utc_offset_s, r.results)
                   for o in outcomes for r in o.rows), key=lambda r: r[0])
    columns = [c for c in ameriflux.COLUMNS if c not in ameriflux.CH4_COLUMNS or any(c in r[2] for r in rows)]
    with open(out_path, "w", newline="") as fh:
        n = ameriflux.write(fh, rows, columns, digits=digits)
    if progress is not None:
        print(f"{n} periods from {len(paths) - len(failed)} of {len(paths)} files in "
              f"{time.monotonic() - started:.1f} s -> {out_path}", file=progress)
    return 1 if failed else 0


def _progress(stream, done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / total)
    rate = done / max(time.monotonic() - started, 1e-9)
    eta = (total - done) / rate if rate else 0.0
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files, {rate:.1f}/s, eta {eta:.0f} s")
    stream.flush()


def planar_fit(paths: list[str], out_path: str, metadata: str | None = None, sectors: int = 1) -> int:
    """Fit planar-fit coefficients (Wilczak et al. 2001) from the mean winds of many files."""
    import json

    from station.flux.planarfit import fit_planar

    means = []
    for p in paths:
        try:
            raw = read_raw(p, metadata, variables=("u", "v", "w"))
        except (RawDataError, OSError) as exc:
            print(f"fluxedge: error: {exc}", file=sys.stderr)
            continue
        means.append([np.nanmean(raw.columns[c]) for c in ("u", "v", "w")])
    if len(means) < 3:
        print(f"fluxedge: error: a planar fit needs at least 3 periods, got {len(means)}", file=sys.stderr)
        return 2
    m = np.array(means)
    fit = fit_planar(m[:, 0], m[:, 1], m[:, 2], n_sectors=sectors, min_periods=min(10, len(means)))
    Path(out_path).write_text(json.dumps(fit.to_dict(), indent=2))
    print(f"planar fit of {len(means)} periods in {sectors} sector(s) -> {out_path}", file=sys.stderr)
    return 0
