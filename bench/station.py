"""What ``fluxedge station run`` costs on this machine, end to end with real processes:
emulated CSAT3 + LI-7500 (ptys) + LI-7700 (TCP) at 20 Hz, three Modbus sensors (Vaisala HMP,
Vaisala barometer, Kipp & Zonen SMP pyranometer, each a pymodbus server over TCP), a real
mosquitto, and the station as a subprocess with the full default processing chain.

    .venv/bin/python bench/station.py [--duration 600] [--period 60] [--rate 20] [--no-modbus]

Prints: average CPU of the station process and its children (the flux worker) in % of one core,
over the whole run and after the first minute; peak RSS (the station's VmHWM, and the highest sum
over the process tree, and of its PSS, which counts shared pages once); and period end -> MQTT
arrival latency of every flux record, measured by a subscriber on the same machine. Targets
(issue 5): <= 5 % of one core, <= 120 MB, <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from fluxedge.demo import towerconfig  # noqa: E402
from fluxedge.demo.servers import start_mosquitto  # noqa: E402
from fluxedge.demo.towerconfig import Instrument  # noqa: E402

CLI = [sys.executable, "-m", "fluxedge.cli"]
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
MODBUS = [  # (name, map, [(point, AmeriFlux name)])
    ("hmp", "vaisala_hmp", [("t_air", "TA"), ("rh", "RH")]),
    ("baro", "vaisala_barometer", [("pressure", "PA")]),
    ("pyrano", "kipp_zonen_smp", [("irradiance", "SW_IN")]),
]


def spawn(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT, **kw)


def halt(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_s(pid: int, with_reaped: bool) -> float:
    """CPU seconds (user + system) of ``pid``; with its reaped children's when ``with_reaped``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if with_reaped else 0)
    return ticks * TICK_S


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (the interpreter, NumPy's libraries) split between the
    processes that map them, so a sum over the tree counts each page once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreeSampler(threading.Thread):
    """Once a second: CPU seconds and RSS summed over the station's process tree."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, int]] = []  # (monotonic s, cpu s, rss kB)
        self.peak_tree_rss_kb = 0
        self.peak_tree_pss_kb = 0
        self.peak_station_hwm_kb = 0
        self.halt = threading.Event()

    def sample(self) -> None:
        cpu, rss, pss = 0.0, 0, 0
        for p in descendants(self.pid):
            try:
                cpu += cpu_s(p, with_reaped=p == self.pid)
                rss += status_kb(p, "VmRSS")
                pss += pss_kb(p)
                if p == self.pid:
                    self.peak_station_hwm_kb = max(self.peak_station_hwm_kb, status_kb(p, "VmHWM"))
            except (OSError, ValueError):
                continue
        self.peak_tree_rss_kb = max(self.peak_tree_rss_kb, rss)
        self.peak_tree_pss_kb = max(self.peak_tree_pss_kb, pss)
        self.samples.append((time.monotonic(), cpu, rss))

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.sample()


def write_config(path: Path, spool: Path, broker_port: int, devices: dict[str, str], modbus: dict[str, str],
                 period_s: int, rate_hz: float) -> None:
    sensors = [{"name": name, "map": map_name, "port": modbus[name], "poll_interval_s": 10,
                "points": [{"point": p, "name": n} for p, n in points]}
               for name, map_name, points in MODBUS if name in modbus]
    path.write_text(towerconfig.station_toml(
        "bench", [Instrument("sonic", "csat3", devices["csat3"]),
                  Instrument("irga", "li7500", devices["li7500"], {"northward_separation_m": 0.15}),
                  Instrument("ch4", "li7700", devices["li7700"], {"eastward_separation_m": 0.3})],
        mqtt_port=broker_port, spool_path=spool, period_s=period_s, rate_hz=rate_hz,
        site={"displacement_height_m": 5.0}, tables={"modbus": sensors} if sensors else None))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds to run the station (default 600)")
    ap.add_argument("--period", type=int, default=60, help="averaging period [s] (default 60, so that "
                                                          "latency is sampled often; the engine's cost scales with it)")
    ap.add_argument("--rate", type=float, default=20.0, help="instrument output rate [Hz] (default 20)")
    ap.add_argument("--no-modbus", action="store_true", help="without the three Modbus sensors")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fluxedge-bench-"))
    broker = start_mosquitto(work / "mosquitto")
    procs: list[subprocess.Popen] = []
    arrivals: list[tuple[float, float, int]] = []  # (arrival unix s, period_end unix s, seq)

    def on_message(client, userdata, msg) -> None:
        now = time.time()
        doc = json.loads(msg.payload)
        end = time.mktime(time.strptime(doc["period_end"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        arrivals.append((now, end, doc["seq"]))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-latency", protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, *_: c.subscribe("fluxedge/v1/bench/flux", qos=1)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    station = None
    try:
        emu = spawn("bridge", "emulate", "csat3", "li7500", "li7700", "--rate", str(args.rate), "--seed", "3",
                    stdout=subprocess.PIPE)
        procs.append(emu)
        devices = dict(emu.stdout.readline().decode().split()[:2] for _ in range(3))
        modbus: dict[str, str] = {}
        if not args.no_modbus:
            for name, map_name, _ in MODBUS:
                mb = spawn("bridge", "emulate", "modbus", "--tcp", "0", "--map", map_name, stdout=subprocess.PIPE)
                procs.append(mb)
                modbus[name] = mb.stdout.readline().decode().split()[1]
        cfg = work / "station.toml"
        write_config(cfg, work / "spool.sqlite", broker.port, devices, modbus, args.period, args.rate)
        log = (work / "station.log").open("wb")
        started = time.monotonic()
        station = subprocess.Popen([*CLI, "station", "run", "-c", str(cfg)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, start_new_session=True, cwd=ROOT)
        sampler = TreeSampler(station.pid)
        sampler.start()
        while time.monotonic() - started < args.duration:
            if station.poll() is not None:
                print(f"station exited with {station.returncode}; log: {work / 'station.log'}")
                return 1
            time.sleep(0.5)
        sampler.halt.set()
        sampler.join()
        sampler.sample()
    finally:
        if station is not None:
            halt(station)
        for proc in reversed(procs):
            halt(proc)
        sub.loop_stop()
        sub.disconnect()
        broker.stop()

    s = sampler.samples
    t0, c0, _ = s[0]
    t1, c1, _ = s[-1]
    warm = next((x for x in s if x[0] - t0 >= 60), s[0])
    lat = [a - e for a, e, _ in arrivals]
    print(f"station run, {args.duration:.0f} s, period {args.period} s, CSAT3 + LI-7500 + LI-7700 at "
          f"{args.rate:g} Hz, {len(modbus)} Modbus sensors, full default processing chain")
    print(f"  CPU, station + children, % of one core: {100 * (c1 - c0) / (t1 - t0):.2f} (whole run), "
          f"{100 * (c1 - warm[1]) / max(t1 - warm[0], 1e-9):.2f} (after the first minute)   target <= 5")
    print(f"  peak RSS: station VmHWM {sampler.peak_station_hwm_kb / 1024:.1f} MB, process tree "
          f"{sampler.peak_tree_rss_kb / 1024:.1f} MB (PSS {sampler.peak_tree_pss_kb / 1024:.1f} MB)   target <= 120")
    if lat:
        print(f"  period end -> MQTT arrival: {len(lat)} fluxes, median {statistics.median(lat):.2f} s, "
              f"max {max(lat):.2f} s   target <= 2  (seqs {[x[2] for x in arrivals]})")
    else:
        print("  period end -> MQTT arrival: no flux arrived (run longer than two periods)")
    print(f"  logs and config: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
