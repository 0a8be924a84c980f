"""``fluxedge query | export | plot | budget``: the scientists' commands over the collector's data.

Each reads collector.toml (``[influxdb]``, and ``[[site]]`` for the station's AmeriFlux id and time
zone), loads a period frame (:mod:`collector.science.frame`) and writes what was asked. Problems a
user can fix (a bad time, an unknown variable, no site id, InfluxDB unreachable) are one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collector import config as collector_config
from collector.query import QueryError
from collector.science import frame as frames

FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """A problem the user can fix; the message says which."""


def _context(args: argparse.Namespace):
    """(config, site time, site id, start, end) from the common options."""
    config = collector_config.load(args.config)
    site = config.site_of(args.station)
    zone_name = args.time_zone or (site.time_zone if site else "UTC")
    try:
        site_time = frames.SiteTime.of(zone_name)
        start = frames.parse_time(args.start, site_time)
        end = frames.parse_time(args.end, site_time)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    site_id = getattr(args, "site_id", None) or (site.id if site else None)
    return config, site_time, site_id, start, end


def _load(args: argparse.Namespace, variables=None, qc_max=None):
    config, site_time, site_id, start, end = _context(args)
    try:
        frame = frames.load(config.influxdb, args.station, start, end, variables=variables, qc_max=qc_max,
                            site=site_time, site_id=site_id)
    except (ValueError, QueryError) as exc:
        raise UsageError(str(exc)) from None
    if frame.dropna(how="all").empty:
        raise UsageError(f"no data of station {args.station!r} between {start.isoformat()} and {end.isoformat()} "
                         f"in database {config.influxdb.query_database!r}")
    return config, site_time, frame


def _run(fn, args: argparse.Namespace) -> int:
    try:
        return fn(args)
    except UsageError as exc:
        print(f"fluxedge: error: {exc}", file=sys.stderr)
        return 2


# --- query ---

def _query(args: argparse.Namespace) -> int:
    variables = [v.strip() for v in args.vars.split(",") if v.strip()] if args.vars else None
    _, site_time, frame = _load(args, variables, args.qc_max)
    frame = frame.dropna(how="all") if not args.all_periods else frame
    out = sys.stdout
    if args.format == "csv":
        frame.to_csv(out, na_rep="", float_format="%.6g", date_format="%Y-%m-%dT%H:%M:%S%z")
    elif args.format == "json":
        doc = {"station": args.station, "time_zone": site_time.name, "utc_offset": site_time.label,
               "period_s": frame.attrs["period_s"], "units": frame.attrs["units"],
               "rows": [{"TIMESTAMP_END": t.isoformat(), **{k: (None if v != v else v) for k, v in row.items()}}
                        for t, row in zip(frame.index, frame.to_dict("records"), strict=True)]}
        json.dump(doc, out, separators=(",", ":"))
        out.write("\n")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
            out.write(frame.to_string(float_format=lambda v: f"{v:.4g}", na_rep="-") + "\n")
        units = ", ".join(f"{k} [{u}]" for k, u in frame.attrs["units"].items() if u)
        out.write(f"# {len(frame)} periods, times are period ends in local standard time ({site_time.label}); "
                  f"units: {units}\n")
    return 0


def query(args: argparse.Namespace) -> int:
    return _run(_query, args)


# --- export ---

def _export(args: argparse.Namespace) -> int:
    from collector.science import amfcheck, export

    if args.check:
        problems = amfcheck.check(args.check)
        for p in problems:
            print(f"{args.check}: {p}")
        if not problems:
            print(f"{args.check}: passes the AmeriFlux format rules")
        return 1 if problems else 0
    if not (args.station and args.start and args.end):
        raise UsageError("export needs --station, --from and --to (or --check FILE)")
    _, _, frame = _load(args)
    gapfilled = None
    if args.gapfilled:
        if args.format != "fluxnet":
            raise UsageError("--gapfilled goes with --format fluxnet (AmeriFlux takes unfilled data)")
        from collector.science import budget

        try:
            gapfilled = budget.carbon_budget(frame).half_hourly
        except ValueError as exc:
            raise UsageError(f"gap-filling: {exc}") from None
    try:
        path = export.write(frame, args.output, args.format, gapfilled=gapfilled)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    missing = int(frame.isna().all(axis=1).sum())
    print(f"{path}: {len(frame)} periods ({missing} without any value, written as -9999)")
    return 0


def export_(args: argparse.Namespace) -> int:
    return _run(_export, args)


# --- plot ---

def _plot(args: argparse.Namespace) -> int:
    from collector.science import plots

    config, site_time, frame = _load(args)
    kinds = list(plots.PLOTS) if args.kind == "all" else [args.kind]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    diag = None
    made = 0
    for kind in kinds:
        try:
            if kind == "health":
                if diag is None:
                    _, _, _, start, end = _context(args)
                    diag = frames.load_diag(config.influxdb, args.station, start, end, site_time)
                fig = plots.PLOTS[kind](diag, frame)
            else:
                fig = plots.PLOTS[kind](frame)
        except (ValueError, QueryError) as exc:
            if args.kind != "all":
                raise UsageError(f"{kind}: {exc}") from None
            print(f"{kind}: skipped: {exc}", file=sys.stderr)
            continue
        path = out / f"{args.station}_{kind}.{args.image_format}"
        plots.save(fig, path)
        print(path)
        made += 1
    return 0 if made else 2


def plot(args: argparse.Namespace) -> int:
    return _run(_plot, args)


# --- budget ---

def _budget(args: argparse.Namespace) -> int:
    from collector.science import budget

    _, _, frame = _load(args)
    try:
        result = budget.carbon_budget(frame, ustar_threshold=args.ustar_threshold)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(budget.budget_table(result, by=args.by))
    if args.plot:
        budget.plot_cumulative(result, args.plot)
        print(args.plot)
    if args.csv:
        getattr(result, {"day": "daily", "month": "monthly", "year": "yearly"}[args.by]).to_csv(args.csv)
        print(args.csv)
    return 0


def budget_(args: argparse.Namespace) -> int:
    return _run(_budget, args)
