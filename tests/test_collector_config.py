"""The collector's configuration: the shipped example loads, mistakes name the key and the file."""

from pathlib import Path

import pytest

from collector.config import load
from station.configschema import ConfigError

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
