"""Real servers for integration tests: mosquitto and influxd on 127.0.0.1, free ports, temp dirs."""

import os
from pathlib import Path

import pytest

from fluxedge.demo.servers import start_influxd, start_mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    server = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield server
    server.stop()


#: The real raw EC data with EddyPro results, beside the repository (DEVELOPERS.md: ../shared/data/ec).
EC_DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ec"))
