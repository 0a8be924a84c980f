"""Real servers for integration tests: mosquitto and influxd on 127.0.0.1, free ports, temp dirs."""

import pytest

from collector.localservers import start_influxd, start_mosquitto


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
