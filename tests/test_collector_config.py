"""The collector's configuration: the shipped example loads, mistakes name the key and the file."""

import subprocess
import sys
from pathlib import Path

import pytest

from collector.config import load
from fluxedge.common.configschema import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "collector.toml"
BASE = '[mqtt]\n[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "d"\n[ingest]\n'


def test_the_shipped_example_loads():
    config = load(EXAMPLE)
    assert config.ingest.receive_maximum >= config.ingest.batch_size
    assert config.ingest.kinds == ["flux", "met", "diag", "alarm"]


@pytest.mark.parametrize(("ingest", "message"), [
    ("batch_size = 2000\n", "ingest.receive_maximum: must be at least batch_size (2000)"),
    ('kinds = ["flux", "status"]\n', "ingest.kinds: must be a non-empty list of flux, met, diag, alarm"),
    ("kinds = []\n", "ingest.kinds: must be a non-empty list"),
    ("retry_min_s = 5.0\nretry_max_s = 1.0\n", "ingest.retry_max_s: must be at least retry_min_s"),
    ("receive_maximum = 70000\n", "ingest.receive_maximum"),
    ("batch_pints = 5\n", "batch_pints"),
])
def test_mistakes_name_the_key_and_the_file(tmp_path, ingest, message):
    path = tmp_path / "collector.toml"
    path.write_text(BASE + ingest)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


MQTT = '[mqtt]\n{mqtt}[influxdb]\nurl = "{url}"\ndatabase = "d"\n[ingest]\n{ingest}'


#: (mqtt keys, influxdb url, ingest keys, the key named, a phrase of the problem): configurations that
#: were accepted and then crashed (host = "" raised ValueError in paho) or could never work
CANNOT_WORK = [
    ('host = ""\n', "http://127.0.0.1:8086", "", "mqtt.host", "must not be empty"),
    ('host = "mqtt://broker"\n', "http://127.0.0.1:8086", "", "mqtt.host", "not a URL"),
    ('host = "broker:1883"\n', "http://127.0.0.1:8086", "", "mqtt.host", "without a port"),
    ('host = "bad host"\n', "http://127.0.0.1:8086", "", "mqtt.host", "is not a host name or IP address"),
    ('topic_prefix = ""\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix", "must not be empty"),
    ('topic_prefix = "fluxedge/#"\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix", "one MQTT topic level"),
    ('topic_prefix = "+"\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix", "one MQTT topic level"),
    ('topic_prefix = "a/b"\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix", "one MQTT topic level"),
    ('topic_prefix = "$SYS"\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix", "must not start with '$'"),
    ('client_id = "c1"\n', "http://127.0.0.1:8086", "", "mqtt.client_id", "ingest.client_id"),
    ("", "http://127.0.0.1:8086", 'share_group = "#"\n', "ingest.share_group", "one MQTT topic level"),
    ("", "http://127.0.0.1:8086", 'share_group = "+"\n', "ingest.share_group", "one MQTT topic level"),
    ("", "http://127.0.0.1:8086", 'share_group = "a/b"\n', "ingest.share_group", "one MQTT topic level"),
    ("", "http://127.0.0.1:8086", 'share_group = ""\n', "ingest.share_group", "must not be empty"),
    ("", "http://127.0.0.1:8086", 'client_id = ""\n', "ingest.client_id", "must be 1 to 128 bytes, got 0"),
    ("", "http://127.0.0.1:8086", f'client_id = "{"c" * 129}"\n', "ingest.client_id", "got 129"),
    ("", "http://127.0.0.1:8086", f'client_id = "{"é" * 65}"\n', "ingest.client_id", "got 130"),
    ("", "http://127.0.0.1:8086", 'client_id = "c/1"\n', "ingest.client_id", "must not contain"),
    ("", "http://127.0.0.1:8086", 'client_id = "c\\u0000"\n', "ingest.client_id", "must not contain"),
    ("", "http://127.0.0.1:8086", 'client_id = "c\\\\"\n', "ingest.client_id", "backslash"),
    ("", "http://", "", "influxdb.url", "names no host"),
    ("", "http://127.0.0.1:99999", "", "influxdb.url", "Port out of range"),
    ("", "http://127.0.0.1:abc", "", "influxdb.url", "is not a valid URL"),
    ("", "http://[::1", "", "influxdb.url", "Invalid IPv6 URL"),
    ("", "http://influx host:8086", "", "influxdb.url", "must not contain spaces"),
    ("", "http://127.0.0.1:8086?db=x", "", "influxdb.url", "must not have a query"),
    ("", "http://user:secret@127.0.0.1:8086", "", "influxdb.url", "must not hold credentials"),
    ("", "127.0.0.1:8086", "", "influxdb.url", "must start with http:// or https://"),
    ("", "http://127.0.0.1:0", "", "influxdb.url", "port must be 1..65535"),
    ("", "http://127.0.0.1:8086", "writer_hung_s = 40\n", "ingest.writer_hung_s", "must exceed"),
]


@pytest.mark.parametrize(("mqtt", "url", "ingest", "key", "problem"), CANNOT_WORK)
def test_settings_that_cannot_work_name_the_key_and_the_file(tmp_path, mqtt, url, ingest, key, problem):
    path = tmp_path / "collector.toml"
    path.write_text(MQTT.format(mqtt=mqtt, url=url, ingest=ingest))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert f"{path}: {key}: " in str(err.value) and problem in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("mqtt", "url", "ingest"), [
    ('host = "::1"\n', "http://[::1]:8086/influx/", ""),
    ('host = "broker.example.org"\ntopic_prefix = "site-a"\n', "https://influx.example.org", ""),
    ('host = "10.0.0.7"\n', "http://127.0.0.1:8086", 'client_id = "fluxedge-collector-db1.example.org-2"\n'
                                                    'share_group = "collectors"\n'),
    ("", "http://127.0.0.1:8086", f'client_id = "{"c" * 128}"\n'),
    ("", "http://127.0.0.1:8086", 'client_id = "C:\\\\collector 1"\n'),
])
def test_sound_settings_load(tmp_path, mqtt, url, ingest):
    path = tmp_path / "collector.toml"
    path.write_text(MQTT.format(mqtt=mqtt, url=url, ingest=ingest))
    load(path)


@pytest.mark.parametrize(("mqtt", "url", "ingest", "key"), [
    ('host = ""\n', "http://127.0.0.1:8086", "", "mqtt.host"),
    ("", "http://127.0.0.1:8086", 'share_group = "#"\n', "ingest.share_group"),
    ('topic_prefix = "a/+"\n', "http://127.0.0.1:8086", "", "mqtt.topic_prefix"),
    ("", "http://127.0.0.1:8086", f'client_id = "{"c" * 70000}"\n', "ingest.client_id"),
    ("", "http://[::1", "", "influxdb.url"),
])
def test_the_collector_command_exits_2_with_one_line(tmp_path, mqtt, url, ingest, key):
    """The real ``fluxedge collector run``: one line on stderr naming file and key, exit 2, no
    traceback (before the fix: a ValueError traceback, or a collector that ran and ingested nothing)."""
    path = tmp_path / "collector.toml"
    path.write_text('[mqtt]\nport = 1\n' + MQTT.format(mqtt=mqtt, url=url, ingest=ingest)[len("[mqtt]\n"):])
    out = subprocess.run([sys.executable, "-m", "fluxedge.cli", "collector", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fluxedge: error: {path}: {key}: "), out.stderr[-2000:]
    assert out.stdout == ""
