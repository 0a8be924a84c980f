"""The shipped broker set-up (deploy/mosquitto/mosquitto.conf and fluxedge.acl, laid out as on a
Debian server by collector.localservers.start_shipped_mosquitto: only ports and file paths are
this machine's) on a real mosquitto 2.0: a station publishes only under its own topics, the
collector only reads (and writes the dead-letter topic), ingestion works through it, and the
attacks of issue 14 fail: the collector and monitor accounts publishing as stations, a station
account in a collectors' shared subscription, and a client taking the collector's client id to
throw it off and wipe its persistent session."""

import json
import secrets
import signal
import threading
import time
import tomllib

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.query import influxql
from fluxedge.common import messages as m
from fluxedge.demo.servers import SHIPPED_MOSQUITTO, make_test_certificates, start_shipped_mosquitto
from tests.collector_helpers import Listener, Publisher, influx, start_collector, stop, wait_for, write_config

ACL = SHIPPED_MOSQUITTO / "fluxedge.acl"
EXAMPLE = SHIPPED_MOSQUITTO.parent / "examples" / "collector.toml"
ACCOUNTS = {"tower-7": "pw-7", "tower-8": "pw-8", "collector": "pw-c", "collector-alarms": "pw-a",
            "operator": "pw-o", "monitor": "pw-m"}
T = 1_795_341_660.0
KINDS = ("flux", "met", "diag", "alarm", "status")


def met(station, t=T):
    return m.encode_batch("met", station, [m.MetRecord(t, {"TA": 21.5})])


def met_count(db):
    rows = influxql(db, "SELECT count(TA) FROM met")
    return int(rows[0]["count"]) if rows else 0


def acl_users():
    """The accounts the shipped ACL names in ``user`` lines (every one that is not a station)."""
    return [line.split()[1] for line in ACL.read_text().splitlines() if line.startswith("user ")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path, certs):
    server = start_shipped_mosquitto(tmp_path / "mosquitto", ACCOUNTS, certs=certs)
    yield server
    server.stop()


def collector_config(tmp_path, broker, db, **ingest):
    """A collector as deploy/examples/collector.toml has it, on this broker and database, with the
    collector account."""
    shipped = tomllib.loads(EXAMPLE.read_text())["ingest"]
    return write_config(tmp_path / "c.toml", broker.port, db.url, db.database, "fluxedge", shipped["client_id"],
                        mqtt_extra='username = "collector"\npassword = "pw-c"\n', batch_age_s=0.1,
                        alarms='username = "collector-alarms"\npassword = "pw-a"\n'
                               'operator_username = "operator"\noperator_password = "pw-o"\n',
                        **{k: v for k, v in shipped.items() if k == "share_group"}, **ingest)


def station(broker, user, client_id=None):
    """A station-like publisher on the TLS listener, as the stations connect."""
    return Publisher(broker.tls_port, client_id or f"station-{user}", user, ACCOUNTS[user],
                     str(broker.certs / "ca.crt"))


def test_stations_publish_only_under_their_own_topics_and_collectors_only_read(tmp_path, broker, influxd):
    db = influx(influxd.port, "acl")
    collector = start_collector(collector_config(tmp_path, broker, db), tmp_path / "collector.log")
    monitor = Listener(broker.port, "fluxedge/#", "acl-monitor", "monitor", "pw-m")
    snoop = Listener(broker.tls_port, "fluxedge/v1/+/met", "acl-snoop", "tower-8", "pw-8",
                     str(broker.certs / "ca.crt"))
    tower7 = station(broker, "tower-7")
    try:
        assert tower7.send([(m.topic("fluxedge", "tower-7", "met"), met("tower-7")),
                            (m.topic("fluxedge", "tower-7", "diag"), b"{broken")]) == ["Success", "Success"]
        assert tower7.send([(m.topic("fluxedge", "tower-8", "met"), met("tower-8"))]) == ["Not authorized"]
        rows = wait_for(lambda: influxql(db, "SELECT TA FROM met GROUP BY station"), 15)
        assert [(r["station"], r["TA"]) for r in rows] == [("tower-7", 21.5)]
        dead = wait_for(lambda: [p for t, p in monitor.snapshot() if t == "fluxedge/v1/_deadletter"], 10)
        assert len(dead) == 1 and json.loads(dead[0])["topic"] == "fluxedge/v1/tower-7/diag"
        topics = {t for t, _ in monitor.snapshot()}
        assert {t for t in topics if not t.startswith("fluxedge/v1/_fleet/")} == {
            "fluxedge/v1/tower-7/met", "fluxedge/v1/tower-7/diag", "fluxedge/v1/_deadletter"}
        # the alarm service, on its own account, announced itself beside the collector's ingest
        assert "fluxedge/v1/_fleet/collectors/fluxedge-collector" in topics
        # mosquitto 2.0 grants the wildcard subscription but delivers nothing the ACL does not allow
        assert snoop.granted == ["Granted QoS 1"] and snoop.snapshot() == []
    finally:
        for client in (tower7, monitor, snoop):
            client.close()
        stop(collector)


def test_collector_and_monitor_accounts_cannot_publish_as_stations(broker):
    """``pattern write fluxedge/v1/%u/#`` applies to every account: each account of the ACL that is
    not a station must deny itself the topics of a station with its name."""
    assert acl_users() == ["collector", "collector-alarms", "operator", "monitor"]
    for user in acl_users():
        for kind in KINDS:  # one connection each: mosquitto may close a connection after a refusal
            pub = Publisher(broker.port, f"as-{user}", user, ACCOUNTS[user])
            try:
                assert pub.send([(m.topic("fluxedge", user, kind), met(user))]) == ["Not authorized"], (user, kind)
            finally:
                pub.close()
    # what they may do still works (no subscriber here, so "No matching subscribers" is success)
    ok = ("Success", "No matching subscribers")
    pub = Publisher(broker.port, "dlq", "collector", "pw-c")
    assert pub.send([("fluxedge/v1/_deadletter", b"{}")])[0] in ok
    pub.close()
    pub = station(broker, "tower-7")
    assert all(r in ok for r in pub.send([(m.topic("fluxedge", "tower-7", k), met("tower-7")) for k in KINDS]))
    pub.close()
    # the fleet's alarm state and commands: the alarm service and the operator only, never a station
    for user, topic, allowed in (("tower-7", "fluxedge/v1/_fleet/command", False),
                                 ("tower-7", "fluxedge/v1/_fleet/alarm/tower-8/x/station", False),
                                 ("collector", "fluxedge/v1/_fleet/command", False),
                                 ("operator", "fluxedge/v1/_fleet/alarm/tower-8/x/station", False),
                                 ("operator", "fluxedge/v1/_fleet/command", True),
                                 ("collector-alarms", "fluxedge/v1/_fleet/events", True)):
        pub = station(broker, user) if user.startswith("tower") else Publisher(broker.port, f"f-{user}", user,
                                                                               ACCOUNTS[user])
        try:
            (answer,) = pub.send([(topic, b"{}")])
            assert (answer in ok) == allowed, (user, topic, answer)
        finally:
            pub.close()


@pytest.mark.parametrize("share_group", [None, secrets.token_hex(16)], ids=["as-shipped", "secret-group"])
def test_a_station_account_in_a_share_group_takes_nothing_from_the_collector(tmp_path, broker, influxd,
                                                                             share_group):
    """mosquitto 2.0's acl_file checks no SUBSCRIBE: a station account may join any shared
    subscription group whose name it knows, mosquitto then deals it every other message and its read
    ACL drops them. So the collector uses no shared group (the shipped example), or one whose name is
    a secret; then whatever group a station joins, it is a group of its own and the collector still
    gets everything."""
    db = influx(influxd.port, f"share_{'secret' if share_group else 'none'}")
    extra = {"share_group": share_group} if share_group else {}
    collector = start_collector(collector_config(tmp_path, broker, db, **extra), tmp_path / "collector.log")
    guesses = ["collectors", "collector", "fluxedge", "g", "group", "monitor"]
    thief = Listener(broker.tls_port, [f"$share/{g}/fluxedge/v1/+/{k}" for g in guesses for k in KINDS],
                     "thief", "tower-8", "pw-8", str(broker.certs / "ca.crt"))
    tower7 = station(broker, "tower-7")
    try:
        # measured on 2.0.11: granted (a broker that refuses it would make this rule unnecessary)
        assert set(thief.granted) == {"Granted QoS 1"}
        sent = [(m.topic("fluxedge", "tower-7", "met"), met("tower-7", T + 60 * i)) for i in range(60)]
        assert set(tower7.send(sent)) == {"Success"}
        assert wait_for(lambda: met_count(db) == 60, 20), met_count(db)
        assert thief.snapshot() == []
    finally:
        tower7.close()
        thief.close()
        stop(collector)


def connect_as(port, user, client_id, ca_file=None):
    """A client of account ``user`` that asks for ``client_id`` with a clean start (which ends any
    session of that client id) and stays 0.5 s; True if the broker accepted it."""
    accepted = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, ACCOUNTS[user])
    if ca_file:
        client.tls_set(ca_certs=ca_file)
    client.on_connect = lambda c, u, flags, rc, props: accepted.set() if not rc.is_failure else None
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    ok = accepted.wait(5)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    return ok


def test_no_account_can_take_the_collectors_client_id(tmp_path, broker, influxd):
    """With the collector's client id, a station account would throw the collector off and, with a
    clean start, wipe its persistent session and the messages queued in it. The broker uses the
    account name as client id (use_username_as_clientid on both listeners), so it cannot."""
    db = influx(influxd.port, "takeover")
    config = collector_config(tmp_path, broker, db)
    log = tmp_path / "collector.log"
    collector = start_collector(config, log)
    ids = (tomllib.loads(config.read_text())["ingest"]["client_id"], "collector")  # configured, and the account's
    ca = str(broker.certs / "ca.crt")
    tower7 = station(broker, "tower-7")
    try:
        for client_id in ids:  # the collector is running
            assert connect_as(broker.tls_port, "tower-8", client_id, ca)
            assert connect_as(broker.port, "monitor", client_id)
        time.sleep(1)
        assert "mqtt_disconnected" not in log.read_text()
        # the collector frozen: its messages wait in its session while someone takes its client id
        collector.send_signal(signal.SIGSTOP)
        sent = [(m.topic("fluxedge", "tower-7", "met"), met("tower-7", T + 60 * i)) for i in range(30)]
        assert set(tower7.send(sent)) == {"Success"}
        for client_id in ids:
            assert connect_as(broker.tls_port, "tower-8", client_id, ca)
        collector.send_signal(signal.SIGCONT)
        assert wait_for(lambda: met_count(db) == 30, 20), met_count(db)
        assert "mqtt_disconnected" not in log.read_text()
    finally:
        collector.send_signal(signal.SIGCONT)
        tower7.close()
        stop(collector)
