"""``fluxedge flux process``: raw files in, one AmeriFlux row per averaging period out.

Each raw file (LI-COR ``.ghg``, Campbell TOA5, or delimited text described by an EddyPro
``.metadata``) is read by :mod:`station.rawdata`; without ``--period`` each file is one period, with
``--period`` the files are joined into (or cut into) clock-aligned periods as EddyPro does
(:mod:`station.reprocess.periodjoin`). Every period goes through :func:`station.flux.pipeline.process` with the
EddyPro defaults. Files are processed in ``--jobs`` worker processes; a file that cannot be read is
reported on one line and the others are still processed.

Time stamps are the site's local standard time (AmeriFlux convention, :mod:`fluxedge.common.sitetime`): the
standard-time offset of the zone the file names (``.ghg`` header ``Timezone``), or ``--utc-offset``,
else UTC with a one-line note. A period whose fluxes cannot be computed still gets its row; why each
missing flux is missing goes to stderr and to ``<out stem>_reasons.csv``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fluxedge.common import ameriflux, sitetime
from station.flux import screening
from station.flux.pipeline import Options, process
from station.rawdata import RawDataError, RawPeriod, read_ghg_timezone, read_raw
from station.rawdata.ghg import is_ghg
from station.reprocess import executor, periodjoin, remote
from station.reprocess.enginesetup import ENGINE_VARIABLES, setup_for

#: The fluxes whose missing values are explained (a reason on stderr and in ``<out stem>_reasons.csv``).
EXPLAINED = ("FC", "FH2O", "LE", "H", "TAU", "USTAR", "FCH4")
#: The raw columns each of them needs besides the wind (u, v, w).
_NEEDS = {"FC": ("co2",), "FH2O": ("h2o",), "LE": ("h2o",), "FCH4": ("ch4",), "H": ("ts",), "TAU": (), "USTAR": ()}
_DIAG_NAMES = {"diag_irga": "the gas analyser's diagnostic", "diag_ch4": "the CH4 analyser's diagnostic",
               "diag_sonic": "the anemometer's diagnostic"}


@dataclass(frozen=True)
class PeriodRow:
    start_unix: float
    end_unix: float
    results: dict[str, float]
    #: why each missing flux of :data:`EXPLAINED` is missing (name -> reason): the engine's reason
    #: where it gives one (a ``reasons`` mapping among its results), else :func:`missing_reasons`
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileOutcome:
    path: str
    rows: list[PeriodRow]
    error: str | None = None
    utc_offset_s: float = 0.0
    #: set when the time stamps are UTC because the file names no known time zone (and no --utc-offset)
    zone_note: str | None = None


def _file_zone(raw: RawPeriod) -> str | None:
    """The IANA zone the file names (``.ghg`` header ``Timezone``) if it is a known one, else None."""
    name = raw.header.get("Timezone") if raw.header else None
    return name if sitetime.zone(name) is not None else None


def _utc_offset_s(raw: RawPeriod, utc_offset_h: float | None = None) -> float:
    """UTC offset [s] of the output time stamps, AmeriFlux's local standard time (no daylight saving):
    ``utc_offset_h`` if given, else the standard-time offset of the file's zone at the file's start
    (:func:`fluxedge.common.sitetime.standard_offset_s`: in summer in a zone with DST, local clock - 1 h),
    else 0 (UTC)."""
    if utc_offset_h is not None:
        return utc_offset_h * 3600.0
    tz = sitetime.zone(_file_zone(raw))
    return 0.0 if tz is None else sitetime.standard_offset_s(tz, raw.start)


def _zone_note(raw: RawPeriod, utc_offset_h: float | None) -> str | None:
    if utc_offset_h is not None or _file_zone(raw) is not None:
        return None
    name = raw.header.get("Timezone") if raw.header else None
    return f"unknown time zone {name!r}" if name else "no time zone"


def _read(path: str, metadata: str | None, utc_offset_h: float | None) -> RawPeriod:
    """One raw file with the columns the engine uses. Its times are in the zone the file names; a
    file that names none (TOA5, text, a ``.ghg`` without a known ``Timezone``) runs on the site's
    standard time ``utc_offset_h`` when that is given, else on UTC."""
    if utc_offset_h is None:
        return read_raw(path, metadata, variables=ENGINE_VARIABLES)
    with open(path, "rb") as fh:
        ghg = is_ghg(fh.read(4)) or Path(path).suffix.lower() == ".ghg"
    if not ghg:
        return read_raw(path, metadata, variables=ENGINE_VARIABLES, tz=sitetime.fixed_zone(utc_offset_h))
    raw = read_raw(path, metadata, variables=ENGINE_VARIABLES)
    if _file_zone(raw) is not None:
        return raw
    shift = timedelta(hours=utc_offset_h)  # the reader took the file-name time as UTC
    return dataclasses.replace(raw, start=raw.start - shift, end=raw.end - shift)


def _read_error(path: str, metadata: str | None, exc: Exception) -> str:
    if isinstance(exc, RawDataError):
        hint = " (fluxedge flux process --metadata FILE)" if metadata is None and ".metadata" in str(exc) else ""
        return f"{exc}{hint}"
    if isinstance(exc, OSError):
        return f"{path}: cannot read: {exc.strerror or exc}"
    return f"{path}: {exc}"


def _engine_reasons(results: dict) -> dict[str, str]:
    """The ``reasons`` mapping the engine may put among its results (taken out of them)."""
    given = results.pop("reasons", None)
    return {str(k): str(v) for k, v in given.items()} if isinstance(given, Mapping) else {}


def missing_reasons(results: dict[str, float], columns: dict[str, np.ndarray], setup=None,
                    given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Why each flux of :data:`EXPLAINED` is missing from ``results``: the engine's reason (``given``),
    else the first input it needs (u, v, w, then its own column) that is absent from the file, missing
    in every record, or left with no sample by the instruments' diagnostic words (``setup.diagnostics``,
    EddyPro ``FilterDatasetForDiagnostics``), else a generic one."""
    given = given or {}
    missing = [v for v in EXPLAINED if not (isinstance(results.get(v), float | int) and math.isfinite(results[v]))]
    if not missing:
        return {}
    screens = tuple(getattr(setup, "diagnostics", ()) or ())
    screened, flagged = screening.screen(columns, screens) if screens else (columns, {})
    by = {t: _DIAG_NAMES.get(s.column, f"the diagnostic {s.column}") for s in screens for t in s.targets}
    out = {}
    for var in missing:
        if given.get(var):
            out[var] = given[var]
            continue
        needs = ("u", "v", "w", *_NEEDS[var])
        why = None
        for name in needs:
            x = columns.get(name)
            if x is None:
                why = f"{name} column absent from the file"
            elif not np.isfinite(x).any():
                why = f"all {len(x)} {name} samples missing in the file"
            elif not np.isfinite(screened[name]).any():
                why = (f"all {name} samples missing after screening ({flagged.get(name, 0)} of {len(x)} records "
                       f"flagged by {by.get(name, 'a diagnostic')})")
            if why:
                break
        if why is None:
            counts = ", ".join(f"{n} {int(np.isfinite(screened[n]).sum())} of {len(screened[n])}" for n in needs)
            why = f"not computed by the flux engine although its inputs have samples ({counts} present)"
        out[var] = why
    return out


def _failed(start: float, end: float, why: str) -> PeriodRow:
    """The row of a period without results: every flux -9999, each with ``why``."""
    return PeriodRow(start, end, {}, dict.fromkeys(EXPLAINED, why))


def _engine_row(raw: RawPeriod, columns: dict[str, np.ndarray], start: float, end: float, period_s: float,
                mid: float, options: Options | None) -> PeriodRow:
    """One period through the engine; never raises (a period it cannot use is a row with the reason)."""
    try:
        setup = setup_for(raw, period_s, mid)
        results = process(columns, setup, options)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return _failed(start, end, f"period failed: {exc}")
    except Exception as exc:  # one bad period must not cost the rest of the file
        return _failed(start, end, f"period failed: {type(exc).__name__}: {exc}")
    given = _engine_reasons(results)
    return PeriodRow(start, end, results, missing_reasons(results, columns, setup, given))


def process_file(path: str, metadata: str | None = None, period_min: float | None = None,
                 options: Options | None = None, utc_offset_h: float | None = None) -> FileOutcome:
    """Every period of one raw file (``period_min``: cut into periods of that length from its start);
    never raises on bad files (the error is in the outcome) nor on bad periods (their rows say why)."""
    try:
        raw = _read(path, metadata, utc_offset_h)
    except (RawDataError, OSError) as exc:
        return FileOutcome(path, [], _read_error(path, metadata, exc))
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
        rows.append(_engine_row(raw, columns, t0 + sl.start / raw.rate_hz, t0 + sl.stop / raw.rate_hz,
                                (sl.stop - sl.start) / raw.rate_hz, t0 + (sl.start + sl.stop) / 2 / raw.rate_hz,
                                options))
    return FileOutcome(path, rows, None, _utc_offset_s(raw, utc_offset_h), _zone_note(raw, utc_offset_h))


def _joined_row(period: periodjoin.JoinedPeriod, options: Options | None,
                max_lack_pct: float = periodjoin.MAX_LACK_PCT) -> PeriodRow:
    """One joined period: processed if EddyPro would (no more than ``max_lack_pct`` % of its records
    missing), else a row of -9999 saying so."""
    raw, n = period.raw, period.expected
    start = raw.start_unix
    if period.too_incomplete(max_lack_pct):
        return _failed(start, raw.end_unix, f"only {period.present} of {n} records in the period "
                                            f"({period.missing_pct:.1f} % missing; EddyPro processes a period "
                                            f"with at most {max_lack_pct:g} % missing)")
    columns = {c: np.asarray(raw.columns[c], dtype=float) for c in ENGINE_VARIABLES if c in raw.columns}
    return _engine_row(raw, columns, start, raw.end_unix, n / raw.rate_hz, start + n / 2 / raw.rate_hz, options)


def process_joined(paths: list[str], metadata: str | None, period_min: float, options: Options | None = None,
                   utc_offset_h: float | None = None, until: float | None = None) -> list[FileOutcome]:
    """Files in time order joined into clock-aligned periods of ``period_min`` minutes
    (:mod:`station.reprocess.periodjoin`; samples from ``until`` on left out); the first outcome holds the rows,
    any further one an error of a file (unreadable, or not continuing the previous file's column
    layout: its samples are left out)."""
    joiner: periodjoin.Joiner | None = None
    rows: list[PeriodRow] = []
    errors: list[FileOutcome] = []
    offset, note = 0.0, None
    for path in paths:
        try:
            raw = _read(path, metadata, utc_offset_h)
        except (RawDataError, OSError) as exc:
            errors.append(FileOutcome(path, [], _read_error(path, metadata, exc)))
            continue
        if joiner is None:
            offset, note = _utc_offset_s(raw, utc_offset_h), _zone_note(raw, utc_offset_h)
            joiner = periodjoin.Joiner(period_min * 60.0, offset, until)
        try:
            closed = joiner.add(raw)
        except ValueError as exc:  # a different column layout, or files out of time order
            errors.append(FileOutcome(path, [], str(exc)))
            continue
        rows += [_joined_row(p, options) for p in closed]
    if joiner is not None:
        rows += [_joined_row(p, options) for p in joiner.finish()]
    return [FileOutcome(paths[0], rows, None, offset, note), *errors]


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


class WorkItem(NamedTuple):
    """One unit of work: ``file`` processes ``paths[0]`` as it is, ``join`` joins ``paths`` into periods
    (leaving out samples from ``until`` [Unix s] on, the next group's time)."""

    kind: str
    paths: tuple[str, ...]
    metadata: str | None
    period_min: float | None
    options: Options | None
    utc_offset_h: float | None
    until: float | None = None


def _job(item: WorkItem) -> list[FileOutcome]:
    """One work item's outcomes; files in object storage (URLs) are read from local copies made
    for the item (:mod:`station.reprocess.remote`), and the outcomes name the URLs."""
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN periods are reported as -9999, not warnings
    sources = (*item.paths, *((item.metadata,) if item.metadata else ()))
    if not any(remote.is_url(p) for p in sources):
        return _compute(item)
    try:
        with remote.local_copies(sources) as local:
            copied = item._replace(paths=local[:len(item.paths)], metadata=local[-1] if item.metadata else None)
            outcomes = _compute(copied)
    except (OSError, remote.RemoteError) as exc:
        return [FileOutcome(p, [], str(exc)) for p in item.paths]
    names = dict(zip(local, sources, strict=True))

    def named(text: str | None) -> str | None:
        for copy, url in names.items():
            text = text.replace(copy, url) if text else text
        return text

    return [dataclasses.replace(o, path=names.get(o.path, o.path), error=named(o.error)) for o in outcomes]


def _compute(item: WorkItem) -> list[FileOutcome]:
    if item.kind == "join":
        assert item.period_min is not None
        return process_joined(list(item.paths), item.metadata, item.period_min, item.options, item.utc_offset_h,
                              item.until)
    return [process_file(item.paths[0], item.metadata, item.period_min, item.options, item.utc_offset_h)]


def plan(paths: list[str], metadata: str | None = None, period_min: float | None = None,
         options: Options | None = None, utc_offset_h: float | None = None) -> list[WorkItem]:
    """The work of ``run``: each file alone without ``period_min``; with it, the files in time order
    (by the times in their names) in groups that share no averaging period (:func:`periodjoin.segments`),
    each group joined into clock-aligned periods."""
    if not period_min:
        return [WorkItem("file", (p,), metadata, period_min, options, utc_offset_h) for p in paths]
    period_s = period_min * 60.0
    starts: list[float | None] = []
    offsets: list[float] = []
    for p in paths:
        tz = sitetime.zone(_ghg_timezone(p))
        clock = tz or (sitetime.fixed_zone(utc_offset_h) if utc_offset_h is not None else None)
        start = periodjoin.name_start_unix(p, clock)
        starts.append(start)
        if utc_offset_h is not None:
            offsets.append(utc_offset_h * 3600.0)
        elif tz is not None and start is not None:
            offsets.append(sitetime.standard_offset_s(tz, datetime.fromtimestamp(start, UTC)))
        else:
            offsets.append(0.0)
    groups = periodjoin.segments(starts, period_s, offsets)
    untils = [starts[groups[k + 1][0]] if k + 1 < len(groups) else None for k in range(len(groups))]
    return [WorkItem("join", tuple(paths[i] for i in group), metadata, period_min, options, utc_offset_h, until)
            for group, until in zip(groups, untils, strict=True)]


def _ghg_timezone(path: str) -> str | None:
    """:func:`read_ghg_timezone` of a local file or a URL (read in ranges: the zip directory and the
    first 4 KiB of its data, not the whole object)."""
    if not remote.is_url(path):
        return read_ghg_timezone(path)
    try:
        with remote.open_binary(path) as fh:
            return read_ghg_timezone(path, fh)
    except (OSError, remote.RemoteError):
        return None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _zone_line(done: list[tuple[WorkItem, list[FileOutcome]]]) -> str | None:
    """One line on the files whose time stamps are UTC because they name no known zone."""
    noted = [(item, result[0]) for item, result in done if result and result[0].zone_note and result[0].rows]
    if not noted:
        return None
    kinds = sorted({o.zone_note for _, o in noted if o.zone_note})
    files = sum(len(item.paths) - (len(result) - 1) for item, result in done if result and result[0].zone_note
                and result[0].rows)
    return (f"fluxedge: note: {'; '.join(kinds)} in {files} file(s) (e.g. {Path(noted[0][1].path).name}): "
            "TIMESTAMP_START/END are UTC; --utc-offset HOURS gives the site's standard time")


def reasons_path(out_path: str | Path) -> Path:
    """The companion file of the reasons: ``<out stem>_reasons.csv`` next to the output."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}_reasons.csv")


def _failed_item(item: WorkItem, why: str) -> list[FileOutcome]:
    """A work item whose task failed for good on the cluster: each of its files, failed."""
    return [FileOutcome(p, [], f"{Path(p).name}: not processed on the cluster: {why}") for p in item.paths]


def execute(work: list[WorkItem], jobs: int = 1, scheduler: str | None = None, progress=None,
            total_files: int | None = None) -> list[tuple[WorkItem, list[FileOutcome]]]:
    """Every work item's outcomes, in the order of ``work``: locally (``jobs`` processes) or on the
    Dask cluster at ``scheduler`` (:mod:`station.reprocess.executor`)."""
    started = time.monotonic()
    total = total_files or sum(len(item.paths) for item in work)
    show = progress is not None and _isatty(progress) and total > 1
    results = (executor.on_cluster(_job, work, scheduler, _failed_item) if scheduler
               else executor.local(_job, work, jobs))
    done: list[tuple[WorkItem, list[FileOutcome]]] = []
    files_done = 0
    for item, result in zip(work, results, strict=True):
        done.append((item, result))
        files_done += len(item.paths)
        if show:
            _progress(progress, files_done, total, started)
    if show:
        print(file=progress)
    return done


def run(paths: list[str], out_path: str, metadata: str | None = None, period_min: float | None = None,
        jobs: int = 1, progress=sys.stderr, options: Options | None = None, digits: int | None = 6,
        utc_offset_h: float | None = None, scheduler: str | None = None) -> int:
    """Process ``paths`` into one AmeriFlux CSV (``digits`` significant digits, None: exact ``repr``);
    returns 0, or 1 if any file failed (and writes no CSV when not one period came out). Time stamps:
    UTC + ``utc_offset_h`` hours if given, else the standard time of each file's zone (UTC, with a
    note, for files that name none). Every missing
    FC, FH2O, LE, H, TAU, USTAR or FCH4 gets a reason: one line on stderr per period and variable and
    a row in ``<out stem>_reasons.csv`` (written only if there is one). ``scheduler``: compute on
    that Dask cluster instead of ``jobs`` local processes."""
    started = time.monotonic()
    work = plan(paths, metadata, period_min, options, utc_offset_h)
    done = execute(work, jobs, scheduler, progress, len(paths))
    return write_output(done, len(paths), out_path, digits, progress, started)


def write_output(done: list[tuple[WorkItem, list[FileOutcome]]], n_files: int, out_path: str | Path,
                 digits: int | None = 6, progress=sys.stderr, started: float | None = None) -> int:
    """The AmeriFlux CSV (and its reasons) of computed work; 0, or 1 if any file failed."""
    started = time.monotonic() if started is None else started
    outcomes = [o for _, result in done for o in result]
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"fluxedge: error: {o.error}", file=sys.stderr)
    note = _zone_line(done)
    if note:
        print(note, file=sys.stderr)
    periods = sorted(((r.start_unix + o.utc_offset_s, r.end_unix + o.utc_offset_s, r, o.path)
                      for o in outcomes for r in o.rows), key=lambda x: x[0])
    rows = [(start, end, r.results) for start, end, r, _ in periods]
    columns = [c for c in ameriflux.COLUMNS if c not in ameriflux.CH4_COLUMNS or any(c in r[2] for r in rows)]
    reasons = [(start, end, var, why, path) for start, end, r, path in periods for var, why in r.reasons.items()
               if var in columns]
    for start, end, var, why, path in reasons:
        print(f"fluxedge: {ameriflux.timestamp(start)}-{ameriflux.timestamp(end)} {var} = -9999: {why} "
              f"({Path(path).name})", file=sys.stderr)
    if not rows:  # not one period: a header-only CSV would pass for a result
        kept = f" (the existing {out_path} is left as it was)" if Path(out_path).exists() else ""
        print(f"fluxedge: error: not one period could be processed: {out_path} not written{kept}", file=sys.stderr)
        return 1
    with open(out_path, "w", newline="") as fh:
        n = ameriflux.write(fh, rows, columns, digits=digits)
    companion = reasons_path(out_path)
    if reasons:
        with open(companion, "w", newline="") as fh:
            ameriflux.write_reasons(fh, [r[:4] for r in reasons])
    elif companion.exists():
        companion.unlink()  # a previous run's reasons would no longer match the output
    if progress is not None:
        explained = f"; {len(reasons)} missing values explained in {companion}" if reasons else ""
        print(f"{n} periods from {n_files - len(failed)} of {n_files} files in "
              f"{time.monotonic() - started:.1f} s -> {out_path}{explained}", file=progress)
    return 1 if failed else 0


#: raw files a station tree holds (LI-COR and fluxedge .ghg, Campbell TOA5)
TREE_PATTERNS = ("*.ghg", "*.dat")


def stations_in(root: str | Path) -> dict[str, list[str]]:
    """``root/<station>/YYYY/MM/*.ghg`` (any depth below the station): station -> its files, sorted.
    ``root`` may be a URL (``s3://bucket/raw``: :func:`remote.stations_in`)."""
    if remote.is_url(root):
        return remote.stations_in(str(root), TREE_PATTERNS)
    out = {}
    for station_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        files = sorted(str(f) for pattern in TREE_PATTERNS for f in station_dir.rglob(pattern))
        if files:
            out[station_dir.name] = files
    return out


def run_tree(roots: list[str], out_dir: str, metadata: str | None = None, period_min: float | None = None,
             jobs: int = 1, progress=sys.stderr, options: Options | None = None, digits: int | None = 6,
             utc_offset_h: float | None = None, scheduler: str | None = None) -> int:
    """Many stations' archives at once: every ``<root>/<station>/`` tree, all their work in one
    run (one cluster submission), one ``<out_dir>/<station>.csv`` each; 0, or 1 if any file failed."""
    started = time.monotonic()
    stations: dict[str, list[str]] = {}
    for root in roots:
        if not remote.is_url(root) and not Path(root).is_dir():
            print(f"fluxedge: error: {root}: not a directory (with --tree, give the roots of station trees)",
                  file=sys.stderr)
            return 2
        try:
            found = stations_in(root)
        except remote.RemoteError as exc:
            print(f"fluxedge: error: {exc}", file=sys.stderr)
            return 2
        for name, files in found.items():
            stations.setdefault(name, []).extend(files)
    if not stations:
        print(f"fluxedge: error: no station directory with raw files under {', '.join(roots)}", file=sys.stderr)
        return 1
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    plans = {name: plan(files, metadata, period_min, options, utc_offset_h) for name, files in stations.items()}
    work = [item for items in plans.values() for item in items]
    done = execute(work, jobs, scheduler, progress, sum(len(f) for f in stations.values()))
    status, k = 0, 0
    for name, items in plans.items():
        part, k = done[k:k + len(items)], k + len(items)
        status = max(status, write_output(part, len(stations[name]), Path(out_dir) / f"{name}.csv", digits,
                                          progress, started))
    return status


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
