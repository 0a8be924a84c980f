"""The station loses nothing: real mosquitto, the real collector and influxd, the station as a
subprocess reading emulated instruments on ptys. Broker down for several periods; kill -9 of the
station in the middle of a period; the retained status with its last will. Also the pieces of
deploy/: sd_notify over a real AF_UNIX datagram socket, and the install script."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import InfluxConfig
from collector.query import create_database, influxql
from fluxedge.common import messages
from fluxedge.common.sdnotify import Notifier, watchdog_interval_s
from fluxedge.demo import towerconfig
from fluxedge.demo.servers import start_mosquitto
from fluxedge.demo.towerconfig import Instrument
from station.outbox.spool import Spool

PERIOD_S = 5
RATE_HZ = 20
CLI = [sys.executable, "-m", "fluxedge.cli"]
ROOT = Path(__file__).resolve().parents[1]


def start(*args, **kw):
    return subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT, **kw)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill9(proc):
    """Like a power cut: SIGKILL to the station and anything it started (its process group)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for(cond, timeout_s, alive=()):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in alive:
            assert proc.poll() is None, f"{proc.args[3:5]} exited with {proc.returncode}"
        if cond():
            return True
        time.sleep(0.3)
    return cond()


class Tower:
    """Emulator + collector + station configs for one test, each test with its own station id,
    database and broker."""

    def __init__(self, tmp_path, influxd, name):
        self.tmp = tmp_path
        self.station_id = name
        self.influx = InfluxConfig(url=f"http://127.0.0.1:{influxd.port}", database=name.replace("-", "_"))
        create_database(self.influx, self.influx.database)
        self.mq_dir = tmp_path / "mosquitto"
        self.broker = start_mosquitto(self.mq_dir)
        self.procs = []
        emulator = self.start("bridge", "emulate", "csat3", "li7500", "--rate", str(RATE_HZ), "--seed", "5",
                              stdout=subprocess.PIPE)
        devices = dict(emulator.stdout.readline().decode().split() for _ in range(2))
        self.station_toml = tmp_path / "station.toml"
        self.station_toml.write_text(towerconfig.station_toml(
            name, [Instrument("sonic", "csat3", devices["csat3"]), Instrument("irga", "li7500", devices["li7500"])],
            mqtt_port=self.broker.port, spool_path=tmp_path / "spool.sqlite", period_s=PERIOD_S, rate_hz=RATE_HZ,
            site={"displacement_height_m": 5.0}, mqtt={"keepalive_s": 5, "reconnect_max_s": 2},
            processing={"despiking": "none", "statistical_tests": False, "spectral_corrections": "none",
                        "footprint": "none", "random_uncertainty": False}))
        self.collector_toml = tmp_path / "collector.toml"
        self.collector_toml.write_text(
            f"[mqtt]\nport = {self.broker.port}\nreconnect_max_s = 2\n"
            f'[influxdb]\nurl = "{self.influx.url}"\napi = 1\ndatabase = "{self.influx.database}"\n'
            f'[ingest]\nclient_id = "collector-{name}"\nbatch_age_s = 0.1\nkinds = ["flux"]\n')
        self.collector = self.start("collector", "run", "-c", str(self.collector_toml))
        self.station = None
        self.status_topic = messages.topic("fluxedge", name, "status")

    def start(self, *args, **kw):
        proc = start(*args, **kw)
        self.procs.append(proc)
        return proc

    def start_station(self):
        self.station = self.start("station", "run", "-c", str(self.station_toml))
        return self.station

    def restart_broker(self):
        self.broker = start_mosquitto(self.mq_dir, port=self.broker.port)

    def rows(self):
        return influxql(self.influx, f"SELECT seq, FC FROM flux WHERE station = '{self.station_id}'")

    def seqs_in_influx(self):
        return sorted(r["seq"] for r in self.rows())

    def retained_status(self):
        got, done = [], threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peek-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(self.status_topic, qos=1)
        client.on_message = lambda c, u, m: (got.append((m.retain, json.loads(m.payload))), done.set())
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        done.wait(3)
        client.loop_stop()
        client.disconnect()
        assert got and got[0][0], "no retained status"
        return got[0][1]

    def close(self):
        for proc in reversed(self.procs):
            stop(proc)
        self.broker.stop()


@pytest.fixture
def tower(request, tmp_path, influxd):
    t = Tower(tmp_path, influxd, request.node.name.split("[")[0].replace("_", "-")[5:40])
    yield t
    t.close()


class Watcher:
    """A subscriber with a persistent session, like the collector's: the order flux messages reach
    the collector side of the broker."""

    def __init__(self, port, station):
        self.seqs, self.lock = [], threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{station}", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(messages.topic("fluxedge", station, "flux"), qos=1)
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.seqs.append(json.loads(msg.payload)["seq"])

    def first_arrivals(self):
        with self.lock:
            seen, order = set(), []
            for s in self.seqs:
                if s not in seen:
                    seen.add(s)
                    order.append(s)
            return order

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_broker_down_for_several_periods_then_back_delivers_every_flux_once_in_order(tower):
    watcher = Watcher(tower.broker.port, tower.station_id)
    station = tower.start_station()
    try:
        alive = (station, tower.collector)
        assert wait_for(lambda: len(tower.seqs_in_influx()) >= 2, 8 * PERIOD_S, alive), "no fluxes arrived"
        tower.broker.stop()  # SIGTERM: mosquitto saves its sessions (kill -9 could lose its last second)
        down_at = time.time()
        time.sleep(4 * PERIOD_S)  # several periods close and are spooled while the broker is away
        depth_while_down = Spool(tower.tmp / "spool.sqlite").depth()
        tower.restart_broker()
        up_at = time.time()
        missed = set(range(int(down_at // PERIOD_S) + 1, int(up_at // PERIOD_S)))  # periods ending while down
        assert len(missed) >= 3 and depth_while_down >= 3
        assert wait_for(lambda: missed <= set(tower.seqs_in_influx()), 30, alive), \
            (sorted(missed), tower.seqs_in_influx())
        time.sleep(PERIOD_S)
        stop(station)
        assert station.returncode == 0
        # all acknowledged: the spool holds only fluxes already in InfluxDB, kept [spool] keep_acked_s
        # after their PUBACK in case the broker dies before saving them
        spool = Spool(tower.tmp / "spool.sqlite")
        kept = {json.loads(m.payload).get("seq") for m in spool.oldest(1000) if m.kind == "flux"}
        spool.close()
        assert wait_for(lambda: kept <= set(tower.seqs_in_influx()), 10), (kept, tower.seqs_in_influx())
        assert wait_for(lambda: len(tower.seqs_in_influx()) >= len(watcher.first_arrivals()), 10)
    finally:
        watcher.close()
    rows = tower.rows()
    seqs = sorted(r["seq"] for r in rows)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs  # contiguous: nothing lost
    assert len({r["time"] for r in rows}) == len(rows) and all(r["time"] == r["seq"] * PERIOD_S for r in rows)
    assert watcher.first_arrivals() == seqs  # the collector side saw them oldest first
    assert all(r["FC"] is not None for r in rows)


def test_kill_9_mid_period_keeps_the_spool_and_delivers_it_after_restart(tower):
    station = tower.start_station()
    alive = (station, tower.collector)
    assert wait_for(lambda: len(tower.seqs_in_influx()) >= 1, 8 * PERIOD_S, alive), "no fluxes arrived"
    status = tower.retained_status()
    assert status["state"] == "online" and status["version"] and len(status["config_hash"]) == 64

    # The link goes, periods pile up in the spool, then the power goes in the middle of a period.
    tower.broker.stop()
    time.sleep(3 * PERIOD_S)
    time.sleep((PERIOD_S * 1.5 - time.time() % PERIOD_S) % PERIOD_S)
    kill9(station)
    spool = Spool(tower.tmp / "spool.sqlite")
    assert spool.integrity_ok()
    spooled = [messages.decode("fluxedge", m.topic, m.payload) for m in spool.oldest(1000) if m.kind == "flux"]
    spool.close()
    in_influx = set(tower.seqs_in_influx())  # those are kept [spool] keep_acked_s after their PUBACK
    assert len([rec for rec in spooled if rec.seq not in in_influx]) >= 2

    tower.restart_broker()
    station = tower.start_station()
    alive = (station, tower.collector)
    want = {rec.seq for rec in spooled}
    assert wait_for(lambda: want <= set(tower.seqs_in_influx()), 30, alive), (want, tower.seqs_in_influx())
    rows = {r["seq"]: r for r in tower.rows()}
    for rec in spooled:  # exactly as computed before the crash
        assert rows[rec.seq]["FC"] == rec.values["FC"]
    assert tower.retained_status()["state"] == "online"

    # With the broker up, kill -9 leaves the last will: offline after 1.5 x keepalive.
    kill9(station)
    assert wait_for(lambda: tower.retained_status()["state"] == "offline", 15)
    station = tower.start_station()
    assert wait_for(lambda: tower.retained_status()["state"] == "online", 15, (station,))
    stop(station)  # a clean stop says offline itself, at once
    assert station.returncode == 0
    assert tower.retained_status()["state"] == "offline"


# ---------------------------------------------------------------- deploy/: sd_notify, units, install


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_sd_notify_sends_datagrams_to_the_notify_socket(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled and n.ready("acquiring") and n.watchdog() and n.stopping()
    assert sock.recv(4096) == b"READY=1\nSTATUS=acquiring"
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_abstract_socket_and_no_op_without_systemd(monkeypatch):
    name = f"fluxedge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier("@" + name).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and Notifier().ready() is False
    gone = Notifier("/nonexistent/notify.sock")
    assert gone.watchdog() is False and gone.errors == 1  # never raises into the daemon


def test_watchdog_interval_is_half_of_systemds_and_only_for_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None


def test_station_daemon_notifies_ready_watchdog_and_stopping(notify_socket, tmp_path):
    """The real daemon under a fake systemd: READY once acquisition started, WATCHDOG while the main
    loop is healthy, STOPPING on SIGTERM."""
    path, sock = notify_socket
    broker = start_mosquitto(tmp_path / "mq")
    emulator = start("bridge", "emulate", "csat3", "--rate", str(RATE_HZ), stdout=subprocess.PIPE)
    try:
        device = emulator.stdout.readline().decode().split()[1]
        cfg = tmp_path / "station.toml"
        cfg.write_text(f'[site]\nid = "notify"\nlatitude_deg = 1\nlongitude_deg = 1\n'
                       f'[acquisition]\naveraging_period_s = 3600\nsample_rate_hz = {RATE_HZ}\n'
                       f'[[instruments]]\nname = "sonic"\ndriver = "csat3"\nport = "{device}"\n'
                       f'[mqtt]\nport = {broker.port}\n[spool]\npath = "{tmp_path / "spool.sqlite"}"\n')
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
        station = start("station", "run", "-c", str(cfg), env=env)
        got = []
        while len(got) < 4:
            got.append(sock.recv(4096).decode())
        assert got[0].startswith("READY=1") and got[1:] == ["WATCHDOG=1"] * 3
        stop(station)
        rest = []
        sock.settimeout(1)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert rest[-1] == "STOPPING=1" and station.returncode == 0
    finally:
        stop(emulator)
        broker.stop()


def test_systemd_units_have_the_required_settings():
    station = (ROOT / "deploy/systemd/fluxedge-station.service").read_text()
    for line in ("Type=notify", "Restart=always", "WatchdogSec=", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/fluxedge", "PrivateTmp=true", "NoNewPrivileges=true", "ProtectHome=true",
                 "DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyAMA rw",
                 "SupplementaryGroups=dialout", "User=fluxedge", "NotifyAccess=main"):
        assert line in station, line
    collector = (ROOT / "deploy/systemd/fluxedge-collector.service").read_text()
    assert "Restart=always" in collector and "collector run -c /etc/fluxedge/collector.toml" in collector
    if subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        for unit in ("fluxedge-station.service", "fluxedge-collector.service"):
            out = subprocess.run(["systemd-analyze", "verify", str(ROOT / "deploy/systemd" / unit)],
                                 capture_output=True, text=True)
            assert "Unknown key" not in out.stderr and "Invalid" not in out.stderr, out.stderr


def test_udev_rules_name_serial_adapters_by_vendor_product_serial():
    rules = (ROOT / "deploy/udev/99-fluxedge-serial.rules").read_text()
    active = [r for r in rules.splitlines() if r.strip() and not r.lstrip().startswith("#")]
    assert active and all('SUBSYSTEM=="tty"' in r and "SYMLINK+=" in r for r in active)
    for vid in ("0403", "067b", "10c4"):  # FTDI, Prolific, Silicon Labs CP210x
        assert f'ATTRS{{idVendor}}=="{vid}"' in rules
    assert "udevadm info" in rules and "fluxedge-sonic" in rules


def test_install_script_is_valid_bash_and_idempotent_in_a_destdir(tmp_path):
    script = ROOT / "deploy/install.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    dest = tmp_path / "root"
    env = {**os.environ, "PATH": os.environ["PATH"]}
    for _ in range(2):  # the second run changes nothing and does not fail
        out = subprocess.run(["bash", str(script), "--dry-run", "--destdir", str(dest)], capture_output=True,
                             text=True, env=env, cwd=ROOT)
        assert out.returncode == 0, out.stderr
    for rel in ("etc/systemd/system/fluxedge-station.service", "etc/systemd/system/fluxedge-collector.service",
                "etc/udev/rules.d/99-fluxedge-serial.rules", "etc/fluxedge/station.toml",
                "etc/fluxedge/collector.toml"):
        assert (dest / rel).is_file(), rel
    assert (dest / "var/lib/fluxedge").is_dir()
    assert "useradd" in out.stdout and "python3 -m venv /opt/fluxedge/venv" in out.stdout  # printed, not run
    # the server: notifications, science, the fleet page, the cluster client; a station node none of them
    assert f"pip install -q --upgrade {ROOT}[collector,science,web,cluster,s3]" in out.stdout
    node = subprocess.run(["bash", str(script), "--dry-run", "--destdir", str(dest), "--station-only"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert node.returncode == 0 and f"pip install -q --upgrade {ROOT}\n" in node.stdout, node.stdout[-500:]
    (dest / "etc/fluxedge/station.toml").write_text("# edited by the operator\n")
    subprocess.run(["bash", str(script), "--dry-run", "--destdir", str(dest)], check=True, capture_output=True)
    assert (dest / "etc/fluxedge/station.toml").read_text() == "# edited by the operator\n"  # configs kept
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr and len(bad.stderr.splitlines()) <= 2
