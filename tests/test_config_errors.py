"""Bad configuration files: a short error naming file and key, exit status 2, no traceback."""

import subprocess
import sys

import pytest

GOOD = """
[site]
id = "t1"
latitude_deg = 1.0
longitude_deg = 100.0
canopy_height_m = 8.0
measurement_height_m = 20.0

[[instruments]]
name = "sonic"
driver = "csat3"
port = "/dev/ttyUSB0"

[[instruments]]
name = "irga"
driver = "li7500"
port = "/dev/ttyUSB1"

[mqtt]
host = "127.0.0.1"

[spool]
path = "{spool}"
"""


def run(*args):
    return subprocess.run([sys.executable, "-m", "fluxedge.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("change", "key", "problem"), [
    (("latitude_deg = 1.0", "latitude_deg = 91.0"), "site.latitude_deg", "between -90 and 90"),
    (('port = "/dev/ttyUSB1"', 'port = "/dev/ttyUSB1"\nbaud = 12345'), "instruments[1].baud", "standard rate"),
    (('port = "/dev/ttyUSB1"', 'port = "/dev/ttyUSB1"\nbuad = 9600'), "instruments[1].buad", "did you mean 'baud'"),
    (('driver = "li7500"', 'driver = "li9999"'), "instruments[1].driver", "unknown driver 'li9999'"),
    (('host = "127.0.0.1"', "host = 127"), "mqtt.host", "must be a string"),
    (('id = "t1"', 'id = "bad/id"'), "site.id", "MQTT topics"),
    (('[mqtt]\nhost = "127.0.0.1"', ""), "mqtt", "missing required key"),
    (("measurement_height_m = 20.0", "measurement_height_m = 5.0"), "site.canopy_height_m", "displacement"),
    # inside an optional table the error names the key in it, not the table
    (('host = "127.0.0.1"', 'host = "127.0.0.1"\n[mqtt.tls]\nca_file = 5'), "mqtt.tls.ca_file", "must be a string"),
])
def test_wrong_values_name_file_and_key(tmp_path, change, key, problem):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.format(spool=tmp_path / "spool.sqlite").replace(*change))
    result = run("station", "run", "-c", str(path))
    assert result.returncode == 2
    assert f"{path}: {key}: " in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_invalid_toml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[site]\nid = \n")
    result = run("station", "run", "-c", str(path))
    assert result.returncode == 2
    assert f"{path}: invalid TOML" in result.stderr and "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_collector_config(tmp_path):
    result = run("station", "run", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "nope.toml: cannot read the file" in result.stderr
    path = tmp_path / "collector.toml"
    path.write_text('[mqtt]\n[influxdb]\nurl = "http://127.0.0.1:8086"\napi = 2\nbucket = "b"\n')
    result = run("collector", "run", "-c", str(path))
    assert result.returncode == 2 and "influxdb.token: required when api = 2" in result.stderr


def test_help_lists_the_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for word in ("station", "collector", "bridge", "demo"):
        assert word in result.stdout


def test_the_documented_example_configs_load(tmp_path):
    """deploy/examples: every key documented there is a key the loader knows, with valid values (the
    station's TLS files and data directory are site-specific: replaced for this check)."""
    import re
    from pathlib import Path

    from collector.config import load as load_collector
    from station.config import load as load_station

    examples = Path(__file__).resolve().parents[1] / "deploy" / "examples"
    text = (examples / "station.toml").read_text()
    text = re.sub(r"(?ms)^\[mqtt\.tls\].*?(?=^\[)", "", text).replace("/var/lib/fluxedge", str(tmp_path))
    station = tmp_path / "station.toml"
    station.write_text(text)
    config, _hash = load_station(station)
    assert config.processing.self_heating == "none" and len(config.gas_analysers) >= 1
    collector_text = (examples / "collector.toml").read_text()
    collector = tmp_path / "collector.toml"
    collector.write_text(collector_text)
    assert load_collector(collector).influxdb.url.startswith("http")


def test_tower_config_renderer_writes_what_the_loader_reads(tmp_path):
    """fluxedge/demo/towerconfig.py (demo, benches, tests): strings, numbers, booleans, arrays of tables and
    inline tables come back as written."""
    from fluxedge.demo.towerconfig import Instrument, station_toml
    from station.config import load

    path = tmp_path / "station.toml"
    path.write_text(station_toml(
        "render-1", [Instrument("sonic", "csat3", "/dev/ttyUSB0"),
                     Instrument("irga", "li7500", 'tcp://127.0.0.1:7"', {"northward_separation_m": 0.15})],
        mqtt_port=18830, spool_path=tmp_path / "spool.sqlite", period_s=600, rate_hz=10.0,
        processing={"statistical_tests": False}, mqtt={"keepalive_s": 5},
        tables={"modbus": [{"name": "baro", "map": "vaisala_barometer", "port": "tcp://127.0.0.1:1502",
                            "points": [{"point": "pressure", "name": "PA"}]}]}))
    with pytest.raises(Exception, match="port"):  # the quote inside the port survived the escaping
        load(path)
    path.write_text(path.read_text().replace('tcp://127.0.0.1:7\\"', "/dev/ttyUSB1"))
    config, _ = load(path)
    assert config.site.id == "render-1" and config.acquisition.averaging_period_s == 600
    assert config.processing.statistical_tests is False and config.mqtt.keepalive_s == 5
    assert config.instruments[1].northward_separation_m == 0.15 and config.modbus[0].points[0].name == "PA"
