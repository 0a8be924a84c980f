"""``fluxedge demo``: a whole emulated tower on this machine, end to end, on real servers.

mosquitto and influxd (temporary, 127.0.0.1, free ports) <- collector <- MQTT <- station <- ptys
<- emulated CSAT3 + LI-7500. Every part runs as its own process, as it would in the field.
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from collector.config import InfluxConfig
from collector.query import QueryError, create_database, influxql
from firmware_bridge.turbulence import MD_KG_MOL, MV_KG_MOL, R_J_MOL_K, TurbulenceSpec, true_fluxes
from fluxedge.demo import towerconfig
from fluxedge.demo.servers import MissingServerError, find_binary, start_influxd, start_mosquitto
from fluxedge.demo.towerconfig import Instrument
from fluxedge.demo.v2shim import V2WriteShim

DATABASE = "fluxedge"
COLUMNS = ("H", "LE", "FC", "USTAR", "TAU", "ZL", "WS", "N_SAMPLES")
#: the emulated LI-7500 falls silent this long, this many seconds after the emulator starts; the
#: demo's station raises ``instrument_silent`` after SILENT_ALARM_S (30 s on a real tower) and clears it
#: when frames come back
SILENCE_AT_S, SILENCE_S, SILENT_ALARM_S = 10.0, 4.0, 2.0
#: a period missing more samples than this is skipped (the station's and EddyPro's default)
MAX_MISSING_PCT = 10.0


def station_toml(spool: Path, mqtt_port: int, period_s: int, sonic: str, irga: str) -> str:
    # The emulated turbulence is spectrally white, not the Kaimal cospectra the spectral corrections
    # assume; a real tower keeps the EddyPro defaults.
    return towerconfig.station_toml(
        "demo-tower", [Instrument("sonic", "csat3", sonic, {"baud": 9600}),
                       Instrument("irga", "li7500", irga, {"baud": 115200, "northward_separation_m": 0.15})],
        mqtt_port=mqtt_port, spool_path=spool, period_s=period_s, rate_hz=20,
        site={"latitude_deg": 1.3521, "longitude_deg": 103.8198, "altitude_m": 15.0, "canopy_height_m": 8.0},
        processing={"spectral_corrections": "none"},
        tables={"alarm": [{"name": "instrument_silent", "above": SILENT_ALARM_S}],
                # a diag record per period (at most a minute): the demo's health plot has points
                "diagnostics": {"interval_s": float(min(60, period_s))}})


def true_values(spec: TurbulenceSpec | None = None) -> dict[str, float]:
    """What the emulators' turbulence model puts in (its population covariances, ``true_fluxes``), in
    the flux table's units: H and LE [W m-2] with moist air's density, heat capacity and latent heat,
    FC [umol m-2 s-1], USTAR and WS [m s-1] and TAU [kg m-1 s-2] in the mean wind's frame."""
    spec = spec or TurbulenceSpec()
    true = true_fluxes(spec)
    t, chi_v = spec.t_mean_k, spec.chi_v_mean_mmol_mol * 1e-3
    n_dry = spec.pressure_kpa * 1e3 / (R_J_MOL_K * t) / (1.0 + chi_v)  # [mol m-3]
    rho_d, rho_v = n_dry * MD_KG_MOL, n_dry * chi_v * MV_KG_MOL
    q = rho_v / (rho_d + rho_v)
    cp = 1004.67 * (1.0 - q) + 1875.0 * q  # [J kg-1 K-1]
    latent = (3147.5 - 2.37 * t) * 1e3  # [J kg-1] (EddyPro's formula)
    speed = math.hypot(spec.u_mean_m_s, spec.v_mean_m_s)
    uw, vw = spec.cov("u", "w"), spec.cov("v", "w")  # rotated onto the mean wind:
    uw_r = (spec.u_mean_m_s * uw + spec.v_mean_m_s * vw) / speed
    vw_r = (spec.u_mean_m_s * vw - spec.v_mean_m_s * uw) / speed
    return {"H": (rho_d + rho_v) * cp * true["W_T"], "LE": latent * true["FH2O"] * 1e-3 * MV_KG_MOL, "FC": true["FC"],
            "USTAR": math.hypot(uw_r, vw_r) ** 0.5, "TAU": (rho_d + rho_v) * uw_r, "WS": speed}


def collector_toml(mqtt_port: int, influx_url: str, api: int) -> str:
    influx = (f'url = "{influx_url}"\napi = 1\ndatabase = "{DATABASE}"\n' if api == 1 else
              f'url = "{influx_url}"\napi = 2\nbucket = "{DATABASE}/autogen"\ntoken = "demo:demo"\n')
    return f"""[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[influxdb]
{influx}
[ingest]
client_id = "fluxedge-demo-collector"
batch_age_s = 0.2
"""


def _forward(proc: subprocess.Popen, label: str, seen: list[str] | None = None) -> threading.Thread:
    """Print ``proc``'s log lines with ``label``; keep its skipped periods and alarms in ``seen``."""
    def pump() -> None:
        for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            print(f"[{label}] {text}", flush=True)
            if seen is not None and any(f" {name} " in text for name in ("period_skipped", "alarm_raised",
                                                                          "alarm_cleared")):
                seen.append(text)
    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def print_rows(rows: list[dict[str, object]], true: dict[str, float] | None = None) -> None:
    """The flux rows, and below them the emulator's true values (``-`` where there is none)."""
    header = ["period end (UTC)", *COLUMNS]
    print("  ".join(f"{h:>19}" if i == 0 else f"{h:>9}" for i, h in enumerate(header)))
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(row["time"])))
        cells = [f"{when:>19}"]
        for name in COLUMNS:
            value = row.get(name)
            cells.append(f"{'-9999':>9}" if value is None else f"{float(value):>9.4g}")
        print("  ".join(cells))
    if true is not None:
        cells = [f"{'true (emulator)':>19}"]
        cells += [f"{'-':>9}" if name not in true else f"{true[name]:>9.4g}" for name in COLUMNS]
        print("  ".join(cells))


def print_alarms(rows: list[dict[str, object]]) -> None:
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(row["time"])))
        print(f"{when:>19}  {row.get('source')}  {row.get('alarm')}  {row.get('state')}  {row.get('message')}")


def sampling_error_pct(n_samples: int, correlation: float) -> float:
    """Standard error [%] of a covariance estimated from ``n_samples`` independent samples of two
    Gaussian series with this correlation: sqrt((1 + r^2) / n) / |r|."""
    return 100.0 * math.sqrt((1.0 + correlation**2) / n_samples) / abs(correlation)


def run_demo(duration_s: float | None, period_s: int, api: int, keep: bool, plots: str | None = None) -> int:
    if period_s <= 0 or 86400 % period_s:
        print(f"fluxedge: error: --period must divide a day evenly, got {period_s}", file=sys.stderr)
        return 2
    try:
        find_binary("mosquitto")
        find_binary("influxd")
    except MissingServerError as exc:
        print(f"fluxedge: error: {exc}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="fluxedge-demo-"))
    servers, procs, shim = [], {}, None
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        print(f"demo: working directory {workdir}")
        servers.append(mosq := start_mosquitto(workdir / "mosquitto"))
        servers.append(influx := start_influxd(workdir / "influxdb"))
        influx_url = f"http://127.0.0.1:{influx.port}"
        read_config = InfluxConfig(url=influx_url, database=DATABASE)
        create_database(read_config, DATABASE)
        print(f"demo: mosquitto on 127.0.0.1:{mosq.port}, influxd on {influx_url}, database {DATABASE!r}")
        if api == 2:
            shim = V2WriteShim(influx_url)
            print(f"demo: InfluxDB v2 write API shim on {shim.url}")
        me = [sys.executable, "-m", "fluxedge.cli"]
        emu = subprocess.Popen([*me, "bridge", "emulate", "csat3", "li7500", "--rate", "20",
                                "--fault", f"li7500=silence@{SILENCE_AT_S:g}+{SILENCE_S:g}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        procs["emulator"] = emu
        devices = dict(emu.stdout.readline().decode().split() for _ in range(2))
        silence_at = time.strftime("%H:%M:%S", time.gmtime(time.time() + SILENCE_AT_S))
        print(f"demo: emulated CSAT3 on {devices['csat3']}, LI-7500 on {devices['li7500']}")
        print(f"demo: the LI-7500 will fall silent for {SILENCE_S:g} s at {silence_at} UTC: the station raises "
              f"the instrument_silent alarm after {SILENT_ALARM_S:g} s without frames (30 s on a real tower) and "
              f"clears it when they come back")
        (workdir / "station.toml").write_text(
            station_toml(workdir / "spool.sqlite", mosq.port, period_s, devices["csat3"], devices["li7500"]))
        (workdir / "collector.toml").write_text(collector_toml(mosq.port, shim.url if shim else influx_url, api))
        seen: list[str] = []
        for name in ("collector", "station"):
            procs[name] = subprocess.Popen([*me, name, "run", "-c", str(workdir / f"{name}.toml")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           start_new_session=True)
            _forward(procs[name], name, seen if name == "station" else None)
        now = time.time()
        first = math.ceil(now / period_s) * period_s
        print(f"demo: periods align to the clock; the first full {period_s}-s period starts in "
              f"{first - now:.0f} s" + (f", then {duration_s:.0f} s of data" if duration_s else ", stop with Ctrl-C"))
        missed = 100.0 * (now - (first - period_s)) / period_s
        clock = time.strftime("%H:%M:%S", time.gmtime(first - period_s))
        if missed > MAX_MISSING_PCT:
            print(f"demo: the period that began at {clock} UTC started {now - first + period_s:.0f} s before the "
                  f"station did: it lacks about {missed:.0f} % of its samples, more than the {MAX_MISSING_PCT:g} % a "
                  f"period may miss (EddyPro's limit), so the station skips it (period_skipped; its raw data are "
                  f"still archived)")
        else:
            print(f"demo: the period that began at {clock} UTC started only {now - first + period_s:.0f} s before the "
                  f"station did: it lacks about {missed:.0f} % of its samples, within the {MAX_MISSING_PCT:g} % a "
                  f"period may miss (EddyPro's limit), so it is processed too")
        end = first + duration_s + 2.0 if duration_s else math.inf
        while time.time() < end and not interrupted.is_set():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"demo: {name} exited with status {proc.returncode}", file=sys.stderr)
                    return 1
            interrupted.wait(0.5)
        print("demo: stopping the station (it sends what it has spooled)")
        _stop(procs.pop("station"))
        time.sleep(1.5)  # let the collector write the last messages
        _stop(procs.pop("collector"))
        try:
            rows = influxql(read_config, "SELECT * FROM flux ORDER BY time")
        except QueryError as exc:
            print(f"fluxedge: error: {exc}", file=sys.stderr)
            return 1
        try:
            alarms = influxql(read_config, "SELECT * FROM alarm ORDER BY time")
        except QueryError:  # no alarm written: the measurement does not exist
            alarms = []
        print(f"\nFlux rows read back from InfluxDB ({len(rows)}; H, LE W m-2; FC umol m-2 s-1; "
              "USTAR, WS m s-1; TAU kg m-1 s-2), and the emulator's true values:")
        print_rows(rows, true_values())
        error = sampling_error_pct(period_s * 20, TurbulenceSpec().correlations[("w", "chi_c")])
        print(f"(the true values are the turbulence model's population covariances; one {period_s}-s period of "
              f"{period_s * 20} samples estimates each to about +-{error:.0f} % (one standard error); the LI-7500's "
              f"seconds of silence leave a gap in the gas series of the period they fall in)")
        for line in (x for x in seen if " period_skipped " in x):
            fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
            print(f"Skipped: the period from {fields.get('period_start')}: {fields.get('samples')} of "
                  f"{fields.get('expected')} samples ({fields.get('missing_pct')} % missing, limit "
                  f"{fields.get('limit_pct')} %): the station started during it")
        print(f"\nAlarms read back from InfluxDB ({len(alarms)}):")
        print_alarms(alarms)
        if plots and rows:
            from fluxedge.demo.plots import make_plots

            print(f"\nPlots of the demo's data (fluxedge plot) in {plots}:")
            for kind, made in make_plots(read_config, first - 2 * period_s, time.time() + period_s, Path(plots)):
                print(f"  {kind}: {made}" if isinstance(made, Path) else f"  {kind}: not drawn: {made}")
        return 0 if rows else 1
    finally:
        for proc in procs.values():
            _stop(proc)
        if shim:
            shim.stop()
        for server in reversed(servers):
            server.stop()
        signal.signal(signal.SIGINT, previous)
        if keep:
            print(f"demo: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
