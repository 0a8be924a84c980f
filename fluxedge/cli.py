"""The ``fluxedge`` command. The composition root: each subcommand imports its package lazily,
so a station node never loads collector code and vice versa."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys

from station.processing.runtime import configure_numeric_process

# Before NumPy loads: one BLAS thread per process (parallel work goes through processes, so that a
# station node keeps its other core for acquisition) and malloc tuned for large temporaries.
configure_numeric_process()

from fluxedge import __version__  # noqa: E402

#: libraries of the optional extras (pyproject.toml) -> the extra that installs them
OPTIONAL_EXTRAS = {"apprise": "collector", "pandas": "science", "matplotlib": "science", "hesseflux": "science",
                   "starlette": "web", "uvicorn": "web", "jinja2": "web", "multipart": "web", "itsdangerous": "web"}


def _station_run(args: argparse.Namespace) -> int:
    from station import config as station_config
    from station.daemon import Station

    cfg, digest = station_config.load(args.config)
    station = Station(cfg, digest)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: station.stop())
    station.run()
    return 0


def _station_check(args: argparse.Namespace) -> int:
    from station import check

    return check.main(args.config, args.seconds)


def _station_status(args: argparse.Namespace) -> int:
    from station.health import status

    return status.main(args.config)


def _flux_process(args: argparse.Namespace) -> int:
    from station.reprocess import command as reprocess

    if args.jobs < 1:
        print("fluxedge: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        options = reprocess.options_from_args(args)
    except ValueError as exc:
        print(f"fluxedge: error: {exc}", file=sys.stderr)
        return 2
    from station.reprocess.executor import SchedulerError

    run = reprocess.run_tree if args.tree else reprocess.run
    try:
        return run(args.raw, args.output, args.metadata, args.period, args.jobs, options=options, digits=args.digits,
                   utc_offset_h=args.utc_offset, scheduler=args.scheduler)
    except SchedulerError as exc:
        print(f"fluxedge: error: {exc}", file=sys.stderr)
        return 2


def _digits(value: str) -> int | None:
    """``--digits``: significant digits 1..17, or ``full`` (Python's repr: the exact float64)."""
    if value == "full":
        return None
    try:
        digits = int(value)
    except ValueError:
        digits = 0
    if not 1 <= digits <= 17:
        raise argparse.ArgumentTypeError(f"must be 1..17 or 'full', got {value!r}")
    return digits


def _duration_s(value: str) -> float:
    """``--for``: a number with s, m, h or d (90m, 2h, 1d); a bare number is seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    scale = units.get(text[-1:])
    try:
        seconds = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        seconds = math.nan
    if not (0 <= seconds <= 366 * 86400):
        raise argparse.ArgumentTypeError(f"must be like 90m, 2h or 1d (at most a year), got {value!r}")
    return seconds


def _utc_offset(value: str) -> float:
    """``--utc-offset``: hours east of UTC, -12..14 in quarter hours (every zone's offset is one)."""
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not (-12.0 <= hours <= 14.0) or (hours * 4) != round(hours * 4):
        raise argparse.ArgumentTypeError(f"must be hours east of UTC, -12 to 14 in steps of 0.25 (e.g. -6, 5.5), "
                                         f"got {value!r}")
    return hours


def _flux_planarfit(args: argparse.Namespace) -> int:
    from station.reprocess import command as reprocess

    return reprocess.planar_fit(args.raw, args.output, args.metadata, args.sectors)


def _collector_run(args: argparse.Namespace) -> int:
    from collector import config as collector_config
    from collector.alarms.service import build_service
    from collector.ingest import Collector

    config = collector_config.load(args.config)
    collector = Collector(config)
    alarms = build_service(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: collector.stop())
    if alarms is not None:
        alarms.start()
        collector.health_checks.append(alarms.health_problem)  # the watchdog covers the alarm thread too
    try:
        return collector.run()  # 1 if a thread died (the service manager restarts it)
    finally:
        if alarms is not None:
            alarms.stop()


def _alarms(args: argparse.Namespace) -> int:
    from collector import config as collector_config
    from collector.alarms import commands

    return commands.main(collector_config.load(args.config), args)


def _science(name: str):
    def run(args: argparse.Namespace) -> int:
        from collector.science import commands

        return getattr(commands, name)(args)

    return run


def _science_parsers(sub) -> None:
    """query, export, plot, budget: the scientists' commands (the science extra)."""
    q = sub.add_parser("query", help="fluxes and met of a station as a table, CSV or JSON",
                       description="Periods of one station from InfluxDB: fluxes as the station computed them "
                                   "and met averaged over each period; times are period ends in the site's "
                                   "local standard time. Python: collector.science.frame.load() gives the same "
                                   "as a pandas DataFrame.")
    q.add_argument("--vars", help="comma-separated AmeriFlux names, e.g. FC,LE,H (default: all); QC flags come along")
    q.add_argument("--qc-max", type=int, choices=(0, 1, 2), help="blank fluxes whose QC flag is above this")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--all-periods", action="store_true", help="also the periods without any value")
    e = sub.add_parser("export", help="AmeriFlux BASE or FLUXNET-style half-hourly file",
                       description="Write <SITE_ID>_HH_<start>_<end>.csv (AmeriFlux BASE: local standard time, "
                                   "one row per half hour, -9999 for missing), or a FLUXNET-style file; "
                                   "--check FILE checks any file against AmeriFlux's format rules.")
    e.add_argument("--format", choices=("ameriflux", "fluxnet"), default="ameriflux")
    e.add_argument("--site-id", help="AmeriFlux site id CC-XXX (default: the station's [[site]] table)")
    e.add_argument("-o", "--output", default=".", help="directory for the file (default: here)")
    e.add_argument("--gapfilled", action="store_true", help="fluxnet: add the budget's gap-filled and partitioned "
                                                            "variables (a FULLSET)")
    e.add_argument("--check", metavar="FILE", help="check FILE against AmeriFlux's format rules and exit")
    p = sub.add_parser("plot", help="time series, diurnal cycles, fingerprint, energy balance, footprint, health",
                       description="Plots of one station's periods (PNG or SVG) into a directory.")
    p.add_argument("kind", choices=("all", "timeseries", "diurnal", "fingerprint", "energy_balance", "footprint",
                                    "health"), help="which plot ('all': every one the data allow)")
    p.add_argument("-o", "--output", default=".", help="directory for the images (default: here)")
    p.add_argument("--image-format", choices=("png", "svg"), default="png")
    b = sub.add_parser("budget", help="u* filtering, gap-filling, partitioning, sums in g C m-2",
                       description="The carbon budget of a station: u* filtering (Papale et al. 2006), MDS "
                                   "gap-filling (Reichstein et al. 2005), night-time and day-time partitioning "
                                   "(Reichstein et al. 2005; Lasslop et al. 2010) with hesseflux, sums per day, "
                                   "month or year with their uncertainty.")
    b.add_argument("--by", choices=("day", "month", "year"), default="month")
    b.add_argument("--ustar-threshold", type=float, help="use this u* threshold [m s-1] instead of estimating it")
    b.add_argument("--plot", metavar="FILE", help="the cumulative plot (.png or .svg)")
    b.add_argument("--csv", metavar="FILE", help="the sums as CSV")
    for cmd, name in ((q, "query"), (e, "export_"), (p, "plot"), (b, "budget_")):
        required = cmd is not e
        cmd.add_argument("--station", required=required, help="the station id")
        cmd.add_argument("--from", dest="start", required=required, metavar="TIME",
                         help="ISO date or time, local standard time of the site unless it has an offset")
        cmd.add_argument("--to", dest="end", required=required, metavar="TIME", help="end of the range (inclusive)")
        cmd.add_argument("--time-zone", help="IANA zone whose standard time stamps the output (default: the "
                                             "station's [[site]] time_zone, else UTC)")
        cmd.add_argument("-c", "--config", default="/etc/fluxedge/collector.toml",
                         help="collector TOML file (default /etc/fluxedge/collector.toml)")
        cmd.set_defaults(func=_science(name))


def _web(args: argparse.Namespace) -> int:
    if args.hash_password:
        import getpass

        from collector.web.auth import hash_password

        password = getpass.getpass("password: ")
        if not password or password != getpass.getpass("again: "):
            print("fluxedge: error: the two passwords differ (or are empty)", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    import uvicorn

    from collector import config as collector_config
    from collector.web.app import create_app

    config = collector_config.load(args.config)
    host = args.bind or config.web.bind
    port = args.port or config.web.port
    print(f"fluxedge web: http://{host}:{port}/ (read-only{'' if config.web.user else ', no users configured'})",
          file=sys.stderr)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fluxedge.demo.run import run_demo

    return run_demo(duration_s=args.duration, period_s=args.period, api=args.api, keep=args.keep, plots=args.plots)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fluxedge",
        description="Eddy-covariance flux tower software: instrument drivers and emulators, on-device "
                    "fluxes, an MQTT spool, and a collector into InfluxDB.",
        epilog="Configuration files are documented in deploy/examples/. Try 'fluxedge demo' first.")
    parser.add_argument("--version", action="version", version=f"fluxedge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (also after the subcommand)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (also after it)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    station = sub.add_parser("station", help="the tower daemon", description="The tower node daemon.")
    ssub = station.add_subparsers(dest="station_command", required=True, metavar="COMMAND")
    run = ssub.add_parser("run", help="acquire, compute fluxes, spool and publish",
                          description="Read the instruments, compute fluxes every averaging period, "
                                      "spool results to disk and publish them over MQTT.")
    run.add_argument("-c", "--config", required=True, help="station TOML file (see deploy/examples/station.toml)")
    run.set_defaults(func=_station_run)
    chk = ssub.add_parser("check", help="validate the config and test everything the daemon needs",
                          description="Validate the station config, then test what the daemon needs: each "
                                      "instrument streams, each Modbus sensor answers, the MQTT broker accepts "
                                      "the configured credentials and TLS, the spool, archive and status "
                                      "directories are writable. While the daemon runs, its ports are left "
                                      "alone: its status file is reported instead. Exits 1 if a check failed.")
    chk.add_argument("-c", "--config", required=True, help="station TOML file")
    chk.add_argument("--seconds", type=float, default=3.0, help="how long to listen to each instrument")
    chk.set_defaults(func=_station_check)
    st = ssub.add_parser("status", help="live rates, last values, flags, spool, last flux and link state",
                         description="Show the running daemon's status file (rewritten every few seconds): "
                                     "per-instrument rates, last values and diagnostic flags, spool depth, the "
                                     "last flux, the MQTT link and active alarms. Exits 1 if the daemon is not "
                                     "running (no file, or one older than 3 x its interval).")
    st.add_argument("-c", "--config", default="/etc/fluxedge/station.toml",
                    help="station TOML file (default /etc/fluxedge/station.toml)")
    st.set_defaults(func=_station_status)

    coll = sub.add_parser("collector", help="MQTT to InfluxDB", description="The server-side collector.")
    csub = coll.add_subparsers(dest="collector_command", required=True, metavar="COMMAND")
    crun = csub.add_parser("run", help="subscribe and write to InfluxDB",
                           description="Subscribe to the stations' messages, validate them and write them "
                                       "to InfluxDB; acknowledge each message only after its write.")
    crun.add_argument("-c", "--config", required=True,
                      help="collector TOML file (see deploy/examples/collector.toml)")
    crun.set_defaults(func=_collector_run)

    al = sub.add_parser("alarms", help="active alarms, history, acknowledge, silence a station",
                        description="Station and fleet alarms as the collectors hold them (the broker's retained "
                                    "state) and their history (InfluxDB). ack and silence go to the leading "
                                    "collector, which confirms them.")
    asub = al.add_subparsers(dest="alarms_command", required=True, metavar="COMMAND")
    alist = asub.add_parser("list", help="active alarms, and those cleared in the last --hours",
                            description="Active alarms (raised or acknowledged) from the broker, and alarms "
                                        "cleared in the last --hours from InfluxDB.")
    alist.add_argument("--active", action="store_true", help="only active alarms")
    alist.add_argument("--hours", type=float, default=24.0, help="cleared alarms of this many past hours")
    aack = asub.add_parser("ack", help="acknowledge an alarm: no more reminders; it still clears by itself",
                           description="Acknowledge the active alarm whose id starts with ID.")
    aack.add_argument("id", metavar="ID", help="the alarm id (or a unique beginning of it)")
    aack.add_argument("--by", default=os.environ.get("USER", ""), help="who acknowledges")
    asil = asub.add_parser("silence", help="a maintenance window: no notifications for a station",
                           description="Silence a station's notifications for a while (a technician on the "
                                       "tower). Alarms are still raised, stored and cleared; those still active "
                                       "when the window ends are notified then. --for 0 ends a silence.")
    asil.add_argument("--station", required=True)
    asil.add_argument("--for", dest="duration", required=True, type=_duration_s, metavar="DURATION",
                      help="e.g. 90m, 2h, 1d (0 ends the silence)")
    asil.add_argument("--reason", default="", help="shown in the history")
    asil.add_argument("--by", default=os.environ.get("USER", ""), help="who silences")
    ahist = asub.add_parser("history", help="every alarm transition from InfluxDB",
                            description="Every raise, acknowledgement, reminder and clear, oldest first.")
    ahist.add_argument("--station", help="only this station")
    ahist.add_argument("--hours", type=float, default=7 * 24.0, help="how far back (default 7 days)")
    for p in (alist, aack, asil, ahist):
        p.add_argument("-c", "--config", default="/etc/fluxedge/collector.toml",
                       help="collector TOML file (default /etc/fluxedge/collector.toml)")
        p.set_defaults(func=_alarms)

    _science_parsers(sub)
    w = sub.add_parser("web", help="the fleet page, station pages and alarms in a browser",
                       description="Serve the fleet page (every station's state, last flux and QC, spool, alarms), "
                                   "a page per station (fluxes by QC, diurnal cycle, met, instrument health) and "
                                   "the alarms, from InfluxDB. Read-only without signing in; [[web.user]] in "
                                   "collector.toml may acknowledge and silence. Listens on [web] bind (default "
                                   "127.0.0.1).")
    w.add_argument("-c", "--config", default="/etc/fluxedge/collector.toml",
                   help="collector TOML file (default /etc/fluxedge/collector.toml)")
    w.add_argument("--bind", help="address to listen on (default: [web] bind)")
    w.add_argument("--port", type=int, help="port (default: [web] port)")
    w.add_argument("--hash-password", action="store_true",
                   help="read a password twice and print its hash for [[web.user]] password_hash")
    w.set_defaults(func=_web)

    flux = sub.add_parser("flux", help="reprocess raw files into fluxes (EddyPro-compatible)",
                          description="Offline processing of raw high-frequency files.")
    fsub = flux.add_subparsers(dest="flux_command", required=True, metavar="COMMAND")
    proc = fsub.add_parser("process", help="raw files -> one AmeriFlux BASE row per averaging period",
                           description="Compute fully corrected fluxes from LI-COR .ghg, Campbell TOA5 or delimited "
                                       "text files with EddyPro's default settings, and write AmeriFlux BASE columns "
                                       "(TIMESTAMP_START/END in local standard time, -9999 for missing).")
    proc.add_argument("raw", nargs="+", metavar="RAW", help="raw files (.ghg, TOA5 .dat, delimited text), local "
                                                            "or URLs of object storage (s3://bucket/...: fsspec)")
    proc.add_argument("--metadata", help="EddyPro .metadata file (needed for TOA5 and text; .ghg carry their own)")
    proc.add_argument("--period", type=float, metavar="MINUTES",
                      help="averaging period: files are joined into (or cut into) periods aligned to the clock "
                           "(:00, :30 ...), as EddyPro does; a period missing more than 10 %% of its records gets "
                           "-9999 and a reason (default: each file is one period)")
    proc.add_argument("--utc-offset", type=_utc_offset, metavar="HOURS",
                      help="the site's standard time as hours east of UTC (e.g. -6, 5.5): TIMESTAMP_START/END "
                           "are UTC + HOURS, overriding the zone the files name (.ghg header Timezone); files "
                           "that name none are taken to run on this time (default: each file's zone, "
                           "without daylight saving; UTC if it names none)")
    proc.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    proc.add_argument("--scheduler", metavar="tcp://HOST:8786",
                      help="compute on this Dask distributed cluster instead of local processes (the cluster "
                           "extra; workers need fluxedge installed and the raw files at the same paths)")
    proc.add_argument("--tree", action="store_true",
                      help="each RAW is the root of station trees (RAW/<station>/YYYY/MM/*.ghg, or "
                           "s3://bucket/raw): every station in one run, OUT a directory getting <station>.csv each")
    proc.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="AmeriFlux CSV to write (a "
                                                                                 "directory with --tree)")
    opt = proc.add_argument_group("processing options (defaults: EddyPro's, as in the reference runs)")
    opt.add_argument("--despiking", choices=["vickers_mahrt", "mauder", "none"], default="vickers_mahrt")
    opt.add_argument("--rotation", choices=["double", "triple", "planar_fit"], default="double")
    opt.add_argument("--planar-fit", metavar="FIT.json", help="coefficients from 'fluxedge flux planarfit'")
    opt.add_argument("--detrending", choices=["block", "linear", "running_mean", "exponential"], default="block")
    opt.add_argument("--time-constant", type=float, default=250.0, metavar="S",
                     help="running-mean / exponential detrending time constant (default 250 s)")
    opt.add_argument("--lag", choices=["covariance_max_default", "covariance_max", "fixed", "none"],
                     default="covariance_max_default")
    opt.add_argument("--spectral", choices=["moncrieff", "horst", "none"], default="moncrieff")
    opt.add_argument("--qc", choices=["mauder_foken_2004", "foken_2003", "goeckede_2006"], default="mauder_foken_2004",
                     help="flag system of the *_SSITC_TEST columns")
    opt.add_argument("--footprint", choices=["kljun_2004", "kljun_2015", "none"], default="kljun_2004")
    opt.add_argument("--self-heating", choices=["none", "burba_linear"], default="none",
                     help="LI-7500 surface heating in the density corrections (Burba et al. 2008; default none)")
    opt.add_argument("--no-statistical-tests", dest="statistical_tests", action="store_false",
                     help="despiking and absolute limits only, no Vickers & Mahrt (1997) tests (as the station's "
                          "processing.statistical_tests = false)")
    opt.add_argument("--no-random-uncertainty", dest="random_uncertainty", action="store_false",
                     help="skip the Finkelstein & Sims (2001) random errors (*_RANDUNC; the station's "
                          "processing.random_uncertainty = false)")
    proc.add_argument("--digits", type=_digits, default=6, metavar="N|full",
                      help="significant digits of the CSV values (default 6; 'full': exact, Python's repr)")
    proc.set_defaults(func=_flux_process)
    pf = fsub.add_parser("planarfit", help="fit planar-fit tilt coefficients from many periods",
                         description="Fit the sector-wise planar fit of Wilczak et al. (2001) from the mean winds "
                                     "of many raw files; writes the coefficients as JSON.")
    pf.add_argument("raw", nargs="+", metavar="RAW")
    pf.add_argument("--metadata", help="EddyPro .metadata file (for TOA5 and text)")
    pf.add_argument("--sectors", type=int, default=1, help="wind sectors (default 1)")
    pf.add_argument("-o", "--output", required=True, metavar="FIT.json")
    pf.set_defaults(func=_flux_planarfit)

    from firmware_bridge import cli as bridge_cli

    bridge_cli.add_parser(sub)

    demo = sub.add_parser("demo", help="a whole emulated tower end to end on this machine",
                          description="Start a temporary mosquitto and influxd, emulated CSAT3 and LI-7500 "
                                      "instruments on pseudo-terminals, the station and the collector; show "
                                      "what happens (a few seconds of silence from the LI-7500 raise and "
                                      "clear an alarm), then print the flux rows read back from InfluxDB beside "
                                      "the emulator's true fluxes, and the alarms.")
    demo.add_argument("--duration", type=float, default=None,
                      help="seconds to run after the first period boundary (default: until Ctrl-C)")
    demo.add_argument("--period", type=int, default=60, help="averaging period in seconds (default 60)")
    demo.add_argument("--api", type=int, choices=(1, 2), default=1,
                      help="InfluxDB write API the collector uses (2 goes through a v2 translating shim)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory with configs and logs")
    demo.add_argument("--plots", metavar="DIR", help="draw every plot the demo's data allow into DIR (the "
                                                     "science extra)")
    demo.set_defaults(func=_demo)
    return parser


def _show_default(action: argparse.Action) -> argparse.Action:
    """An option's help shows its default unless it says it already (or it has none worth saying)."""
    default = action.default
    if (action.option_strings and default is not None and not isinstance(default, bool)
            and default not in (argparse.SUPPRESS, []) and action.help != argparse.SUPPRESS
            and "default" not in (action.help or "")):
        action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
    return action


class _Parser(argparse.ArgumentParser):
    """The ``fluxedge`` parser and, through ``add_subparsers``, every subcommand's: each option shows its
    default in ``--help`` (:func:`_show_default`), also in argument groups."""

    def add_argument(self, *args, **kwargs):
        return _show_default(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        plain = group.add_argument
        group.add_argument = lambda *a, **k: _show_default(plain(*a, **k))
        return group


def _verbosity_parser() -> argparse.ArgumentParser:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-v", "--verbose", action="store_true")
    pre.add_argument("-q", "--quiet", action="store_true")
    return pre


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``-v``/``-q`` are taken wherever they stand, before or after the subcommand."""
    verbosity, rest = _verbosity_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)
    args.verbose, args.quiet = verbosity.verbose, verbosity.quiet
    return args


def _config_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a :class:`fluxedge.common.configschema.ConfigError`, without importing the schema
    (tomllib, hashlib, difflib) for commands that read no config: if it was never imported, it is not one."""
    schema = sys.modules.get("fluxedge.common.configschema")
    return schema is not None and isinstance(exc, schema.ConfigError)


def main(argv: list[str] | None = None) -> int:
    from fluxedge.common import logs

    args = parse_args(argv)
    logs.setup(verbose=args.verbose, quiet=args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _config_error(exc):
            print(f"fluxedge: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, ModuleNotFoundError) and exc.name in OPTIONAL_EXTRAS:
            print(f"fluxedge: error: this command needs {exc.name}: pip install "
                  f"'fluxedge[{OPTIONAL_EXTRAS[exc.name]}]'", file=sys.stderr)
            return 2
        if isinstance(exc, BrokenPipeError):  # output piped into head/less that quit early
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
