"""Collector throughput and latency with 1,000 simulated towers, on real mosquitto + influxd
(started here, 127.0.0.1, temporary directories), collectors as `fluxedge collector run`.

    .venv/bin/python bench/collector.py [--stations 1000] [--minutes 60] [--latency-s 20]

Each tower publishes one flux record per 30 min and met + diag every minute, batched
``--records`` minutes per message (tests/fleet.py: ~9.3 points per message). Prints:
  1. one collector: the fleet's ``--minutes`` of data queued in its persistent session, then drained
     into influxd: messages/s and points/s (from the collector's start, and from its first
     acknowledged batch to the last, seen in its own metrics written every 0.2 s; then every point
     is counted back from influxd), median of ``--repeat`` runs, with
     the CPU seconds the collector(s), influxd and mosquitto used;
  2. two collectors in one shared-subscription group on the same backlog: the same, and the ratio;
  3. one collector fed live at half of (1)'s rate for ``--latency-s``: p50/p99/max from publish
     to queryable, from probe messages among the load whose points are polled every 50 ms.
Targets: >= 3,000 msg/s for one process (issue 14: on paho's public API; 1,000 towers send about
35 msg/s, so a week-long outage of 1,000 towers drains in under 2 hours); two >= 1.6 x one (issue 6);
p99 <= 2 s. The load generator (paho, MQTT 3.1.1) runs in this process; mosquitto, influxd, the
collectors and this process share the machine's cores (2 here, shared with other work).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the simulated fleet (tests/fleet.py)

import paho.mqtt.client as mqtt
from fleet import fleet_messages

from collector.config import InfluxConfig
from collector.query import create_database, influxql
from fluxedge.common import messages
from fluxedge.demo.servers import start_influxd, start_mosquitto

T0 = 1_795_341_600  # 2026-11-22T10:00:00Z
CLI = [sys.executable, "-m", "fluxedge.cli", "collector", "run", "-c"]
INGEST = {"batch_size": 1000, "batch_points": 10000, "batch_age_s": 0.25, "receive_maximum": 3000,
          "metrics_interval_s": 0.2}


def collector_config(path: Path, mqtt_port: int, influx_url: str, db: str, client_id: str, group: str | None) -> Path:
    ingest = "".join(f"{k} = {v}\n" for k, v in INGEST.items())
    share = f'share_group = "{group}"\n' if group else ""
    path.write_text(f'[mqtt]\nport = {mqtt_port}\n[influxdb]\nurl = "{influx_url}"\ndatabase = "{db}"\n'
                    f'[ingest]\nclient_id = "{client_id}"\n{share}{ingest}')
    return path


def start_collector(config: Path, log: Path) -> subprocess.Popen:
    before = log.read_text().count("mqtt_subscribed") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen([*CLI, str(config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 30
    while log.read_text().count("mqtt_subscribed") <= before:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"collector did not start: {log.read_text()[-1000:]}")
        time.sleep(0.02)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def publisher(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, msgs, window: int = 30_000) -> None:
    """Publish at QoS 1 with at most ``window`` messages awaiting PUBACK: paho's packet ids are 16 bits,
    so a queue of more than 65,535 would reuse an id still in flight (paho refuses it: ERR_QUEUE_SIZE)."""
    infos: collections.deque = collections.deque()
    for m in msgs:
        if len(infos) >= window:
            infos.popleft().wait_for_publish(120)
        info = client.publish(m.topic, m.payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"bench publisher: {mqtt.error_string(info.rc)}")
        infos.append(info)
    for info in infos:
        info.wait_for_publish(120)


def point_total(config: InfluxConfig) -> int:
    total = 0
    for q in ("SELECT count(FC) FROM flux", "SELECT count(TA) FROM met", "SELECT count(CONNECTED) FROM diag",
              "SELECT count(NTP_SYNCED) FROM diag"):
        rows = influxql(config, q)
        total += int(rows[0]["count"]) if rows else 0
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far [s] (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVERS: dict[str, int] = {}  # name -> pid, for CPU accounting
CPU_CAP: dict[str, float] = {}  # "cores" -> cap per collector process (--collector-cpu)


def cap_cpu(pid: int, cores: float, name: str) -> Path:
    """Limit process ``pid`` to ``cores`` of CPU time with a cgroup CPU quota (cgroup v2 ``cpu.max``
    or v1 ``cpu.cfs_quota_us``; needs a writable cgroup tree, e.g. root). Returns the cgroup dir."""
    period_us = 100_000
    quota_us = max(1000, round(cores * period_us))
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    candidates = []
    if (v1 / "cpu.cfs_quota_us").exists():
        candidates.append((v1, {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota_us)}))
    if (v2 / "cgroup.controllers").exists():
        candidates.append((v2, {"cpu.max": f"{quota_us} {period_us}"}))
    for root, files in candidates:
        group = root / name
        try:
            group.mkdir(exist_ok=True)
            for file, value in files.items():
                (group / file).write_text(value)
            (group / "cgroup.procs").write_text(str(pid))
            return group
        except OSError:
            continue
    raise SystemExit("--collector-cpu needs a writable cgroup CPU controller (/sys/fs/cgroup/cpu or cgroup v2 "
                     "with the cpu controller enabled); run as root or leave the option out")


def uncap(groups: list[Path]) -> None:
    for group in groups:
        try:
            group.rmdir()
        except OSError:
            pass


def drain(work: Path, mq_port: int, influx_url: str, msgs, n_collectors: int, tag: str) -> dict[str, float]:
    """Queue ``msgs`` in the collectors' persistent sessions, then start them and time the drain."""
    db = f"bench_{tag}"
    config = InfluxConfig(url=influx_url, database=db)
    create_database(config, db)
    group = f"g{tag}" if n_collectors > 1 else None
    configs = [collector_config(work / f"{tag}-{i}.toml", mq_port, influx_url, db, f"bench-{tag}-{i}", group)
               for i in range(n_collectors)]
    logs = [work / f"{tag}-{i}.log" for i in range(n_collectors)]
    for cfg, log in zip(configs, logs, strict=True):  # create the sessions and subscriptions, then leave
        stop(start_collector(cfg, log))
    client = publisher(mq_port, f"bench-load-{tag}")
    began = time.monotonic()
    publish_all(client, msgs)
    publish_s = time.monotonic() - began
    client.disconnect()
    client.loop_stop()
    expected = sum(m.points for m in msgs)
    servers_cpu = {name: cpu_seconds(pid) for name, pid in SERVERS.items()}
    started = time.monotonic()
    procs = [subprocess.Popen([*CLI, str(cfg)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True) for cfg, log in zip(configs, logs,
                                                                                                     strict=True)]
    groups = [cap_cpu(proc.pid, CPU_CAP["cores"], f"fluxedge-bench-{tag}-{i}") for i, proc in enumerate(procs)
              ] if CPU_CAP else []
    first = None
    try:
        # progress from the collectors' own metrics (tiny queries; counting 500k points every
        # 100 ms would load influxd), then every point counted back once at the end
        while True:
            rows = influxql(config, "SELECT sum(messages) FROM collector")
            done = int(rows[0]["sum"]) if rows else 0
            now = time.monotonic()
            if done and first is None:
                first = (now, done)
            if done >= len(msgs):
                break
            if now - started > 600:
                raise SystemExit(f"drain stalled at {done}/{len(msgs)} messages")
            time.sleep(0.05)
        cpu_s = sum(cpu_seconds(proc.pid) for proc in procs)
        servers_cpu = {name: cpu_seconds(pid) - servers_cpu[name] for name, pid in SERVERS.items()}
    finally:
        for proc in procs:
            stop(proc)
        uncap(groups)
        for i in range(n_collectors):
            forget_session(mq_port, f"bench-{tag}-{i}")
    counted = point_total(config)
    if counted != expected:
        raise SystemExit(f"{tag}: {counted} points in influxd, {expected} published")
    total_s = now - started
    steady_s = max(1e-6, now - first[0])
    steady_msgs = len(msgs) - first[1]
    return {"messages": len(msgs), "points": expected, "publish_msg_s": len(msgs) / publish_s,
            "msg_s": len(msgs) / total_s, "points_s": expected / total_s, "total_s": total_s,
            "steady_msg_s": steady_msgs / steady_s, "steady_points_s": steady_msgs / steady_s * expected / len(msgs),
            "cpu_s": cpu_s, "influxd_cpu_s": servers_cpu.get("influxd", 0.0),
            "mosquitto_cpu_s": servers_cpu.get("mosquitto", 0.0)}


def forget_session(port: int, client_id: str) -> None:
    """End a persistent session (clean start, no expiry) so later runs do not queue into it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def latency(work: Path, mq_port: int, influx_url: str, msgs, rate_msg_s: float, duration_s: float
            ) -> dict[str, float]:
    """One collector fed live at ``rate_msg_s``; 10 probe messages/s among the load."""
    db = "bench_latency"
    config = InfluxConfig(url=influx_url, database=db)
    create_database(config, db)
    log = work / "latency.log"
    proc = start_collector(collector_config(work / "latency.toml", mq_port, influx_url, db, "bench-lat", None), log)
    client = publisher(mq_port, "bench-load-latency")
    sent: dict[int, float] = {}  # probe record time [ms] -> publish wall time
    seen: dict[int, float] = {}
    halt = threading.Event()

    def poll() -> None:
        while not halt.is_set():
            rows = influxql(config, "SELECT TA FROM met WHERE station = 'probe'")
            now = time.time()
            for row in rows:
                seen.setdefault(int(row["time"]), now)
            halt.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    config = InfluxConfig(url=influx_url, database=db, timeout_s=10)
    tick_s = 0.05
    per_tick = rate_msg_s * tick_s
    i, probe, credit = 0, 0, 0.0
    began = time.monotonic()
    next_probe = began
    poller.start()
    try:
        while time.monotonic() - began < duration_s:
            credit += per_tick
            while credit >= 1:
                m = msgs[i % len(msgs)]
                client.publish(m.topic, m.payload, qos=1)
                i += 1
                credit -= 1
            if time.monotonic() >= next_probe:
                probe += 1
                t = T0 + 10 * 86400 + probe  # its own key: one point per probe
                payload = messages.encode_batch("met", "probe", [messages.MetRecord(t, {"TA": 20.0})])
                sent[t] = time.time()
                client.publish(messages.topic("fluxedge", "probe", "met"), payload, qos=1)
                next_probe += 0.1
            time.sleep(max(0.0, began + (i / rate_msg_s) - time.monotonic()))
        deadline = time.monotonic() + 30
        while len(seen) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        halt.set()
        poller.join(5)
        client.disconnect()
        client.loop_stop()
        stop(proc)
        forget_session(mq_port, "bench-lat")
    elapsed = time.monotonic() - began
    lat = sorted(seen[t] - sent[t] for t in sent if t in seen)
    missing = len(sent) - len(lat)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"rate_msg_s": i / elapsed, "probes": len(sent), "missing": missing, "p50_s": p(0.5), "p99_s": p(0.99),
            "max_s": lat[-1] if lat else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=60, help="simulated minutes of data per drain run")
    ap.add_argument("--records", type=int, default=5, help="records (minutes) per met/diag message")
    ap.add_argument("--latency-s", type=float, default=20.0)
    ap.add_argument("--batch-size", type=int, default=INGEST["batch_size"], help="collector batch_size [messages]")
    ap.add_argument("--receive-maximum", type=int, default=INGEST["receive_maximum"])
    ap.add_argument("--only", choices=("one", "two", "latency"), help="run one part only")
    ap.add_argument("--repeat", type=int, default=3, help="drain runs per configuration (the median is shown)")
    ap.add_argument("--collector-cpu", type=float, metavar="CORES",
                    help="cap each collector process at CORES of CPU (cgroup quota) for the drain runs, so the "
                         "collectors, not the machine's two cores shared with influxd and mosquitto, are the "
                         "limit: shows how N processes scale where cores are plenty")
    args = ap.parse_args()
    if args.collector_cpu:
        CPU_CAP["cores"] = args.collector_cpu
    INGEST.update(batch_size=args.batch_size, receive_maximum=args.receive_maximum)
    with tempfile.TemporaryDirectory(prefix="fluxedge-bench-") as tmp:
        work = Path(tmp)
        broker = start_mosquitto(work / "mosquitto")
        influxd = start_influxd(work / "influxd")
        url = f"http://127.0.0.1:{influxd.port}"
        SERVERS.update(influxd=influxd.process.pid, mosquitto=broker.process.pid)
        try:
            msgs = list(fleet_messages(args.stations, T0, args.minutes, args.records))
            points = sum(m.points for m in msgs)
            print(f"fleet: {args.stations} stations x {args.minutes} min = {len(msgs)} messages, {points} points "
                  f"({points / len(msgs):.1f} points/message); cores: {os.cpu_count()}, "
                  f"load average {os.getloadavg()[0]:.2f}")
            one = two = None

            # one and two collectors alternate run by run, so that a change in the VM's speed (it
            # varies by tens of percent here) falls on both and the ratio is taken within each pair
            configs = [n for n, name in ((1, "one"), (2, "two")) if args.only in (None, name)
                       or (name == "one" and args.only == "latency")]
            runs: dict[int, list[dict[str, float]]] = {n: [] for n in configs}
            for i in range(args.repeat):
                for n in configs:
                    runs[n].append(drain(work, broker.port, url, msgs, n, f"{'one' if n == 1 else 'two'}{i}"))

            def median(rows: list[dict[str, float]]) -> dict[str, float]:
                rows = sorted(rows, key=lambda r: r["msg_s"])
                if len(rows) > 1:
                    print(f"  {len(rows)} runs: msg/s " + " ".join(f"{r['msg_s']:.0f}" for r in rows))
                return rows[len(rows) // 2]

            if 1 in runs:
                one = median(runs[1])
                print(f"1 collector : {one['msg_s']:8.0f} msg/s {one['points_s']:9.0f} points/s over "
                      f"{one['total_s']:.1f} s, collector CPU {one['cpu_s']:.1f} s (first-to-last point: "
                      f"{one['steady_msg_s']:.0f} msg/s, {one['steady_points_s']:.0f} points/s; backlog "
                      f"published at {one['publish_msg_s']:.0f} msg/s); influxd CPU {one['influxd_cpu_s']:.1f} s, "
                      f"mosquitto CPU {one['mosquitto_cpu_s']:.1f} s")
            if 2 in runs:
                two = median(runs[2])
                print(f"2 collectors: {two['msg_s']:8.0f} msg/s {two['points_s']:9.0f} points/s over "
                      f"{two['total_s']:.1f} s, collectors' CPU {two['cpu_s']:.1f} s (first-to-last point: "
                      f"{two['steady_msg_s']:.0f} msg/s, {two['steady_points_s']:.0f} points/s); influxd CPU "
                      f"{two['influxd_cpu_s']:.1f} s, mosquitto CPU {two['mosquitto_cpu_s']:.1f} s")
            if one:
                per_msg_s = (one["cpu_s"] + one["influxd_cpu_s"] + one["mosquitto_cpu_s"]) / one["messages"]
                ceiling = (os.cpu_count() or 1) / per_msg_s
                print(f"CPU ceiling of this machine for the pipeline: {ceiling:.0f} msg/s ({os.cpu_count()} cores / "
                      f"{per_msg_s * 1e6:.0f} us of CPU per message in collector + influxd + mosquitto); one "
                      f"collector reaches {one['msg_s'] / ceiling:.0%} of it")
            if one and two:
                ratios = sorted(b["msg_s"] / a["msg_s"] for a, b in zip(runs[1], runs[2], strict=True))
                print(f"ratio two/one, run by run: {' '.join(f'{r:.2f}' for r in ratios)}; median "
                      f"{ratios[len(ratios) // 2]:.2f}" + (f" (each collector capped at {args.collector_cpu} core)"
                                                         if args.collector_cpu else ""))
            if one and args.only in (None, "latency"):
                lat = latency(work, broker.port, url, msgs, one["msg_s"] / 2, args.latency_s)
                print(f"latency at {lat['rate_msg_s']:.0f} msg/s (half of 1 collector): publish -> queryable "
                      f"p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max {lat['max_s']:.3f} s over "
                      f"{lat['probes']} probes ({lat['missing']} not seen); load average {os.getloadavg()[0]:.2f}")
        finally:
            broker.stop()
            influxd.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
