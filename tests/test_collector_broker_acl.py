"""The shipped mosquitto ACL (deploy/mosquitto/fluxedge.acl) on a real mosquitto with a password
file: a station publishes only under its own topics, the collector only reads (and writes the
dead-letter topic), and ingestion works through it."""

import json
import subprocess
from pathlib import Path

from collector.localservers import find_binary, start_mosquitto
from collector.query import influxql
from station import messages as m
from tests.collector_helpers import Listener, Publisher, influx, start_collector, stop, wait_for, write_config

ACL = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "fluxedge.acl"
ACCOUNTS = {"tower-7": "pw-7", "tower-8": "pw-8", "collector": "pw-c", "monitor": "pw-m"}
T = 1_795_341_660.0


def met(station):
    return m.encode_batch("met", station, [m.MetRecord(T, {"TA": 21.5})])


def test_stations_publish_only_under_their_own_topics_and_collectors_only_read(tmp_path, influxd):
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in ACCOUNTS.items():
        subprocess.run([find_binary("mosquitto").replace("/sbin/mosquitto", "/bin/mosquitto_passwd"), "-b",
                        str(passwd), user, password], check=True, capture_output=True)
    broker = start_mosquitto(tmp_path / "mosquitto", extra_config=(
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {ACL}\n"))
    db = influx(influxd.port, "acl")
    config = write_config(tmp_path / "c.toml", broker.port, db.url, "acl", "fluxedge", "acl-collector",
                          mqtt_extra='username = "collector"\npassword = "pw-c"\n', share_group="g",
                          batch_age_s=0.1)
    collector = start_collector(config, tmp_path / "collector.log")
    monitor = Listener(broker.port, "fluxedge/#", "acl-monitor", "monitor", "pw-m")
    snoop = Listener(broker.port, "fluxedge/v1/+/met", "acl-snoop", "tower-8", "pw-8")
    station = Publisher(broker.port, "tower-7", "tower-7", "pw-7")
    rogue = Publisher(broker.port, "acl-rogue-collector", "collector", "pw-c")
    try:
        assert station.send([(m.topic("fluxedge", "tower-7", "met"), met("tower-7")),
                             (m.topic("fluxedge", "tower-7", "diag"), b"{broken")]) == ["Success", "Success"]
        # refused (and mosquitto 2.0.11 then drops the connection of the offender)
        assert station.send([(m.topic("fluxedge", "tower-8", "met"), met("tower-8"))]) == ["Not authorized"]
        assert rogue.send([(m.topic("fluxedge", "tower-9", "met"), met("tower-9"))]) == ["Not authorized"]
        rows = wait_for(lambda: influxql(db, "SELECT TA FROM met GROUP BY station"), 15)
        assert [(r["station"], r["TA"]) for r in rows] == [("tower-7", 21.5)]
        dead = wait_for(lambda: [p for t, p in monitor.snapshot() if t == "fluxedge/v1/_deadletter"], 10)
        assert len(dead) == 1 and json.loads(dead[0])["topic"] == "fluxedge/v1/tower-7/diag"
        assert {t for t, _ in monitor.snapshot()} == {"fluxedge/v1/tower-7/met", "fluxedge/v1/tower-7/diag",
                                                       "fluxedge/v1/_deadletter"}
        # mosquitto 2.0 grants the wildcard subscription but delivers nothing the ACL does not allow
        assert snoop.granted == ["Granted QoS 1"] and snoop.snapshot() == []
    finally:
        for client in (station, rogue, monitor, snoop):
            client.close()
        stop(collector)
        broker.stop()
