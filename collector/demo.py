"""``fluxedge demo``: a whole emulated tower on this machine, end to end, on real servers.

mosquitto and influxd (temporary, 127.0.0.1, free ports) <- collector <- MQTT <- station <- ptys
<- emulated CSAT3 + LI-7500. Every part runs as its own process, as it would in the field.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from collector.config import InfluxConfig
from collector.localservers import MissingServerError, find_binary, start_influxd, start_mosquitto
from collector.query import QueryError, create_database, influxql
from collector.v2shim import V2WriteShim
from station import towerconfig
from station.towerconfig import Instrument

DATABASE = "fluxedge"
COLUMNS = ("H", "LE", "FC", "USTAR", "TAU", "ZL", "WS", "N_SAMPLES")


def station_toml(spool: Path, mqtt_port: int, period_s: int, sonic: str, irga: str) -> str:
    # The emulated turbulence is spectrally white, not the Kaimal cospectra the spectral corrections
    # assume; a real tower keeps the EddyPro defaults.
    return towerconfig.station_toml(
        "demo-tower", [Instrument("sonic", "csat3", sonic, {"baud": 9600}),
                       Instrument("irga", "li7500", irga, {"baud": 115200, "northward_separation_m": 0.15})],
        mqtt_port=mqtt_port, spool_path=spool, period_s=period_s, rate_hz=20,
        site={"latitude_deg": 1.3521, "longitude_deg": 103.8198, "altitude_m": 15.0, "canopy_height_m": 8.0},
        processing={"spectral_corrections": "none"})


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


def _forward(proc: subprocess.Popen, label: str) -> threading.Thread:
    def pump() -> None:
        for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            print(f"[{label}] {text}", flush=True)
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


def print_rows(rows: list[dict[str, object]]) -> None:
    header = ["period end (UTC)", *COLUMNS]
    print("  ".join(f"{h:>19}" if i == 0 else f"{h:>9}" for i, h in enumerate(header)))
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(row["time"])))
        cells = [f"{when:>19}"]
        for name in COLUMNS:
            value = row.get(name)
            cells.append(f"{'-9999':>9}" if value is None else f"{float(value):>9.4g}")
        print("  ".join(cells))


def run_demo(duration_s: float | None, period_s: int, api: int, keep: bool) -> int:
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
        me = [sys.executable, "-m", "station.cli"]
        emu = subprocess.Popen([*me, "bridge", "emulate", "csat3", "li7500", "--rate", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        procs["emulator"] = emu
        devices = dict(emu.stdout.readline().decode().split() for _ in range(2))
        print(f"demo: emulated CSAT3 on {devices['csat3']}, LI-7500 on {devices['li7500']}")
        (workdir / "station.toml").write_text(
            station_toml(workdir / "spool.sqlite", mosq.port, period_s, devices["csat3"], devices["li7500"]))
        (workdir / "collector.toml").write_text(collector_toml(mosq.port, shim.url if shim else influx_url, api))
        for name in ("collector", "station"):
            procs[name] = subprocess.Popen([*me, name, "run", "-c", str(workdir / f"{name}.toml")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           start_new_session=True)
            _forward(procs[name], name)
        first = math.ceil(time.time() / period_s) * period_s
        print(f"demo: periods align to the clock; the first full {period_s}-s period starts in "
              f"{first - time.time():.0f} s" + (f", then {duration_s:.0f} s of data" if duration_s else
                                                  ", stop with Ctrl-C"))
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
        print(f"\nFlux rows read back from InfluxDB ({len(rows)}; H, LE W m-2; FC umol m-2 s-1; "
              "USTAR, WS m s-1; TAU kg m-1 s-2):")
        print_rows(rows)
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
