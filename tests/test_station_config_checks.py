"""The station config refuses what cannot work, as one line naming file and key, exit status 2 and no
traceback, through the real ``fluxedge`` command; the shipped example loads as shipped."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"
_SCRIPT = Path(sys.executable).with_name("fluxedge")
FLUXEDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "fluxedge.cli"]


def fluxedge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLUXEDGE, *args], capture_output=True, text=True, timeout=60)


def shipped_station(tmp_path: Path) -> str:
    """deploy/examples/station.toml with only its two site directories moved into ``tmp_path``:
    /etc/fluxedge (holding a real CA certificate, since ca_file is checked) and /var/lib/fluxedge."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    etc.mkdir()
    var.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", str(etc / "ca.key"),
                    "-out", str(etc / "ca.crt")], check=True, capture_output=True)
    text = (EXAMPLES / "station.toml").read_text()
    assert text.count("/etc/fluxedge/") >= 1 and text.count("/var/lib/fluxedge/") >= 2
    return text.replace("/etc/fluxedge/", f"{etc}/").replace("/var/lib/fluxedge/", f"{var}/")


def test_the_shipped_examples_load_as_shipped(tmp_path):
    from collector.config import load as load_collector
    from station.config import load as load_station

    path = tmp_path / "station.toml"
    path.write_text(shipped_station(tmp_path))
    # the real command: the config is valid, only the daemon's status file is missing
    result = fluxedge("station", "status", "-c", str(path))
    assert result.returncode == 1 and "no status file" in result.stderr, result.stderr
    config, _ = load_station(path)
    assert config.mqtt.tls is not None and len(config.modbus) == 2
    assert [r.sources for r in config.alarm if r.sources] == [["ch4irga"]]
    assert load_collector(EXAMPLES / "collector.toml").influxdb.url.startswith("http")


DEEP = "[" * 1000 + "]" * 1000

#: (text in the shipped example, its replacement, the key named, words of the problem)
BROKEN = {
    "deeply nested arrays": ('sources = ["ch4irga"]', f"sources = {DEEP}", "alarm[2].sources", "nested more than"),
    "deeply nested inline tables": ('sources = ["ch4irga"]', "sources = " + "{a = " * 1000 + "1" + "}" * 1000,
                                    "alarm[2].sources", "nested more than"),
    "NaN separation": ("northward_separation_m = 0.15", "northward_separation_m = nan",
                       "instruments[1].northward_separation_m", "finite number"),
    "1e308 separation": ("eastward_separation_m = -0.40", "eastward_separation_m = 1e308",
                         "instruments[2].eastward_separation_m", "between"),
    "infinite separation": ("vertical_separation_m = 0.0\n\n#", "vertical_separation_m = -inf\n\n#",
                            "instruments[1].vertical_separation_m", "finite number"),
    "NaN alarm threshold": ("above = 20 ", "above = nan ", "alarm[0].above", "finite number"),
    "NaN alarm clear level": ("clear_at = 20", "clear_at = nan", "alarm[2].clear_at", "finite number"),
    "empty broker host": ('host = "broker.example.org"', 'host = ""', "mqtt.host", "must not be empty"),
    "broker host as a URL": ('host = "broker.example.org"', 'host = "mqtts://broker.example.org"', "mqtt.host",
                             "not a URL"),
    "topic prefix with a wildcard": ('topic_prefix = "fluxedge"', 'topic_prefix = "flux/+"', "mqtt.topic_prefix",
                                     "one MQTT topic level"),
    "dead-letter site id": ('id = "mangrove-01"', 'id = "_deadletter"', "site.id", "reserved"),
    "alarm source that is no instrument": ('sources = ["ch4irga"]', 'sources = ["ch4"]', "alarm[2].sources",
                                           "'ch4' is not an instrument"),
    "spool path is a directory": ('path = "{var}/spool.sqlite"', 'path = "{var}"', "spool.path", "is a directory"),
    "spool under /proc": ('path = "{var}/spool.sqlite"', 'path = "/proc/self/spool.sqlite"', "spool.path",
                          "under /proc"),
    "spool is a device": ('path = "{var}/spool.sqlite"', 'path = "/dev/null"', "spool.path", "not a regular file"),
    "archive under /proc": ('directory = "{var}/archive"', 'directory = "/proc/self"', "archive.directory",
                            "under /proc"),
    "archive is a file": ('directory = "{var}/archive"', 'directory = "{etc}/ca.crt"', "archive.directory",
                          "not a directory"),
    "status path is a directory": ('# path = "/run/fluxedge/status.json"', 'path = "{var}"', "status.path",
                                   "is a directory"),
    "status under /proc": ('# path = "/run/fluxedge/status.json"', 'path = "/proc/self/status"', "status.path",
                           "under /proc"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_what_cannot_work_is_one_line_naming_file_and_key(tmp_path, case):
    old, new, key, problem = BROKEN[case]
    text = shipped_station(tmp_path)
    dirs = {"var": tmp_path / "var", "etc": tmp_path / "etc"}
    for name, where in dirs.items():
        old, new = old.replace(f"{{{name}}}", str(where)), new.replace(f"{{{name}}}", str(where))
    assert text.count(old) == 1, f"the shipped example changed: {old!r} not found once"
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new))
    result = fluxedge("station", "check", "-c", str(path), "--seconds", "0.1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"{path}: {key}: " in result.stderr and problem in result.stderr, result.stderr
    assert "valid" not in result.stdout
