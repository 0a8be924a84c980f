"""MQTT security against a real mosquitto running the shipped deploy/mosquitto config (its TLS
listener, certificates made with the openssl CLI at test time, its password file and ACL, and its
documented option ``require_certificate true``). The station's publisher connects with TLS +
credentials + client certificate; a wrong password or an untrusted CA is refused with a logged
reason and the spooled data stays in the spool."""

import json
import logging
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from fluxedge.common.configschema import ConfigError
from fluxedge.common.mqttconfig import MqttConfig, TlsConfig
from fluxedge.demo.servers import start_shipped_mosquitto
from station.config import load as load_station_config
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool

USER, PASSWORD = "tower-7", "s3cret-pw"
STATUS = "fluxedge/v1/tower-7/status"
FLUX = "fluxedge/v1/tower-7/flux"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d, ca, name, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    ext = []
    if san:
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "broker", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "ca", "station")
    # the stations' TLS listener as shipped, with its commented-out client-certificate option on
    server = start_shipped_mosquitto(d / "broker-data", {USER: PASSWORD, "monitor": "monitor-pw"}, certs=d,
                                     uncomment=("require_certificate",))
    yield server, d
    server.stop()


def mqtt_config(port, d, password=PASSWORD, ca="ca.crt"):
    return MqttConfig(host="127.0.0.1", port=port, username=USER, password=password, keepalive_s=5,
                      reconnect_max_s=2,
                      tls=TlsConfig(ca_file=str(d / ca), cert_file=str(d / "station.crt"),
                                    key_file=str(d / "station.key")))


def watcher(port, d, topic):
    got, connected = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set("monitor", "monitor-pw")
    client.tls_set(ca_certs=str(d / "ca.crt"), certfile=str(d / "station.crt"), keyfile=str(d / "station.key"))
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: connected.set()  # SUBACK: from here on nothing is missed
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload, m.retain))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "watcher could not connect"
    return client, got


def make_publisher(spool, config):
    return Publisher(spool, config, "station-tower-7", STATUS, b'{"state":"online"}', b'{"state":"offline"}')


def wait_for(cond, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_station_publishes_over_tls_with_credentials_and_client_certificate(secure_broker, tmp_path):
    server, d = secure_broker
    client, got = watcher(server.tls_port, d, "fluxedge/v1/tower-7/#")
    spool = Spool(tmp_path / "spool.sqlite")
    for i in range(3):
        spool.put("flux", FLUX, json.dumps({"seq": i}).encode())
    pub = make_publisher(spool, mqtt_config(server.tls_port, d))
    pub.start()
    try:
        assert wait_for(lambda: spool.depth() == 0, 15), pub.link_state
        assert pub.connected and pub.link_state == "connected"
        assert wait_for(lambda: sum(t == FLUX for t, _, _ in got) == 3, 5), got
        assert [json.loads(p)["seq"] for t, p, _ in got if t == FLUX] == [0, 1, 2]
        assert (STATUS, b'{"state":"online"}', False) in got
    finally:
        pub.stop(drain_s=1)
        client.loop_stop()
        client.disconnect()


@pytest.mark.parametrize(("password", "ca", "event_name", "reason"), [
    ("wrong-password", "ca.crt", "mqtt_refused", "Bad user name or password|Not authorized"),
    (PASSWORD, "rogue-ca.crt", "mqtt_connect_failed", "TLS: broker certificate not trusted"),
])
def test_refused_connection_logs_why_and_keeps_the_data(secure_broker, tmp_path, caplog, password, ca,
                                                        event_name, reason):
    import re

    server, d = secure_broker
    caplog.set_level(logging.DEBUG, logger="station.publisher")
    spool = Spool(tmp_path / "spool.sqlite")
    ids = [spool.put("flux", FLUX, json.dumps({"seq": i}).encode()) for i in range(3)]
    pub = make_publisher(spool, mqtt_config(server.tls_port, d, password=password, ca=ca))
    pub.start()
    try:
        assert wait_for(lambda: pub.failed_attempts >= 2, 15), "no retries seen"
        assert not pub.connected
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(m.startswith(event_name) and re.search(reason, m) for m in warnings), warnings
        assert len([m for m in warnings if m.startswith(event_name)]) == 1  # the same reason is logged once
        assert re.search(reason, pub.link_state)
    finally:
        pub.stop(drain_s=0)
    assert [m.id for m in Spool(tmp_path / "spool.sqlite").oldest(10)] == ids  # nothing lost


def test_a_message_the_broker_refuses_stays_in_the_spool_and_the_rest_flow(secure_broker, tmp_path, caplog):
    server, d = secure_broker
    caplog.set_level(logging.INFO, logger="station.publisher")
    client, got = watcher(server.tls_port, d, "fluxedge/v1/tower-7/#")
    spool = Spool(tmp_path / "spool.sqlite")
    spool.put("flux", FLUX, b'{"seq": 1}')
    denied = spool.put("flux", "fluxedge/v1/someone-else/flux", b'{"seq": 2}')  # the ACL forbids it
    spool.put("flux", FLUX, b'{"seq": 3}')
    pub = make_publisher(spool, mqtt_config(server.tls_port, d))
    pub.start()
    try:
        assert wait_for(lambda: spool.depth() == 1 and pub.rejected == 1, 15), (spool.depth(), pub.rejected)
        time.sleep(1.5)  # not offered again before its retry time, not deleted
        assert pub.rejected == 1 and [m.id for m in spool.oldest(10)] == [denied]
        assert wait_for(lambda: [p for t, p, _ in got if t == FLUX] == [b'{"seq": 1}', b'{"seq": 3}'], 5), got
        refused = [r for r in caplog.records if r.getMessage().startswith("mqtt_publish_refused")]
        assert len(refused) == 1 and "Not authorized" in refused[0].getMessage()
        assert refused[0].levelno == logging.WARNING
    finally:
        pub.stop(drain_s=0)
        client.loop_stop()
        client.disconnect()


def write_station_config(tmp_path, tls_lines):
    path = tmp_path / "station.toml"
    path.write_text(f"""
[site]
id = "tower-7"
latitude_deg = 1.0
longitude_deg = 100.0
[[instruments]]
name = "sonic"
driver = "csat3"
port = "/dev/null"
[mqtt]
username = "u"
password = "p"
[mqtt.tls]
{tls_lines}
[spool]
path = "{tmp_path / 'spool.sqlite'}"
""")
    return path


@pytest.mark.parametrize(("tls_lines", "key", "problem"), [
    ('ca_file = "/nonexistent/ca.crt"', "mqtt.tls.ca_file", "does not exist"),
    ('ca_file = "{d}/broker-data/fluxedge.passwd"', "mqtt.tls.ca_file", "not a PEM CA certificate"),
    ('ca_file = "{d}/ca.crt"\ncert_file = "{d}/station.crt"', "mqtt.tls.key_file", "go together"),
    ('ca_file = "{d}/ca.crt"\ncert_file = "{d}/station.crt"\nkey_file = "{d}/broker.key"', "mqtt.tls.cert_file",
     "do not load together"),
])
def test_bad_tls_settings_are_config_errors_naming_the_key(secure_broker, tmp_path, tls_lines, key, problem):
    _, d = secure_broker
    path = write_station_config(tmp_path, tls_lines.format(d=d))
    with pytest.raises(ConfigError) as err:
        load_station_config(path)
    # configschema reports keys inside an optional table at the table ("mqtt.tls"); the problem names the file
    assert key.startswith(err.value.key) and err.value.key.startswith("mqtt.tls"), err.value
    assert problem in err.value.problem and str(path) in str(err.value)
    assert "\n" not in str(err.value)
