"""Any single component restarting loses no point: the collector killed with SIGKILL mid-batch,
influxd stopped under load, mosquitto restarted (real servers, collectors as subprocesses); and
mosquitto killed with SIGKILL while the collectors are offline, with the shipped broker config and
the real station spool and publisher: what the broker acknowledged after its last save survives in
the stations' spools ([spool] keep_acked_s) and is sent again. The chaos test puts it all together
and accounts for every message: produced = stored, none missing, none twice.

The influxd outage lasts FLUXEDGE_OUTAGE_S seconds (default 8). The mechanism does not depend on
the duration: while influxd is away the collector holds at most ``receive_maximum`` unacknowledged
messages and the broker queues the rest in the persistent session (max_queued_messages 0), so a
longer outage only grows the broker's queue. The issue's two-minute version:
``FLUXEDGE_OUTAGE_S=120 .venv/bin/python -m pytest -q tests/test_collector_resilience.py -k influxd``.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fleet import SimMessage, fleet_messages

from collector.query import influxql
from fluxedge.common import messages as m
from fluxedge.common.mqttconfig import MqttConfig, TlsConfig
from fluxedge.demo.servers import (
    SHIPPED_MOSQUITTO,
    make_test_certificates,
    start_influxd,
    start_mosquitto,
    start_shipped_mosquitto,
)
from station.config import SpoolConfig
from station.outbox.publisher import Publisher as StationPublisher
from station.outbox.spool import Spool
from tests.collector_helpers import (
    Listener,
    Publisher,
    expected_counts,
    influx,
    point_counts,
    start_collector,
    stop,
    wait_for,
    write_config,
)

T0 = 1_795_341_600
OUTAGE_S = float(os.environ.get("FLUXEDGE_OUTAGE_S", "8"))


def total(counts):
    return sum(counts.values())


def publish_steadily(port, msgs, client_id, chunks, pause_s, progress):
    """Publish ``msgs`` in ``chunks`` with a pause between them, in a thread (a live fleet)."""
    def run():
        pub = Publisher(port, client_id)
        try:
            size = -(-len(msgs) // chunks)
            for i in range(0, len(msgs), size):
                pub.send(msgs[i:i + size], timeout_s=120)
                progress.append(i + size)
                time.sleep(pause_s)
        finally:
            pub.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_collector_killed_mid_batch_loses_no_point(tmp_path, mosquitto, influxd):
    db = influx(influxd.port, "kill9")
    msgs = list(fleet_messages(100, T0, 150, prefix="k9"))
    want = expected_counts(msgs)
    config = write_config(tmp_path / "c.toml", mosquitto.port, db.url, "kill9", "k9", "k9-collector",
                          batch_size=100, batch_age_s=0.5)
    collector = start_collector(config, tmp_path / "collector.log")
    progress = []
    publisher = publish_steadily(mosquitto.port, msgs, "k9-fleet", 12, 0.3, progress)
    try:
        assert wait_for(lambda: total(point_counts(db)) > 0, 30, 0.05)
        collector.send_signal(signal.SIGKILL)
        collector.wait()
        at_kill = total(point_counts(db))
        assert 0 < at_kill < total(want), "the kill did not fall in the middle of the stream"
        time.sleep(1)
        collector = start_collector(config, tmp_path / "collector.log")
        publisher.join(120)
        assert wait_for(lambda: point_counts(db) == want, 60), (point_counts(db), want)
    finally:
        stop(collector)
    assert "Traceback" not in (tmp_path / "collector.log").read_text()


def test_influxd_outage_under_load_drains_with_zero_loss(tmp_path, mosquitto):
    influxd = start_influxd(tmp_path / "influxd")
    collector = None
    try:
        db = influx(influxd.port, "outage")
        msgs = list(fleet_messages(100, T0, 200, prefix="out"))
        want = expected_counts(msgs)
        config = write_config(tmp_path / "c.toml", mosquitto.port, db.url, "outage", "out", "out-collector",
                              batch_size=200, batch_age_s=0.5, receive_maximum=400, retry_max_s=2.0,
                              metrics_interval_s=1.0)
        collector = start_collector(config, tmp_path / "collector.log")
        progress = []
        chunks = 20
        publisher = publish_steadily(mosquitto.port, msgs, "out-fleet", chunks, OUTAGE_S / chunks * 2, progress)
        assert wait_for(lambda: total(point_counts(db)) > 0, 30, 0.1)
        influxd.stop()
        stopped_at = time.monotonic()
        time.sleep(OUTAGE_S)
        sent_during_outage = len(progress)
        influxd = start_influxd(tmp_path / "influxd", port=influxd.port)
        outage_s = time.monotonic() - stopped_at
        publisher.join(300)
        assert sent_during_outage > 1, "the fleet kept publishing during the outage"
        assert wait_for(lambda: point_counts(db) == want, 60 + outage_s), (point_counts(db), want)
        retries = wait_for(lambda: influxql(db, "SELECT sum(retries) FROM collector"), 10)
        assert retries and retries[0]["sum"] >= 1
    finally:
        if collector is not None:
            stop(collector)
        influxd.stop()
    log = (tmp_path / "collector.log").read_text()
    assert "write_retry" in log and "Traceback" not in log


def test_mosquitto_restart_collectors_resubscribe_with_zero_loss(tmp_path, influxd):
    """Messages queued in the collectors' sessions survive the restart, the collectors reconnect and
    resubscribe by themselves, and what the fleet publishes afterwards arrives.

    mosquitto 2.0.11 (measured): right after a restart, until a member of the shared group is
    connected again, a publish is PUBACKed with reason "No matching subscribers" and NOT queued
    for the group's persistent sessions (a plain subscription's session does queue it). The
    station must therefore keep such a message in its spool and send it again; the test does
    what the station must do."""
    broker = start_mosquitto(tmp_path / "mosquitto")
    db = influx(influxd.port, "restart")
    msgs = list(fleet_messages(60, T0, 60, prefix="rs"))
    want = expected_counts(msgs)
    third = len(msgs) // 3
    collectors, logs = [], [tmp_path / "rs-a.log", tmp_path / "rs-b.log"]
    try:
        for log in logs:
            config = write_config(log.with_suffix(".toml"), broker.port, db.url, "restart", "rs", log.stem,
                                  share_group="rs", batch_size=100, batch_age_s=0.3)
            collectors.append(start_collector(config, log))
        pub = Publisher(broker.port, "rs-fleet-1")
        assert set(pub.send(msgs[:third])) == {"Success"}
        pub.close()
        assert wait_for(lambda: total(point_counts(db)) == total(expected_counts(msgs[:third])), 30)
        for proc in collectors:  # frozen: what follows waits in their persistent sessions
            proc.send_signal(signal.SIGSTOP)
        pub = Publisher(broker.port, "rs-fleet-2")
        assert set(pub.send(msgs[third:2 * third])) == {"Success"}
        pub.close()
        time.sleep(1.5)  # autosave_interval 1
        broker.stop()
        broker = start_mosquitto(tmp_path / "mosquitto", port=broker.port)
        pub = Publisher(broker.port, "rs-fleet-3")
        assert pub.send(msgs[2 * third:2 * third + 1]) == ["No matching subscribers"]  # to be sent again
        for proc in collectors:
            proc.send_signal(signal.SIGCONT)
        assert wait_for(lambda: all(log.read_text().count("mqtt_subscribed") >= 2 for log in logs), 30)
        assert set(pub.send(msgs[2 * third:])) == {"Success"}
        pub.close()
        assert wait_for(lambda: point_counts(db) == want, 60), (point_counts(db), want)
    finally:
        for proc in collectors:
            proc.send_signal(signal.SIGCONT)
            stop(proc)
        broker.stop()
    for log in logs:
        text = log.read_text()
        assert "session_present=True" in text and "Traceback" not in text


# ------------------------------------------------------------------ broker kill -9, shipped config

#: the station's default: how long a row stays in the spool after its PUBACK
KEEP_ACKED_S = SpoolConfig.__dataclass_fields__["keep_acked_s"].default
COLLECTOR_PW = "pw-collector"


def station_password(name):
    return f"pw-{name}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


class Station:
    """One tower's real spool and publisher (station/outbox/spool.py, station/outbox/publisher.py), connected as
    the stations are: its own account, TLS listener of the shipped broker."""

    def __init__(self, name, broker, directory: Path, keep_acked_s=KEEP_ACKED_S,
                 fill_disk: Callable[[Path], None] | None = None):
        self.name = name
        self.spool = Spool(directory / f"{name}.sqlite")
        if fill_disk is not None:
            fill_disk(directory)
        config = MqttConfig(host="127.0.0.1", port=broker.tls_port, username=name, password=station_password(name),
                            keepalive_s=5, reconnect_max_s=1, tls=TlsConfig(ca_file=str(broker.certs / "ca.crt")))
        self.publisher = StationPublisher(self.spool, config, f"fluxedge-station-{name}",
                                          m.topic("fluxedge", name, "status"), b'{"state":"online"}',
                                          b'{"state":"offline"}', keep_acked_s=keep_acked_s)
        self.put_count = 0
        self.publisher.start()

    def put(self, msg: SimMessage) -> None:
        self.spool.put(msg.kind, msg.topic, msg.payload)
        self.put_count += 1
        self.publisher.wake()

    def acknowledged(self) -> int:
        """Rows the broker acknowledged (deleted, or kept keep_acked_s after their PUBACK)."""
        return self.publisher.published + self.publisher.kept()

    def close(self) -> None:
        self.publisher.stop(drain_s=0)
        self.spool.close()


def fleet_by_station(stations, minutes):
    msgs = list(fleet_messages(stations, T0, minutes))
    names = sorted({msg.station for msg in msgs})
    return msgs, {n: [msg for msg in msgs if msg.station == n] for n in names}


def accounts(names):
    return {"collector": COLLECTOR_PW, **{n: station_password(n) for n in names}}


def shipped_collector_config(path, broker, db):
    return write_config(path, broker.port, db.url, db.database, "fluxedge", "fluxedge-collector",
                        mqtt_extra=f'username = "collector"\npassword = "{COLLECTOR_PW}"\n',
                        alarms="enabled = false\n", batch_size=200,
                        batch_age_s=0.3, retry_max_s=2.0)


def save_now(broker):
    """SIGUSR1: mosquitto writes its persistence file now, as its autosave would."""
    db = broker.workdir / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    broker.process.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: db.exists() and db.stat().st_mtime_ns != before, 10, 0.05), "no save"


def flux_rows(db):
    return sorted((r["station"], r["seq"]) for r in influxql(db, 'SELECT seq, "station" FROM flux'))


def test_the_station_keeps_acked_rows_longer_than_the_shipped_broker_can_lose_them():
    """A broker killed right before its next autosave loses autosave_interval seconds of PUBACKed
    messages; the station notices a dead broker after at most 1.5 keepalives (a killed process:
    at once) and then sends again what it still keeps."""
    conf = (SHIPPED_MOSQUITTO / "mosquitto.conf").read_text()
    autosave_s = int(re.search(r"^autosave_interval (\d+)$", conf, re.M).group(1))
    keepalive_s = MqttConfig.__dataclass_fields__["keepalive_s"].default
    # the rest of the margin covers the save itself (seconds for a large backlog)
    assert autosave_s + 1.5 * keepalive_s + 60 <= KEEP_ACKED_S, (KEEP_ACKED_S, autosave_s, keepalive_s)


def test_acknowledged_rows_stay_keep_acked_s_then_go_while_the_link_stays_up(tmp_path, mosquitto):
    """A row is deleted keep_acked_s after its PUBACK, not at the PUBACK (and not sent twice meanwhile)."""
    watcher = Listener(mosquitto.port, "fluxedge/v1/keep/flux", "keep-watcher")  # someone takes them
    spool = Spool(tmp_path / "spool.sqlite")
    config = MqttConfig(host="127.0.0.1", port=mosquitto.port, keepalive_s=5, reconnect_max_s=1)
    pub = StationPublisher(spool, config, "keep-station", "fluxedge/v1/keep/status", b"on", b"off", keep_acked_s=3.0)
    pub.start()
    try:
        for i in range(3):
            spool.put("flux", "fluxedge/v1/keep/flux", f'{{"seq": {i}}}'.encode())
        pub.wake()
        assert wait_for(lambda: pub.kept() == 3, 10, 0.05)
        acked_at = time.monotonic()
        assert spool.depth() == 3 and pub.published == 0
        assert wait_for(lambda: spool.depth() == 0, 10, 0.05)
        assert time.monotonic() - acked_at > 2.0 and pub.published == 3 and pub.resent_after_disconnect == 0
        assert len(watcher.snapshot()) == 3
    finally:
        pub.stop(drain_s=0)
        spool.close()
        watcher.close()


def test_broker_kill9_while_the_collector_is_offline_loses_nothing_acknowledged(tmp_path, influxd, certs):
    """The collector is offline; the broker saved (as its autosave does), then acknowledged more
    messages from the stations and was killed before its next save. Those messages are gone from
    the broker, but the stations kept them and send them again after the restart."""
    msgs, per_station = fleet_by_station(3, 60)
    broker = start_shipped_mosquitto(tmp_path / "mosquitto", accounts(per_station), certs=certs)
    db = influx(influxd.port, "kill9_broker")
    config = shipped_collector_config(tmp_path / "c.toml", broker, db)
    log = tmp_path / "collector.log"
    stop(start_collector(config, log))  # its persistent session now waits for it
    save_now(broker)
    stations = [Station(name, broker, tmp_path) for name in per_station]
    collector = None
    try:
        for st in stations:
            for msg in per_station[st.name]:
                st.put(msg)
        assert wait_for(lambda: all(st.acknowledged() == st.put_count for st in stations), 30), \
            [(st.acknowledged(), st.put_count) for st in stations]
        broker.kill()
        broker = start_shipped_mosquitto(tmp_path / "mosquitto", accounts(per_station), port=broker.port,
                                         tls_port=broker.tls_port, certs=certs)
        assert wait_for(lambda: all(st.publisher.resent_after_disconnect == st.put_count
                                    and st.acknowledged() == st.put_count for st in stations), 30), \
            [(st.publisher.resent_after_disconnect, st.acknowledged(), st.put_count) for st in stations]
        collector = start_collector(config, log)
        want = expected_counts(msgs)
        assert wait_for(lambda: point_counts(db) == want, 60), (point_counts(db), want)
    finally:
        for st in stations:
            st.close()
        if collector is not None:
            stop(collector)
        broker.stop()
    assert "session_present=True" in log.read_text() and "Traceback" not in log.read_text()


@contextlib.contextmanager
def _station_dirs(tmp_path: Path, names, nearly_full: bool):
    """Each station's spool directory: in ``tmp_path``, or with ``nearly_full`` on a small tmpfs of
    its own (mounted for the test; we run as root, as CI does) that is filled up once its spool is open."""
    if not nearly_full:
        yield dict.fromkeys(names, tmp_path), None
        return
    mounts = {}
    try:
        for name in names:
            mnt = tmp_path / f"fs-{name}"
            mnt.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STATION_FS},mode=0755", "tmpfs", str(mnt)],
                           check=True)
            mounts[name] = mnt
        yield mounts, _fill_to_the_brim
    finally:
        for mnt in mounts.values():
            subprocess.run(["umount", "-l", str(mnt)], check=False)


#: each station's file system in the nearly-full case, and what is left free once its spool is open
STATION_FS = "8m"
LEFT_FREE_BYTES = 96 * 1024


def _fill_to_the_brim(directory: Path) -> None:
    """Another program's file fills the file system to within :data:`LEFT_FREE_BYTES`."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(directory / "other-program.bin", "wb") as fh:
        fh.write(b"\0" * max(0, free - LEFT_FREE_BYTES))


@pytest.mark.parametrize("nearly_full_disk", [False, True], ids=["disk-ok", "station-disk-nearly-full"])
def test_chaos_kill9_of_collector_and_of_broker_while_collectors_offline_every_message_once(
        tmp_path, influxd, certs, nearly_full_disk):
    """Four stations (real spool and publisher, TLS, own accounts) publish steadily through the
    shipped broker config into the real collector and influxd, while: the collector is killed with
    SIGKILL mid-batch and restarted; it is then stopped (offline), the broker saves, keeps
    acknowledging, and is killed with SIGKILL; the stations spool while it is down; it restarts from
    its save; the collector comes back only after that. Accounting: every message produced is
    stored, none is missing and none is stored twice (each measurement's point count equals the
    produced one exactly; each flux (station, seq) once).

    With ``nearly_full_disk`` each station's spool is on a small file system that another program
    fills to within a few tens of kB once the spool is open: the spool then drops by its policy
    (diagnostics first, then met; fluxes never here), and the accounting is: every point of a kind
    nothing was dropped of stored exactly once (all fluxes); the others stored at most once each and
    missing at most what the spools report dropped (``Spool.dropped_by_kind()``); diagnostics were
    dropped (the full disk was hit).
    Without it nothing may be dropped and every point is stored exactly once."""
    _, per_station = fleet_by_station(4, 600)
    with _station_dirs(tmp_path, per_station, nearly_full_disk) as (dirs, filler):
        _chaos(tmp_path, influxd, certs, per_station, dirs, filler)


def _chaos(tmp_path, influxd, certs, per_station, dirs, fill_station_disk):
    broker = start_shipped_mosquitto(tmp_path / "mosquitto", accounts(per_station), certs=certs)
    db = influx(influxd.port, "chaos_full_disk" if fill_station_disk else "chaos")  # the same fleet each run
    config = shipped_collector_config(tmp_path / "c.toml", broker, db)
    log = tmp_path / "collector.log"
    collector = start_collector(config, log)
    stations = {name: Station(name, broker, dirs[name], fill_disk=fill_station_disk) for name in per_station}
    produce_s = 40.0
    done = threading.Event()

    def produce(st, own):
        for msg in own:
            st.put(msg)
            if done.wait(produce_s / len(own)):
                return

    producers = [threading.Thread(target=produce, args=(stations[n], per_station[n]), daemon=True)
                 for n in per_station]
    for thread in producers:
        thread.start()
    try:
        assert wait_for(lambda: total(point_counts(db)) > 0, 20, 0.05), "nothing arrived"
        collector.send_signal(signal.SIGKILL)  # mid-batch
        collector.wait()
        time.sleep(1)
        collector = start_collector(config, log)
        at_restart = total(point_counts(db))
        assert wait_for(lambda: total(point_counts(db)) > at_restart, 20, 0.1), "nothing after the restart"
        stop(collector)  # the collectors are offline from here
        time.sleep(2)
        save_now(broker)  # its last save: what it acknowledges from here on is only in its memory
        acked = sum(st.acknowledged() for st in stations.values())
        assert wait_for(lambda: sum(st.acknowledged() for st in stations.values()) > acked + 20, 20), \
            "the stations' messages were not acknowledged after the save"
        broker.kill()
        time.sleep(3)  # stations spool while the broker is down
        broker = start_shipped_mosquitto(tmp_path / "mosquitto", accounts(per_station), port=broker.port,
                                         tls_port=broker.tls_port, certs=certs)
        time.sleep(3)  # the collectors are still offline: the broker queues for their saved session
        collector = start_collector(config, log)
        for thread in producers:
            thread.join(produce_s + 30)
        produced = {name: per_station[name][:st.put_count] for name, st in stations.items()}
        assert all(len(produced[n]) == len(per_station[n]) for n in produced), "the producers did not finish"
        dropped = {kind: sum(st.spool.dropped_by_kind().get(kind, 0) for st in stations.values())
                   for kind in ("flux", "met", "diag", "alarm")}
        want = expected_counts([msg for own in produced.values() for msg in own])
        if fill_station_disk is None:
            assert sum(dropped.values()) == 0, dropped
            assert wait_for(lambda: point_counts(db) == want, 90), (point_counts(db), want, dropped)
        else:
            # the full disk was hit, diagnostics went first, and fluxes were never dropped
            assert dropped["diag"] > 0 and dropped["flux"] == 0, dropped
            points = {k: max((msg.points for own in produced.values() for msg in own if msg.kind == k), default=0)
                      for k in want}
            exact = {k: v for k, v in want.items() if dropped.get(k, 0) == 0}
            assert wait_for(lambda: {k: point_counts(db)[k] for k in exact} == exact, 90), (point_counts(db), want)
            low = {k: want[k] - dropped[k] * points[k] for k in want if k not in exact}
            assert wait_for(lambda: all(low[k] <= point_counts(db)[k] for k in low), 30), \
                (point_counts(db), want, dropped)
            assert all(point_counts(db)[k] <= want[k] for k in low), (point_counts(db), want)
        fluxes = flux_rows(db)
        assert len(fluxes) == len(set(fluxes)) == want["flux"]
        assert set(fluxes) == {(msg.station, json.loads(msg.payload)["seq"]) for own in produced.values()
                               for msg in own if msg.kind == "flux"}
        assert sum(st.publisher.resent_after_disconnect for st in stations.values()) > 0
    finally:
        done.set()
        for st in stations.values():
            st.close()
        stop(collector)
        broker.stop()
    assert "Traceback" not in log.read_text()
