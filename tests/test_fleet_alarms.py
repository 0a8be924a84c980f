"""Must show (issue 16): alarms reach people, once.

Real processes throughout: a ``fluxedge station run`` reading an emulated CSAT3 and LI-7500 on
ptys, mosquitto, influxd, ``fluxedge collector run`` with ``[alarms]``, an SMTP server (aiosmtpd)
and a JSON webhook (http.server). Each fault is the emulator's or a killed process; each alarm is
checked in InfluxDB, on its retained MQTT topic, as exactly one mail and one POST, and its clearing
as one "cleared" of each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from collector_helpers import influx, stop
from notify_servers import Hook, SmtpServer

from collector.query import influxql
from firmware_bridge.emulator import TowerEmulator
from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument

CLI = [sys.executable, "-m", "fluxedge.cli"]
RATE_HZ = 10
PERIOD_S = 10


class Retained:
    """The retained fleet alarm state on the broker, as a person's client sees it."""

    def __init__(self, port: int, prefix: str) -> None:
        self.lock = threading.Lock()
        self.alarms: dict[str, dict] = {}
        self.station_alarm_messages = 0  # the stations' own alarm messages (raised/cleared events)
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{prefix}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{prefix}/v1/_fleet/alarm/#", 1),
                                                            (f"{prefix}/v1/+/alarm", 1)])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            if not msg.topic.startswith(f"{self.prefix}/v1/_fleet/"):
                self.station_alarm_messages += 1
            elif msg.payload:
                self.alarms[msg.topic] = json.loads(msg.payload)
            else:
                self.alarms.pop(msg.topic, None)

    def find(self, rule: str) -> list[dict]:
        with self.lock:
            return [a for a in self.alarms.values() if a["key"]["rule"] == rule]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(condition, what: str, timeout_s: float, *procs: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        for p in procs:
            assert p.poll() is None, f"a process exited while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.1)


def collector_toml(path, mqtt_port: int, influx_url: str, database: str, prefix: str, client_id: str,
                   smtp: SmtpServer, hook: Hook, rules: str) -> str:
    path.write_text(f"""[mqtt]
port = {mqtt_port}
topic_prefix = "{prefix}"
[influxdb]
url = "{influx_url}"
database = "{database}"
timeout_s = 5
[ingest]
client_id = "{client_id}"
batch_age_s = 0.1
[alarms]
tick_s = 0.25
settle_s = 1.5
notify_retry_min_s = 0.2
{rules}
[[alarms.notify]]
name = "oncall"
urls = ["{smtp.url()}", "json://127.0.0.1:{hook.port}/hook"]
""")
    return str(path)


def start(cmd: list[str], log) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)


def titles(smtp: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in smtp.mails()]


def posts(hook: Hook) -> list[str]:
    return [p["title"] for p in hook.accepted()]


def told(smtp: SmtpServer, hook: Hook, text: str) -> tuple[int, int]:
    return sum(text in t for t in titles(smtp)), sum(text in t for t in posts(hook))


def events(config, rule: str) -> list[dict]:
    return influxql(config, f"SELECT * FROM alarm_event WHERE rule = '{rule}'")


def station_config(tmp_path, station_id: str, emu: TowerEmulator, port: int, prefix: str, spool, **tables):
    path = tmp_path / "station.toml"
    path.write_text(towerconfig.station_toml(
        station_id, [Instrument("sonic", "csat3", emu.ports["csat3"].path),
                     Instrument("irga", "li7500", emu.ports["li7500"].path)],
        mqtt_port=port, mqtt={"topic_prefix": prefix, "keepalive_s": 5}, spool_path=spool, period_s=PERIOD_S,
        rate_hz=RATE_HZ, site={"canopy_height_m": 0.0},
        processing={"despiking": "none", "statistical_tests": False, "spectral_corrections": "none"},
        tables={"diagnostics": {"interval_s": 2}, "status": {"interval_s": 1}, **tables}))
    return path


@pytest.fixture
def notify_servers():
    smtp, hook = SmtpServer(), Hook()
    yield smtp, hook
    smtp.close()
    hook.close()


def test_faults_on_a_real_station_reach_people_once_each(tmp_path, mosquitto, influxd, notify_servers):
    smtp, hook = notify_servers
    prefix, station_id = "fa1", "mangrove-01"
    db = influx(influxd.port, "alarms1")
    # qc_flag2_share: 5 % of healthy 10 s periods flag 2 here, so 4 of 5 by chance is ~3e-5 per window
    rules = """[[alarms.rule]]
name = "station_offline"
threshold = 20.0
clear_at = 5.0
raise_after_s = 1.0
[[alarms.rule]]
name = "no_flux"
threshold = 2.5
[[alarms.rule]]
name = "li7500_window_dirty"
raise_after_s = 2.0
clear_after_s = 2.0
[[alarms.rule]]
name = "qc_flag2_share"
threshold = 70.0
window_s = 55.0
min_points = 4
"""
    ccfg = collector_toml(tmp_path / "collector.toml", mosquitto.port, f"http://127.0.0.1:{influxd.port}", "alarms1",
                          prefix, "fa1-collector", smtp, hook, rules)
    emu = TowerEmulator(["csat3", "li7500"], rate_hz=RATE_HZ, seed=5)
    emu.start()
    scfg = station_config(tmp_path, station_id, emu, mosquitto.port, prefix, tmp_path / "spool.sqlite")
    retained = Retained(mosquitto.port, prefix)
    collector = start([*CLI, "collector", "run", "-c", ccfg], tmp_path / "collector.log")
    station = start([*CLI, "station", "run", "-c", str(scfg)], tmp_path / "station.log")
    irga, sonic = emu.instruments["li7500"], emu.instruments["csat3"]
    try:
        # a healthy tower: fluxes arrive, nobody is told anything
        wait_for(lambda: influxql(db, "SELECT count(FC) FROM flux"), "fluxes in InfluxDB", 60, station, collector)
        assert titles(smtp) == [] and posts(hook) == []

        # salt on the LI-7500 window: its signal strength drops to 60 %
        irga.inject("low_signal", emu.t_s)
        wait_for(lambda: told(smtp, hook, "(irga): li7500 window dirty") == (1, 1), "window mail and POST", 40,
                 station, collector)
        (alarm,) = retained.find("li7500_window_dirty")
        assert alarm["state"] == "raised" and alarm["key"]["source"] == "irga"
        mail = next(m for m in smtp.mails() if "window dirty" in str(m["Subject"]))
        body = mail.get_content()
        assert "clean the LI-7500 optical windows" in body and "SIGNAL_MEAN" in body and alarm["id"] in body
        irga.clear(emu.t_s)
        wait_for(lambda: told(smtp, hook, "[CLEARED] mangrove-01 (irga): li7500 window dirty") == (1, 1),
                 "window cleared", 40, station, collector)
        assert retained.find("li7500_window_dirty") == []
        states = [r["state"] for r in events(db, "li7500_window_dirty")]
        assert states == ["raised", "cleared"], states

        # a failing transducer pair on the sonic: noise on w, the periods fail the ITC test (QC flag 2)
        assert retained.find("qc_flag2_share") == []
        sonic.inject("transducer_noise", emu.t_s)
        wait_for(lambda: told(smtp, hook, "qc flag2 share") == (1, 1), "QC-2 mail and POST", 90, station, collector)
        (alarm,) = retained.find("qc_flag2_share")
        assert alarm["value"] > 70 and alarm["last_values"]["PERIODS"] >= 4, alarm
        sonic.clear(emu.t_s)
        wait_for(lambda: told(smtp, hook, "[CLEARED] mangrove-01: qc flag2 share") == (1, 1), "QC-2 cleared", 90,
                 station, collector)
        flags = influxql(db, "SELECT H_SSITC_TEST FROM flux")
        assert any(r["H_SSITC_TEST"] == 2 for r in flags) and flags[-1]["H_SSITC_TEST"] < 2, flags

        # the sonic falls silent: the station raises its own alarm, and the fleet sees no fluxes
        sonic.inject("silence", emu.t_s)
        wait_for(lambda: told(smtp, hook, "no flux") == (1, 1), "no-flux mail", 60, station, collector)
        # the station's own alarm (after its 30 s of silence) comes through the same notifications
        wait_for(lambda: told(smtp, hook, "(sonic): instrument silent") == (1, 1), "silent mail", 30, station,
                 collector)
        sonic.clear(emu.t_s)
        wait_for(lambda: told(smtp, hook, "[CLEARED] mangrove-01: no flux") == (1, 1), "no-flux cleared", 60,
                 station, collector)
        wait_for(lambda: told(smtp, hook, "[CLEARED] mangrove-01 (sonic): instrument silent") == (1, 1),
                 "silent cleared", 30, station, collector)

        # the station is killed: its last will says offline, the alarm follows within the rule's time
        sent_before_kill = retained.station_alarm_messages
        os.killpg(station.pid, signal.SIGKILL)
        station.wait()
        killed = time.monotonic()
        wait_for(lambda: told(smtp, hook, "station offline") == (1, 1), "offline mail", 40, collector)
        print(f"offline notified {time.monotonic() - killed:.1f} s after the kill")
        assert time.monotonic() - killed < 5 * 1.5 + 1 + 10
        offline = influxql(db, f"SELECT * FROM station_state WHERE station = '{station_id}'")
        assert offline[-1]["state"] == "offline"
        station = start([*CLI, "station", "run", "-c", str(scfg)], tmp_path / "station.log")
        wait_for(lambda: told(smtp, hook, "[CLEARED] mangrove-01: station offline") == (1, 1), "back online", 40,
                 station, collector)
        # killed within keep_acked_s of their PUBACKs, the station sends its alarm events again (at
        # least once): a repeat is no new alarm
        wait_for(lambda: retained.station_alarm_messages >= 2 * sent_before_kill, "the alarm events again", 60,
                 station, collector)
        time.sleep(2)
        # exactly once each, over the whole run
        for rule in ("li7500_window_dirty", "qc_flag2_share", "no_flux", "instrument_silent", "station_offline"):
            assert [r["state"] for r in events(db, rule)] == ["raised", "cleared"], rule
        for text in ("window dirty", "qc flag2 share", "no flux", "instrument silent", "station offline"):
            assert told(smtp, hook, text) == (2, 2), (text, titles(smtp))
        delivered = influxql(db, "SELECT count(ok) FROM notification WHERE ok = true")
        assert delivered[0]["count"] == len(titles(smtp)) + len(posts(hook))
    finally:
        for p in (station, collector):
            stop(p)
        retained.close()
        emu.close()
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log and "alarms_tick_failed" not in log, log[-3000:]


FAKE_STATION = """
import json, sys, time
import paho.mqtt.client as mqtt
port, prefix, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
topic = f"{prefix}/v1/{name}/status"
doc = lambda state: json.dumps({"schema": 1, "kind": "status", "station": name, "state": state, "version": "t",
                                "config_hash": "x", "time": "2026-12-07T00:00:00Z"})
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
c.will_set(topic, doc("offline"), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=5)
c.loop_start()
c.publish(topic, doc("online"), qos=1, retain=True)
print("up", flush=True)
while True:
    time.sleep(1)
"""


def test_two_collectors_notify_once_and_a_restart_neither_refires_nor_forgets(tmp_path, mosquitto, influxd,
                                                                              notify_servers):
    smtp, hook = notify_servers
    prefix = "fa2"
    influx(influxd.port, "alarms2")
    rules = """[[alarms.rule]]
name = "station_offline"
threshold = 600.0
clear_at = 5.0
raise_after_s = 0.5
"""
    configs = [collector_toml(tmp_path / f"c{i}.toml", mosquitto.port, f"http://127.0.0.1:{influxd.port}", "alarms2",
                              prefix, f"fa2-c{i}", smtp, hook, rules) for i in (1, 2)]
    logs = [tmp_path / "c1.log", tmp_path / "c2.log"]
    collectors = [start([*CLI, "collector", "run", "-c", c], log) for c, log in zip(configs, logs, strict=True)]
    fake = [sys.executable, "-c", FAKE_STATION, str(mosquitto.port), prefix, "tower-7"]
    station = subprocess.Popen(fake, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert station.stdout.readline().strip() == b"up"
        time.sleep(3)  # both collectors see it online
        os.killpg(station.pid, signal.SIGKILL)  # the broker publishes its last will after 1.5 x 5 s
        station.wait()
        wait_for(lambda: told(smtp, hook, "tower-7: station offline") == (1, 1), "offline mail", 30, *collectors)
        time.sleep(3)
        assert told(smtp, hook, "station offline") == (1, 1)  # one notification for two collectors

        # the person on call: list, acknowledge, silence, history
        def alarms(*args):
            return subprocess.run([*CLI, "alarms", *args, "-c", configs[1]], capture_output=True, text=True, timeout=60)

        listed = alarms("list", "--active")
        assert listed.returncode == 0, listed.stderr
        (line,) = [x for x in listed.stdout.splitlines() if "station_offline" in x]
        ident = line.split()[0]
        assert "raised" in line and "tower-7" in line and "critical" in line
        missing = alarms("ack", "ffffffff")
        assert missing.returncode == 1 and "no active alarm with id 'ffffffff'" in missing.stderr
        acked = alarms("ack", ident[:5], "--by", "ana")
        assert acked.returncode == 0 and f"acknowledged {ident}" in acked.stdout, acked.stderr
        assert "acknowledged" in alarms("list", "--active").stdout
        silenced = alarms("silence", "--station", "tower-7", "--for", "2h", "--reason", "window cleaning")
        assert silenced.returncode == 0 and "silenced until" in silenced.stdout, silenced.stderr
        assert "silenced: tower-7 until" in alarms("list").stdout
        history = alarms("history", "--station", "tower-7")
        assert history.returncode == 0 and [x.split()[2] for x in history.stdout.splitlines()[1:]] == \
            ["raised", "acknowledged"], history.stdout
        assert alarms("silence", "--station", "tower-7", "--for", "0").returncode == 0

        # the leader (lowest client id) restarts while the alarm is active: nobody is told again
        stop(collectors[0])
        time.sleep(3)
        collectors[0] = start([*CLI, "collector", "run", "-c", configs[0]], logs[0])
        time.sleep(6)
        assert told(smtp, hook, "station offline") == (1, 1)
        assert "alarms_leader" in logs[1].read_text()  # the other one took over meanwhile

        # the station comes back: one "cleared", from whichever leads now
        station = subprocess.Popen(fake, stdout=subprocess.PIPE, start_new_session=True)
        assert station.stdout.readline().strip() == b"up"
        wait_for(lambda: told(smtp, hook, "[CLEARED] tower-7: station offline") == (1, 1), "cleared mail", 30,
                 *collectors)
        time.sleep(3)
        assert told(smtp, hook, "station offline") == (2, 2)
    finally:
        if station.poll() is None:
            os.killpg(station.pid, signal.SIGKILL)
        for c in collectors:
            stop(c)
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text and "alarms_tick_failed" not in text, text[-3000:]


def test_a_station_online_before_the_collector_leads_is_stored(tmp_path, mosquitto, influxd, notify_servers):
    """A station's retained status reaches a starting collector during its settle_s, before it leads:
    the state is stored in station_state once it leads (it used to be stored only on a change)."""
    smtp, hook = notify_servers
    prefix = "fa4"
    db = influx(influxd.port, "alarms4")
    config = collector_toml(tmp_path / "c.toml", mosquitto.port, f"http://127.0.0.1:{influxd.port}", "alarms4",
                            prefix, "fa4-c1", smtp, hook, "")
    station = subprocess.Popen([sys.executable, "-c", FAKE_STATION, str(mosquitto.port), prefix, "tower-9"],
                               stdout=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "c.log"
    collector = None
    try:
        assert station.stdout.readline().strip() == b"up"
        collector = start([*CLI, "collector", "run", "-c", config], log)
        wait_for(lambda: "alarms_leader" in log.read_text(), "leadership", 30, collector)
        rows = wait_for(lambda: influxql(db, "SELECT * FROM station_state WHERE station = 'tower-9'"),
                        "a station_state row", 15, collector)
        assert [r["state"] for r in rows] == ["online"]
        assert "Traceback" not in log.read_text()
    finally:
        os.killpg(station.pid, signal.SIGKILL)
        station.wait()
        if collector is not None:
            stop(collector)


ACL_REFUSING_FLUX = """topic read fa3/#
topic write fa3/v1/+/met
topic write fa3/v1/+/diag
topic write fa3/v1/+/alarm
topic write fa3/v1/+/status
topic readwrite fa3/v1/_fleet/#
topic write fa3/v1/_deadletter
"""
SMALL_FS = "64m"


def test_station_clock_spool_and_disk_faults_reach_people_once_each(tmp_path, influxd, notify_servers):
    """A station whose clock runs 40 s ahead, whose flux messages the broker refuses (its
    ACL: the spool fills), and whose data disk, a 64 MB file system, another program fills; each fault
    then removed: one raised and one cleared notification each, by mail and webhook."""
    if os.geteuid() != 0:
        pytest.fail("mounting the station's small file system needs root (the tests and CI run as root)")
    smtp, hook = notify_servers
    prefix, station_id = "fa3", "saltmarsh-02"
    acl = tmp_path / "broker.acl"
    acl.write_text(ACL_REFUSING_FLUX)
    from fluxedge.demo.servers import start_mosquitto

    broker = start_mosquitto(tmp_path / "broker", extra_config=f"acl_file {acl}\n")
    db = influx(influxd.port, "alarms3")
    rules = """[[alarms.rule]]
name = "clock_offset"
raise_after_s = 2.0
clear_after_s = 2.0
window_s = 12.0
min_points = 2
[[alarms.rule]]
name = "spool_backlog"
threshold = 15.0
clear_at = 5.0
raise_after_s = 3.0
[[alarms.rule]]
name = "disk_low"
threshold = 40.0
clear_at = 50.0
raise_after_s = 0.0
[[alarms.rule]]
name = "no_flux"
enabled = false
"""
    ccfg = collector_toml(tmp_path / "collector.toml", broker.port, f"http://127.0.0.1:{influxd.port}", "alarms3",
                          prefix, "fa3-collector", smtp, hook, rules)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS},mode=0755", "tmpfs", str(disk)], check=True)
    emu = TowerEmulator(["csat3", "li7500"], rate_hz=RATE_HZ, seed=9)
    emu.start()
    scfg = station_config(tmp_path, station_id, emu, broker.port, prefix, disk / "spool.sqlite",
                          archive={"enabled": False})
    # the station host's wall clock 40 s fast, as with a dead NTP: its processes see time.time() shifted
    # (libfaketime cannot do this to a threaded Python: it shifts the timed waits of its threads too)
    shift = tmp_path / "clock-40s-fast"
    shift.mkdir()
    (shift / "sitecustomize.py").write_text(
        "import time\n_t, _ns = time.time, time.time_ns\n"
        "time.time = lambda: _t() + 40.0\ntime.time_ns = lambda: _ns() + 40_000_000_000\n")
    fast = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shift), os.environ.get("PYTHONPATH", "")])}
    retained = Retained(broker.port, prefix)
    collector = start([*CLI, "collector", "run", "-c", ccfg], tmp_path / "collector.log")
    with open(tmp_path / "station.log", "ab") as out:
        station = subprocess.Popen([*CLI, "station", "run", "-c", str(scfg)], stdout=out, stderr=out,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=fast)
    try:
        wait_for(lambda: told(smtp, hook, "clock offset") == (1, 1), "clock mail", 40, station, collector)
        (clock,) = retained.find("clock_offset")
        assert 30 < clock["last_values"]["CLOCK_OFFSET_S"] < 41 and "ahead of" in clock["what"]
        wait_for(lambda: told(smtp, hook, "spool backlog") == (1, 1), "spool mail", 60, station, collector)
        filler = disk / "filler.bin"
        with filler.open("wb") as f:  # another program fills the station's disk to ~25 MB free
            f.write(b"\0" * (38 * 2**20))
        wait_for(lambda: told(smtp, hook, "disk low") == (1, 1), "disk mail", 30, station, collector)
        for rule in ("clock_offset", "spool_backlog", "disk_low"):
            assert [r["state"] for r in events(db, rule)] == ["raised"], rule
            assert retained.find(rule), rule

        # the faults removed: space freed, the broker's ACL lets fluxes through (reloaded on SIGHUP),
        # the station restarted without its clock offset (its spool resends what the broker refused)
        filler.unlink()
        wait_for(lambda: told(smtp, hook, "[CLEARED] saltmarsh-02: disk low") == (1, 1), "disk cleared", 30,
                 station, collector)
        acl.write_text(ACL_REFUSING_FLUX + "topic write fa3/v1/+/flux\n")
        broker.process.send_signal(signal.SIGHUP)
        stop(station)
        station = start([*CLI, "station", "run", "-c", str(scfg)], tmp_path / "station.log")
        wait_for(lambda: told(smtp, hook, "[CLEARED] saltmarsh-02: spool backlog") == (1, 1), "spool cleared", 60,
                 station, collector)
        wait_for(lambda: told(smtp, hook, "[CLEARED] saltmarsh-02: clock offset") == (1, 1), "clock cleared", 60,
                 station, collector)
        wait_for(lambda: influxql(db, "SELECT count(FC) FROM flux"), "the refused fluxes in InfluxDB", 30, station)
        time.sleep(2)
        for text in ("clock offset", "spool backlog", "disk low"):
            assert told(smtp, hook, text) == (2, 2), (text, titles(smtp))
            assert [r["state"] for r in events(db, text.replace(" ", "_"))] == ["raised", "cleared"], text
        assert not retained.find("clock_offset") and not retained.find("disk_low")
    finally:
        for p in (station, collector):
            stop(p)
        retained.close()
        emu.close()
        broker.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log and "alarms_tick_failed" not in log, log[-3000:]
